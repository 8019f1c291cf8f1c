import assert from "node:assert/strict";
import {
  type CachedFile,
  type CacheEntry,
  contentDigest,
  encodePin,
  encodeRecord,
  entryProblem,
  fillName,
  type ImageIdentity,
  leaseLive,
  leasePrefix,
  livePins,
  parseEntry,
  parseLease,
  parsePin,
  pinName,
  pinPrefix,
  recordHead,
  recordPrefix,
  sameSums,
} from "../../core/cache/entry.ts";

const IMAGE = "0123456789abcdef0123456789abcdef";
const PATH = `/var/lib/one/datastores/1/${IMAGE}`;

function identity(overrides: Partial<ImageIdentity> = {}): ImageIdentity {
  return {
    path: PATH,
    size: 1048576,
    mtime_ms: 1700000000123,
    algorithm: "xxh128",
    checksum: "c0ffee",
    sums: { [IMAGE]: "aa" },
    ...overrides,
  };
}

function entry(overrides: Partial<CacheEntry> = {}): CacheEntry {
  const id = identity();
  return {
    version: 2,
    source: {
      path: id.path,
      size: id.size,
      mtime_ms: id.mtime_ms,
      algorithm: id.algorithm,
      checksum: id.checksum,
      sums: id.sums,
    },
    files: [{ name: IMAGE, type: "f", size: 1048576, mtime: 1700000000, allocated: 4096 }],
    size: 1048576,
    allocated: 4096,
    created_at: 1700000100,
    filled_by: "fe:1:abcd",
    files_fp: "ab".repeat(32),
    last_use: 1700000100,
    pins: [],
    ...overrides,
  };
}

const files = (overrides: Partial<CachedFile> = {}): CachedFile[] => [
  { name: IMAGE, type: "f", size: 1048576, mtime: 1700000000, allocated: 4096, ...overrides },
];

Deno.test("parseEntry() round-trips an encoded entry and refuses malformed ones", () => {
  const e = entry();
  // Last use and pins live beside the record (its mtime, pin files): parseEntry takes them apart.
  assert.deepEqual(parseEntry(encodeRecord(e), { lastUse: 1700000100 }), e);
  const pins = [{ owner: "a", vm: 1, disk: 0, host: "hv1", expires_at: 9 }];
  assert.deepEqual(parseEntry(encodeRecord(e), { lastUse: 5, pins })?.pins, pins);
  assert.equal(parseEntry(encodeRecord(e))?.last_use, e.created_at);
  assert.equal(parseEntry(null), null);
  assert.equal(parseEntry("{"), null);
  assert.equal(parseEntry("[]"), null);
  assert.equal(parseEntry(JSON.stringify({ ...e, version: 1 })), null);
  assert.equal(parseEntry(JSON.stringify({ ...e, source: { ...e.source, checksum: 5 } })), null);
  assert.equal(parseEntry(JSON.stringify({ ...e, files: [{ name: IMAGE }] })), null);
  assert.equal(parseEntry(JSON.stringify({ ...e, files_fp: undefined })), null);
});

Deno.test("encodeRecord() writes compact JSON in its fixed layout, starting with recordPrefix()", () => {
  const text = encodeRecord(entry());
  assert.ok(!text.endsWith("\n"));
  assert.ok(!text.includes("\n"));
  assert.ok(text.startsWith(recordPrefix(identity())));
  assert.ok(recordPrefix(identity()).startsWith(recordHead(identity())));
  assert.ok(!text.startsWith(recordPrefix(identity({ checksum: "other" }))));
  assert.ok(!text.startsWith(recordHead(identity({ mtime_ms: 5 }))));
  assert.match(text, /"files_fp":"(ab){32}"}$/);
  // The replica rewrites a lease's or pin's expiry as text: it is the last key.
  const lease = {
    version: 2,
    owner: "fe:1:a",
    frontend: "fe",
    pid: 1,
    source: PATH,
    fill: ".onestor-fill-x",
    reserve: 5,
    acquired_at: 10,
    expires_at: 40,
  };
  assert.equal(encodeRecord(lease), `${leasePrefix(lease)}10,"expires_at":40}`);
  assert.deepEqual(JSON.parse(encodeRecord(lease)), lease);
  const pin = { owner: "fe:1:a", vm: 7, disk: 0, host: "hv1", expires_at: 40 };
  assert.equal(encodePin(pin), `${pinPrefix(pin)}40}`);
  assert.deepEqual(parsePin(encodePin(pin)), pin);
  assert.equal(parsePin("junk"), null);
});

