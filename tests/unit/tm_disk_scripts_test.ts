import assert from "node:assert/strict";
import {
  amendScript,
  checkFormat,
  checkSnapshotId,
  flattenScript,
  growScript,
  preallocateScript,
  snapshotCreateScript,
  snapshotDeleteScript,
  snapshotRevertScript,
} from "../../core/image/disk_scripts.ts";
import type { ShellScript } from "../../core/remote/shell.ts";

// These run the scripts for real, on files in a temporary folder (qemu-img and qemu-io from
// qemu-utils, which every hypervisor has).
const QEMU = (() => {
  try {
    return new Deno.Command("qemu-img", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();
const MiB = 1 << 20;
const PLAIN = { qcow2Options: [] as string[], sparse: true };

function test(name: string, fn: (dir: string) => Promise<void>) {
  Deno.test({
    name,
    ignore: !QEMU,
    async fn() {
      // A folder name with a space and a quote: every path in the scripts must be quoted.
      const base = await Deno.makeTempDir();
      const dir = `${base}/vm 7's`;
      await Deno.mkdir(dir);
      try {
        await fn(dir);
      } finally {
        await Deno.remove(base, { recursive: true });
      }
    },
  });
}

async function run(argv: string[], cwd?: string): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(argv[0], { args: argv.slice(1), cwd, stdout: "piped", stderr: "piped" })
    .output();
  return { code: r.code, out: new TextDecoder().decode(r.stdout), err: new TextDecoder().decode(r.stderr) };
}

async function sh(script: ShellScript): Promise<{ code: number; out: string; err: string }> {
  return await run(["sh", "-c", script.text]);
}

async function must(argv: string[], cwd?: string): Promise<string> {
  const r = await run(argv, cwd);
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${r.err}`);
  return r.out;
}

async function create(path: string, format: string, sizeMb: number, writes: [number, number][] = []) {
  await must(["qemu-img", "create", "-q", "-f", format, path, `${sizeMb}M`]);
  for (const [byte, off] of writes) {
    await must(["qemu-io", "-f", format, "-c", `write -P ${byte} ${off} ${MiB}`, path]);
  }
}

async function holds(path: string, format: string, byte: number, off: number): Promise<boolean> {
  const r = await run(["qemu-io", "-r", "-f", format, "-c", `read -P ${byte} ${off} ${MiB}`, path]);
  return r.code === 0 && !/verification failed/.test(r.out);
}

async function info(path: string): Promise<Record<string, any>[]> {
  return JSON.parse(await must(["qemu-img", "info", "--backing-chain", "--output=json", path]));
}

/** A recovery-layout disk: disk.0 -> disk.0.snap/base.1 (overlay) over disk.0.snap/base (raw). */
async function recoveryLayout(dir: string): Promise<string> {
  const disk = `${dir}/disk.0`;
  await Deno.mkdir(`${disk}.snap`);
  await create(`${disk}.snap/base`, "raw", 8, [[0xa1, 0]]);
  await Deno.symlink(".", `${disk}.snap/disk.0.snap`);
  await must(
    ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "disk.0.snap/base", "-F", "raw", "base.1"],
    `${disk}.snap`,
  );
  await Deno.symlink("disk.0.snap/base.1", disk);
  await must(["qemu-io", "-f", "qcow2", "-c", `write -P ${0xb1} ${2 * MiB} ${MiB}`, disk]);
  return disk;
}

Deno.test("checkFormat() and checkSnapshotId() accept plain words and integers only", () => {
  assert.equal(checkFormat(" QCOW2 "), "qcow2");
  assert.equal(checkFormat(""), "");
  assert.throws(
    () => checkFormat("raw;rm -rf /"),
    /FORMAT must be one of raw, qcow2, .* \(got "raw;rm -rf \/"\)/,
  );
  assert.equal(checkSnapshotId("12"), 12);
  assert.throws(() => checkSnapshotId("../base"), /Snapshot id must be a whole number from 0 to 2147483647/);
});

test("snapshotCreateScript() makes a standalone copy in the disk's format, twice converges", async (dir) => {
  const disk = `${dir}/disk.0`;
  await create(disk, "qcow2", 8, [[0x11, 0]]);
  for (let i = 0; i < 2; i++) {
    const r = await sh(
      snapshotCreateScript({ disk, snapId: 3, format: "qcow2" }, {
        qcow2Options: ["-o", "compat=0.10"],
        sparse: true,
      }),
    );
    assert.equal(r.code, 0, r.err);
  }
  const chain = await info(`${disk}.snap/3`);
  assert.equal(chain.length, 1);
  assert.equal(chain[0].format, "qcow2");
  assert.equal(chain[0]["format-specific"].data.compat, "0.10", "QCOW2_OPTIONS applied to the snapshot");
  assert.ok(await holds(`${disk}.snap/3`, "qcow2", 0x11, 0));
  assert.deepEqual([...Deno.readDirSync(`${disk}.snap`)].map((e) => e.name), ["3"]);
});

test("snapshotCreateScript() of a recovery-layout disk holds the whole disk, not only the overlay", async (dir) => {
  const disk = await recoveryLayout(dir);
  const r = await sh(snapshotCreateScript({ disk, snapId: 0, format: "raw" }, PLAIN));
  assert.equal(r.code, 0, r.err);
  const chain = await info(`${disk}.snap/0`);
  assert.equal(chain.length, 1);
  assert.equal(chain[0].format, "raw");
  assert.ok(await holds(`${disk}.snap/0`, "raw", 0xa1, 0), "data of the base");
  assert.ok(await holds(`${disk}.snap/0`, "raw", 0xb1, 2 * MiB), "data of the overlay");
});

test("snapshotCreateScript() with SPARSE=NO writes a fully allocated snapshot", async (dir) => {
  const disk = `${dir}/disk.1`;
  await create(disk, "raw", 8, [[0x11, 0]]);
  const r = await sh(
    snapshotCreateScript({ disk, snapId: 0, format: "raw" }, { qcow2Options: [], sparse: false }),
  );
  assert.equal(r.code, 0, r.err);
  const st = await Deno.stat(`${disk}.snap/0`);
  assert.ok(st.blocks! * 512 >= st.size, `allocated ${st.blocks! * 512} of ${st.size}`);
});

test("snapshotRevertScript() refuses a missing snapshot and leaves the disk as it was", async (dir) => {
  const disk = `${dir}/disk.0`;
  await create(disk, "raw", 4, [[0x33, 0]]);
  const r = await sh(snapshotRevertScript({ disk, snapId: 5, format: "raw" }, PLAIN));
  assert.notEqual(r.code, 0);
  assert.match(r.err, /Snapshot 5 of .* does not exist .*; the disk was left unchanged/);
  assert.ok(await holds(disk, "raw", 0x33, 0));
});

test("snapshotRevertScript() makes the disk a copy of the snapshot, twice converges", async (dir) => {
  const disk = `${dir}/disk.0`;
  await create(disk, "qcow2", 8, [[0x11, 0]]);
  assert.equal((await sh(snapshotCreateScript({ disk, snapId: 0, format: "qcow2" }, PLAIN))).code, 0);
  await must(["qemu-io", "-f", "qcow2", "-c", `write -P ${0x22} 0 ${MiB}`, disk]);
  for (let i = 0; i < 2; i++) {
    const r = await sh(snapshotRevertScript({ disk, snapId: 0, format: "qcow2" }, PLAIN));
    assert.equal(r.code, 0, r.err);
  }
  assert.ok(await holds(disk, "qcow2", 0x11, 0));
  assert.ok(await holds(`${disk}.snap/0`, "qcow2", 0x11, 0), "the snapshot stays");
  assert.equal((await info(disk)).length, 1);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["disk.0", "disk.0.snap"]);
});

test("snapshotRevertScript() of a recovery-layout disk rebuilds base and a fresh overlay (§11.9)", async (dir) => {
  const disk = await recoveryLayout(dir);
  assert.equal((await sh(snapshotCreateScript({ disk, snapId: 0, format: "raw" }, PLAIN))).code, 0);
  await must(["qemu-io", "-f", "qcow2", "-c", `write -P ${0xc1} 0 ${MiB}`, disk]);
  const r = await sh(
    snapshotRevertScript({ disk, snapId: 0, format: "raw" }, {
      qcow2Options: ["-o", "compat=0.10"],
      sparse: true,
    }),
  );
  assert.equal(r.code, 0, r.err);
  assert.equal(await Deno.readLink(disk), "disk.0.snap/base.1");
  const chain = await info(disk);
  assert.deepEqual(chain.map((c) => c.format), ["qcow2", "raw"]);
  assert.equal(chain[0]["backing-filename"], "disk.0.snap/base");
  assert.equal(chain[0]["format-specific"].data.compat, "0.10");
  assert.ok(await holds(disk, "qcow2", 0xa1, 0), "content of the snapshot");
  assert.ok(await holds(disk, "qcow2", 0xb1, 2 * MiB), "content of the snapshot");
  assert.ok(await holds(`${disk}.snap/0`, "raw", 0xa1, 0), "the snapshot stays");
});

test("snapshotDeleteScript() removes one snapshot; an absent one is fine", async (dir) => {
  const disk = `${dir}/disk.0`;
  await Deno.mkdir(`${disk}.snap`);
  await Deno.writeTextFile(`${disk}.snap/1`, "x");
  await Deno.writeTextFile(`${disk}.snap/10`, "y");
  for (let i = 0; i < 2; i++) {
    assert.equal((await sh(snapshotDeleteScript({ disk, snapId: 1, format: "" }))).code, 0);
  }
  assert.deepEqual([...Deno.readDirSync(`${disk}.snap`)].map((e) => e.name), ["10"]);
});

test("growScript() grows once, keeps an equal size, refuses to shrink when asked to", async (dir) => {
  const disk = `${dir}/disk.0`;
  await create(disk, "qcow2", 8, [[0x11, 0]]);
  const grow = (sizeMb: number, whenLarger: "keep" | "fail") =>
    sh(growScript({ disk, format: "qcow2", sizeMb, preallocate: false, whenLarger }));
  assert.equal((await grow(16, "fail")).code, 0);
  assert.equal((await grow(16, "fail")).code, 0);
  assert.equal((await info(disk))[0]["virtual-size"], 16 * MiB);
  assert.equal((await grow(4, "keep")).code, 0);
  const r = await grow(4, "fail");
  assert.notEqual(r.code, 0);
  assert.match(r.err, /larger than 4 MiB already; disks are never shrunk/);
  assert.ok(await holds(disk, "qcow2", 0x11, 0));
});

test("growScript() with preallocation allocates the new space of a raw disk", async (dir) => {
  const disk = `${dir}/disk.2`;
  await create(disk, "raw", 2);
  const r = await sh(growScript({ disk, format: "raw", sizeMb: 6, preallocate: true, whenLarger: "keep" }));
  assert.equal(r.code, 0, r.err);
  const st = await Deno.stat(disk);
  assert.equal(st.size, 6 * MiB);
  assert.ok(st.blocks! * 512 >= 4 * MiB, `new space allocated (${st.blocks! * 512})`);
});

test("growScript() never probes a raw disk: a qcow2 header written by a guest stays data", async (dir) => {
  const disk = `${dir}/disk.0`;
  const evil = `${dir}/evil.qcow2`;
  await create(evil, "qcow2", 64);
  await Deno.copyFile(evil, disk); // a raw disk whose first bytes are a qcow2 header
  await Deno.truncate(disk, 8 * MiB);
  const r = await sh(growScript({ disk, format: "raw", sizeMb: 16, preallocate: false, whenLarger: "fail" }));
  assert.equal(r.code, 0, r.err);
  assert.equal((await Deno.stat(disk)).size, 16 * MiB, "resized as raw");
});

test("flattenScript() turns a recovery-layout disk into a standalone file of its format, keeps snapshots", async (dir) => {
  const disk = await recoveryLayout(dir);
  await Deno.writeTextFile(`${disk}.snap/4`, "snapshot");
  for (let i = 0; i < 2; i++) {
    const r = await sh(flattenScript(disk, "raw", PLAIN));
    assert.equal(r.code, 0, r.err);
  }
  assert.equal((await Deno.lstat(disk)).isFile, true);
  const chain = await info(disk);
  assert.deepEqual(chain.map((c) => c.format), ["raw"]);
  assert.ok(await holds(disk, "raw", 0xa1, 0));
  assert.ok(await holds(disk, "raw", 0xb1, 2 * MiB));
  assert.deepEqual([...Deno.readDirSync(`${disk}.snap`)].map((e) => e.name), ["4"]);
});

test("flattenScript() drops an emptied recovery snap folder and flattens a qcow2 with a backing file", async (dir) => {
  const disk = await recoveryLayout(dir);
  assert.equal((await sh(flattenScript(disk, "qcow2", PLAIN))).code, 0);
  assert.equal((await info(disk))[0].format, "qcow2");
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["disk.0"]);
  const top = `${dir}/disk.1`;
  await create(`${dir}/base`, "qcow2", 4, [[0x44, 0]]);
  await must(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base", "-F", "qcow2", "disk.1"], dir);
  assert.equal((await sh(flattenScript(top, "qcow2", PLAIN))).code, 0);
  const chain = await info(top);
  assert.equal(chain.length, 1);
  assert.ok(await holds(top, "qcow2", 0x44, 0));
  // A standalone raw disk is left alone.
  await create(`${dir}/disk.2`, "raw", 1);
  const before = (await Deno.stat(`${dir}/disk.2`)).mtime;
  assert.equal((await sh(flattenScript(`${dir}/disk.2`, "raw", PLAIN))).code, 0);
  assert.deepEqual((await Deno.stat(`${dir}/disk.2`)).mtime, before);
});

test("amendScript() applies QCOW2_OPTIONS in place and reports what qemu-img cannot change", async (dir) => {
  const disk = `${dir}/disk.0`;
  await create(disk, "qcow2", 4, [[0x11, 0]]);
  const ok = await sh(amendScript(disk, "qcow2", ["-o", "compat=0.10"]));
  assert.equal(ok.code, 0, ok.err);
  assert.equal(ok.out, "");
  assert.equal((await info(disk))[0]["format-specific"].data.compat, "0.10");
  const bad = await sh(amendScript(disk, "qcow2", ["-o", "cluster_size=4096"]));
  assert.equal(bad.code, 0);
  assert.match(bad.out, /^ONESTOR_AMEND_FAILED: /);
  assert.ok(await holds(disk, "qcow2", 0x11, 0));
  await create(`${dir}/disk.1`, "raw", 1);
  assert.equal((await sh(amendScript(`${dir}/disk.1`, "raw", ["-o", "compat=0.10"]))).out, "");
});

test("preallocateScript() allocates the holes of files and skips links and absent paths", async (dir) => {
  await create(`${dir}/disk.0`, "raw", 4, [[0x11, 0]]);
  await Deno.symlink("disk.0", `${dir}/disk.9`);
  const r = await sh(preallocateScript([`${dir}/disk.0`, `${dir}/disk.9`, `${dir}/absent`]));
  assert.equal(r.code, 0, r.err);
  const st = await Deno.stat(`${dir}/disk.0`);
  assert.ok(st.blocks! * 512 >= st.size);
  assert.ok(await holds(`${dir}/disk.0`, "raw", 0x11, 0));
});
