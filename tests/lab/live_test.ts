/**
 * Live TM actions against real libvirtd + QEMU (TCG, no guest OS) on hv1 and hv2 of the lab:
 * snap_create_live while the guest writes, live migration (premigrate, the KVM driver's
 * `virsh migrate --copy-storage-all`, postmigrate, failmigrate), cpds of a running disk. One world
 * and one libvirt per file; the steps run in order on one VM.
 */

import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import { base64Xml, datastoreXml, hostXml, imageDisk, vmXml, volatileDisk } from "../support/fixtures.ts";
import { chunkPatterns, domainXml, LIBVIRT_DIRS, LibvirtLab } from "../support/libvirt_lab.ts";

const MiB = 1 << 20;
const VM_ID = 7;
const DOMAIN = `one-${VM_ID}`;
/** As oned passes it (the default DATASTORE_LOCATION gives a double slash). */
const VM_DIR_ARG = `/var/lib/one//datastores/100/${VM_ID}`;
const VM_DIR = `/var/lib/one/datastores/100/${VM_ID}`;

function vm(
  tmName: string,
  host: string,
  extra: { lcmState?: number; history?: string[]; other?: string } = {},
) {
  const hosts = extra.history ?? [host];
  return vmXml({
    id: VM_ID,
    deployId: DOMAIN,
    lcmState: extra.lcmState ?? 3,
    disks: [
      imageDisk({ DISK_ID: 0, TM_MAD: tmName, SIZE: 32, ORIGINAL_SIZE: 32, FORMAT: "qcow2" }),
      volatileDisk({ DISK_ID: 1, TM_MAD: tmName, SIZE: 16, FORMAT: "raw", TYPE: "fs" }),
      // A disk of another driver (migrate_other passes the migration on to it).
      ...(extra.other ? [imageDisk({ DISK_ID: 3, IMAGE_ID: 3, TM_MAD: extra.other, READONLY: "YES" })] : []),
    ],
    context: { DISK_ID: 2, TARGET: "hda" },
    history: hosts.map((h) => ({ hostname: h, hid: h === "hv1" ? 1 : 2, dsId: 100, tmMad: tmName })),
  });
}

