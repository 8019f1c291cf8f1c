/**
 * The replica-side scripts of the cache, run for real on this machine: a fake `ssh` program runs
 * the remote command locally, so transactions, leases, pins and eviction are exercised with the
 * same shell text and flock the replica runs.
 */
import assert from "node:assert/strict";
import { fakeSshRunner } from "../support/fake_ssh.ts";
import {
  type CacheEntry,
  encodePin,
  encodeRecord,
  entryName,
  leaseName,
  parseLease,
  pinName,
} from "../../core/cache/entry.ts";
import { makeRoom } from "../../core/cache/eviction.ts";
import { statImage } from "../../core/cache/identity.ts";
import { serve } from "../../core/cache/serve.ts";
import { cacheFolders, parseStatLines, ReplicaFolder } from "../../core/cache/store.ts";
import { scratchConfinement } from "../../core/remote/confine.ts";

const MIB = 1048576;
const IMAGE = "0123456789abcdef0123456789abcdef";

/** A scratch folder, a fake ssh that runs commands here, and a runner using it. */
async function scratch() {
  const root = await Deno.makeTempDir({ prefix: "onestor_cache_store_" });
  const { runner } = await fakeSshRunner(root);
  const dir = `${root}/datastores/1`;
  await Deno.mkdir(dir, { recursive: true });
  return {
    root,
    dir,
    runner,
    folder: new ReplicaFolder(runner, "replica-test", dir, 30_000, scratchConfinement(root)),
    async [Symbol.asyncDispose]() {
      await Deno.remove(root, { recursive: true });
    },
  };
}

function entryText(image: string): string {
  const entry: CacheEntry = {
    version: 2,
    source: {
      path: `/x/${image}`,
      size: MIB,
      mtime_ms: 1,
      algorithm: "xxh128",
      checksum: "c",
      sums: { [image]: "s" },
    },
    files: [{ name: image, type: "f", size: MIB, mtime: 1, allocated: MIB }],
    size: MIB,
    allocated: MIB,
    created_at: 1,
    filled_by: "fe:1:a",
    files_fp: "f",
    last_use: 1,
    pins: [],
  };
  return encodeRecord(entry);
}

/** A pin file for `owner` on `image`, expiring at `expiresAt`. */
async function pin(dir: string, image: string, owner: string, expiresAt: number): Promise<void> {
  await Deno.writeTextFile(
    `${dir}/${pinName(image, owner)}`,
    encodePin({ owner, vm: 9, disk: 0, host: "hv1", expires_at: expiresAt }),
  );
}

/** Sets a file's mtime (a record's mtime is its entry's last use). */
async function touch(path: string, epoch: number): Promise<void> {
  await Deno.utime(path, epoch, epoch);
}

Deno.test("transact() applies its operations only when every expected record still matches", async () => {
  await using s = await scratch();
  const f = s.folder;
  const name = entryName(IMAGE);
  assert.equal(
    await f.transact({ expect: { [name]: null }, ops: [{ op: "write", name, text: "one" }] }),
    "committed",
  );
  assert.equal(await Deno.readTextFile(`${s.dir}/${name}`), "one");
  // Expecting absence of an existing record, or the wrong text: nothing happens.
  assert.equal(
    await f.transact({ expect: { [name]: null }, ops: [{ op: "write", name, text: "two" }] }),
    "conflict",
  );
  assert.equal(await f.transact({ expect: { [name]: "uno" }, ops: [{ op: "remove", name }] }), "conflict");
  assert.equal(await Deno.readTextFile(`${s.dir}/${name}`), "one");
  // Text with quotes, newlines and shell syntax is stored and compared exactly.
  const hostile = `it's "$(reboot)" \`x\`\n\ttrailing\n`;
  assert.equal(
    await f.transact({ expect: { [name]: "one" }, ops: [{ op: "write", name, text: hostile }] }),
    "committed",
  );
  assert.equal(await Deno.readTextFile(`${s.dir}/${name}`), hostile);
  assert.equal(await f.transact({ expect: { [name]: hostile }, ops: [{ op: "remove", name }] }), "committed");
  await assert.rejects(Deno.stat(`${s.dir}/${name}`));
});

