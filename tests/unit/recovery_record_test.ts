import assert from "node:assert/strict";
import {
  addPoint,
  applyMerge,
  chainDigest,
  chainOf,
  collectGarbage,
  encodeRecord,
  incrementParent,
  newRecord,
  parseRecord,
  planMerge,
  pointChain,
  RecordError,
  type RecoveryRecord,
  restoreTarget,
} from "../../core/recovery/record.ts";
import { bitmapName, bitmapPoint, diskRecoveryDir, statusFileName } from "../../core/recovery/names.ts";
import { statusLine, templateText } from "../../core/recovery/status_line.ts";

const q = (sum: string, backing: string | null) => ({ sum, size: 1, backing, format: "qcow2" });

/** A record with point 0 (base + merged), as protection at clone time writes it. */
async function protectedRecord(): Promise<RecoveryRecord> {
  const r = newRecord({
    vm: 7,
    disk: 0,
    format: "qcow2",
    size: 64,
    algorithm: "b2sum",
    source: "/i",
    now: 1,
  });
  const files = { base: { sum: "b", size: 1, backing: null, format: "raw" }, merged: q("m", "base") };
  return {
    ...r,
    files,
    points: [{
      id: 0,
      time: 10,
      top: "merged",
      kind: "base",
      bytes: 0,
      data: 0,
      quiesced: null,
      checksum: await chainDigest("b2sum", files, ["base", "merged"]),
    }],
    head: 0,
    next_id: 1,
  };
}

/** Adds increment `id` on the head, as a period does. */
async function increment(r: RecoveryRecord, id: number): Promise<RecoveryRecord> {
  const parent = incrementParent(r);
  return await addPoint(
    r,
    {
      id,
      time: 10 + id,
      top: `inc.${id}`,
      kind: "incremental",
      bytes: 100,
      data: 64,
      quiesced: false,
    },
    q(`s${id}`, parent),
    20 + id,
    64,
  );
}

/** Runs every merge and garbage collection of KEEP = keep, as a period does after its commit. */
async function compact(
  r: RecoveryRecord,
  keep: number,
): Promise<{ record: RecoveryRecord; removed: string[] }> {
  for (let step = planMerge(r, keep); step; step = planMerge(r, keep)) {
    r = await applyMerge(r, step, { sum: `${r.files[step.into].sum}+${step.from}`, size: 2 }, {
      sum: `${step.above}'`,
      size: 1,
    }, 99);
  }
  const g = collectGarbage(r, keep);
  return { record: g.record, removed: g.remove };
}

Deno.test("names: bitmaps never look like OpenNebula's one-<vm>-<n>, folders per disk", () => {
  assert.equal(bitmapName(2, 15), "onestor-rec-2-15");
  assert.equal(bitmapPoint("onestor-rec-2-15", 2), 15);
  assert.equal(bitmapPoint("onestor-rec-2-15", 3), null);
  assert.equal(bitmapPoint("one-7-15", 2), null);
  assert.equal(diskRecoveryDir("/snaps/", 7, 1), "/snaps/7/disk.1.recovery");
  assert.equal(statusFileName(1), "disk.1.recovery");
});

Deno.test("addPoint() chains an increment on the head and makes it the head", async () => {
  let r = await protectedRecord();
  r = await increment(r, 1);
  assert.equal(r.head, 1);
  assert.equal(r.next_id, 2);
  assert.deepEqual(pointChain(r, 1), ["base", "merged", "inc.1"]);
  assert.equal(r.points[1].checksum, await chainDigest("b2sum", r.files, ["base", "merged", "inc.1"]));
  await assert.rejects(() => increment(r, 1), RecordError, "a file name is never reused");
});

Deno.test("KEEP=1: each period merges the previous increment; the chain stays base <- merged <- inc", async () => {
  let r = await protectedRecord();
  const removed: string[] = [];
  for (let id = 1; id <= 5; id++) {
    r = await increment(r, id);
    const c = await compact(r, 1);
    r = c.record;
    removed.push(...c.removed);
    assert.equal(r.points.length, 1);
    assert.deepEqual(
      chainOf(r, r.points[0].top),
      id === 1 ? ["base", "merged", "inc.1"] : ["base", "merged", `inc.${id}`],
    );
  }
  // Every increment but the last went into `merged`, in order; `base` was never written.
  assert.equal(r.files.merged.sum, "m+inc.1+inc.2+inc.3+inc.4");
  assert.equal(r.files.base.sum, "b");
  assert.equal(r.files["inc.5"].sum, "inc.5'", "re-chaining changed the file, so its checksum");
  assert.deepEqual(removed, [], "merged files are dropped by the merge itself, nothing else is garbage");
  assert.deepEqual(Object.keys(r.files).sort(), ["base", "inc.5", "merged"]);
});

