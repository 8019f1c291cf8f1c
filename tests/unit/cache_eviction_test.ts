import assert from "node:assert/strict";
import { type CacheEntry, encodeRecord, type Lease } from "../../core/cache/entry.ts";
import { cacheUsage, planEviction, removalOps } from "../../core/cache/eviction.ts";
import type { FolderState } from "../../core/cache/store.ts";

const MIB = 1048576;
const DIR = "/var/lib/one/datastores/1";
const NOW = 1_700_000_000;
const hash = (n: number) => n.toString(16).padStart(32, "0");

function entryText(image: string): string {
  return encodeRecord({
    version: 2,
    source: {
      path: `${DIR}/${image}`,
      size: MIB,
      mtime_ms: 1,
      algorithm: "xxh128",
      checksum: "x",
      sums: { [image]: "y" },
    },
    files: [{ name: image, type: "f", size: MIB, mtime: 1, allocated: MIB }],
    size: MIB,
    allocated: MIB,
    created_at: 1,
    filled_by: "fe:1:a",
    files_fp: "f",
    last_use: 1,
    pins: [],
  });
}

function leaseText(image: string, expiresAt: number, reserve = 0): string {
  const lease: Lease = {
    version: 2,
    owner: `fe:9:${image.slice(-4)}`,
    frontend: "fe",
    pid: 9,
    source: `${DIR}/${image}`,
    fill: `.onestor-fill-${image}-fe-9`,
    reserve,
    acquired_at: NOW - 10,
    expires_at: expiresAt,
  };
  return encodeRecord(lease);
}

/** A folder holding entries of `sizes[i]` MiB used at `lastUse[i]`. */
function folder(
  items: { image: string; mib: number; lastUse?: number; pins?: CacheEntry["pins"]; entry?: boolean }[],
  extra: Partial<FolderState> = {},
): FolderState {
  const entries = new Map<string, string>();
  const entryMtimes = new Map<string, number>();
  const pins = new Map<string, CacheEntry["pins"]>();
  const state: FolderState = {
    dir: DIR,
    now: NOW,
    entries,
    entryMtimes,
    pins,
    leases: new Map(),
    items: [],
    files: [],
    fs: { total: 1000 * MIB, used: 100 * MIB, available: 900 * MIB },
    ...extra,
  };
  for (const i of items) {
    if (i.entry !== false) {
      // Last use is the record's mtime; pins are files beside it.
      entries.set(i.image, entryText(i.image));
      entryMtimes.set(i.image, i.lastUse ?? NOW - 100);
      if (i.pins) pins.set(i.image, i.pins);
    }
    state.items.push({ name: i.image, allocated: i.mib * MIB, mtime: NOW - 1000 });
  }
  return state;
}

const limits = (maxMb: number | null, perc = 90) => ({
  maxBytes: maxMb === null ? null : maxMb * MIB,
  maxUsedPercent: perc,
});

Deno.test("planEviction() evicts least recently used entries first, just enough to fit", () => {
  const state = folder([
    { image: hash(1), mib: 10, lastUse: NOW - 50 },
    { image: hash(2), mib: 10, lastUse: NOW - 500 },
    { image: hash(3), mib: 10, lastUse: NOW - 5 },
  ]);
  const usage = cacheUsage([state]);
  assert.equal(usage.cacheBytes, 30 * MIB);
  const plan = planEviction(state.fs, usage, 15 * MIB, limits(40));
  assert.ok(plan.fits);
  assert.deepEqual(plan.evict.map((c) => c.key), [hash(2)]);
  const plan2 = planEviction(state.fs, usage, 25 * MIB, limits(40));
  assert.deepEqual(plan2.evict.map((c) => c.key), [hash(2), hash(1)]);
  assert.deepEqual(planEviction(state.fs, usage, 5 * MIB, limits(40)).evict, []);
});

Deno.test("planEviction() never evicts pinned entries or entries being filled, and then gives up whole", () => {
  const state = folder([
    {
      image: hash(1),
      mib: 10,
      lastUse: NOW - 500,
      pins: [{ owner: "p", vm: 1, disk: 0, host: "hv1", expires_at: NOW + 30 }],
    },
    { image: hash(2), mib: 10, lastUse: NOW - 400 },
    { image: hash(3), mib: 10, lastUse: NOW - 300 },
  ]);
  state.leases.set(hash(3), leaseText(hash(3), NOW + 20));
  const usage = cacheUsage([state]);
  assert.deepEqual(usage.candidates.map((c) => c.key), [hash(2)]);
  assert.deepEqual(usage.protectedKeys.sort(), [hash(1), hash(3)]);
  // 10 MiB of room is enough with hash(2) evicted; 20 MiB is not, and then nothing is evicted.
  assert.deepEqual(planEviction(state.fs, usage, 10 * MIB, limits(30)).evict.map((c) => c.key), [hash(2)]);
  const no = planEviction(state.fs, usage, 20 * MIB, limits(30));
  assert.equal(no.fits, false);
  assert.deepEqual(no.evict, []);
  assert.match(no.reason, /REPLICA_MAX_SIZE_MB.*2 pinned or being filled/);
});