Deno.test("transact() moves a file over a file and a folder over a folder, and logs events", async () => {
  await using s = await scratch();
  await Deno.mkdir(`${s.dir}/fill/${IMAGE}.snap`, { recursive: true });
  await Deno.writeTextFile(`${s.dir}/fill/${IMAGE}`, "new");
  await Deno.writeTextFile(`${s.dir}/fill/${IMAGE}.snap/0`, "snap");
  await Deno.writeTextFile(`${s.dir}/${IMAGE}`, "old");
  await Deno.mkdir(`${s.dir}/${IMAGE}.snap`);
  await Deno.writeTextFile(`${s.dir}/${IMAGE}.snap/9`, "stale");
  const result = await s.folder.transact({
    expect: {},
    ops: [
      { op: "move", from: `fill/${IMAGE}`, to: IMAGE },
      { op: "move", from: `fill/${IMAGE}.snap`, to: `${IMAGE}.snap` },
      { op: "move", from: "fill/absent", to: "whatever" },
      { op: "log", event: { event: "test", n: 1 } },
    ],
  });
  assert.equal(result, "committed");
  assert.equal(await Deno.readTextFile(`${s.dir}/${IMAGE}`), "new");
  assert.deepEqual([...Deno.readDirSync(`${s.dir}/${IMAGE}.snap`)].map((e) => e.name), ["0"]);
  assert.deepEqual(JSON.parse(await Deno.readTextFile(`${s.dir}/.onestor-cache.log`)), {
    event: "test",
    n: 1,
  });
  await assert.rejects(
    s.folder.transact({ expect: {}, ops: [{ op: "remove", name: "../escape" }] }),
    TypeError,
  );
});

Deno.test("transact() answers busy when the folder lock stays taken", async () => {
  await using s = await scratch();
  // flock(2) from this process conflicts with the script's flock on its own descriptor.
  using lock = await Deno.open(`${s.dir}/.onestor.lock`, { create: true, write: true });
  await lock.lock(true);
  const result = await s.folder.transact({ expect: {}, ops: [], lockWaitSeconds: 1 });
  await lock.unlock();
  assert.equal(result, "busy");
});

