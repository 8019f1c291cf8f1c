/**
 * The replica-side scripts of the cache, run for real on this machine: a fake `ssh` program runs
 * the remote command locally, so transactions, leases, pins and eviction are exercised with the
 * same shell text and flock the replica runs.
 */
import assert from "node:assert/strict";
import { fakeSshRunner } from "../support/fake_ssh.ts";
import { encodeRecord, entryName, leaseName, parseEntry, parseLease } from "../../core/cache/entry.ts";
import { makeRoom } from "../../core/cache/eviction.ts";
import {
  acquireLease,
  pinEntry,
  releaseLease,
  renewLease,
  unpinEntry,
  updateEntry,
} from "../../core/cache/lease.ts";
import { scratchConfinement } from "../../core/remote/confine.ts";
import { cacheFolders, parseStatLines, ReplicaFolder } from "../../core/cache/store.ts";

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

function entryText(image: string, lastUse = 100, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    version: 1,
    source: {
      path: `/x/${image}`,
      size: MIB,
      mtime_ms: 1,
      algorithm: "b2sum",
      checksum: "c",
      sums: { [image]: "s" },
    },
    files: [{ name: image, type: "f", size: MIB, mtime: 1, allocated: MIB }],
    size: MIB,
    allocated: MIB,
    created_at: 1,
    filled_by: "fe:1:a",
    last_use: lastUse,
    pins: [],
    ...extra,
  });
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
  const state = await s.folder.image(IMAGE);
  assert.equal(state.entryText, "E");
  assert.equal(state.leaseText, null);
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

Deno.test("acquireLease(): of ten processes racing for a free lease exactly one wins", async () => {
  await using s = await scratch();
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    acquireLease(s.folder, IMAGE, null, {
      owner: `fe:${i}:t`,
      source: `/x/${IMAGE}`,
      fill: `.onestor-fill-${IMAGE}-${i}`,
      reserve: MIB,
      leaseSeconds: 30,
    })));
  const winners = results.filter((r) => r !== null);
  assert.equal(winners.length, 1);
  const onDisk = parseLease(await Deno.readTextFile(`${s.dir}/${leaseName(IMAGE)}`));
  assert.equal(onDisk?.owner, winners[0]!.lease.owner);
});

Deno.test("acquireLease() refuses a live lease, takes an expired one over once, and the old holder notices", async () => {
  await using s = await scratch();
  const holder = { source: `/x/${IMAGE}`, reserve: 0, leaseSeconds: 30 };
  const first = await acquireLease(s.folder, IMAGE, null, {
    ...holder,
    owner: "fe:1:a",
    fill: ".onestor-fill-a",
  });
  assert.ok(first);
  await Deno.mkdir(`${s.dir}/.onestor-fill-a`);
  const live = await s.folder.image(IMAGE);
  assert.equal(
    await acquireLease(s.folder, IMAGE, live.leaseText, {
      ...holder,
      owner: "fe:2:b",
      fill: ".onestor-fill-b",
    }),
    null,
  );
  // The holder stops renewing: its lease expires (written back as already expired).
  const expired = encodeRecord({ ...first.lease, expires_at: live.now - 1 });
  await Deno.writeTextFile(`${s.dir}/${leaseName(IMAGE)}`, expired);
  const takers = await Promise.all(
    ["c", "d", "e"].map((t) =>
      acquireLease(s.folder, IMAGE, expired, { ...holder, owner: `fe:3:${t}`, fill: `.onestor-fill-${t}` })
    ),
  );
  assert.equal(takers.filter((t) => t !== null).length, 1);
  // The dead holder's fill folder went with its lease; its late renewal finds the lease lost.
  await assert.rejects(Deno.stat(`${s.dir}/.onestor-fill-a`));
  first.text = expired;
  await renewLease(s.folder, first, 30);
  assert.equal(first.lost, true);
  const winner = takers.find((t) => t !== null)!;
  await renewLease(s.folder, winner, 60);
  assert.equal(winner.lost, false);
  assert.ok(winner.lease.expires_at >= live.now + 59);
  await releaseLease(s.folder, winner);
  await assert.rejects(Deno.stat(`${s.dir}/${leaseName(IMAGE)}`));
  assert.match(await Deno.readTextFile(`${s.dir}/.onestor-cache.log`), /lease-takeover/);
});

Deno.test("updateEntry(): twelve concurrent pin changes are all kept (no lost update)", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/${entryName(IMAGE)}`, entryText(IMAGE));
  await Promise.all(Array.from({ length: 12 }, (_, i) =>
    updateEntry(s.folder, IMAGE, (entry, now) => {
      entry.pins.push({ owner: `p${i}`, vm: i, disk: 0, host: "hv1", expires_at: now + 30 });
      return entry;
    }, 200)));
  const entry = parseEntry(await Deno.readTextFile(`${s.dir}/${entryName(IMAGE)}`))!;
  assert.deepEqual(
    entry.pins.map((p) => p.owner).sort(),
    Array.from({ length: 12 }, (_, i) => `p${i}`).sort(),
  );
});

Deno.test("pinEntry() pins only the entry that was validated; unpinEntry() removes the pin", async () => {
  await using s = await scratch();
  const text = entryText(IMAGE);
  await Deno.writeTextFile(`${s.dir}/${entryName(IMAGE)}`, text);
  await s.folder.image(IMAGE);
  assert.equal(
    await pinEntry(s.folder, IMAGE, entryText(IMAGE, 5), { owner: "me", vm: 1, disk: 0, host: "hv1" }, 30),
    null,
  );
  const pinned = await pinEntry(s.folder, IMAGE, text, { owner: "me", vm: 1, disk: 0, host: "hv1" }, 30);
  assert.ok(pinned);
  const entry = parseEntry(pinned)!;
  assert.equal(entry.pins.length, 1);
  assert.ok(entry.last_use > 100);
  await unpinEntry(s.folder, IMAGE, "me");
  assert.deepEqual(parseEntry(await Deno.readTextFile(`${s.dir}/${entryName(IMAGE)}`))!.pins, []);
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
    const pins = pinned ? [{ owner: "busy", vm: 9, disk: 0, host: "hv1", expires_at: now + 600 }] : [];
    await Deno.writeTextFile(`${dir}/${entryName(image)}`, entryText(image, lastUse, { pins }));
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
