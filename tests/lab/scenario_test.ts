/**
 * A VM's whole life through the installed TM actions, in the order oned drives them (spec §2):
 * deploy (clone, ln, mkimage, mkswap, context), guest writes, disk snapshots (create, revert,
 * delete), resize, cold migration hv1 → hv2, stop to the front-end, resume on hv1, persistent save
 * (mvds) and terminate (delete), in replica mode (the system datastore has REPLICA_HOST, so image
 * disks come through the cluster's cache). The fake oned's VM XML is updated between steps as
 * oned would (LCM_STATE, history records, disk SIZE, snapshots).
 *
 * Every action runs twice in a row and the datastores of every host must be the same after the
 * second run as after the first (names, kinds, sizes, and the contents of every file whose
 * content is deterministic). After each step every host is checked: where the VM folder is and
 * is not, which files it holds (no leftovers), each disk's format, size and qcow2 chain, and the
 * data patterns written into the disks.
 *
 * Live steps (between resume and terminate): the VM runs as a real QEMU domain under libvirt on
 * hv1 and hv2 (TCG, no guest OS, guest writes through QEMU's monitor): snap_create_live, a live
 * migration hv1 → hv2 with premigrate and postmigrate around `virsh migrate --copy-storage-all`,
 * save-as (cpds) of the running disk, and the live migration back.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import {
  base64Xml,
  datastoreXml,
  DS_LOC,
  type HistoryFixture,
  imageDisk,
  imageSource,
  persistentDisk,
  type SnapshotFixture,
  type VectorAttrs,
  vmXml,
  volatileDisk,
} from "../support/fixtures.ts";
import {
  assertPatterns,
  assertStandalone,
  listDir,
  makeImage,
  normal,
  type Pattern,
} from "../support/disk_checks.ts";
import { domainXml, LIBVIRT_DIRS, LibvirtLab } from "../support/libvirt_lab.ts";

const MiB = 1 << 20;
const VM = 42;
const FE = "frontend";
const HOSTS = [FE, "replica", "hv1", "hv2"];
const SYS = 100;
const IMG_DS = 1;
const VM_DIR = `${DS_LOC}/${SYS}/${VM}`;
const SRC0 = imageSource(0, IMG_DS);
const SRC1 = imageSource(1, IMG_DS);

/** What the VM's disks must hold wherever the VM folder is. */
interface DiskExpectation {
  format: string;
  sizeMb: number;
  patterns: Pattern[];
}

/** The VM as oned sees it, published to the fake oned on every change. */
class VmModel {
  state = 3;
  lcm = 1;
  history: HistoryFixture[] = [{ hostname: "hv1", hid: 1, dsId: SYS }];
  disks: VectorAttrs[] = [
    imageDisk({ DISK_ID: 0, IMAGE_ID: 0, FORMAT: "qcow2", SIZE: 48, ORIGINAL_SIZE: 32 }),
    persistentDisk({ DISK_ID: 1, IMAGE_ID: 1, FORMAT: "raw", SIZE: 16, ORIGINAL_SIZE: 16 }),
    volatileDisk({ DISK_ID: 2, FS: "ext4", FORMAT: "raw", SIZE: 8 }),
    volatileDisk({ DISK_ID: 3, TYPE: "swap", FORMAT: "raw", SIZE: 4 }),
  ];
  snapshots: SnapshotFixture[] = [];

  constructor(private readonly world: World) {}

  publish(): void {
    this.world.oned.addVm(vmXml({
      id: VM,
      state: this.state,
      lcmState: this.lcm,
      disks: this.disks,
      history: this.history,
      snapshots: this.snapshots.length > 0 ? [{ diskId: 0, snapshots: this.snapshots }] : [],
    }));
  }

  /** Moves to `lcm` (and `state`), publishing the change. */
  set(lcm: number, state = this.state): void {
    this.lcm = lcm;
    this.state = state;
    this.publish();
  }

  /** A new history record (placement), as oned adds on deploy, migration and resume. */
  place(hostname: string, hid: number, action = 0): void {
    this.history = [...this.history.map((h) => ({ ...h, etime: 1700000500 })), {
      hostname,
      hid,
      dsId: SYS,
      action,
    }];
    this.publish();
  }

  disk(id: number): VectorAttrs {
    return this.disks.find((d) => d.DISK_ID === id)!;
  }
}

