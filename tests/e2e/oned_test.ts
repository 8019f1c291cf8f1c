/**
 * End-to-end tests under a real oned (OpenNebula 7.3.80 from ../shared/oned; hosts with the dummy
 * IM, the hypervisors' VMM a dummy that reports DEPLOY_IDs as OpenNebula's KVM driver does): every
 * step is an administrator's CLI command (`oneimage`, `onevm`, ...), oned drives onestor's installed
 * drivers with its own arguments, and the tests look at what ended up on the hosts' disks.
 *
 * - image import and delete through the datastore driver (and the replica's copy goes with it);
 * - a VM's whole life on a local and on a replica system datastore: deploy (OS image, persistent
 *   image, volatile fs and swap disks), guest writes, disk snapshots created, reverted and deleted
 *   while powered off, disk resize, cold migration, stop and resume, disk-saveas, terminate;
 * - 8 parallel deploys of one new image on the replica datastore: the front-end sends it once;
 * - `onevm recover --recreate` of a VM with a protected disk (RECOVERY_SNAPSHOT_FREQ) whose host
 *   died: its points taken by the installed `onestor recovery run` through oned's vmpool while a
 *   libvirt domain runs over the deployed disk, then the host killed and taken offline; oned
 *   recreates the VM (same id) on the other host, where the disk is as it was at the last point
 *   and the next point is an increment on it.
 *
 * After each step the disks are checked on every host (where the VM folder is and is not, format,
 * size, standalone qcow2, data patterns, file system signatures, checksums), and every VM's states
 * are recorded (polled every 0.1 s and read back from oned's vm.log): no *_FAILURE state may ever
 * appear. The dummy VMM never runs CONTEXT, PRE/POSTMIGRATE or SNAP_CREATE_LIVE: the libvirt lab
 * tests cover those.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { domainUuid, ONED_DATASTORES, onedTest, OnedWorld } from "../support/oned_world.ts";
import { chunkPatterns, domainXml } from "../support/libvirt_lab.ts";
import { assertPatterns, assertStandalone, listDir, type Pattern } from "../support/disk_checks.ts";
import { childText, xpathAll } from "../../core/one/xml.ts";
import { statesInVmLog } from "../support/vm_states.ts";
import { WireMeter } from "../support/host_meters.ts";

const MiB = 1 << 20;
const HOSTS = ["frontend", "replica", "hv1", "hv2"];
const PARALLEL = 8;

/** Creates an image file in the world's file folder (readable by oneadmin) with `patterns` written in. */
async function sourceFile(
  one: OnedWorld,
  name: string,
  format: string,
  sizeMb: number,
  patterns: Pattern[],
  dense = false,
): Promise<string> {
  const path = `${one.files}/${name}`;
  const writes = patterns.map((p) => `-c 'write -P ${p.byte} ${p.offset} ${p.length}'`).join(" ");
  // A dense raw image is random data everywhere, so every byte has to cross the wire.
  const create = dense
    ? `head -c ${sizeMb * MiB} /dev/urandom >${path}`
    : `qemu-img create -q -f ${format} ${path} ${sizeMb}M`;
  await one.sh(
    "frontend",
    `${create} && qemu-io -f ${format} ${writes} ${path} >/dev/null && chmod 644 ${path}`,
  );
  return path;
}

/** The SOURCE of an image (its file on the front-end). */
async function imageSource(one: OnedWorld, id: number): Promise<string> {
  return childText(await one.imageInfo(id), "SOURCE");
}