Deno.test("cacheUsage() counts expired pins as gone, and expired leases do not protect", () => {
  const state = folder([
    { image: hash(1), mib: 10, pins: [{ owner: "p", vm: 1, disk: 0, host: "hv1", expires_at: NOW - 1 }] },
  ]);
  state.leases.set(hash(1), leaseText(hash(1), NOW - 5));
  assert.deepEqual(cacheUsage([state]).candidates.map((c) => c.key), [hash(1)]);
});

Deno.test("cacheUsage() evicts leftovers before entries: dead fill folders and image files without a record", () => {
  const state = folder([
    { image: hash(1), mib: 10, lastUse: NOW - 5000 },
    { image: hash(2), mib: 5, entry: false },
  ]);
  state.items.push({ name: `${hash(2)}.md5sum`, allocated: 4096, mtime: NOW });
  state.items.push({ name: `.onestor-fill-${hash(4)}-dead`, allocated: 3 * MIB, mtime: NOW });
  state.items.push({ name: "README", allocated: 4096, mtime: NOW });
  const live = leaseText(hash(5), NOW + 30, 8 * MIB);
  state.leases.set(hash(5), live);
  state.items.push({ name: `.onestor-fill-${hash(5)}-fe-9`, allocated: 2 * MIB, mtime: NOW });
  const usage = cacheUsage([state]);
  assert.deepEqual(usage.candidates.map((c) => c.kind), ["stale-fill", "orphan", "entry"]);
  assert.deepEqual(usage.candidates[1].names.sort(), [hash(2), `${hash(2)}.md5sum`]);
  // The live fill counts with what it wrote plus what it still reserves; README is not ours.
  assert.equal(usage.cacheBytes, 10 * MIB + 5 * MIB + 4096 + 3 * MIB + 2 * MIB);
  assert.equal(usage.reservedBytes, 6 * MIB);
});

Deno.test("planEviction() keeps the filesystem under REPLICA_MAX_USED_PERC too", () => {
  const state = folder([{ image: hash(1), mib: 100, lastUse: NOW - 10 }], {
    fs: { total: 1000 * MIB, used: 850 * MIB, available: 150 * MIB },
  });
  const usage = cacheUsage([state]);
  // 850 + 60 > 900: evict the 100 MiB entry even without REPLICA_MAX_SIZE_MB.
  assert.deepEqual(planEviction(state.fs, usage, 60 * MIB, limits(null, 90)).evict.map((c) => c.key), [
    hash(1),
  ]);
  assert.deepEqual(planEviction(state.fs, usage, 40 * MIB, limits(null, 90)).evict, []);
  assert.equal(planEviction(state.fs, usage, 200 * MIB, limits(null, 90)).fits, false);
});

Deno.test("planEviction() refuses an image larger than REPLICA_MAX_SIZE_MB without evicting anything", () => {
  const state = folder([{ image: hash(1), mib: 1 }]);
  const plan = planEviction(state.fs, cacheUsage([state]), 50 * MIB, limits(10));
  assert.equal(plan.fits, false);
  assert.match(plan.reason, /larger than REPLICA_MAX_SIZE_MB/);
});

Deno.test("cacheUsage() sums every cache folder of the replica and skips the image being filled", () => {
  const a = folder([{ image: hash(1), mib: 10, lastUse: NOW - 10 }]);
  const b = {
    ...folder([{ image: hash(2), mib: 10, lastUse: NOW - 20 }]),
    dir: "/var/lib/one/datastores/101",
  };
  const usage = cacheUsage([a, b], { dir: DIR, image: hash(1) });
  assert.equal(usage.cacheBytes, 20 * MIB);
  assert.deepEqual(usage.candidates.map((c) => [c.dir, c.key]), [["/var/lib/one/datastores/101", hash(2)]]);
});

Deno.test("removalOps() removes the record before the files", () => {
  const [candidate] = cacheUsage([folder([{ image: hash(1), mib: 1 }])]).candidates;
  const ops = removalOps(candidate, NOW, "test");
  assert.equal(ops[0].op, "log");
  assert.deepEqual(ops.slice(1).map((o) => o.op === "remove" ? o.name : o.op), [
    `${hash(1)}.onestor.json`,
    hash(1),
    "removePins",
  ]);
});