Deno.test("readImageState() returns the records, the replica clock and the files of one image", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/${entryName(IMAGE)}`, "E");
  await Deno.writeTextFile(`${s.dir}/${IMAGE}`, "x".repeat(1000));
  await Deno.mkdir(`${s.dir}/${IMAGE}.snap`);
  await Deno.writeTextFile(`${s.dir}/${IMAGE}.snap/3`, "yy");
  await touch(`${s.dir}/${entryName(IMAGE)}`, 1700000000);
  await pin(s.dir, IMAGE, "fe:1:a", 42);
  const state = await s.folder.image(IMAGE);
  assert.equal(state.entryText, "E");
  assert.equal(state.leaseText, null);
  assert.equal(state.entryMtime, 1700000000);
  assert.deepEqual(state.pins.map((p) => [p.owner, p.expires_at]), [["fe:1:a", 42]]);
  assert.ok(Math.abs(state.now - Date.now() / 1000) < 5);
  assert.deepEqual(state.files.map((f) => [f.name, f.type, f.size]), [
    [IMAGE, "f", 1000],
    [`${IMAGE}.snap`, "d", state.files[1].size],
    [`${IMAGE}.snap/3`, "f", 2],
  ]);
  const none = await new ReplicaFolder(
    s.runner,
    "replica-test",
    `${s.root}/missing`,
    0,
    scratchConfinement(s.root),
  ).image(IMAGE);
  assert.deepEqual([none.entryText, none.files], [null, []]);
});

Deno.test("parseStatLines() reads stat output and ignores what it does not know", () => {
  const files = parseStatLines([
    "regular file|10|1700000000|8|512|a",
    "regular empty file|0|1700000000|0|512|b",
    "directory|4096|1700000000|8|512|a.snap",
    "symbolic link|1|1700000000|0|512|a.snap/a.snap",
    "fifo|0|1|0|512|p",
    "garbage",
  ]);
  assert.deepEqual(files.map((f) => [f.name, f.type, f.allocated]), [
    ["a", "f", 4096],
    ["a.snap", "d", 4096],
    ["a.snap/a.snap", "l", 0],
    ["b", "f", 0],
  ]);
});

Deno.test("serve(): of ten processes that miss at once exactly one takes the fill lease, the others wait", async () => {
  await using s = await scratch();
  const image = `${s.root}/fe/${IMAGE}`;
  await Deno.mkdir(`${s.root}/fe`);
  await Deno.writeTextFile(image, "image");
  const stat = await statImage(image);
  const runs = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    serve({
      folder: s.folder,
      stat,
      identity: null,
      owner: `fe:${i}:t`,
      pin: { owner: `fe:${i}:t`, vm: i, disk: 0, host: "hv1" },
      leaseSeconds: 30,
      waitSeconds: 0,
      verify: false,
      copy: null,
      invalidations: [],
      scan: null,
      timeoutMs: 30_000,
      takeLease: true,
    })));
  const misses = runs.filter((r) => r.outcome.kind === "miss" && r.outcome.acquired !== null);
  assert.equal(misses.length, 1);
  assert.equal(runs.filter((r) => r.outcome.kind === "wait").length, 9);
  const lease = parseLease(await Deno.readTextFile(`${s.dir}/${leaseName(IMAGE)}`));
  assert.equal(lease?.source, image);
  assert.ok(lease!.expires_at - lease!.acquired_at === 30);
  // The folder got its marker (spec §4.3).
  assert.equal(await Deno.readTextFile(`${s.dir}/.monitor`), "replica\n");
});

Deno.test("transact() with unpinned refuses an image with a live pin file and ignores expired ones", async () => {
  await using s = await scratch();
  const now = Math.floor(Date.now() / 1000);
  const remove = { expect: {}, unpinned: [IMAGE], ops: [{ op: "remove" as const, name: IMAGE }] };
  await Deno.writeTextFile(`${s.dir}/${IMAGE}`, "x");
  await pin(s.dir, IMAGE, "live", now + 60);
  await pin(s.dir, IMAGE, "dead", now - 60);
  assert.equal(await s.folder.transact(remove), "conflict");
  await Deno.remove(`${s.dir}/${pinName(IMAGE, "live")}`);
  assert.equal(
    await s.folder.transact({ ...remove, ops: [...remove.ops, { op: "removePins", image: IMAGE }] }),
    "committed",
  );
  await assert.rejects(Deno.stat(`${s.dir}/${IMAGE}`));
  await assert.rejects(Deno.stat(`${s.dir}/${pinName(IMAGE, "dead")}`));
});

Deno.test("makeRoom() evicts across the replica's cache folders, keeps pinned entries, and is all or nothing", async () => {
  await using s = await scratch();
  const other = `${s.root}/datastores/101`;
  await Deno.mkdir(other);
  for (const d of [s.dir, other]) await Deno.writeTextFile(`${d}/.monitor`, "replica\n");
  const hash = (n: number) => n.toString(16).padStart(32, "0");
  const now = Math.floor(Date.now() / 1000);
  const put = async (dir: string, image: string, lastUse: number, pinned = false) => {
    await new Deno.Command("dd", {
      args: ["if=/dev/urandom", `of=${dir}/${image}`, "bs=1M", "count=2", "status=none"],
    })
      .output();
    await Deno.writeTextFile(`${dir}/${entryName(image)}`, entryText(image));
    await touch(`${dir}/${entryName(image)}`, lastUse);
    if (pinned) await pin(dir, image, "busy", now + 600);
  };
  await put(s.dir, hash(1), now - 100, true);
  await put(other, hash(2), now - 50);
  await put(s.dir, hash(3), now - 10);
  assert.deepEqual(await cacheFolders(s.runner, "replica-test", `${s.root}/datastores`), [s.dir, other]);
  const state = await s.folder.folder();
  assert.ok(state.fs.total > 0 && state.fs.used > 0 && state.fs.used + state.fs.available <= state.fs.total);
  assert.deepEqual([...state.entries.keys()].sort(), [hash(1), hash(3)]);
  assert.deepEqual(state.items.map((i) => i.name).sort(), [hash(1), hash(3)]);
  assert.ok(state.items.every((i) => i.allocated >= 2 * MIB));
  const limits = { maxBytes: 7 * MIB, maxUsedPercent: 100 };
  // 6 MiB cached, 7 MiB allowed: 2 more MiB need one eviction, the oldest unpinned (hash 2, other folder).
  const room = await makeRoom(s.folder, 2 * MIB, limits, null);
  assert.ok(room.ok, room.reason);
  assert.deepEqual(room.evicted.map((e) => e.key), [hash(2)]);
  await assert.rejects(Deno.stat(`${other}/${hash(2)}`));
  await assert.rejects(Deno.stat(`${other}/${entryName(hash(2))}`));
  // 6 MiB more cannot fit without the pinned entry: nothing is evicted.
  const none = await makeRoom(s.folder, 6 * MIB, limits, null);
  assert.equal(none.ok, false);
  assert.deepEqual(none.evicted, []);
  await Deno.stat(`${s.dir}/${hash(3)}`);
  await Deno.stat(`${s.dir}/${hash(1)}`);
});