/** SHA-256 of a file on a host. */
async function sha256(one: OnedWorld, host: string, path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(one.lab.path(host, path));
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** What a VM disk holds, wherever the VM folder is. */
interface Expected {
  format: string;
  sizeMb: number;
  patterns: Pattern[];
  /** blkid TYPE for volatile disks. */
  fs?: string;
}

/** The VM folder is on `where` only, with exactly its disk files, each as expected. */
async function checkVmFolder(
  one: OnedWorld,
  where: string,
  dir: string,
  expected: Record<number, Expected>,
  extra: string[] = [],
): Promise<void> {
  for (const host of HOSTS) {
    const names = await listDir(one, host, dir);
    if (host !== where) {
      assert.deepEqual(names, [], `no VM folder ${dir} on ${host}`);
      continue;
    }
    const wanted = [...Object.keys(expected).map((id) => `disk.${id}`), ...extra].sort();
    assert.deepEqual(names, wanted, `files of ${host}:${dir}`);
    for (const [id, e] of Object.entries(expected)) {
      const disk = `${dir}/disk.${id}`;
      await assertStandalone(one, host, disk, e.format, e.sizeMb);
      await assertPatterns(one, host, disk, e.patterns, e.format);
      if (e.fs) assert.equal((await one.sh(host, `blkid -p -o value -s TYPE ${disk}`)).trim(), e.fs, disk);
    }
  }
}

/** A simulated guest write into a disk of a (dummy) VM, on the host that has it. */
async function guestWrite(
  one: OnedWorld,
  host: string,
  disk: string,
  e: Expected,
  p: Pattern,
): Promise<void> {
  await one.sh(
    host,
    `qemu-io -f ${e.format} -c 'write -P ${p.byte} ${p.offset} ${p.length}' ${disk} >/dev/null`,
    {
      user: "oneadmin",
    },
  );
  e.patterns = [...e.patterns.filter((q) => q.offset !== p.offset), p];
}

/** The disk snapshot ids oned lists for disk `disk` of `vm`. */
async function snapshotIds(one: OnedWorld, vm: number, disk: number): Promise<string[]> {
  const xml = await one.one.vmInfo(vm);
  return xpathAll(xml, `SNAPSHOTS[DISK_ID=${disk}]/SNAPSHOT/ID`).sort();
}

/**
 * A VM's whole life through the CLI on system datastore `sys` (local or replica), checked on the
 * hosts after every step.
 */
async function vmLife(one: OnedWorld, t: Deno.TestContext, imagesDs: number, sys: number, tag: string) {
  const os0: Pattern[] = [{ byte: 0x01, offset: 0, length: MiB }, {
    byte: 0x02,
    offset: 20 * MiB,
    length: MiB,
  }];
  const data1: Pattern[] = [{ byte: 0x11, offset: 4 * MiB, length: MiB }];
  const os = await one.createImage(imagesDs, {
    NAME: `os-${tag}`,
    PATH: await sourceFile(one, `os-${tag}.qcow2`, "qcow2", 32, os0),
    TYPE: "OS",
  });
  const data = await one.createImage(imagesDs, {
    NAME: `data-${tag}`,
    PATH: await sourceFile(one, `data-${tag}.raw`, "raw", 16, data1),
    TYPE: "DATABLOCK",
    PERSISTENT: "YES",
  });
  const vm = await one.createVm({
    name: `life-${tag}`,
    disks: [
      { image: os, size: 48 },
      { image: data },
      { volatile: "fs", size: 8, format: "raw", fs: "ext4" },
      { volatile: "swap", size: 4 },
    ],
    // Where the scheduler puts it again after a stop and resume.
    sched: { host: "hv1", ds: sys },
  });
  const dir = `${ONED_DATASTORES}/${sys}/${vm}`;
  const expected: Record<number, Expected> = {
    0: { format: "qcow2", sizeMb: 48, patterns: [...os0] },
    1: { format: "raw", sizeMb: 16, patterns: [...data1] },
    2: { format: "raw", sizeMb: 8, patterns: [], fs: "ext4" },
    3: { format: "raw", sizeMb: 4, patterns: [], fs: "swap" },
  };
  let snaps: string[] = [];
  const check = (where: string) =>
    checkVmFolder(one, where, dir, expected, snaps.length ? ["disk.0.snap"] : []).then(async () => {
      assert.deepEqual(await listDir(one, where, `${dir}/disk.0.snap`), snaps, "snapshots of disk 0");
    });

  await t.step(
    `${tag}: deploy on hv1 (OS image grown to 48 MiB, persistent image, fs and swap)`,
    async () => {
      await one.deploy(vm, "hv1", sys);
      await one.waitVm(vm, "RUNNING");
      assert.deepEqual(await one.placement(vm), { host: "hv1", ds: sys, dir });
      await check("hv1");
    },
  );

  await t.step(`${tag}: guest writes, poweroff, snapshots created, reverted and deleted`, async () => {
    await guestWrite(one, "hv1", `${dir}/disk.0`, expected[0], { byte: 0x31, offset: 2 * MiB, length: MiB });
    await guestWrite(one, "hv1", `${dir}/disk.0`, expected[0], { byte: 0x32, offset: 40 * MiB, length: MiB });
    await guestWrite(one, "hv1", `${dir}/disk.1`, expected[1], { byte: 0x41, offset: 8 * MiB, length: MiB });
    await one.vmAction(vm, ["poweroff"], "POWEROFF");
    await one.vmAction(vm, ["disk-snapshot-create", 0, "first"], "POWEROFF");
    snaps = ["0"];
    const atFirst = [...expected[0].patterns];
    assert.deepEqual(await snapshotIds(one, vm, 0), ["0"]);
    await assertStandalone(one, "hv1", `${dir}/disk.0.snap/0`, "qcow2", 48);
    await assertPatterns(one, "hv1", `${dir}/disk.0.snap/0`, atFirst, "qcow2");

    await guestWrite(one, "hv1", `${dir}/disk.0`, expected[0], { byte: 0x33, offset: 2 * MiB, length: MiB });
    await one.vmAction(vm, ["disk-snapshot-create", 0, "second"], "POWEROFF");
    snaps = ["0", "1"];
    await assertPatterns(one, "hv1", `${dir}/disk.0.snap/1`, expected[0].patterns, "qcow2");
    await one.vmAction(vm, ["disk-snapshot-revert", 0, 0], "POWEROFF");
    expected[0].patterns = atFirst;
    await check("hv1");
    await one.vmAction(vm, ["disk-snapshot-delete", 0, 1], "POWEROFF");
    snaps = ["0"];
    assert.deepEqual(await snapshotIds(one, vm, 0), ["0"]);
    await check("hv1");
  });

  await t.step(`${tag}: disk resize to 64 MiB while powered off`, async () => {
    await one.vmAction(vm, ["disk-resize", 0, "64M"], "POWEROFF");
    expected[0].sizeMb = 64;
    await check("hv1");
  });

  await t.step(`${tag}: cold migration hv1 → hv2, then resume there`, async () => {
    await one.vmAction(vm, ["migrate", "hv2", sys], "POWEROFF");
    assert.equal((await one.placement(vm)).host, "hv2");
    await check("hv2");
    await one.vmAction(vm, ["resume"], "RUNNING");
    await guestWrite(one, "hv2", `${dir}/disk.1`, expected[1], { byte: 0x42, offset: 12 * MiB, length: MiB });
    await check("hv2");
  });

  await t.step(`${tag}: stop to the front-end, resume (scheduled back to hv1)`, async () => {
    await one.vmAction(vm, ["stop"], "STOPPED");
    await check("frontend");
    await one.vmAction(vm, ["resume"], "RUNNING");
    assert.deepEqual(await one.placement(vm), { host: "hv1", ds: sys, dir });
    await check("hv1");
  });

  await t.step(`${tag}: disk-saveas of the OS disk while powered off`, async () => {
    await one.vmAction(vm, ["poweroff"], "POWEROFF");
    const before = statesInVmLog(await one.vmLog(vm)).length;
    const saved = await one.cliId(["onevm", "disk-saveas", vm, 0, `saved-${tag}`]);
    await one.waitImage(saved, "READY");
    await one.waitVm(vm, "POWEROFF");
    assert.ok(statesInVmLog(await one.vmLog(vm)).slice(before).includes("HOTPLUG_SAVEAS_POWEROFF"));
    const source = await imageSource(one, saved);
    await assertStandalone(one, "frontend", source, "qcow2", 64);
    await assertPatterns(one, "frontend", source, expected[0].patterns, "qcow2");
    await check("hv1");
    await one.cli(["oneimage", "delete", saved]);
    await one.waitImageGone(saved);
    assert.deepEqual(await listDir(one, "frontend", source), [], "saved image removed");
  });

  await t.step(`${tag}: terminate (the persistent image keeps the guest's writes)`, async () => {
    await one.vmAction(vm, ["terminate"], "DONE");
    for (const host of HOSTS) assert.deepEqual(await listDir(one, host, dir), [], `${host}:${dir}`);
    const source = await imageSource(one, data);
    await assertStandalone(one, "frontend", source, "raw", 16);
    await assertPatterns(one, "frontend", source, expected[1].patterns, "raw");
    // The OS image is untouched by everything its clone went through.
    await assertPatterns(one, "frontend", await imageSource(one, os), os0, "qcow2");
    const states = statesInVmLog(await one.vmLog(vm));
    for (const s of ["PROLOG", "PROLOG_MIGRATE_POWEROFF", "EPILOG_STOP", "PROLOG_RESUME", "EPILOG", "DONE"]) {
      assert.ok(states.includes(s), `vm.log shows ${s}: ${states.join(" ")}`);
    }
    await one.assertNeverFailed(vm);
    for (const id of [os, data]) await one.cli(["oneimage", "delete", id]);
  });
}

onedTest(
  "end-to-end under a real oned: images, a VM's life on local and replica datastores, parallel deploys, " +
    "recreate after a host died",
  async (t) => {
    // libvirtd on hv1 and hv2 for the recreate (see OnedWorldOptions.libvirt).
    await using one = await OnedWorld.start({ libvirt: true });
    const images = await one.createDatastore({
      NAME: "onestor_images",
      DS_MAD: "onestor",
      TM_MAD: "onestor",
      TYPE: "IMAGE_DS",
      SAFE_DIRS: one.files,
    });
    const local = await one.createDatastore({ NAME: "onestor_local", TM_MAD: "onestor", TYPE: "SYSTEM_DS" });
    const replica = await one.createDatastore({
      NAME: "onestor_replica",
      TM_MAD: "onestor",
      TYPE: "SYSTEM_DS",
      REPLICA_HOST: "replica",
    });

    await t.step(
      "image import and delete through the datastore driver (the replica's copy goes too)",
      async () => {
        const patterns: Pattern[] = [{ byte: 0x5a, offset: 3 * MiB, length: MiB }];
        const raw = await sourceFile(one, "import.raw", "raw", 24, patterns);
        await one.sh("frontend", `gzip -k -1 ${raw} && chmod 644 ${raw}.gz`);
        const qcow = await sourceFile(one, "import.qcow2", "qcow2", 40, patterns);
        const fromGz = await one.createImage(images, {
          NAME: "from-gzip",
          PATH: `${raw}.gz`,
          TYPE: "DATABLOCK",
        });
        const fromQcow = await one.createImage(images, { NAME: "from-qcow2", PATH: qcow, TYPE: "OS" });
        for (const [id, format, size] of [[fromGz, "raw", 24], [fromQcow, "qcow2", 40]] as const) {
          const xml = await one.imageInfo(id);
          assert.equal(childText(xml, "FORMAT"), format, `image ${id} format`);
          assert.equal(childText(xml, "SIZE"), String(size), `image ${id} size`);
          const source = childText(xml, "SOURCE");
          assert.match(source, new RegExp(`^${ONED_DATASTORES}/${images}/[0-9a-f]{32}$`));
          await assertStandalone(one, "frontend", source, format, size);
          await assertPatterns(one, "frontend", source, patterns, format);
        }
        assert.equal(
          await sha256(one, "frontend", await imageSource(one, fromGz)),
          await sha256(one, "frontend", raw),
          "the gzip image was decompressed",
        );
        // Deployed once through the replica, so the replica caches it.
        const vm = await one.createVm({ name: "importer", disks: [{ image: fromQcow }] });
        await one.deploy(vm, "hv2", replica);
        await one.waitVm(vm, "RUNNING");
        const source = await imageSource(one, fromQcow);
        await assertPatterns(one, "replica", source, patterns, "qcow2");
        await one.vmAction(vm, ["terminate"], "DONE");
        await one.assertNeverFailed(vm);
        for (const id of [fromGz, fromQcow]) {
          const src = await imageSource(one, id);
          await one.cli(["oneimage", "delete", id]);
          await one.waitImageGone(id);
          const name = src.split("/").pop()!;
          assert.ok(
            !(await listDir(one, "frontend", `${ONED_DATASTORES}/${images}`)).some((n) => n.startsWith(name)),
          );
          assert.ok(!(await listDir(one, "replica", `${ONED_DATASTORES}/${images}`)).some((n) => n === name));
        }
      },
    );

    await vmLife(one, t, images, local, "local");
    await vmLife(one, t, images, replica, "replica");

    await t.step(
      `${PARALLEL} parallel deploys of one new image on the replica datastore: one transfer`,
      async () => {
        const patterns: Pattern[] = Array.from({ length: 8 }, (_, i) => ({
          byte: 0x70 + i,
          offset: i * 8 * MiB,
          length: 4 * MiB,
        }));
        const image = await one.createImage(images, {
          NAME: "parallel",
          PATH: await sourceFile(one, "parallel.raw", "raw", 64, patterns, true),
          TYPE: "OS",
        });
        const source = await imageSource(one, image);
        const imageSum = await sha256(one, "frontend", source);
        const vms: number[] = [];
        for (let i = 0; i < PARALLEL; i++) {
          vms.push(await one.createVm({ name: `parallel-${i}`, disks: [{ image }] }));
        }
        await one.closeSshMasters();
        const meter = await WireMeter.start(one.lab, "frontend", "replica");
        try {
          await Promise.all(vms.map((vm, i) => one.deploy(vm, i % 2 ? "hv2" : "hv1", replica)));
          await Promise.all(vms.map((vm) => one.waitVm(vm, "RUNNING", 300_000)));
          const wire = await meter.read();
          const imageBytes = 64 * MiB;
          // One copy of the image and the SSH protocol around it; a second copy would double it.
          assert.ok(
            wire.sent >= imageBytes && wire.sent < 1.5 * imageBytes,
            `front-end sent ${wire.sent} bytes to the replica for a ${imageBytes}-byte image`,
          );
        } finally {
          await meter.stop();
        }
        const log = await Deno.readTextFile(
          one.lab.path("replica", `${ONED_DATASTORES}/${images}/.onestor-cache.log`),
        );
        const fills = log.split("\n").filter((l) =>
          l.includes('"fill-start"') && l.includes(source.split("/").pop()!)
        );
        assert.equal(fills.length, 1, `cache fills of the image: ${fills.join("\n")}`);
        for (const [i, vm] of vms.entries()) {
          const { host, dir } = await one.placement(vm);
          assert.equal(host, i % 2 ? "hv2" : "hv1");
          assert.equal(await sha256(one, host, `${dir}/disk.0`), imageSum, `VM ${vm} disk equals the image`);
          await one.assertNeverFailed(vm);
        }
        await Promise.all(vms.map((vm) => one.vmAction(vm, ["terminate"], "DONE")));
        for (const vm of vms) {
          for (const host of HOSTS) {
            assert.deepEqual(await listDir(one, host, `${ONED_DATASTORES}/${replica}/${vm}`), []);
          }
          await one.assertNeverFailed(vm);
        }
        await one.cli(["oneimage", "delete", image]);
      },
    );

    // Last: it kills hv1.
    await recreateAfterHostDies(one, t, images, replica);
  },
);

/** Where the replica keeps recovery points (REPLICA_RECOVERY_SNAPS_DIR's default). */
const SNAPS = `${ONED_DATASTORES}/replica_snaps`;

/** A point of a recovery record (record.json on the replica), as far as the test reads it. */
interface RecordPoint {
  id: number;
  kind: string;
  data: number;
  top: string;
}

/**
 * `onevm recover --recreate` of a VM with a protected disk whose host died, on the replica system
 * datastore `sys`: oned deploys it on hv1, a libvirt domain runs over the deployed disk (the dummy
 * VMM starts none), the installed `onestor recovery run` finds the disk through oned's vmpool and
 * takes its points while the guest writes; hv1 is killed and taken offline, oned recreates the VM
 * (same id) on hv2, where the disk must be what it was at the last point, and the protection goes
 * on there. Kills hv1: the world's last scenario.
 */
async function recreateAfterHostDies(one: OnedWorld, t: Deno.TestContext, imagesDs: number, sys: number) {
  const hv = one.libvirt!;
  const SIZE_MB = 64;
  const image = await one.createImage(imagesDs, {
    NAME: "protected-os",
    PATH: await sourceFile(one, "protected.qcow2", "qcow2", SIZE_MB, [{
      byte: 0x11,
      offset: 0,
      length: 4 * MiB,
    }]),
    TYPE: "OS",
  });
  /** What the guest sees, per MiB of the disk. */
  const expected = [0x11, 0x11, 0x11, 0x11, ...new Array(SIZE_MB - 4).fill(0)];
  const vm = await one.deployVm({
    name: "protected",
    // A short period: the pass below forces its points anyway.
    disks: [{ image, attrs: { RECOVERY_SNAPSHOT_FREQ: 4 } }],
    host: "hv1",
    ds: sys,
    // Where the recreate is scheduled to (hv1 is offline by then anyway).
    schedHost: "hv2",
  });
  const dir = `${ONED_DATASTORES}/${sys}/${vm}`;
  const domain = `one-${vm}`;
  const record = async (): Promise<{ points: RecordPoint[]; head: number | null }> =>
    JSON.parse(await one.sh("replica", `cat ${SNAPS}/${vm}/disk.0.recovery/record.json`));
  const content = async (host: string) =>
    chunkPatterns(await hv.readImage(host, `${dir}/disk.0`), MiB, SIZE_MB);
  const startDomain = (host: string) =>
    hv.create(
      host,
      domainXml({ vmId: vm, uuid: domainUuid(vm), disks: [{ path: `${dir}/disk.0`, target: "vda" }] }),
    );
  const write = async (host: string, pattern: number, mib: number, count: number) => {
    await hv.guestWrite(host, domain, "vda", pattern, mib * MiB, count * MiB);
    for (let i = 0; i < count; i++) expected[mib + i] = pattern;
    return count * MiB;
  };
  /** One pass of the installed `onestor recovery run --force`, as the systemd unit runs it: every protected disk of oned's vmpool. */
  const period = async (written: number): Promise<RecordPoint> => {
    const run = await one.onestor(["recovery", "run", "--force", "--json"]);
    assert.equal(run.code, 0, `recovery run: ${run.stderr}${run.stdout}`);
    const report = JSON.parse(run.stdout) as {
      outcomes: { vmId: number; diskId: number; status: string; error?: string; point?: RecordPoint }[];
    };
    const outcome = report.outcomes.find((o) => o.vmId === vm && o.diskId === 0);
    assert.ok(outcome, `the pass found VM ${vm} disk 0 in oned's vmpool: ${run.stdout}`);
    assert.equal(outcome.status, "done", outcome.error);
    assert.equal(outcome.point!.kind, "incremental");
    assert.equal(outcome.point!.data, written, "the increment holds exactly what the guest wrote");
    return outcome.point!;
  };

  await t.step(
    "recreate: deployed by oned on hv1, protected from point 0, a domain over the disk",
    async () => {
      assert.deepEqual(await one.placement(vm), { host: "hv1", ds: sys, dir });
      assert.equal(childText(await one.one.vmInfo(vm), "DEPLOY_ID"), domainUuid(vm));
      const r = await record();
      assert.deepEqual(r.points.map((p) => [p.id, p.kind]), [[0, "base"]], "point 0 is the cached image");
      assert.match(
        await one.sh("hv1", `qemu-img info --output=json ${dir}/disk.0`),
        /"name": "onestor-rec-0-0"/,
      );
      await startDomain("hv1");
    },
  );

  let last: RecordPoint;
  let atLastPoint: number[] = [];
  await t.step(
    "recreate: the guest writes, the installed recovery run takes incremental points",
    async () => {
      await period(await write("hv1", 0x31, 8, 2));
      // 0x33 overwrites a MiB of the first point: the second holds it again.
      last = await period(await write("hv1", 0x32, 12, 3) + await write("hv1", 0x33, 9, 1));
      atLastPoint = [...expected];
      assert.equal((await record()).head, last.id);
      // Written after the last point: lost with the host.
      await write("hv1", 0x3f, 20, 1);
      assert.notDeepEqual(await content("hv1"), atLastPoint);
    },
  );

  await t.step(
    "recreate: hv1 dies and goes offline; the VM comes back on hv2 from its last point",
    async () => {
      await one.lab.killHost("hv1");
      await one.hostOffline("hv1");
      await one.vmAction(vm, ["recover", "--recreate"], "RUNNING", 300_000);
      assert.deepEqual(await one.placement(vm), { host: "hv2", ds: sys, dir }, "the same VM, on hv2");
      // What oned told the driver: the record of hv1 closed with ACTION 14 (DELETE_RECREATE).
      const records = xpathAll(await one.one.vmInfo(vm), "HISTORY_RECORDS/HISTORY/ACTION");
      assert.equal(records.at(-2), "14", `history ACTIONs ${records.join(" ")}`);
      assert.deepEqual(await content("hv2"), atLastPoint, "the disk as it was at the last point");
      const info = JSON.parse(await one.sh("hv2", `qemu-img info --output=json ${dir}/disk.0`));
      assert.equal(info.format, "qcow2");
      assert.equal(info["virtual-size"], SIZE_MB * MiB);
      assert.equal(info["backing-filename"], undefined, "a standalone disk");
      assert.match(
        JSON.stringify(info),
        new RegExp(`"name":"onestor-rec-0-${last.id}"`),
        "the point's bitmap",
      );
      assert.equal((await one.sh("hv2", `stat -c %F ${dir}/disk.0`)).trim(), "regular file");
      // onestor's INFO lines of a successful transfer go to oned.log.
      assert.match(
        await one.onedLog(),
        new RegExp(`clone: VM ${vm} disk 0: rebuilt from recovery point ${last.id} `),
        "the clone of the recreate said which point it rebuilt",
      );
      const states = statesInVmLog(await one.vmLog(vm));
      for (const s of ["CLEANUP_RESUBMIT", "PENDING", "PROLOG", "BOOT", "RUNNING"]) {
        assert.ok(states.includes(s), `vm.log shows ${s}: ${states.join(" ")}`);
      }
      assert.equal((await record()).head, last.id, "the points are kept");
      await one.assertNeverFailed(vm);
    },
  );

  await t.step("recreate: on hv2 the next point is an increment on the restored one", async () => {
    expected.splice(0, expected.length, ...atLastPoint);
    await startDomain("hv2");
    const next = await period(await write("hv2", 0x41, 30, 1));
    assert.ok(next.id > last.id);
    assert.deepEqual(
      chunkPatterns(
        await hv.readImage("replica", `${SNAPS}/${vm}/disk.0.recovery/${next.top}`),
        MiB,
        SIZE_MB,
      ),
      expected,
      "the new point reads as the disk on hv2",
    );
    // The status, from oned's vmpool and the replica's record: where the VM is now, the newest point.
    const status = await one.onestor(["recovery", "status", "--vm", String(vm), "--json"]);
    const disk = JSON.parse(status.stdout).disks.find((d: { disk: number }) => d.disk === 0);
    assert.ok(disk, `recovery status lists disk 0: ${status.stdout}${status.stderr}`);
    assert.equal(disk.host, "hv2");
    assert.equal(disk.last_point.id, next.id);
    assert.equal(disk.last_error, null);
    await one.assertNeverFailed(vm);
  });
}
