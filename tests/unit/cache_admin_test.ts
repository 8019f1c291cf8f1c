import assert from "node:assert/strict";
import { parseCacheArgs } from "../../actions/admin/cache.ts";
import { ago, type CacheRow, folderRows, formatRows, selectReplicas } from "../../core/cache/admin.ts";
import { encodeRecord } from "../../core/cache/entry.ts";
import type { FolderState } from "../../core/cache/store.ts";
import type { CacheTopology } from "../../core/cache/targets.ts";
import { UsageError } from "../../core/errors.ts";

const IMG = "/var/lib/one/datastores/1/0123456789abcdef0123456789abcdef";

Deno.test("parseCacheArgs() reads targets, images and per-command options", () => {
  assert.deepEqual(parseCacheArgs(["ls", "--replica", "r1", "--replica=r2", "--cluster", "100", "--json"]), {
    command: "ls",
    selection: { replicas: ["r1", "r2"], clusters: [100] },
    images: [],
    from: null,
    json: true,
    all: false,
    trim: false,
  });
  const warm = parseCacheArgs(["warm", "--cluster=0", `${IMG}/`, "/var/lib/one//datastores/1/x"]);
  assert.deepEqual(warm.images, [IMG, "/var/lib/one/datastores/1/x"]);
  assert.equal(parseCacheArgs(["warm", "--from", "list.txt"]).from, "list.txt");
  assert.equal(parseCacheArgs(["evict", "--trim"]).trim, true);
  assert.equal(parseCacheArgs(["verify"]).images.length, 0);
});

Deno.test("parseCacheArgs() refuses wrong invocations with one clear line", () => {
  const cases: [string[], RegExp][] = [
    [[], /Missing cache command/],
    [["purge"], /Unknown cache command 'purge'/],
    [["ls", IMG], /takes no image arguments/],
    [["ls", "--all"], /Unknown option --all for onestor cache ls/],
    [["warm"], /needs images/],
    [["warm", "relative/path"], /must be the image's SOURCE path/],
    [["evict"], /exactly one of/],
    [["evict", "--all", IMG], /exactly one of/],
    [["ls", "--cluster", "abc"], /cluster id, not 'abc'/],
    [["ls", "--replica"], /--replica needs a value/],
  ];
  for (const [args, message] of cases) {
    assert.throws(
      () => parseCacheArgs(args),
      (e: unknown) => e instanceof UsageError && message.test(e.message),
    );
    try {
      parseCacheArgs(args);
    } catch (e) {
      assert.ok(!(e as Error).message.includes("\n"), (e as Error).message);
    }
  }
});

Deno.test("selectReplicas() picks every replica, named ones, or those of a cluster", () => {
  const topology: CacheTopology = {
    replicas: [
      { host: "r1", systemDatastores: [100], clusters: [0] },
      { host: "r2", systemDatastores: [101], clusters: [100, 101] },
    ],
    imageDirs: ["/var/lib/one/datastores/1"],
  };
  assert.deepEqual(selectReplicas(topology, { replicas: [], clusters: [] }).map((r) => r.host), ["r1", "r2"]);
  assert.deepEqual(selectReplicas(topology, { replicas: ["r9"], clusters: [101] }).map((r) => r.host), [
    "r9",
    "r2",
  ]);
  assert.throws(
    () => selectReplicas(topology, { replicas: [], clusters: [7] }),
    /cluster 7 has REPLICA_HOST/,
  );
  assert.throws(
    () => selectReplicas({ replicas: [], imageDirs: [] }, { replicas: [], clusters: [] }),
    /no replica cache/,
  );
});

Deno.test("folderRows() shows ready, broken, filling and leftover entries with pins and sizes", async () => {
  const now = 1_700_000_000;
  const hash = (n: number) => n.toString(16).padStart(32, "0");
  const dir = "/nonexistent/datastores/1";
  const entry = (image: string, size: number) =>
    encodeRecord({
      version: 2,
      source: {
        path: `${dir}/${image}`,
        size,
        mtime_ms: 1,
        algorithm: "xxh128",
        checksum: "c",
        sums: { [image]: "s" },
      },
      files: [{ name: image, type: "f", size, mtime: 5, allocated: 4096 }],
      size,
      allocated: 4096,
      created_at: 1,
      filled_by: "fe:1:a",
      files_fp: "f",
      last_use: 0,
      pins: [],
    });
  const state: FolderState = {
    dir,
    now,
    entries: new Map([[hash(1), entry(hash(1), 100)], [hash(2), entry(hash(2), 100)]]),
    entryMtimes: new Map([[hash(1), now - 120], [hash(2), now - 120]]),
    // Two live pin files on the first entry (and an expired one, not shown).
    pins: new Map([[hash(1), [
      { owner: "o0", vm: 40, disk: 0, host: "hv1", expires_at: now + 9 },
      { owner: "o1", vm: 41, disk: 0, host: "hv1", expires_at: now + 9 },
      { owner: "o2", vm: 42, disk: 0, host: "hv1", expires_at: now - 9 },
    ]]]),
    leases: new Map([[
      hash(3),
      JSON.stringify({ owner: "fe:7:z", expires_at: now + 20, fill: ".onestor-fill-3", reserve: 1000 }),
    ]]),
    items: [
      { name: hash(1), allocated: 4096, mtime: 5 },
      { name: hash(2), allocated: 4096, mtime: 5 },
      { name: ".onestor-fill-3", allocated: 500, mtime: now },
      { name: hash(4), allocated: 8192, mtime: 3 },
    ],
    files: [
      { name: hash(1), type: "f", size: 100, mtime: 5, allocated: 4096 },
      { name: hash(2), type: "f", size: 60, mtime: 5, allocated: 4096 },
    ],
    fs: { total: 1, used: 1, available: 0 },
  };
  const rows = await folderRows("r1", state);
  const byImage = new Map(rows.map((r) => [r.image.split("/").pop(), r]));
  // The front-end image is gone here, so a whole entry shows as stale.
  assert.equal(byImage.get(hash(1))?.state, "stale");
  assert.deepEqual(byImage.get(hash(1))?.pins.map((p) => p.vm), [40, 41]);
  assert.equal(byImage.get(hash(2))?.state, "broken");
  assert.match(byImage.get(hash(2))!.detail, /60 bytes on the replica/);
  assert.equal(byImage.get(hash(3))?.state, "filling");
  assert.match(byImage.get(hash(3))!.detail, /50% by fe:7:z/);
  assert.equal(byImage.get(hash(4))?.state, "leftover");
  const table = formatRows(rows, now);
  assert.match(table[0], /^REPLICA\s+IMAGE\s+SIZE\s+ON DISK\s+LAST USE\s+PINS\s+STATE$/);
  assert.ok(table.some((l) => /2m ago\s+vm 40,vm 41\s+stale/.test(l)), table.join("\n"));
});

Deno.test("ago() renders times for people", () => {
  assert.equal(ago(null, 5), "-");
  assert.equal(ago(100, 130), "30s ago");
  assert.equal(ago(0, 7200), "2h ago");
  assert.equal(ago(0, 200000), "2d ago");
});

Deno.test("formatRows() of no rows is just the header", () => {
  const rows: CacheRow[] = [];
  assert.equal(formatRows(rows).length, 1);
});