Deno.test("KEEP=3: the last three points stay restorable, older increments are merged below the oldest", async () => {
  let r = await protectedRecord();
  for (let id = 1; id <= 6; id++) r = (await compact(await increment(r, id), 3)).record;
  assert.deepEqual(r.points.map((p) => p.id), [4, 5, 6]);
  assert.deepEqual(pointChain(r, 4), ["base", "merged", "inc.4"]);
  assert.deepEqual(pointChain(r, 6), ["base", "merged", "inc.4", "inc.5", "inc.6"]);
  for (const p of r.points) {
    assert.equal(
      p.checksum,
      await chainDigest("b2sum", r.files, pointChain(r, p.id)),
      "checksums follow the merges",
    );
  }
});

Deno.test("a full point starts a new chain; the old one is garbage once no kept point needs it", async () => {
  let r = await protectedRecord();
  r = (await compact(await increment(r, 1), 2)).record;
  r = await addPoint(
    r,
    {
      id: 2,
      time: 30,
      top: "full.2",
      kind: "full",
      bytes: 1,
      data: 1,
      quiesced: null,
      reason: "bitmap lost",
    },
    q("f2", null),
    40,
    64,
  );
  r = (await compact(await increment(r, 3), 2)).record;
  const g = collectGarbage(r, 2);
  assert.deepEqual(r.points.map((p) => p.id), [2, 3]);
  assert.deepEqual(pointChain(r, 3), ["full.2", "inc.3"]);
  assert.deepEqual(Object.keys(r.files).sort(), ["full.2", "inc.3"]);
  assert.deepEqual(g.remove, []);
});

Deno.test("garbage collection names what no kept point needs", async () => {
  let r = await protectedRecord();
  r = await addPoint(
    r,
    {
      id: 1,
      time: 30,
      top: "full.1",
      kind: "full",
      bytes: 1,
      data: 1,
      quiesced: null,
    },
    q("f1", null),
    40,
    64,
  );
  const g = collectGarbage(r, 1);
  assert.deepEqual(g.remove, ["base", "merged"]);
  assert.deepEqual(g.record.points.map((p) => p.id), [1]);
});

Deno.test("after a restore from an older point, the next point continues it and drops the newer ones", async () => {
  let r = await protectedRecord();
  for (let id = 1; id <= 3; id++) r = (await compact(await increment(r, id), 3)).record;
  r = { ...r, restore_point: 2 };
  assert.equal(restoreTarget(r)?.id, 2);
  r = { ...r, head: 2, restore_point: null };
  assert.equal(restoreTarget(r)?.id, 3, "without a choice the newest is rebuilt");
  r = await increment(r, 4);
  assert.deepEqual(r.points.map((p) => p.id), [1, 2, 4]);
  assert.equal(r.files["inc.4"].backing, "inc.2");
  const c = await compact(r, 3);
  assert.deepEqual(c.removed, ["inc.3"]);
});

Deno.test("a journaled merge keeps its files, and a broken chain is reported", async () => {
  let r = await protectedRecord();
  for (let id = 1; id <= 2; id++) r = await increment(r, id);
  const step = planMerge(r, 1)!;
  assert.deepEqual(step, { into: "merged", from: "inc.1", above: "inc.2" });
  const g = collectGarbage({ ...r, merging: step }, 1);
  assert.ok(!g.remove.includes("inc.1"), "a file of an unfinished merge is kept");
  const broken = { ...r, files: { ...r.files } };
  delete broken.files.merged;
  assert.throws(() => pointChain(broken, 2), RecordError);
});

Deno.test("parseRecord() takes what encodeRecord() writes and refuses anything else", async () => {
  const r = await increment(await protectedRecord(), 1);
  assert.deepEqual(parseRecord(encodeRecord(r)), r);
  assert.equal(parseRecord(null), null);
  assert.equal(parseRecord("{"), null);
  assert.equal(parseRecord(JSON.stringify({ ...r, version: 2 })), null);
  assert.equal(
    parseRecord(JSON.stringify({ ...r, files: { "../x": q("s", null) } })),
    null,
    "file names are checked",
  );
  assert.equal(parseRecord(JSON.stringify({ ...r, points: [{ id: "1" }] })), null);
});

Deno.test("statusLine() is upstream's DISK_RECOVERY_SNAPSHOT, safe inside a template value", () => {
  assert.equal(statusLine(0, 1700000000, null), 'DISK_RECOVERY_SNAPSHOT = [ ID=0, TIMESTAMP="1700000000" ]');
  assert.equal(
    statusLine(1, null, 'bad "x"\nnext'),
    "DISK_RECOVERY_SNAPSHOT = [ ID=1, MSG=\"ERROR bad 'x' next\" ]",
  );
  assert.equal(
    statusLine(2, 5, "down"),
    'DISK_RECOVERY_SNAPSHOT = [ ID=2, TIMESTAMP="5", MSG="ERROR down" ]',
  );
  assert.equal(templateText("x".repeat(300)).length, 240);
  assert.equal(templateText("a\\b é"), "a'b ?");
});
