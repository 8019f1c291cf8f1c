import assert from "node:assert/strict";
import { appendEvent, dayOf, listDays, parseEvents } from "../../core/metrics/store.ts";
import { addEvent, compactStore, emptyRollup, readRollup, seriesKey } from "../../core/metrics/rollup.ts";
import { renderPrometheus, writeTextfile } from "../../core/metrics/prometheus.ts";
import { metrics } from "../../core/metrics/metrics.ts";
import { cacheFigures } from "../../core/metrics/cache_figures.ts";
import { errorKind } from "../../core/metrics/error_kind.ts";
import { LockError, RemoteError, UsageError } from "../../core/errors.ts";
import { OneStorError } from "../../core/errors.ts";
import { runCommand } from "../../core/remote/process.ts";

const STORE = new URL("../../core/metrics/store.ts", import.meta.url).href;
const DAY = Date.UTC(2026, 8, 1, 12);

Deno.test("appendEvent() keeps every line whole with eight processes appending at once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const writers = 8;
    const each = 400;
    // Each writer appends `each` events with a padded label, so that a torn or interleaved write
    // would show as a line that does not parse or a count that does not add up.
    const script = (w: number) =>
      `import { appendEvent } from ${JSON.stringify(STORE)};
const pad = "x".repeat(300);
for (let i = 0; i < ${each}; i++) appendEvent(${
        JSON.stringify(dir)
      }, { t: ${DAY}, m: "cache_hits_total", l: { replica: "w${w}", pad }, v: 1 });`;
    const runs = await Promise.all(
      Array.from({ length: writers }, (_, w) => runCommand([Deno.execPath(), "eval", script(w)])),
    );
    runs.forEach((r) => assert.equal(r.code, 0, r.stderr));
    const text = await Deno.readTextFile(`${dir}/${dayOf(DAY)}.jsonl`);
    const lines = text.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, writers * each);
    const events = parseEvents(text);
    assert.equal(events.length, writers * each, "every line parses");
    for (let w = 0; w < writers; w++) {
      assert.equal(events.filter((e) => e.l?.replica === `w${w}`).length, each);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("appendEvent() creates the store folder and never throws", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(appendEvent(`${dir}/a/b`, { t: DAY, m: "cache_hits_total", v: 1 }), true);
    assert.deepEqual(listDays(`${dir}/a/b`), [dayOf(DAY)]);
    await Deno.writeTextFile(`${dir}/file`, "");
    assert.equal(appendEvent(`${dir}/file/below`, { t: DAY, m: "cache_hits_total", v: 1 }), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics.count() records into the chosen folder, nothing when off", async () => {
  const dir = await Deno.makeTempDir();
  try {
    metrics.setDir(dir);
    metrics.count("cache_misses_total", { replica: "r1", datastore: 1 });
    metrics.transfer("frontend_to_replica", "r1", 1000, 0.5);
    metrics.setDir(null);
    metrics.count("cache_misses_total", { replica: "r1", datastore: 1 });
    const r = readRollup(dir);
    assert.equal(r.counters[seriesKey("cache_misses_total", { datastore: "1", replica: "r1" })], 1);
    assert.equal(
      r.counters[seriesKey("transfer_bytes_total", { hop: "frontend_to_replica", host: "r1" })],
      1000,
    );
    assert.equal(
      r.histograms[seriesKey("transfer_rate_bytes_per_second", { hop: "frontend_to_replica" })].sum,
      2000,
    );
  } finally {
    metrics.setDir(undefined);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("addEvent() sums counters, buckets histograms, keeps the latest gauge, skips unknown names", () => {
  const r = emptyRollup();
  addEvent(r, { t: 1, m: "cache_hits_total", l: { replica: "r" }, v: 1 });
  addEvent(r, { t: 2, m: "cache_hits_total", l: { replica: "r", datastore: "" }, v: 2 });
  addEvent(r, { t: 3, m: "cache_lock_wait_seconds", l: { replica: "r" }, v: 0.2 });
  addEvent(r, { t: 4, m: "cache_lock_wait_seconds", l: { replica: "r" }, v: 7 });
  addEvent(r, { t: 5, m: "cache_lock_wait_seconds", l: { replica: "r" }, v: 5000 });
  addEvent(r, { t: 9, m: "cache_size_bytes", l: { replica: "r", datastore: "1" }, v: 10 });
  addEvent(r, { t: 8, m: "cache_size_bytes", l: { replica: "r", datastore: "1" }, v: 99 });
  addEvent(r, { t: 10, m: "no_such_metric", v: 1 });
  assert.deepEqual(r.counters, { [seriesKey("cache_hits_total", { datastore: "", replica: "r" })]: 3 });
  const h = r.histograms[seriesKey("cache_lock_wait_seconds", { replica: "r" })];
  // Buckets 0.5, 1, 2.5, 5, 10, ...: 0.2 in the first, 7 in the fifth, 5000 beyond the last.
  assert.deepEqual(h.buckets, [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
  assert.equal(h.count, 3);
  assert.equal(r.gauges[seriesKey("cache_size_bytes", { datastore: "1", replica: "r" })].v, 10);
  assert.equal(r.lastEvent, 9);
});

Deno.test("parseEvents() skips a torn last line", () => {
  const text = '{"t":1,"m":"cache_hits_total","v":1}\n{"t":2,"m":"cache_hi';
  assert.equal(parseEvents(text).length, 1);
});

Deno.test("renderPrometheus() writes HELP, TYPE, _total counters and cumulative histograms", () => {
  const r = emptyRollup();
  addEvent(r, { t: 1000, m: "cache_hits_total", l: { replica: 'r"1\\', datastore: "1" }, v: 2 });
  addEvent(r, { t: 2000, m: "cache_lock_wait_seconds", l: { replica: "r" }, v: 0.7 });
  addEvent(r, { t: 3000, m: "cache_lock_wait_seconds", l: { replica: "r" }, v: 3 });
  const text = renderPrometheus(r, { version: "9.9" });
  assert.match(text, /^# HELP onestor_cache_hits_total Deployments served/m);
  assert.match(text, /^# TYPE onestor_cache_hits_total counter$/m);
  assert.match(text, /^onestor_cache_hits_total\{datastore="1",replica="r\\"1\\\\"\} 2$/m);
  assert.match(text, /^# TYPE onestor_cache_lock_wait_seconds histogram$/m);
  assert.match(text, /^onestor_cache_lock_wait_seconds_bucket\{replica="r",le="0\.5"\} 0$/m);
  assert.match(text, /^onestor_cache_lock_wait_seconds_bucket\{replica="r",le="1"\} 1$/m);
  assert.match(text, /^onestor_cache_lock_wait_seconds_bucket\{replica="r",le="5"\} 2$/m);
  assert.match(text, /^onestor_cache_lock_wait_seconds_bucket\{replica="r",le="\+Inf"\} 2$/m);
  assert.match(text, /^onestor_cache_lock_wait_seconds_sum\{replica="r"\} 3\.7$/m);
  assert.match(text, /^onestor_cache_lock_wait_seconds_count\{replica="r"\} 2$/m);
  assert.match(text, /^onestor_build_info\{version="9\.9"\} 1$/m);
  assert.match(text, /^onestor_metrics_last_event_timestamp_seconds 3$/m);
  // Every family appears once, even without samples.
  assert.equal(text.match(/^# TYPE onestor_transfer_bytes_total counter$/gm)?.length, 1);
  assert.ok(text.endsWith("\n"));
});

Deno.test("renderPrometheus() output passes promtool check metrics", async (t) => {
  const promtool = await runCommand(["sh", "-c", "command -v promtool"]);
  if (promtool.code !== 0) {
    if (Deno.env.get("ONESTOR_LAB") === "require") {
      throw new Error("promtool is missing (bash scripts/setup.sh)");
    }
    console.log("promtool check skipped: promtool is not installed (bash scripts/setup.sh as root)");
    return;
  }
  const r = emptyRollup();
  addEvent(r, { t: 1, m: "cache_hits_total", l: { replica: "r", datastore: "1" }, v: 1 });
  addEvent(r, { t: 1, m: "transfer_duration_seconds", l: { hop: "frontend_to_replica" }, v: 2 });
  addEvent(r, { t: 1, m: "cache_size_bytes", l: { replica: "r", datastore: "1" }, v: 5 });
  const check = await runCommand(["promtool", "check", "metrics"], { stdin: renderPrometheus(r) });
  await t.step("promtool says nothing", () => {
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.equal((check.stdout + check.stderr).trim(), "");
  });
});

Deno.test("compactStore() folds old days into totals once, even after a crash before the removal", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const now = Date.UTC(2026, 8, 20, 12);
    for (const daysAgo of [20, 10, 8, 1, 0]) {
      const t = now - daysAgo * 86_400_000;
      appendEvent(dir, { t, m: "cache_hits_total", l: { replica: "r" }, v: daysAgo + 1 });
      appendEvent(dir, { t, m: "transfer_duration_seconds", l: { hop: "h" }, v: daysAgo });
    }
    const before = readRollup(dir);
    const key = seriesKey("cache_hits_total", { datastore: "", replica: "r" });
    assert.equal(before.counters[key], 21 + 11 + 9 + 2 + 1);
    // A crash after totals.json was written but before the day files were removed: simulate by
    // restoring a day file once compacted.
    const kept = await Deno.readTextFile(`${dir}/${dayOf(now - 20 * 86_400_000)}.jsonl`);
    assert.equal(compactStore(dir, now, 7), 3);
    assert.deepEqual(listDays(dir), [dayOf(now - 86_400_000), dayOf(now)]);
    await Deno.writeTextFile(`${dir}/${dayOf(now - 20 * 86_400_000)}.jsonl`, kept);
    const after = readRollup(dir);
    assert.deepEqual(after, before);
    assert.equal(compactStore(dir, now, 7), 0, "nothing new to fold");
    assert.deepEqual(readRollup(dir), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeTextfile() replaces onestor.prom by rename, leaving no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeTextfile(dir, "a 1\n");
    await writeTextfile(`${dir}/`, "a 2\n");
    assert.equal(await Deno.readTextFile(`${dir}/onestor.prom`), "a 2\n");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["onestor.prom"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cacheFigures() gives the hit ratio and cache size of one image datastore", () => {
  const r = emptyRollup();
  addEvent(r, { t: 1, m: "cache_hits_total", l: { replica: "a", datastore: "1" }, v: 3 });
  addEvent(r, { t: 1, m: "cache_hits_total", l: { replica: "b", datastore: "1" }, v: 3 });
  addEvent(r, { t: 1, m: "cache_misses_total", l: { replica: "a", datastore: "1" }, v: 2 });
  addEvent(r, { t: 1, m: "cache_misses_total", l: { replica: "a", datastore: "2" }, v: 9 });
  addEvent(r, { t: 1, m: "cache_size_bytes", l: { replica: "a", datastore: "1" }, v: 1 << 20 });
  addEvent(r, { t: 1, m: "cache_size_bytes", l: { replica: "b", datastore: "1" }, v: 1 << 21 });
  assert.deepEqual(cacheFigures(r, 1), { hits: 6, misses: 2, hitRatio: 0.75, sizeBytes: 3 << 20 });
  assert.deepEqual(cacheFigures(r, 3), { hits: 0, misses: 0, hitRatio: null, sizeBytes: null });
});

Deno.test("errorKind() names the cause of a failure", () => {
  assert.equal(errorKind(new RemoteError("x", { host: "h", kind: "hostkey", status: 255 })), "hostkey");
  assert.equal(errorKind(new LockError("x")), "lock");
  assert.equal(errorKind(new UsageError("x")), "usage");
  const wrapped = new OneStorError("Error restoring", {
    cause: new RemoteError("x", { host: "h", kind: "auth", status: 255 }),
  });
  assert.equal(errorKind(wrapped), "auth");
  assert.equal(errorKind(new Error("x")), "other");
  assert.equal(errorKind("text"), "other");
});

Deno.test("the alerts of docs/operations.md pass promtool check rules", async () => {
  const promtool = await runCommand(["sh", "-c", "command -v promtool"]);
  if (promtool.code !== 0) {
    if (Deno.env.get("ONESTOR_LAB") === "require") {
      throw new Error("promtool is missing (bash scripts/setup.sh)");
    }
    console.log("promtool check skipped: promtool is not installed (bash scripts/setup.sh as root)");
    return;
  }
  const doc = await Deno.readTextFile(new URL("../../docs/operations.md", import.meta.url));
  const start = doc.indexOf("```yaml\ngroups:");
  assert.ok(start >= 0, "the alert rules are in the docs");
  const rules = doc.slice(start + "```yaml\n".length, doc.indexOf("```", start + 8));
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/rules.yml`, rules);
    const check = await runCommand(["promtool", "check", "rules", `${dir}/rules.yml`]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /SUCCESS: 2 rules found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
