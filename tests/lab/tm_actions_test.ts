/**
 * The cold-path TM actions through their installed symlinks, on the lab's hosts: what lands on
 * each host, in which format, with which data, and that a second run converges.
 */

import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import {
  datastoreXml,
  DS_LOC,
  imageDisk,
  imageSource,
  persistentDisk,
  type VmFixture,
  vmXml,
  volatileDisk,
} from "../support/fixtures.ts";
import {
  assertKinds,
  assertPatterns,
  assertStandalone,
  backingChain,
  fileKind,
  listDir,
  makeImage,
  type Pattern,
} from "../support/disk_checks.ts";

const MiB = 1 << 20;
const VM = 7;
const FE = "frontend";
const vmDir = (ds = 100, vm = VM) => `${DS_LOC}/${ds}/${vm}`;

const IMG0: Pattern[] = [{ byte: 0x11, offset: 0, length: MiB }, {
  byte: 0x12,
  offset: 9 * MiB,
  length: MiB,
}];
const IMG1: Pattern[] = [{ byte: 0x21, offset: 2 * MiB, length: MiB }];
const SNAP1: Pattern[] = [{ byte: 0x2f, offset: 0, length: MiB }];

function vmFixture(overrides: Partial<VmFixture> = {}): string {
  return vmXml({
    id: VM,
    disks: [
      imageDisk({ DISK_ID: 0, IMAGE_ID: 0, FORMAT: "qcow2", SIZE: 32, ORIGINAL_SIZE: 16 }),
      persistentDisk({ DISK_ID: 1, IMAGE_ID: 1, FORMAT: "raw", SIZE: 8, ORIGINAL_SIZE: 8, SPARSE: "NO" }),
      volatileDisk({ DISK_ID: 2, SIZE: 4, FS: "ext4" }),
      volatileDisk({ DISK_ID: 4, SIZE: 2, TYPE: "swap" }),
      volatileDisk({ DISK_ID: 5, SIZE: 4, FORMAT: "qcow2", SPARSE: "NO" }),
      volatileDisk({ DISK_ID: 6, SIZE: 4, FS: "ntfs" }),
    ],
    history: [{ hostname: "hv1", dsId: 100 }],
    ...overrides,
  });
}