labTest("live actions on real libvirt and QEMU", async (t) => {
  await using world = await World.start({ extraDirs: [...LIBVIRT_DIRS] });
  const hv = await LibvirtLab.start(world.lab);
  world.oned.addDatastore(datastoreXml({ id: 100, tmMad: world.tmName }));
  world.oned.addDatastore(datastoreXml({ id: 1, tmMad: world.tmName }));
  world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
  world.oned.addHost(hostXml({ id: 2, name: "hv2" }));
  world.oned.addVm(vm(world.tmName, "hv1"));

  // What the prolog would have laid: a 32 MiB qcow2 disk, a raw volatile disk, a context CD-ROM.
  await world.sh(
    "hv1",
    `mkdir -p ${VM_DIR} && cd ${VM_DIR} && qemu-img create -q -f qcow2 disk.0 32M && ` +
      `qemu-img create -q -f raw disk.1 16M && head -c 1048576 /dev/zero > disk.2 && ` +
      `echo '<VM/>' > vm.xml`,
    { user: "oneadmin" },
  );
  await hv.create(
    "hv1",
    domainXml({
      vmId: VM_ID,
      disks: [
        { path: `${VM_DIR_ARG}/disk.0`, target: "vda", format: "qcow2" },
        { path: `${VM_DIR_ARG}/disk.1`, target: "vdb", format: "raw" },
        { path: `${VM_DIR_ARG}/disk.2`, target: "hda", format: "raw", cdrom: true },
      ],
    }),
  );
  // Guest data: 0xa1 in the first MiB, 0x5c in MiB 4..8.
  await hv.guestWrite("hv1", DOMAIN, "vda", 0xa1, 0, MiB);
  await hv.guestWrite("hv1", DOMAIN, "vda", 0x5c, 4 * MiB, 4 * MiB);
  const diskArg = `hv1:${VM_DIR_ARG}/disk.0`;

  const leftovers = async (host: string) =>
    (await world.sh(host, `ls -A ${VM_DIR} ${VM_DIR}/disk.0.snap 2>/dev/null | grep onestor || true`)).trim();

  await t.step("snap_create_live copies the running disk while the guest writes", async () => {
    // The guest rewrites MiB 16..24 one MiB at a time, in rounds, while the snapshot is taken.
    const writes: { chunk: number; pattern: number }[] = [];
    let done = false;
    let startedAt = -1;
    let endedAt = -1;
    const writer = (async () => {
      for (let i = 0; !done || endedAt < 0 || writes.length < endedAt + 2; i++) {
        const w = { chunk: i % 8, pattern: 0x10 + (i % 200) };
        await hv.guestWrite("hv1", DOMAIN, "vda", w.pattern, (16 + w.chunk) * MiB, MiB);
        writes.push(w);
        if (i > 500) throw new Error("writer ran away");
      }
    })();
    while (writes.length < 3) await new Promise((r) => setTimeout(r, 20));
    startedAt = writes.length;
    const result = await world.tm("snap_create_live", [diskArg, 0, VM_ID, 1]);
    endedAt = writes.length;
    done = true;
    await writer;
    ok(result, "snap_create_live");
    assert.ok(endedAt > startedAt, `the guest wrote during the snapshot (${startedAt}..${endedAt})`);

    const snap = `${VM_DIR}/disk.0.snap/0`;
    const info = JSON.parse(await world.sh("hv1", `qemu-img info --output=json ${snap}`));
    assert.equal(info.format, "qcow2");
    assert.equal(info["backing-filename"], undefined, "the snapshot is standalone");
    assert.equal(
      (await world.sh("hv1", `stat -c %U ${snap}`)).trim(),
      "oneadmin",
      "oneadmin owns the snapshot (snap_delete and mvds run as oneadmin)",
    );
    await world.sh("hv1", `qemu-img check -q ${snap}`);
    const bytes = await hv.readImage("hv1", snap);
    assert.equal(bytes.length, 32 * MiB);
    const chunks = chunkPatterns(bytes, MiB, 32);
    assert.equal(chunks[0], 0xa1, "data written before the snapshot is in it");
    assert.deepEqual(chunks.slice(4, 8), [0x5c, 0x5c, 0x5c, 0x5c]);
    // Point in time: the written region equals the state after some prefix of the guest's writes,
    // a prefix that ended while the action ran. The write in flight when the action returned may be
    // in it too: QEMU can apply it before the copy finishes while its reply has not come back yet.
    const region = chunks.slice(16, 24);
    let match = -1;
    for (let n = startedAt; n <= Math.min(endedAt + 1, writes.length); n++) {
      const state = new Array(8).fill(0);
      for (const w of writes.slice(0, n)) state[w.chunk] = w.pattern;
      if (state.every((p, i) => p === region[i])) match = n;
    }
    assert.ok(match >= 0, `snapshot region ${region} is the state after some prefix of the writes`);
    // The domain kept its own disk, and nothing temporary is left.
    const devices = await hv.blockDevices("hv1", DOMAIN);
    assert.equal(devices.find((d) => d.target === "vda")?.source, `${VM_DIR_ARG}/disk.0`);
    assert.equal(await leftovers("hv1"), "");
    // Later guest writes go to the disk, not to the snapshot.
    await hv.guestWrite("hv1", DOMAIN, "vda", 0xc3, 0, MiB);
    assert.equal(chunkPatterns(await hv.readImage("hv1", snap), MiB, 1)[0], 0xa1);
    assert.equal(chunkPatterns(await hv.readImage("hv1", `${VM_DIR}/disk.0`), MiB, 1)[0], 0xc3);
  });

  await t.step("snap_create_live twice in a row converges to the same snapshot", async () => {
    ok(await world.tm("snap_create_live", [diskArg, 1, VM_ID, 1]), "first run");
    const first = await hv.readImage("hv1", `${VM_DIR}/disk.0.snap/1`);
    ok(await world.tm("snap_create_live", [diskArg, 1, VM_ID, 1]), "second run");
    const second = await hv.readImage("hv1", `${VM_DIR}/disk.0.snap/1`);
    assert.ok(first.length === second.length && first.every((b, i) => b === second[i]));
    assert.equal((await world.sh("hv1", `ls ${VM_DIR}/disk.0.snap`)).trim().split("\n").join(" "), "0 1");
  });

  await t.step("a block job of someone else is retried, then reported; nothing is touched", async () => {
    // A foreign copy job keeps vda busy (mirroring into a file of its own).
    await world.sh("hv1", `: > /var/tmp/one/foreign.qcow2`, { user: "oneadmin" });
    await hv.mustVirsh("hv1", ["blockcopy", DOMAIN, "vda", "/var/tmp/one/foreign.qcow2"]);
    const started = Date.now();
    const result = await world.tm("snap_create_live", [diskArg, 2, VM_ID, 1]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /active block job/);
    assert.ok(Date.now() - started >= 9000, "retried 3 times, 5 s apart");
    assert.equal((await world.sh("hv1", `ls ${VM_DIR}/disk.0.snap`)).trim().split("\n").join(" "), "0 1");
    assert.equal(await leftovers("hv1"), "");
    assert.match(await hv.blockJob("hv1", DOMAIN, "vda"), /Block Copy/, "the foreign job still runs");
    await hv.mustVirsh("hv1", ["blockjob", DOMAIN, "vda", "--abort"]);
    const devices = await hv.blockDevices("hv1", DOMAIN);
    assert.equal(devices.find((d) => d.target === "vda")?.source, `${VM_DIR_ARG}/disk.0`);
  });

  await t.step("a copy job left by an earlier try of ours is aborted and the snapshot made", async () => {
    const stale = `${VM_DIR}/disk.0.snap/.onestor-blockcopy-disk.0-deadbeef0000`;
    await world.sh("hv1", `: > ${stale}`, { user: "oneadmin" });
    await hv.mustVirsh("hv1", ["blockcopy", DOMAIN, "vda", stale]);
    ok(await world.tm("snap_create_live", [diskArg, 2, VM_ID, 1]), "snap_create_live");
    assert.equal(await leftovers("hv1"), "");
    assert.equal(await hv.blockJob("hv1", DOMAIN, "vda"), "");
    assert.equal(chunkPatterns(await hv.readImage("hv1", `${VM_DIR}/disk.0.snap/2`), MiB, 1)[0], 0xc3);
  });

  await t.step("snap_create_live of a domain that does not run fails and creates nothing", async () => {
    world.oned.addVm(vmXml({ id: 8, deployId: "one-8", history: [{ hostname: "hv1", dsId: 100 }] }));
    const result = await world.tm("snap_create_live", [`hv1:${VM_DIR_ARG}/disk.0`, 3, 8, 1]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /Domain one-8 does not exist on this host/);
    assert.equal((await world.sh("hv1", `ls ${VM_DIR}/disk.0.snap`)).trim().split("\n").join(" "), "0 1 2");
  });
  // ---------------------------------------------------------------------------------------------
  // Live migration hv1 -> hv2: premigrate, the KVM driver's storage migration, postmigrate.
  const migXml = vm(world.tmName, "hv2", { history: ["hv1", "hv2"], other: "shared" });
  const migArgs = ["hv1", "hv2", VM_DIR_ARG, VM_ID, 100];
  const stdin = base64Xml(migXml);
  const listing = async (host: string, dir = VM_DIR) =>
    (await world.sh(host, `cd ${dir} 2>/dev/null && find . | sort || echo MISSING`)).trim();
  // A fake driver "shared" for disk 3: it records how it was called.
  for (const action of ["premigrate", "postmigrate", "failmigrate"]) {
    await world.writeFile(
      "frontend",
      `/var/lib/one/remotes/tm/shared/${action}`,
      `#!/bin/sh\necho "${action} $* $(cat | md5sum | cut -c1-8)" >>/var/tmp/one/shared.log\n`,
    );
  }
  await world.sh("frontend", "chmod 755 /var/lib/one/remotes/tm/shared/*");
  const sharedLog = async () =>
    (await world.sh("frontend", "cat /var/tmp/one/shared.log 2>/dev/null; true")).trim().split("\n").filter((
      l,
    ) => l);
  const stdinSum = (await world.sh("frontend", `printf %s '${stdin}' | md5sum | cut -c1-8`)).trim();
  const hv1Before = await listing("hv1");

  await t.step("premigrate copies what the storage migration does not, twice in a row alike", async () => {
    await world.sh("hv2", `mkdir -p ${VM_DIR} && echo stale > ${VM_DIR}/disk.9`, { user: "oneadmin" });
    for (let run = 0; run < 2; run++) {
      ok(await world.tm("premigrate", migArgs, { stdin }), `premigrate run ${run + 1}`);
      assert.equal(
        await listing("hv2"),
        [
          ".",
          "./disk.0.snap",
          "./disk.0.snap/0",
          "./disk.0.snap/1",
          "./disk.0.snap/2",
          "./disk.2",
          "./vm.xml",
        ]
          .join("\n"),
        "context ISO, snapshots and other files are there; the writable disks are left to libvirt",
      );
    }
    assert.equal((await world.sh("hv2", "cat /var/lib/one/datastores/100/.monitor")).trim(), world.tmName);
    assert.equal(await listing("hv1"), hv1Before, "the source is untouched");
    for (const snap of [0, 1, 2]) {
      const copy = await hv.readImage("hv2", `${VM_DIR}/disk.0.snap/${snap}`);
      assert.deepEqual(copy, await hv.readImage("hv1", `${VM_DIR}/disk.0.snap/${snap}`));
    }
    const log = await sharedLog();
    assert.deepEqual(log, [
      `premigrate hv1 hv2 ${VM_DIR_ARG} ${VM_ID} 100 ${world.tmName} ${stdinSum}`,
      `premigrate hv1 hv2 ${VM_DIR_ARG} ${VM_ID} 100 ${world.tmName} ${stdinSum}`,
    ]);
    // Called by another driver (6th argument): not passed on again.
    ok(await world.tm("premigrate", [...migArgs, "shared"], { stdin }), "premigrate from another driver");
    assert.equal((await sharedLog()).length, 2);
  });

  await t.step(
    "failmigrate removes the destination only, and postmigrate refuses before the move",
    async () => {
      const early = await world.tm("postmigrate", migArgs, { stdin });
      assert.notEqual(early.code, 0);
      assert.match(early.stderr, /Domain one-7 does not run on hv2 \(absent\): not removing hv1:/);
      assert.equal(await listing("hv1"), hv1Before);
      ok(await world.tm("failmigrate", migArgs, { stdin }), "failmigrate");
      ok(await world.tm("failmigrate", migArgs, { stdin }), "failmigrate again");
      assert.equal(await listing("hv2"), "MISSING");
      assert.equal(await listing("hv1"), hv1Before, "the source is untouched");
      assert.deepEqual(
        (await sharedLog()).filter((l) => l.startsWith("failmigrate")),
        [1, 2].map(() => `failmigrate hv1 hv2 ${VM_DIR_ARG} ${VM_ID} 100 ${world.tmName} ${stdinSum}`),
      );
    },
  );

  await t.step("live migration hv1 -> hv2 with premigrate and postmigrate around virsh migrate", async () => {
    ok(await world.tm("premigrate", migArgs, { stdin }), "premigrate");
    await hv.guestWrite("hv1", DOMAIN, "vda", 0xd4, 8 * MiB, 2 * MiB);
    await hv.guestWrite("hv1", DOMAIN, "vdb", 0x3e, 0, MiB);
    const migrated = await hv.migrate(DOMAIN, "hv1", "hv2");
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.equal(await hv.domState("hv2", DOMAIN), "running");
    assert.equal(await hv.domState("hv1", DOMAIN), null);
    // Source still complete until postmigrate.
    assert.equal(await listing("hv1"), hv1Before);
    ok(await world.tm("postmigrate", migArgs, { stdin }), "postmigrate");
    assert.equal(
      await listing("hv1"),
      "MISSING",
      "the source folder is gone once the destination is verified",
    );
    ok(await world.tm("postmigrate", migArgs, { stdin }), "postmigrate again");
    assert.equal(
      await listing("hv2"),
      [
        ".",
        "./disk.0",
        "./disk.0.snap",
        "./disk.0.snap/0",
        "./disk.0.snap/1",
        "./disk.0.snap/2",
        "./disk.1",
        "./disk.2",
        "./vm.xml",
      ].join("\n"),
    );
    // The data: written before and during the VM's life on hv1, read on hv2 (guest view and file).
    await hv.guestRead("hv2", DOMAIN, "vda", 0xc3, 0, MiB);
    await hv.guestRead("hv2", DOMAIN, "vda", 0xd4, 8 * MiB, 2 * MiB);
    await hv.guestRead("hv2", DOMAIN, "vdb", 0x3e, 0, MiB);
    await hv.guestWrite("hv2", DOMAIN, "vda", 0xe5, 12 * MiB, MiB);
    const disk0 = chunkPatterns(await hv.readImage("hv2", `${VM_DIR}/disk.0`), MiB, 32);
    assert.deepEqual([disk0[0], disk0[4], disk0[8], disk0[9], disk0[12]], [0xc3, 0x5c, 0xd4, 0xd4, 0xe5]);
    const info = JSON.parse(await world.sh("hv2", `qemu-img info -U --output=json ${VM_DIR}/disk.0`));
    assert.equal(info["backing-filename"], undefined);
    assert.equal(chunkPatterns(await hv.readImage("hv2", `${VM_DIR}/disk.0.snap/0`), MiB, 1)[0], 0xa1);
    const log = (await sharedLog()).join("\n");
    assert.match(
      log,
      new RegExp(`postmigrate hv1 hv2 ${VM_DIR_ARG} ${VM_ID} 100 ${world.tmName} ${stdinSum}`),
    );
  });

  await t.step(
    "failmigrate after a successful migration refuses to remove the running VM's folder",
    async () => {
      const result = await world.tm("failmigrate", migArgs, { stdin });
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /Domain one-7 runs on hv2 \(running\): not removing hv2:/);
      assert.match(await listing("hv2"), /\.\/disk\.0\n/);
      // And premigrate back onto hv2 (where it runs) refuses to clear it.
      const again = await world.tm("premigrate", migArgs, { stdin });
      assert.notEqual(again.code, 0);
      assert.match(again.stderr, /Domain one-7 already runs on hv2/);
      assert.match(await listing("hv2"), /\.\/disk\.0\n/);
    },
  );
  world.oned.addVm(vm(world.tmName, "hv2", { history: ["hv1", "hv2"] }));
  // ---------------------------------------------------------------------------------------------
  // Save-as (cpds) of the running disk, now on hv2, into a new image on the front-end.
  world.oned.addVm(vm(world.tmName, "hv2", { history: ["hv1", "hv2"], lcmState: 26 }));
  const hv2Disk = `hv2:${VM_DIR_ARG}/disk.0`;
  const feImage = (name: string) => `/var/lib/one//datastores/1/${name}`;
  const feFile = async (name: string) => {
    const path = `/var/lib/one/datastores/1/${name}`;
    const info = JSON.parse(await world.sh("frontend", `qemu-img info --output=json ${path}`));
    await world.sh("frontend", `qemu-img check -q ${path} || [ ${info.format} = raw ]`);
    return { info, bytes: await hv.readImage("frontend", path) };
  };

  await t.step("cpds of the running disk exports it through the hypervisor, twice alike", async () => {
    const exported = await world.tm("cpds", [hv2Disk, feImage("saved-live"), -1, VM_ID, 1]);
    assert.match(ok(exported, "cpds") + exported.stderr, /Exported running disk .* \(blockcopy\)/);
    const first = await feFile("saved-live");
    assert.equal(first.info.format, "qcow2");
    assert.equal(first.info["backing-filename"], undefined);
    const chunks = chunkPatterns(first.bytes, MiB, 32);
    assert.deepEqual([chunks[0], chunks[4], chunks[8], chunks[12]], [0xc3, 0x5c, 0xd4, 0xe5]);
    ok(await world.tm("cpds", [hv2Disk, feImage("saved-live"), -1, VM_ID, 1]), "cpds again");
    assert.deepEqual((await feFile("saved-live")).bytes, first.bytes);
    assert.equal(await leftovers("hv2"), "");
    assert.equal(
      (await world.sh("frontend", "ls -A /var/lib/one/datastores/1")).trim(),
      "saved-live",
      "nothing else (no temporary name) at the image datastore",
    );
    const devices = await hv.blockDevices("hv2", DOMAIN);
    assert.equal(devices.find((d) => d.target === "vda")?.source, `${VM_DIR_ARG}/disk.0`);
    assert.equal(await hv.domState("hv2", DOMAIN), "running");
  });

  await t.step("cpds of a snapshot copies the snapshot file", async () => {
    ok(await world.tm("cpds", [hv2Disk, feImage("saved-snap0"), 0, VM_ID, 1]), "cpds");
    const saved = await feFile("saved-snap0");
    assert.deepEqual(saved.bytes, await hv.readImage("hv2", `${VM_DIR}/disk.0.snap/0`));
    assert.equal(chunkPatterns(saved.bytes, MiB, 1)[0], 0xa1);
  });

  await t.step("cpds falls back to a suspended copy when blockcopy cannot run and freeze fails", async () => {
    await world.sh("hv2", `: > /var/tmp/one/foreign.qcow2`, { user: "oneadmin" });
    await hv.mustVirsh("hv2", ["blockcopy", DOMAIN, "vda", "/var/tmp/one/foreign.qcow2"]);
    await hv.guestWrite("hv2", DOMAIN, "vda", 0xf6, 20 * MiB, MiB);
    const result = await world.tm("cpds", [hv2Disk, feImage("saved-suspended"), -1, VM_ID, 1]);
    ok(result, "cpds");
    assert.match(result.stderr, /blockcopy failed/);
    assert.match(result.stderr, /Guest-agent freeze failed/);
    assert.match(result.stderr, /Exported running disk .* \(suspend\)/);
    assert.equal(await hv.domState("hv2", DOMAIN), "running", "resumed after the copy");
    assert.match(await hv.blockJob("hv2", DOMAIN, "vda"), /Block Copy/, "the foreign job still runs");
    await hv.mustVirsh("hv2", ["blockjob", DOMAIN, "vda", "--abort"]);
    const chunks = chunkPatterns((await feFile("saved-suspended")).bytes, MiB, 32);
    assert.deepEqual([chunks[0], chunks[12], chunks[20]], [0xc3, 0xe5, 0xf6]);
    assert.equal(await leftovers("hv2"), "");
  });

  await t.step("cpds of a stopped VM's disk on the front-end, and of a recovery-layout disk", async () => {
    // VM 9 was undeployed: its folder is on the front-end.
    const dir9 = "/var/lib/one/datastores/100/9";
    await world.sh(
      "frontend",
      `mkdir -p ${dir9} && qemu-img create -q -f qcow2 ${dir9}/disk.0 8M && ` +
        `qemu-io -f qcow2 -c 'write -P 0x77 0 1M' ${dir9}/disk.0 >/dev/null`,
      { user: "oneadmin" },
    );
    world.oned.addVm(vmXml({ id: 9, lcmState: 68, state: 4, history: [{ hostname: "hv1", dsId: 100 }] }));
    ok(
      await world.tm("cpds", [
        `frontend:/var/lib/one//datastores/100/9/disk.0`,
        feImage("saved-stopped"),
        -1,
        9,
        1,
      ]),
    );
    assert.equal(chunkPatterns((await feFile("saved-stopped")).bytes, MiB, 1)[0], 0x77);

    // VM 10, powered off on hv1, with the recovery layout: disk.0 -> disk.0.snap/base.1 (over base).
    const dir10 = "/var/lib/one/datastores/100/10";
    await world.sh(
      "hv1",
      `mkdir -p ${dir10}/disk.0.snap && cd ${dir10} && ln -s . disk.0.snap/disk.0.snap && ` +
        `qemu-img create -q -f raw disk.0.snap/base 8M && ` +
        `qemu-io -f raw -c 'write -P 0x21 0 2M' disk.0.snap/base >/dev/null && ` +
        `qemu-img create -q -f qcow2 -b disk.0.snap/base -F raw disk.0.snap/base.1 && ` +
        `ln -s disk.0.snap/base.1 disk.0 && qemu-io -f qcow2 -c 'write -P 0x22 1M 1M' disk.0 >/dev/null`,
      { user: "oneadmin" },
    );
    world.oned.addVm(
      vmXml({
        id: 10,
        lcmState: 27,
        state: 8,
        disks: [imageDisk({ DISK_ID: 0, FORMAT: "raw" })],
        history: [{ hostname: "hv1", dsId: 100 }],
      }),
    );
    ok(
      await world.tm("cpds", [
        `hv1:/var/lib/one//datastores/100/10/disk.0`,
        feImage("saved-recovery"),
        -1,
        10,
        1,
      ]),
    );
    const saved = await feFile("saved-recovery");
    assert.equal(saved.info.format, "raw", "flattened into the image's format");
    assert.deepEqual(chunkPatterns(saved.bytes, MiB, 3), [0x21, 0x22, 0]);
    assert.equal(
      (await world.sh("hv1", `ls -A ${dir10}`)).trim().split("\n").join(" "),
      "disk.0 disk.0.snap",
    );
  });
});
