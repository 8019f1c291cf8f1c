/**
 * OpenNebula's backup framework on real libvirt + QEMU (TCG) on hv1: live and offline backups
 * (full, and incremental with changed-block tracking), the freeze modes, clean-up, and restore
 * from a backup datastore whose driver (`ls`, and OpenNebula's `downloader.sh`) is faked on the
 * front-end. One world, one libvirtd, one VM.
 */

import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import { datastoreXml, hostXml, imageDisk, imageXml, vmXml, volatileDisk } from "../support/fixtures.ts";
import { chunkPatterns, domainXml, LIBVIRT_DIRS, LibvirtLab } from "../support/libvirt_lab.ts";

const MiB = 1 << 20;
const VM_ID = 20;
const DOMAIN = `one-${VM_ID}`;
const VM_DIR_ARG = `/var/lib/one//datastores/100/${VM_ID}`;
const VM_DIR = `/var/lib/one/datastores/100/${VM_ID}`;
const BACKUP_DIR = `${VM_DIR}/backup`;
const BACKUP_DS = 200;

interface BackupConfig {
  MODE?: string;
  LAST_INCREMENT_ID?: number;
  FS_FREEZE?: string;
  INCREMENT_MODE?: string;
}

function vm(tmName: string, config: BackupConfig, lcmState = 69): string {
  const xml = vmXml({
    id: VM_ID,
    deployId: DOMAIN,
    lcmState,
    disks: [
      imageDisk({ DISK_ID: 0, TM_MAD: tmName, SIZE: 32, ORIGINAL_SIZE: 32, FORMAT: "qcow2" }),
      volatileDisk({ DISK_ID: 1, TM_MAD: tmName, SIZE: 16, FORMAT: "raw", TYPE: "fs" }),
    ],
    context: { DISK_ID: 2, TARGET: "hda" },
    history: [{ hostname: "hv1", hid: 1, dsId: 100, tmMad: tmName }],
  });
  const fields = Object.entries({ ...config, LAST_DATASTORE_ID: BACKUP_DS })
    .map(([k, v]) => `<${k}><![CDATA[${v}]]></${k}>`).join("");
  return xml.replace("<BACKUP_CONFIG></BACKUP_CONFIG>", `<BACKUP_CONFIG>${fields}</BACKUP_CONFIG>`);
}

/** The backup datastore driver `labbackup` on the front-end: `ls` lists what a file says. */
const LS = `#!/bin/sh
# Fake backup datastore driver: records its arguments and input, prints the listing prepared by the test.
printf '%s\\n' "$*" >/var/tmp/one/ls.args
cat >/var/tmp/one/ls.stdin
cat /var/tmp/one/ls.answer
`;

/** OpenNebula's downloader, reduced to the one URL scheme of the test (`lab://<path>`). */
const DOWNLOADER = `#!/bin/sh
[ "$1" = --nodecomp ] || { echo "expected --nodecomp" >&2; exit 2; }
case $2 in
  lab://*) cp -- "\${2#lab://}" "$3" ;;
  *) echo "unknown URL $2" >&2; exit 1 ;;
esac
`;