labTest(
  "cold-path TM actions (clone, ln, mv, snapshots, resize, mvds, context, mkimage, mkswap, delete), each run twice",
  async (t) => {
    await using world = await World.start();
    world.oned.addDatastore(datastoreXml({ id: 1 }));
    world.oned.addDatastore(datastoreXml({ id: 100 }));
    world.oned.addDatastore(datastoreXml({ id: 101 }));
    world.oned.addVm(vmFixture());
    const src0 = imageSource(0);
    const src1 = imageSource(1);
    await makeImage(world, FE, src0, { format: "qcow2", sizeMb: 16, patterns: IMG0 });
    await makeImage(world, FE, src1, { format: "raw", sizeMb: 8, patterns: IMG1 });
    await makeImage(world, FE, `${src1}.snap/0`, { format: "raw", sizeMb: 8, patterns: SNAP1 });
    const twice = async (action: string, args: (string | number)[], env?: Record<string, string>) => {
      ok(await world.tm(action, args, { env }), `${action} (first run)`);
      return ok(await world.tm(action, args, { env }), `${action} (second run)`);
    };

    await t.step(
      "clone copies the image as disk.0, grows it to SIZE, writes the .monitor marker",
      async () => {
        await twice("clone", [`${FE}:${src0}`, `hv1:${vmDir()}/disk.0`, VM, 1]);
        await assertStandalone(world, "hv1", `${vmDir()}/disk.0`, "qcow2", 32);
        await assertPatterns(world, "hv1", `${vmDir()}/disk.0`, IMG0, "qcow2");
        assert.equal(
          await Deno.readTextFile(world.lab.path("hv1", "/var/lib/one/datastores/100/.monitor")),
          "onestor\n",
        );
        await assertKinds(world, "hv1", {
          "/var/lib/one/datastores/.monitor": "missing",
          [`${vmDir()}/disk.0.snap`]: "missing",
        });
      },
    );

    await t.step(
      "ln copies a persistent image with its snapshots; SPARSE=NO allocates every block",
      async () => {
        const before = await fileKind(world, FE, src1);
        assert.ok(before.allocated! < before.size!, "the image on the front-end is sparse");
        await twice("ln", [`${FE}:${src1}`, `hv1:${vmDir()}/disk.1`, VM, 1]);
        await assertStandalone(world, "hv1", `${vmDir()}/disk.1`, "raw", 8);
        await assertPatterns(world, "hv1", `${vmDir()}/disk.1`, IMG1, "raw");
        await assertPatterns(world, "hv1", `${vmDir()}/disk.1.snap/0`, SNAP1, "raw");
        const disk = await fileKind(world, "hv1", `${vmDir()}/disk.1`);
        assert.ok(
          disk.allocated! >= disk.size!,
          `disk.1 is fully allocated (${disk.allocated} of ${disk.size})`,
        );
      },
    );

    await t.step("QCOW2_OPTIONS are applied to a cloned qcow2 disk", async () => {
      assert.equal((await backingChain(world, "hv1", `${vmDir()}/disk.0`))[0].compat, "1.1");
      await twice("clone", [`${FE}:${src0}`, `hv1:${vmDir()}/disk.0`, VM, 1], {
        QCOW2_OPTIONS: "-o compat=0.10",
      });
      assert.equal((await backingChain(world, "hv1", `${vmDir()}/disk.0`))[0].compat, "0.10");
      await assertPatterns(world, "hv1", `${vmDir()}/disk.0`, IMG0, "qcow2");
    });

    await t.step("mv of a disk path does nothing; in PROLOG_MIGRATE_UNKNOWN nothing moves", async () => {
      await twice("mv", [`hv1:${vmDir()}/disk.0`, `hv2:${vmDir()}/disk.0`, VM, 1]);
      world.oned.addVm(vmFixture({ lcmState: 60 }));
      await twice("mv", [`hv1:${vmDir()}`, `hv2:${vmDir()}`, VM, 100]);
      await assertKinds(world, "hv1", { [`${vmDir()}/disk.0`]: "file" });
      await assertKinds(world, "hv2", { [vmDir()]: "missing" });
      world.oned.addVm(vmFixture());
    });

    await t.step("mv to the same folder (same host, same path) leaves it in place", async () => {
      await twice("mv", [`hv1:${vmDir()}`, `hv1:${vmDir()}`, VM, 100]);
      await assertPatterns(world, "hv1", `${vmDir()}/disk.0`, IMG0, "qcow2");
    });

    await t.step("cold migration hv1 → hv2 moves the folder, then removes the source", async () => {
      world.oned.addVm(
        vmFixture({ history: [{ hostname: "hv1", dsId: 100 }, { hostname: "hv2", hid: 2, dsId: 100 }] }),
      );
      const out = await world.tm("mv", [`hv1:${vmDir()}`, `hv2:${vmDir()}`, VM, 100]);
      ok(out, "mv");
      assert.match(out.stderr, /Moving hv1:/);
      const again = await world.tm("mv", [`hv1:${vmDir()}`, `hv2:${vmDir()}`, VM, 100]);
      ok(again, "mv (second run)");
      assert.match(again.stderr, /already moved/);
      await assertKinds(world, "hv1", { [vmDir()]: "missing" });
      await assertPatterns(world, "hv2", `${vmDir()}/disk.0`, IMG0, "qcow2");
      await assertPatterns(world, "hv2", `${vmDir()}/disk.1.snap/0`, SNAP1, "raw");
      const disk = await fileKind(world, "hv2", `${vmDir()}/disk.1`);
      assert.ok(disk.allocated! >= disk.size!, "SPARSE=NO disk allocated again after the sparse transfer");
      assert.equal(
        await Deno.readTextFile(world.lab.path("hv2", "/var/lib/one/datastores/100/.monitor")),
        "onestor\n",
      );
      await assertKinds(world, "hv2", { "/var/lib/one/datastores/.monitor": "missing" });
      assert.deepEqual(
        (await listDir(world, "hv2", `${DS_LOC}/100`)).filter((n) => n.startsWith(".onestor")),
        [],
      );
    });

    await t.step("stop to the front-end (the front-end pulls) and resume on hv1", async () => {
      await twice("mv", [`hv2:${vmDir()}`, `${FE}:${vmDir()}`, VM, 100]);
      await assertKinds(world, "hv2", { [vmDir()]: "missing" });
      await assertPatterns(world, FE, `${vmDir()}/disk.0`, IMG0, "qcow2");
      await twice("mv", [`${FE}:${vmDir()}`, `hv1:${vmDir()}`, VM, 100]);
      await assertKinds(world, FE, { [vmDir()]: "missing" });
      await assertPatterns(world, "hv1", `${vmDir()}/disk.0`, IMG0, "qcow2");
      await assertPatterns(world, "hv1", `${vmDir()}/disk.1`, IMG1, "raw");
    });

    await t.step(
      "mv between two system datastores of one host moves the folder (upstream #6379)",
      async () => {
        await twice("mv", [`hv1:${vmDir()}`, `hv1:${vmDir(101)}`, VM, 101]);
        await assertKinds(world, "hv1", { [vmDir()]: "missing", [`${vmDir(101)}/disk.0`]: "file" });
        await twice("mv", [`hv1:${vmDir(101)}`, `hv1:${vmDir()}`, VM, 100]);
        await assertPatterns(world, "hv1", `${vmDir()}/disk.0`, IMG0, "qcow2");
      },
    );

    await t.step("snap_create, snap_revert, snap_delete keep full copies in the disk's format", async () => {
      const d0 = `${vmDir()}/disk.0`;
      await twice("snap_create", [`hv1:${d0}`, 0, VM, 1]);
      await assertStandalone(world, "hv1", `${d0}.snap/0`, "qcow2", 32);
      await world.sh("hv1", `qemu-io -f qcow2 -c 'write -P 0x13 0 1M' ${d0} >/dev/null`, {
        user: "oneadmin",
      });
      await twice("snap_create", [`hv1:${d0}`, 1, VM, 1]);
      await twice("snap_revert", [`hv1:${d0}`, 0, VM, 1]);
      await assertPatterns(world, "hv1", d0, IMG0, "qcow2");
      await assertStandalone(world, "hv1", d0, "qcow2", 32);
      await assertPatterns(world, "hv1", `${d0}.snap/1`, [{ byte: 0x13, offset: 0, length: MiB }], "qcow2");
      await twice("snap_delete", [`hv1:${d0}`, 1, VM, 1]);
      assert.deepEqual(await listDir(world, "hv1", `${d0}.snap`), ["0"]);
      const r = await world.tm("snap_revert", [`hv1:${d0}`, 1, VM, 1]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Snapshot 1 of .* does not exist .* the disk was left unchanged/);
      await assertPatterns(world, "hv1", d0, IMG0, "qcow2");
    });

    await t.step("resize grows a disk once; in DISK_RESIZE the hypervisor does it", async () => {
      const d0 = `${vmDir()}/disk.0`;
      await twice("resize", [`hv1:${d0}`, 48, VM, 1]);
      await assertStandalone(world, "hv1", d0, "qcow2", 48);
      world.oned.addVm(vmFixture({ lcmState: 62 }));
      await twice("resize", [`hv1:${d0}`, 64, VM, 1]);
      await assertStandalone(world, "hv1", d0, "qcow2", 48);
      world.oned.addVm(vmFixture());
      const r = await world.tm("resize", [`hv1:${d0}`, 40, VM, 1]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /never shrunk/);
    });

    await t.step(
      "mvds flattens a recovery-layout disk and copies it with its snapshots to the image",
      async () => {
        const d1 = `${vmDir()}/disk.1`;
        await twice("snap_create", [`hv1:${d1}`, 1, VM, 1]);
        // Recovery layout (spec §5.2) with a write in the overlay.
        await world.sh(
          "hv1",
          `set -e; cd ${vmDir()}; mv disk.1 disk.1.snap/base; ln -s . disk.1.snap/disk.1.snap
cd disk.1.snap; qemu-img create -q -f qcow2 -b disk.1.snap/base -F raw base.1; cd ..
ln -s disk.1.snap/base.1 disk.1; qemu-io -f qcow2 -c 'write -P 0x24 5M 1M' disk.1 >/dev/null`,
          { user: "oneadmin" },
        );
        await twice("mvds", [`hv1:${d1}`, src1, VM, 1]);
        await assertStandalone(world, FE, src1, "raw", 8);
        await assertPatterns(world, FE, src1, [...IMG1, { byte: 0x24, offset: 5 * MiB, length: MiB }], "raw");
        assert.deepEqual(await listDir(world, FE, `${src1}.snap`), ["0", "1"]);
        await assertPatterns(world, FE, `${src1}.snap/0`, SNAP1, "raw");
        const image = await fileKind(world, FE, src1);
        assert.ok(image.allocated! >= image.size!, "SPARSE=NO image allocated again");
        assert.deepEqual(await listDir(world, "hv1", `${d1}.snap`), ["0", "1"]);
        // With its snapshots gone on the host, the image loses its .snap folder too.
        await twice("snap_delete", [`hv1:${d1}`, 0, VM, 1]);
        await twice("snap_delete", [`hv1:${d1}`, 1, VM, 1]);
        await world.sh("hv1", `rmdir ${d1}.snap`);
        await twice("mvds", [`hv1:${d1}`, src1, VM, 1]);
        await assertKinds(world, FE, { [`${src1}.snap`]: "missing", [src1]: "file" });
      },
    );

    await t.step(
      "context builds the ISO on the front-end (files, renames, URL) and sends it as disk.3",
      async () => {
        const server = Deno.serve(
          { hostname: "127.0.0.1", port: 0, onListen() {} },
          () => new Response("from-url\n"),
        );
        try {
          await world.writeFile(FE, `/var/lib/one/vms/${VM}/context.sh`, "HOSTNAME='vm7'\n");
          await world.writeFile(FE, "/var/lib/one/datastores/2/abc", "#!/bin/sh\n");
          const args = [
            `/var/lib/one/vms/${VM}/context.sh`,
            "/var/lib/one/datastores/2/abc:'init.sh'",
            `http://127.0.0.1:${server.addr.port}/x/key.pub`,
            `hv1:${vmDir()}/disk.3`,
            VM,
            100,
          ];
          await twice("context", args);
          const iso = world.lab.path("hv1", `/var/lib/one/datastores/100/${VM}/disk.3`);
          const out = await new Deno.Command("xorriso", {
            args: ["-indev", iso, "-pvd_info", "-find", "/", "-type", "f"],
            stdout: "piped",
            stderr: "piped",
          }).output();
          const list = new TextDecoder().decode(out.stdout);
          assert.match(list, /Volume Id\s*:\s*CONTEXT/);
          for (const f of ["/context.sh", "/init.sh", "/key.pub"]) {
            assert.ok(list.includes(`'${f}'`), list);
          }
          assert.deepEqual((await listDir(world, "hv1", vmDir())).filter((n) => n.startsWith(".")), []);
        } finally {
          await server.shutdown();
        }
      },
    );

    await t.step("mkimage and mkswap make volatile disks with the disk's FS and format", async () => {
      const blkid = (p: string) => world.sh("hv2", `blkid -p -o export ${vmDir(100, 8)}/${p}`);
      world.oned.addVm(vmFixture({ id: 8 }));
      await twice("mkimage", [4, "raw", `hv2:${vmDir(100, 8)}/disk.2`, 8, 100]);
      assert.match(await blkid("disk.2"), /^TYPE=ext4$/m);
      await assertStandalone(world, "hv2", `${vmDir(100, 8)}/disk.2`, "raw", 4);
      await twice("mkswap", [2, `hv2:${vmDir(100, 8)}/disk.4`, 8, 100]);
      assert.match(await blkid("disk.4"), /^TYPE=swap$/m);
      assert.match(await blkid("disk.4"), /^LABEL=swap$/m);
      await twice("mkimage", [4, "qcow2", `hv2:${vmDir(100, 8)}/disk.5`, 8, 100], {
        QCOW2_OPTIONS: "-o compat=0.10",
      });
      const d5 = await assertStandalone(world, "hv2", `${vmDir(100, 8)}/disk.5`, "qcow2", 4);
      assert.equal(d5.compat, "0.10");
      assert.ok(d5.actualSize >= 4 * MiB, `SPARSE=NO qcow2 preallocated (${d5.actualSize})`);
      const r = await world.tm("mkimage", [4, "raw", `hv2:${vmDir(100, 8)}/disk.6`, 8, 100]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Unsupported file system type: ntfs\. Supported types are: /);
      await assertKinds(world, "hv2", { [`${vmDir(100, 8)}/disk.6`]: "missing" });
      assert.deepEqual((await listDir(world, "hv2", vmDir(100, 8))).filter((n) => n.startsWith(".")), []);
      await twice("delete", [`hv2:${vmDir(100, 8)}`, 8, 100]);
    });

    await t.step(
      "clone in replica mode goes through the replica's cache, then grows like a direct copy",
      async () => {
        world.oned.addDatastore(datastoreXml({ id: 102, template: { REPLICA_HOST: "replica" } }));
        world.oned.addVm(vmFixture({ id: 9, history: [{ hostname: "hv2", hid: 2, dsId: 102 }] }));
        const d0 = `${vmDir(102, 9)}/disk.0`;
        const r = await world.tm("clone", [`${FE}:${src0}`, `hv2:${d0}`, 9, 1]);
        ok(r, "clone via replica");
        assert.match(r.stderr, /via replica replica/);
        ok(await world.tm("clone", [`${FE}:${src0}`, `hv2:${d0}`, 9, 1]), "clone via replica (again)");
        await assertStandalone(world, "hv2", d0, "qcow2", 32);
        await assertPatterns(world, "hv2", d0, IMG0, "qcow2");
        assert.equal(
          await Deno.readTextFile(world.lab.path("hv2", "/var/lib/one/datastores/102/.monitor")),
          "onestor\n",
        );
        assert.ok(
          (await listDir(world, "replica", `${DS_LOC}/1`)).includes(src0.split("/").pop()!),
          "the image is cached on the replica",
        );
        // Upstream's names: clone.replica with the replica as 5th argument, or read from the datastore.
        world.oned.addVm(vmFixture({ id: 9, history: [{ hostname: "hv2", hid: 2, dsId: 101 }] }));
        const d1 = `${vmDir(101, 9)}/disk.1`;
        const named = await world.tm("ln.replica", [`${FE}:${src1}`, `hv2:${d1}`, 9, 1, "replica"]);
        ok(named, "ln.replica");
        assert.match(named.stderr, /via replica replica/);
        await assertPatterns(world, "hv2", d1, IMG1, "raw");
        const missing = await world.tm("clone.replica", [
          `${FE}:${src0}`,
          `hv2:${vmDir(101, 9)}/disk.0`,
          9,
          1,
        ]);
        assert.notEqual(missing.code, 0);
        assert.match(missing.stderr, /No REPLICA_HOST in datastore 101 template/);
        await twice("delete", [`hv2:${vmDir(102, 9)}`, 9, 102]);
        await twice("delete", [`hv2:${vmDir(101, 9)}`, 9, 101]);
      },
    );

    await t.step("delete removes a disk with its snapshots, then the VM folder; twice is fine", async () => {
      await twice("delete", [`hv1:${vmDir()}/disk.1`, VM, 1]);
      await assertKinds(world, "hv1", {
        [`${vmDir()}/disk.1`]: "missing",
        [`${vmDir()}/disk.1.snap`]: "missing",
      });
      await assertKinds(world, "hv1", { [`${vmDir()}/disk.0`]: "file" });
      await twice("delete", [`hv1:${vmDir()}`, VM, 100]);
      await assertKinds(world, "hv1", { [vmDir()]: "missing", "/var/lib/one/datastores/100": "dir" });
    });

    await t.step("delete on an unreachable host fails naming the host", async () => {
      await world.lab.stopSshd("hv2");
      try {
        const r = await world.tm("delete", [`hv2:${vmDir()}`, VM, 100]);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /hv2/);
        assert.match(r.stderr.trim().split("\n").pop()!, /Cannot reach host hv2/);
      } finally {
        await world.lab.startSshd("hv2");
      }
    });

    await t.step(
      "delete keeps the replica's recovery data for recover --recreate, removes it otherwise",
      async () => {
        world.oned.addDatastore(datastoreXml({ id: 100, template: { REPLICA_HOST: "replica" } }));
        const snaps = `/var/lib/one/datastores/replica_snaps/${VM}`;
        await world.sh(
          "replica",
          `mkdir -p ${snaps}/disk.0.snap ${snaps}/disk.2.snap && touch ${snaps}/disk.0.snap/base`,
          {
            user: "oneadmin",
          },
        );
        await world.sh("hv1", `mkdir -p ${vmDir()} && touch ${vmDir()}/disk.2`, { user: "oneadmin" });
        world.oned.addVm(vmFixture({ history: [{ hostname: "hv1", dsId: 100, action: 14 }] }));
        await twice("delete", [`hv1:${vmDir()}`, VM, 100]);
        await assertKinds(world, "replica", { [`${snaps}/disk.0.snap/base`]: "file" });
        world.oned.addVm(vmFixture({ history: [{ hostname: "hv1", dsId: 100, action: 27 }] }));
        await twice("delete", [`hv1:${vmDir()}/disk.2`, VM, 100]);
        await assertKinds(world, "replica", {
          [`${snaps}/disk.2.snap`]: "missing",
          [`${snaps}/disk.0.snap/base`]: "file",
        });
        await world.lab.stopSshd("replica");
        try {
          await world.sh("hv1", `mkdir -p ${vmDir()}`, { user: "oneadmin" });
          const r = await world.tm("delete", [`hv1:${vmDir()}`, VM, 100]);
          ok(r, "delete with the replica down");
          assert.match(r.stderr, /WARN: delete: Recovery data .* left on replica replica/);
          await assertKinds(world, "hv1", { [vmDir()]: "missing" });
        } finally {
          await world.lab.startSshd("replica");
        }
        await twice("delete", [`hv1:${vmDir()}`, VM, 100]);
        await assertKinds(world, "replica", { [snaps]: "missing" });
      },
    );
  },
);