Deno.test("parseLease() and leaseLive(): an unreadable lease counts as absent, expiry is strict", () => {
  assert.equal(parseLease("garbage"), null);
  const lease = parseLease(JSON.stringify({ owner: "fe:1:a", expires_at: 100 }));
  assert.ok(lease);
  assert.equal(leaseLive(lease, 99), true);
  assert.equal(leaseLive(lease, 100), false);
  assert.equal(leaseLive(null, 0), false);
});

Deno.test("livePins() keeps only pins that have not expired", () => {
  const e = entry({
    pins: [
      { owner: "a", vm: 1, disk: 0, host: "hv1", expires_at: 50 },
      { owner: "b", vm: 2, disk: 0, host: "hv2", expires_at: 150 },
    ],
  });
  assert.deepEqual(livePins(e, 100).map((p) => p.owner), ["b"]);
});

Deno.test("entryProblem() serves only an entry matching the image identity and its promoted files", () => {
  assert.equal(entryProblem(entry(), identity(), files()), null);
  assert.match(entryProblem(entry(), identity({ size: 2 }), files())!, /changed on the front-end/);
  assert.match(entryProblem(entry(), identity({ mtime_ms: 1 }), files())!, /changed on the front-end/);
  assert.match(entryProblem(entry(), identity({ checksum: "other" }), files())!, /checksum differs/);
  assert.match(entryProblem(entry(), identity({ path: "/x/y" }), files())!, /caches/);
  // Truncated or rewritten on the replica.
  assert.match(entryProblem(entry(), identity(), files({ size: 1000 }))!, /1000 bytes on the replica/);
  assert.match(entryProblem(entry(), identity(), files({ mtime: 1800000000 }))!, /modified on the replica/);
  assert.match(entryProblem(entry(), identity(), [])!, /missing/);
  // A snapshot file that appeared after promotion.
  const extra: CachedFile = { name: `${IMAGE}.snap/0`, type: "f", size: 1, mtime: 1, allocated: 0 };
  assert.match(entryProblem(entry(), identity(), [...files(), extra])!, /not part of the entry/);
});

Deno.test("contentDigest() is independent of order and changes with any file's checksum or the algorithm", async () => {
  const a = await contentDigest("b2sum", { [IMAGE]: "aa", [`${IMAGE}.snap/0`]: "bb" });
  const b = await contentDigest("b2sum", { [`${IMAGE}.snap/0`]: "bb", [IMAGE]: "aa" });
  assert.equal(a, b);
  assert.notEqual(a, await contentDigest("b2sum", { [IMAGE]: "aa", [`${IMAGE}.snap/0`]: "bc" }));
  assert.notEqual(a, await contentDigest("b2sum", { [IMAGE]: "aa" }));
  assert.notEqual(a, await contentDigest("md5sum", { [IMAGE]: "aa", [`${IMAGE}.snap/0`]: "bb" }));
  assert.match(a, /^[0-9a-f]{64}$/);
});

Deno.test("sameSums() compares per-file checksum maps exactly", () => {
  assert.ok(sameSums({ a: "1", b: "2" }, { b: "2", a: "1" }));
  assert.ok(!sameSums({ a: "1" }, { a: "1", b: "2" }));
  assert.ok(!sameSums({ a: "1" }, { a: "2" }));
});

Deno.test("fillName() is a safe hidden folder name unique per owner", () => {
  const name = fillName(IMAGE, "fe.example.com:1234:0a1b2c3d");
  assert.match(name, /^\.onestor-fill-[0-9a-f]{32}-[A-Za-z0-9-]+$/);
  assert.notEqual(name, fillName(IMAGE, "fe.example.com:1235:0a1b2c3d"));
  assert.ok(!fillName(IMAGE, "x/../y").includes("/"));
});

Deno.test("pinName() is one file per deployment, with safe characters", () => {
  assert.match(pinName(IMAGE, "fe.example.com:1234:0a1b"), /^[0-9a-f]{32}\.onestor-pin\.[A-Za-z0-9-]+$/);
  assert.notEqual(pinName(IMAGE, "fe:1:a"), pinName(IMAGE, "fe:1:b"));
  assert.ok(!pinName(IMAGE, "x/../y").includes("/"));
});