labTest("backups on real libvirt and QEMU: live, offline, incremental, restore", async (t) => {
  await using world = await World.start({ extraDirs: [...LIBVIRT_DIRS] });
  const hv = await LibvirtLab.start(world.lab, ["hv1"]);
  world.oned.addDatastore(datastoreXml({ id: 100, tmMad: world.tmName }));
  world.oned.addDatastore(
    datastoreXml({
      id: BACKUP_DS,
      type: 3,
      dsMad: "labbackup",
      tmMad: "-",
      name: "backups",
      template: { LABBACKUP_NICE: 10, LABBACKUP_IONICE: 6 },
    }),
  );
  world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
  world.oned.addImage(imageXml({ id: 50, type: 6, datastoreId: BACKUP_DS, source: "0:backup-chain" }));
  await world.writeFile("frontend", "/var/lib/one/remotes/datastore/labbackup/ls", LS);
  await world.writeFile("frontend", "/var/lib/one/remotes/datastore/downloader.sh", DOWNLOADER);
  await world.sh(
    "frontend",
    "chmod 755 /var/lib/one/remotes/datastore/labbackup/ls /var/lib/one/remotes/datastore/downloader.sh",
  );

  await world.sh(
    "hv1",
    `mkdir -p ${VM_DIR} && cd ${VM_DIR} && qemu-img create -q -f qcow2 disk.0 32M && ` +
      `qemu-img create -q -f raw disk.1 16M && head -c 1048576 /dev/zero > disk.2`,
    { user: "oneadmin" },
  );
  const domain = domainXml({
    vmId: VM_ID,
    disks: [
      { path: `${VM_DIR_ARG}/disk.0`, target: "vda", format: "qcow2" },
      { path: `${VM_DIR_ARG}/disk.1`, target: "vdb", format: "raw" },
      { path: `${VM_DIR_ARG}/disk.2`, target: "hda", format: "raw", cdrom: true },
    ],
  });
  await hv.create("hv1", domain);
  await hv.guestWrite("hv1", DOMAIN, "vda", 0xa1, 0, MiB);
  await hv.guestWrite("hv1", DOMAIN, "vdb", 0xb2, 0, MiB);

  const args = (disks: string) => [`hv1:${VM_DIR_ARG}`, disks, DOMAIN, "-", VM_ID, 100];
  const backupFiles = async () =>
    (await world.sh("hv1", `ls ${BACKUP_DIR} 2>/dev/null || echo NONE`)).trim().split("\n").join(" ");
  const patterns = async (path: string, count = 32) =>
    chunkPatterns(await hv.readImage("hv1", path), MiB, count);
  const dataExtents = async (path: string) => {
    const map = JSON.parse(await world.sh("hv1", `qemu-img map --output=json ${path}`)) as {
      start: number;
      length: number;
      data: boolean;
    }[];
    return map.filter((e) => e.data).map((e) => [e.start / MiB, e.length / MiB]);
  };
  const checkpoints = async () =>
    (await hv.mustVirsh("hv1", ["checkpoint-list", DOMAIN, "--name"])).trim().split("\n").filter((l) => l)
      .sort().join(" ");
  const domainIntact = async () => {
    assert.equal(await hv.domState("hv1", DOMAIN), "running");
    const devices = await hv.blockDevices("hv1", DOMAIN);
    assert.deepEqual(devices.map((d) => d.source), [
      `${VM_DIR_ARG}/disk.0`,
      `${VM_DIR_ARG}/disk.1`,
      `${VM_DIR_ARG}/disk.2`,
    ]);
    const job = await hv.virsh("hv1", ["domjobinfo", DOMAIN]);
    assert.match(job.stdout, /Job type:\s+None/);
  };

  await t.step(
    "full live backup of a running domain, twice alike; guest writes before and after",
    async () => {
      const stdin = vm(world.tmName, { MODE: "FULL" });
      for (let run = 0; run < 2; run++) {
        ok(await world.tm("prebackup_live", args("0:1"), { stdin }), `prebackup_live run ${run + 1}`);
        assert.equal(await backupFiles(), "disk.0.0 disk.1.0 vm.xml");
      }
      await hv.guestWrite("hv1", DOMAIN, "vda", 0xc3, 0, MiB);
      await hv.guestWrite("hv1", DOMAIN, "vda", 0xc4, 4 * MiB, MiB);
      assert.deepEqual((await patterns(`${BACKUP_DIR}/disk.0.0`)).slice(0, 5), [0xa1, 0, 0, 0, 0]);
      assert.equal((await patterns(`${BACKUP_DIR}/disk.1.0`, 16))[0], 0xb2);
      for (const f of ["disk.0.0", "disk.1.0"]) {
        const info = JSON.parse(await world.sh("hv1", `qemu-img info --output=json ${BACKUP_DIR}/${f}`));
        assert.equal(info.format, "qcow2");
        assert.equal(info["backing-filename"], undefined);
      }
      const vmXmlBack = atob((await world.sh("hv1", `cat ${BACKUP_DIR}/vm.xml`)).trim());
      assert.equal(vmXmlBack, stdin);
      await domainIntact();
      assert.deepEqual((await patterns(`${VM_DIR}/disk.0`)).slice(0, 5), [0xc3, 0, 0, 0, 0xc4]);
      // The backup datastore collects the files (the test plays its "backup" action) ...
      const store = `/var/lib/one/datastores/${BACKUP_DS}/${VM_ID}/0`;
      await world.sh("frontend", `mkdir -p ${store}`, { user: "oneadmin" });
      for (const f of ["disk.0.0", "disk.1.0"]) {
        await Deno.copyFile(
          world.lab.path("hv1", `${BACKUP_DIR}/${f}`),
          world.lab.path("frontend", `${store}/${f}`),
        );
      }
      await world.sh("frontend", `chown -R oneadmin: /var/lib/one/datastores/${BACKUP_DS}`);
      // ... then postbackup_live cleans up, twice alike.
      ok(await world.tm("postbackup_live", args("0:1"), { stdin }), "postbackup_live");
      ok(await world.tm("postbackup_live", args("0:1"), { stdin }), "postbackup_live again");
      assert.equal(await backupFiles(), "NONE");
      assert.equal(
        (await world.sh("hv1", `ls -A ${VM_DIR}`)).trim().split("\n").join(" "),
        "disk.0 disk.1 disk.2",
      );
    },
  );

  await t.step("FS_FREEZE=AGENT without a guest agent fails and leaves the domain as it was", async () => {
    const stdin = vm(world.tmName, { MODE: "FULL", FS_FREEZE: "AGENT" });
    const result = await world.tm("prebackup_live", args("0:1"), { stdin });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /Cannot freeze the file systems of domain one-20 through the guest agent/);
    assert.equal(await backupFiles(), "NONE", "nothing half-made is left for the datastore");
    await domainIntact();
    const failed = stdin.replace("</VM>", "<BACKUP_RESULT>FAILURE</BACKUP_RESULT></VM>");
    ok(await world.tm("postbackup_live", args("0:1"), { stdin: failed }), "postbackup_live after a failure");
  });

  await t.step("FS_FREEZE=SUSPEND pauses the domain only while the job starts", async () => {
    const stdin = vm(world.tmName, { MODE: "FULL", FS_FREEZE: "SUSPEND" });
    ok(await world.tm("prebackup_live", args("0"), { stdin }), "prebackup_live");
    assert.equal(await backupFiles(), "disk.0.0 vm.xml");
    assert.equal((await patterns(`${BACKUP_DIR}/disk.0.0`))[0], 0xc3);
    await domainIntact();
    ok(await world.tm("postbackup_live", args("0"), { stdin }), "postbackup_live");
  });

  await t.step("incremental live backups copy only what changed, with a chain of checkpoints", async () => {
    const inc = (last: number) => vm(world.tmName, { MODE: "INCREMENT", LAST_INCREMENT_ID: last });
    ok(await world.tm("prebackup_live", args("0"), { stdin: inc(-1) }), "first (full) backup of the chain");
    assert.equal(await backupFiles(), "disk.0.0 vm.xml");
    assert.equal(await checkpoints(), "one-20-0");
    ok(await world.tm("postbackup_live", args("0"), { stdin: inc(-1) }), "postbackup_live");

    await hv.guestWrite("hv1", DOMAIN, "vda", 0xd4, 8 * MiB, MiB);
    ok(await world.tm("prebackup_live", args("0"), { stdin: inc(0) }), "increment 1");
    assert.equal(await backupFiles(), "disk.0.1 vm.xml");
    assert.deepEqual(await dataExtents(`${BACKUP_DIR}/disk.0.1`), [[8, 1]], "only the changed MiB");
    assert.equal((await patterns(`${BACKUP_DIR}/disk.0.1`))[8], 0xd4);
    assert.equal(await checkpoints(), "one-20-0 one-20-1");
    ok(await world.tm("postbackup_live", args("0"), { stdin: inc(0) }), "postbackup_live");

    await hv.guestWrite("hv1", DOMAIN, "vda", 0xd5, 10 * MiB, 2 * MiB);
    ok(await world.tm("prebackup_live", args("0"), { stdin: inc(1) }), "increment 2");
    ok(await world.tm("prebackup_live", args("0"), { stdin: inc(1) }), "increment 2, again");
    assert.deepEqual(await dataExtents(`${BACKUP_DIR}/disk.0.2`), [[10, 2]]);
    assert.equal(await checkpoints(), "one-20-1 one-20-2", "checkpoints older than the parent are dropped");
    ok(await world.tm("postbackup_live", args("0"), { stdin: inc(1) }), "postbackup_live");

    const raw = await world.tm("prebackup_live", args("1"), { stdin: inc(-1) });
    assert.notEqual(raw.code, 0);
    assert.match(raw.stderr, /Changed-block tracking needs qcow2 disks: .*disk\.1 is raw/);
    assert.equal(await checkpoints(), "one-20-1 one-20-2", "a backup that cannot run keeps the chain");
    const snapshotMode = await world.tm("prebackup_live", args("0"), {
      stdin: vm(world.tmName, { MODE: "INCREMENT", LAST_INCREMENT_ID: 2, INCREMENT_MODE: "SNAPSHOT" }),
    });
    assert.notEqual(snapshotMode.code, 0);
    assert.match(snapshotMode.stderr, /INCREMENT_MODE=SNAPSHOT are not supported/);
    await domainIntact();
  });

  await t.step(
    "offline backups of the powered-off VM: full, then incremental through its bitmap",
    async () => {
      await hv.destroy("hv1", DOMAIN);
      const off = (config: BackupConfig) => vm(world.tmName, config, 70);
      ok(await world.tm("prebackup", args("0:1"), { stdin: off({ MODE: "FULL" }) }), "offline full");
      assert.equal(await backupFiles(), "disk.0.0 disk.1.0 vm.xml");
      assert.deepEqual(
        (await patterns(`${BACKUP_DIR}/disk.0.0`)).slice(0, 13),
        [0xc3, 0, 0, 0, 0xc4, 0, 0, 0, 0xd4, 0, 0xd5, 0xd5, 0],
      );
      ok(await world.tm("postbackup", args("0:1"), { stdin: off({ MODE: "FULL" }) }), "postbackup");

      // The live chain's bitmap one-20-2 was kept in disk.0 when the domain stopped; a write made
      // while the VM is off (qemu-io, as any QEMU user of the file) is tracked by it.
      await world.sh("hv1", `qemu-io -f qcow2 -c 'write -P 0xe5 12M 1M' ${VM_DIR}/disk.0 >/dev/null`, {
        user: "oneadmin",
      });
      const inc3 = off({ MODE: "INCREMENT", LAST_INCREMENT_ID: 2 });
      ok(await world.tm("prebackup", args("0"), { stdin: inc3 }), "offline increment 3");
      assert.equal(await backupFiles(), "disk.0.3 vm.xml");
      assert.deepEqual(await dataExtents(`${BACKUP_DIR}/disk.0.3`), [[12, 1]]);
      assert.equal((await patterns(`${BACKUP_DIR}/disk.0.3`))[12], 0xe5);
      const bitmaps = await world.sh("hv1", `qemu-img info --output=json ${VM_DIR}/disk.0`);
      assert.deepEqual([...bitmaps.matchAll(/"name": "(one-20-\d+)"/g)].map((m) => m[1]).sort(), [
        "one-20-2",
        "one-20-3",
      ]);
      ok(await world.tm("postbackup", args("0"), { stdin: inc3 }), "postbackup");
      // A chain whose parent bitmap is gone is reported, not silently made full.
      const broken = await world.tm("prebackup", args("0"), {
        stdin: off({ MODE: "INCREMENT", LAST_INCREMENT_ID: 7 }),
      });
      assert.notEqual(broken.code, 0);
      assert.match(broken.stderr, /has no changed-block bitmap one-20-7: the backup chain is broken/);
      assert.equal(await backupFiles(), "NONE");
    },
  );

  await t.step(
    "restore replaces the disks by the backup listed by the backup datastore, twice alike",
    async () => {
      const store = `/var/lib/one/datastores/${BACKUP_DS}/${VM_ID}/0`;
      await world.writeFile(
        "frontend",
        "/var/tmp/one/ls.answer",
        JSON.stringify({ "0": `${store}/disk.0.0`, "1": `lab://${store}/disk.1.0` }),
      );
      await world.sh("hv1", `mkdir -p ${VM_DIR}/disk.0.snap && cp ${VM_DIR}/disk.0 ${VM_DIR}/disk.0.snap/0`, {
        user: "oneadmin",
      });
      world.oned.addVm(vm(world.tmName, { MODE: "FULL" }, 71));
      const restoreArgs = [`hv1:${VM_DIR_ARG}`, VM_ID, 50, -1, -1];
      for (let run = 0; run < 2; run++) {
        ok(await world.tm("restore", restoreArgs), `restore run ${run + 1}`);
        assert.deepEqual((await patterns(`${VM_DIR}/disk.0`)).slice(0, 13), [0xa1, ...new Array(12).fill(0)]);
        assert.equal((await patterns(`${VM_DIR}/disk.1`, 16))[0], 0xb2);
        const fmt1 = JSON.parse(await world.sh("hv1", `qemu-img info --output=json ${VM_DIR}/disk.1`)).format;
        assert.equal(fmt1, "raw", "disk 1 keeps the format the VM declares");
        const info0 = await world.sh("hv1", `qemu-img info --output=json ${VM_DIR}/disk.0`);
        assert.doesNotMatch(info0, /"bitmaps"/, "changed-block bitmaps of the old contents are gone");
        assert.equal(
          (await world.sh("hv1", `ls -A ${VM_DIR}`)).trim().split("\n").join(" "),
          "disk.0 disk.1 disk.2",
        );
      }
      assert.equal((await world.sh("frontend", "cat /var/tmp/one/ls.args")).trim(), "-i -1");
      const lsInput = await world.sh("frontend", "cat /var/tmp/one/ls.stdin");
      assert.match(
        lsInput,
        /^<DS_DRIVER_ACTION_DATA><DATASTORE><ID>200<\/ID>.*<VM><ID>20<\/ID>.*<IMAGE><ID>50<\/ID>.*<\/DS_DRIVER_ACTION_DATA>$/s,
      );
      assert.equal(
        (await world.sh("frontend", `ls -A /var/lib/one/datastores/100 2>/dev/null || true`)).trim(),
        "",
        "no staging left on the front-end",
      );

      // Only disk 1, from increment 3 of the chain.
      await world.sh("hv1", `qemu-io -f raw -c 'write -P 0x99 0 1M' ${VM_DIR}/disk.1 >/dev/null`, {
        user: "oneadmin",
      });
      ok(await world.tm("restore", [`hv1:${VM_DIR_ARG}`, VM_ID, 50, 3, 1]), "restore disk 1");
      assert.equal((await world.sh("frontend", "cat /var/tmp/one/ls.args")).trim(), "-i 3");
      assert.equal((await patterns(`${VM_DIR}/disk.1`, 16))[0], 0xb2);
      assert.equal((await patterns(`${VM_DIR}/disk.0`))[0], 0xa1);
    },
  );

  await t.step("restore refuses while the domain runs and for a disk the backup lacks", async () => {
    await hv.create("hv1", domain);
    await hv.guestWrite("hv1", DOMAIN, "vda", 0x5a, 0, MiB);
    const running = await world.tm("restore", [`hv1:${VM_DIR_ARG}`, VM_ID, 50, -1, -1]);
    assert.notEqual(running.code, 0);
    assert.match(running.stderr, /Error restoring VM disks: domain one-20 runs on hv1 \(running\)/);
    assert.equal((await patterns(`${VM_DIR}/disk.0`))[0], 0x5a);
    await hv.destroy("hv1", DOMAIN);
    const missing = await world.tm("restore", [`hv1:${VM_DIR_ARG}`, VM_ID, 50, -1, 4]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /Error restoring VM disks: disk 4 not found in the backup/);
  });
});