/** The replica cache's own bookkeeping (locks, log, per-entry JSON with last-use times). */
const CACHE_BOOKKEEPING = /^\.onestor|\.onestor\.json$/;

/**
 * Path → kind:size[:hash] of everything under the datastores folder of every host, except the
 * replica cache's bookkeeping (its log grows with every use; the cached images themselves count).
 */
async function fingerprint(world: World, volatile: (path: string) => boolean): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (host: string, dir: string, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (host === "replica" && CACHE_BOOKKEEPING.test(e.name)) continue;
      const path = `${dir}/${e.name}`;
      const key = `${host}:${rel}/${e.name}`;
      const st = await Deno.lstat(path);
      if (st.isSymlink) out.set(key, `link:${await Deno.readLink(path)}`);
      else if (st.isDirectory) {
        out.set(key, "dir");
        await walk(host, path, `${rel}/${e.name}`);
      } else if (volatile(`${rel}/${e.name}`)) out.set(key, `file:${st.size}`);
      else {
        const hash = createHash("sha256");
        using file = await Deno.open(path);
        for await (const chunk of file.readable) hash.update(chunk);
        out.set(key, `file:${st.size}:${hash.digest("hex")}`);
      }
    }
  };
  for (const host of HOSTS) {
    const root = world.lab.path(host, "/var/lib/one/datastores");
    try {
      await walk(host, root, "/var/lib/one/datastores");
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return out;
}

/** Files whose content differs between two correct runs (fresh FS UUIDs, ISO timestamps). */
const VOLATILE = new RegExp(`/${SYS}/${VM}/disk\\.[234]$`);

labTest(
  "a VM's life in oned's order: every step checked on every host and converging when repeated",
  async (t) => {
    await using world = await World.start({ extraDirs: [...LIBVIRT_DIRS] });
    world.oned.addDatastore(datastoreXml({ id: IMG_DS }));
    // Replica mode (OneStor): the system datastore names the cluster's cache host.
    world.oned.addDatastore(datastoreXml({ id: SYS, template: { REPLICA_HOST: "replica" } }));
    const vm = new VmModel(world);
    vm.publish();

    // Images on the front-end: an OS image (qcow2) and a persistent datablock (raw).
    const img0: Pattern[] = [{ byte: 0x01, offset: 0, length: MiB }, {
      byte: 0x02,
      offset: 20 * MiB,
      length: MiB,
    }];
    const img1: Pattern[] = [{ byte: 0x11, offset: 4 * MiB, length: MiB }];
    await makeImage(world, FE, SRC0, { format: "qcow2", sizeMb: 32, patterns: img0 });
    await makeImage(world, FE, SRC1, { format: "raw", sizeMb: 16, patterns: img1 });
    await world.writeFile(FE, `/var/lib/one/vms/${VM}/context.sh`, `HOSTNAME='vm${VM}'\n`);

    const expected: Record<number, DiskExpectation> = {
      0: { format: "qcow2", sizeMb: 48, patterns: [...img0] },
      1: { format: "raw", sizeMb: 16, patterns: [...img1] },
      2: { format: "raw", sizeMb: 8, patterns: [] },
      3: { format: "raw", sizeMb: 4, patterns: [] },
    };
    let snapshotsOnDisk0: string[] = [];

    /** Runs an action twice; the datastores of every host must be identical after both runs. */
    const twice = async (action: string, args: (string | number)[]) => {
      ok(await world.tm(action, args), `${action} ${args.join(" ")}`);
      const first = await fingerprint(world, (p) => VOLATILE.test(p));
      ok(await world.tm(action, args), `${action} ${args.join(" ")} (again)`);
      const second = await fingerprint(world, (p) => VOLATILE.test(p));
      assert.deepEqual(second, first, `${action} run twice converges`);
    };

    /** The VM folder is on `where` only, with exactly the expected files and disk contents. */
    const check = async (where: string) => {
      const dir = normal(VM_DIR);
      for (const host of HOSTS) {
        const names = await listDir(world, host, dir);
        if (host !== where) {
          assert.deepEqual(names, [], `no VM folder on ${host}`);
          continue;
        }
        const wanted = ["disk.0", "disk.1", "disk.2", "disk.3", "disk.4"];
        if (snapshotsOnDisk0.length > 0) wanted.push("disk.0.snap");
        assert.deepEqual(names, wanted.sort(), `files of the VM folder on ${host}`);
        for (const [id, e] of Object.entries(expected)) {
          await assertStandalone(world, host, `${dir}/disk.${id}`, e.format, e.sizeMb);
          await assertPatterns(world, host, `${dir}/disk.${id}`, e.patterns, e.format);
        }
        assert.deepEqual(await listDir(world, host, `${dir}/disk.0.snap`), snapshotsOnDisk0);
        const blkid = await world.sh(
          host,
          `blkid -p -o value -s TYPE ${dir}/disk.2 ${dir}/disk.3 ${dir}/disk.4`,
        );
        assert.deepEqual(blkid.trim().split("\n"), ["ext4", "swap", "iso9660"]);
        assert.equal(
          await Deno.readTextFile(world.lab.path(host, `/var/lib/one/datastores/${SYS}/.monitor`)),
          "onestor\n",
        );
      }
      // The images stay on the front-end until mvds.
      await assertStandalone(world, FE, SRC0, "qcow2", 32);
      await assertPatterns(world, FE, SRC0, img0, "qcow2");
    };

    /** Simulated guest writes (the disks are written in place on the host, as QEMU would). */
    const guestWrite = async (host: string, id: number, p: Pattern) => {
      const e = expected[id];
      await world.sh(
        host,
        `qemu-io -f ${e.format} -c 'write -P ${p.byte} ${p.offset} ${p.length}' ${VM_DIR}/disk.${id} >/dev/null`,
        {
          user: "oneadmin",
        },
      );
      e.patterns = [...e.patterns.filter((q) => q.offset !== p.offset), p];
    };

    await t.step("deploy on hv1: clone, ln, mkimage, mkswap, context", async () => {
      await twice("clone", [`${FE}:${SRC0}`, `hv1:${VM_DIR}/disk.0`, VM, IMG_DS]);
      await twice("ln", [`${FE}:${SRC1}`, `hv1:${VM_DIR}/disk.1`, VM, IMG_DS]);
      await twice("mkimage", [8, "raw", `hv1:${VM_DIR}/disk.2`, VM, SYS]);
      await twice("mkswap", [4, `hv1:${VM_DIR}/disk.3`, VM, SYS]);
      await twice("context", [`/var/lib/one/vms/${VM}/context.sh`, `hv1:${VM_DIR}/disk.4`, VM, SYS]);
      vm.set(3);
      await check("hv1");
      // Both images came through the cluster's cache, which now holds them.
      await assertPatterns(world, "replica", SRC0, img0, "qcow2");
      await assertPatterns(world, "replica", SRC1, img1, "raw");
    });

    await t.step("the guest writes into its image disk and its persistent disk", async () => {
      await guestWrite("hv1", 0, { byte: 0x31, offset: 2 * MiB, length: MiB });
      await guestWrite("hv1", 0, { byte: 0x32, offset: 40 * MiB, length: MiB }); // in the grown part
      await guestWrite("hv1", 1, { byte: 0x41, offset: 8 * MiB, length: MiB });
      await check("hv1");
    });

    await t.step("poweroff, then snapshot create, revert and delete", async () => {
      vm.set(51, 8);
      await twice("snap_create", [`hv1:${VM_DIR}/disk.0`, 0, VM, IMG_DS]);
      vm.snapshots = [{ id: 0, active: true }];
      snapshotsOnDisk0 = ["0"];
      const atSnapshot = expected[0].patterns;
      vm.set(8);
      await check("hv1");
      await assertStandalone(world, "hv1", `${VM_DIR}/disk.0.snap/0`, "qcow2", 48);
      await assertPatterns(world, "hv1", `${VM_DIR}/disk.0.snap/0`, atSnapshot, "qcow2");

      await guestWrite("hv1", 0, { byte: 0x33, offset: 2 * MiB, length: MiB });
      vm.set(51);
      await twice("snap_create", [`hv1:${VM_DIR}/disk.0`, 1, VM, IMG_DS]);
      vm.snapshots = [{ id: 0 }, { id: 1, active: true }];
      snapshotsOnDisk0 = ["0", "1"];
      vm.set(52);
      await twice("snap_revert", [`hv1:${VM_DIR}/disk.0`, 0, VM, IMG_DS]);
      expected[0].patterns = atSnapshot;
      vm.snapshots = [{ id: 0, active: true }, { id: 1 }];
      vm.set(8);
      await check("hv1");

      vm.set(53);
      await twice("snap_delete", [`hv1:${VM_DIR}/disk.0`, 1, VM, IMG_DS]);
      vm.snapshots = [{ id: 0, active: true }];
      snapshotsOnDisk0 = ["0"];
      vm.set(8);
      await check("hv1");
    });

    await t.step("resize the image disk while powered off", async () => {
      vm.set(63);
      await twice("resize", [`hv1:${VM_DIR}/disk.0`, 64, VM, IMG_DS]);
      vm.disk(0).SIZE = 64;
      expected[0].sizeMb = 64;
      vm.set(8);
      await check("hv1");
    });

    // Every move is run the way oned writes the transfer file: one line per disk, then the folder.
    const move = async (from: string, to: string) => {
      for (const d of vm.disks) {
        const ds = d.IMAGE_ID === undefined ? SYS : IMG_DS;
        await twice("mv", [
          `${from}:${VM_DIR}/disk.${d.DISK_ID}`,
          `${to}:${VM_DIR}/disk.${d.DISK_ID}`,
          VM,
          ds,
        ]);
      }
      await twice("mv", [`${from}:${VM_DIR}`, `${to}:${VM_DIR}`, VM, SYS]);
    };

    await t.step("cold migration hv1 → hv2", async () => {
      vm.place("hv2", 2, 1);
      vm.set(43, 3);
      await move("hv1", "hv2");
      vm.set(8, 8);
      await check("hv2");
    });

    await t.step("stop to the front-end, then resume on hv1", async () => {
      vm.set(3, 3);
      await guestWrite("hv2", 1, { byte: 0x42, offset: 12 * MiB, length: MiB });
      vm.set(10, 3);
      await move("hv2", FE);
      vm.set(0, 4);
      await check(FE);
      vm.place("hv1", 1);
      vm.set(9, 3);
      await move(FE, "hv1");
      vm.set(3, 3);
      await check("hv1");
    });

    // live steps: snap_create_live, live migration (premigrate/postmigrate) and save-as (cpds)
    // belong here, with the VM running on hv1 under libvirt (World.start({ extraDirs: LIBVIRT_DIRS })).
    // The VM boots on hv1 as a real QEMU domain (TCG, no guest OS) whose guest writes go through
    // QEMU's monitor; while it runs, the disks are read with -U (the running QEMU holds them).
    const hv = await LibvirtLab.start(world.lab);
    const DOMAIN = `one-${VM}`;
    const targets: Record<number, string> = { 0: "vda", 1: "vdb", 2: "vdc", 3: "vdd" };
    const domainOf = () =>
      domainXml({
        vmId: VM,
        disks: [
          ...[0, 1, 2, 3].map((id) => ({
            path: `${VM_DIR}/disk.${id}`,
            target: targets[id],
            format: expected[id].format,
          })),
          { path: `${VM_DIR}/disk.4`, target: "hda", format: "raw", cdrom: true },
        ],
      });
    /** The VM XML oned would send on stdin (as VmModel.publish() builds it). */
    const vmXmlNow = () =>
      vmXml({
        id: VM,
        state: vm.state,
        lcmState: vm.lcm,
        disks: vm.disks,
        history: vm.history,
        snapshots: vm.snapshots.length > 0 ? [{ diskId: 0, snapshots: vm.snapshots }] : [],
      });
    /** A write by the running guest, through QEMU. */
    const liveWrite = async (host: string, id: number, p: Pattern) => {
      await hv.guestWrite(host, DOMAIN, targets[id], p.byte, p.offset, p.length);
      expected[id].patterns = [...expected[id].patterns.filter((q) => q.offset !== p.offset), p];
    };
    /** Guest-visible bytes hold every expected pattern (read with -U while the domain runs). */
    const assertLivePatterns = async (host: string, path: string, patterns: Pattern[]) => {
      const bytes = await hv.readImage(host, normal(path));
      for (const p of patterns) {
        const piece = bytes.subarray(p.offset, p.offset + p.length);
        assert.ok(
          piece.length === p.length && piece.every((b) => b === p.byte),
          `${host}:${path} should hold 0x${p.byte.toString(16)} at ${p.offset}`,
        );
      }
    };
    /** The running VM's folder is on `where` only, with its files, and the disks hold their data. */
    const checkLive = async (where: string) => {
      const dir = normal(VM_DIR);
      for (const host of HOSTS) {
        const names = await listDir(world, host, dir);
        if (host !== where) {
          assert.deepEqual(names, [], `no VM folder on ${host}`);
          continue;
        }
        assert.deepEqual(names, ["disk.0", "disk.0.snap", "disk.1", "disk.2", "disk.3", "disk.4"]);
        assert.deepEqual(await listDir(world, host, `${dir}/disk.0.snap`), snapshotsOnDisk0);
        for (const [id, e] of Object.entries(expected)) {
          await assertStandalone(world, host, `${dir}/disk.${id}`, e.format, e.sizeMb);
          await assertLivePatterns(host, `${dir}/disk.${id}`, e.patterns);
        }
      }
      assert.equal(await hv.domState(where, DOMAIN), "running");
      for (const d of await hv.blockDevices(where, DOMAIN)) {
        assert.ok(d.source.startsWith(`${VM_DIR}/disk.`), `domain disk ${d.target} is ${d.source}`);
      }
    };
    /**
     * Runs an action twice (stdin as oned gives it); the datastores of every host are the same
     * after both runs, except the contents of `fresh` files (copies a hypervisor makes again are
     * equal guest-visible bytes but may lay out their clusters differently), compared by guest view.
     */
    const twiceLive = async (
      action: string,
      args: (string | number)[],
      options: { stdin?: string; fresh?: { host: string; path: string } } = {},
    ) => {
      const volatile = (p: string) =>
        VOLATILE.test(p) || (options.fresh !== undefined && p === normal(options.fresh.path));
      ok(await world.tm(action, args, { stdin: options.stdin }), `${action} ${args.join(" ")}`);
      const first = await fingerprint(world, volatile);
      const firstBytes = options.fresh
        ? await hv.readImage(options.fresh.host, normal(options.fresh.path))
        : null;
      ok(await world.tm(action, args, { stdin: options.stdin }), `${action} ${args.join(" ")} (again)`);
      const second = await fingerprint(world, volatile);
      assert.deepEqual(second, first, `${action} run twice converges`);
      if (options.fresh) {
        const secondBytes = await hv.readImage(options.fresh.host, normal(options.fresh.path));
        assert.ok(
          firstBytes!.every((b, i) => b === secondBytes[i]) && firstBytes!.length === secondBytes.length,
        );
      }
    };
    /** A live migration as oned drives it: premigrate, the KVM driver's migration, postmigrate. */
    const liveMigrate = async (from: string, to: string, hid: number) => {
      vm.place(to, hid, 2);
      vm.set(4, 3);
      const stdin = base64Xml(vmXmlNow());
      const migrateArgs = [from, to, VM_DIR, VM, SYS];
      await twiceLive("premigrate", migrateArgs, { stdin });
      const migrated = await hv.migrate(DOMAIN, from, to);
      assert.equal(migrated.code, 0, migrated.stderr);
      await twiceLive("postmigrate", migrateArgs, { stdin });
      vm.set(3, 3);
      await checkLive(to);
    };

    await t.step("live: the VM boots on hv1 and the guest writes through QEMU", async () => {
      await hv.create("hv1", domainOf());
      await liveWrite("hv1", 0, { byte: 0x51, offset: 6 * MiB, length: MiB });
      await liveWrite("hv1", 0, { byte: 0x52, offset: 60 * MiB, length: MiB }); // in the resized part
      await liveWrite("hv1", 1, { byte: 0x61, offset: 2 * MiB, length: MiB });
      await checkLive("hv1");
    });

    await t.step("live: snap_create_live of the running image disk", async () => {
      vm.set(57, 3);
      const snap = `${VM_DIR}/disk.0.snap/1`;
      await twiceLive("snap_create_live", [`hv1:${VM_DIR}/disk.0`, 1, VM, IMG_DS], {
        fresh: { host: "hv1", path: snap },
      });
      vm.snapshots = [{ id: 0 }, { id: 1, active: true }];
      snapshotsOnDisk0 = ["0", "1"];
      vm.set(3, 3);
      const atSnapshot = [...expected[0].patterns];
      await liveWrite("hv1", 0, { byte: 0x53, offset: 6 * MiB, length: MiB });
      await assertStandalone(world, "hv1", snap, "qcow2", 64);
      await assertLivePatterns("hv1", snap, atSnapshot);
      await checkLive("hv1");
    });

    await t.step("live: migration hv1 → hv2 (premigrate, virsh migrate, postmigrate)", async () => {
      await liveMigrate("hv1", "hv2", 2);
      await liveWrite("hv2", 1, { byte: 0x62, offset: 10 * MiB, length: MiB });
      await assertLivePatterns("hv2", `${VM_DIR}/disk.0.snap/1`, [{
        byte: 0x51,
        offset: 6 * MiB,
        length: MiB,
      }]);
    });

    await t.step("live: save-as (cpds) of the running image disk into a new image", async () => {
      const saved = `${DS_LOC}/${IMG_DS}/${createHash("md5").update(`save-as:${VM}`).digest("hex")}`;
      vm.set(26, 3);
      await twiceLive("cpds", [`hv2:${VM_DIR}/disk.0`, saved, -1, VM, IMG_DS], {
        fresh: { host: FE, path: saved },
      });
      vm.set(3, 3);
      await assertStandalone(world, FE, saved, "qcow2", 64);
      await assertPatterns(world, FE, saved, expected[0].patterns, "qcow2");
      await checkLive("hv2");
      // The new image's own life (fs/rm when it is deleted) is the datastore driver's.
      await world.sh(FE, `rm -f ${normal(saved)}`);
    });

    await t.step("live: migration back hv2 → hv1, then the VM shuts down", async () => {
      await liveMigrate("hv2", "hv1", 1);
      await hv.destroy("hv1", DOMAIN);
      vm.set(3, 3);
      await check("hv1");
      await assertStandalone(world, "hv1", `${VM_DIR}/disk.0.snap/1`, "qcow2", 64);
    });

    await t.step(
      "terminate: persistent save (mvds), then delete of the disks and the VM folder",
      async () => {
        vm.set(11, 3);
        await twice("mvds", [`hv1:${VM_DIR}/disk.1`, SRC1, VM, IMG_DS]);
        await assertStandalone(world, FE, SRC1, "raw", 16);
        await assertPatterns(world, FE, SRC1, expected[1].patterns, "raw");
        await twice("delete", [`hv1:${VM_DIR}/disk.0`, VM, IMG_DS]);
        await twice("delete", [`hv1:${VM_DIR}/disk.2`, VM, SYS]);
        await twice("delete", [`hv1:${VM_DIR}/disk.3`, VM, SYS]);
        await twice("delete", [`hv1:${VM_DIR}`, VM, SYS]);
        vm.set(0, 6);
        for (const host of HOSTS) assert.deepEqual(await listDir(world, host, normal(VM_DIR)), [], host);
        // What remains: the two images on the front-end, the .monitor markers on the hosts that ran it.
        assert.deepEqual(
          await listDir(world, FE, normal(`${DS_LOC}/${IMG_DS}`)),
          [SRC0, SRC1].map((s) => s.split("/").pop()!).sort(),
        );
        await assertPatterns(world, FE, SRC0, img0, "qcow2");
      },
    );

    await t.step(
      "the saved persistent image, deployed again via the replica, holds the saved data",
      async () => {
        // mvds changed the image: the cache must not hand out its old copy.
        const other = `${DS_LOC}/${SYS}/${VM + 1}`;
        world.oned.addVm(vmXml({
          id: VM + 1,
          disks: [persistentDisk({ DISK_ID: 0, IMAGE_ID: 1, FORMAT: "raw", SIZE: 16, ORIGINAL_SIZE: 16 })],
          history: [{ hostname: "hv2", hid: 2, dsId: SYS }],
        }));
        await twice("ln", [`${FE}:${SRC1}`, `hv2:${other}/disk.0`, VM + 1, IMG_DS]);
        await assertPatterns(world, "hv2", `${other}/disk.0`, expected[1].patterns, "raw");
        await twice("delete", [`hv2:${other}`, VM + 1, SYS]);
        for (const host of HOSTS) assert.deepEqual(await listDir(world, host, normal(other)), [], host);
      },
    );
  },
);
