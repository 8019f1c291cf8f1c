/**
 * Rolling the event store up into series: counters summed, histogram observations counted into
 * the catalogue's buckets, gauges kept at their latest value. The result is what
 * `onestor metrics` exposes and what the datastore monitor reads its cache figures from.
 *
 * @module
 */

import { metricSpec } from "./catalog.ts";
import {
  dayOf,
  KEEP_DAYS,
  listDays,
  type MetricEvent,
  metricsDir,
  parseEvents,
  withStoreLock,
} from "./store.ts";

/** One histogram series. */
export interface HistogramState {
  /** Count per bucket (not cumulative), in the catalogue's bucket order, plus the +Inf bucket. */
  buckets: number[];
  sum: number;
  count: number;
}

/** Everything recorded, as series keyed by name and sorted labels. */
export interface Rollup {
  /** Counter values by series key. */
  counters: Record<string, number>;
  /** Histograms by series key. */
  histograms: Record<string, HistogramState>;
  /** Gauges by series key: value and the time it was recorded (epoch ms). */
  gauges: Record<string, { v: number; t: number }>;
  /** Latest event time seen (epoch ms), 0 when empty. */
  lastEvent: number;
}

/** The compacted part of the store (totals.json). */
interface Totals extends Rollup {
  version: 1;
  /** Days folded in. */
  days: string[];
}

/** An empty rollup. */
export function emptyRollup(): Rollup {
  return { counters: {}, histograms: {}, gauges: {}, lastEvent: 0 };
}

/** `name{a="x",b="y"}` with labels sorted by name: the key of a series. */
export function seriesKey(name: string, labels: Record<string, string> = {}): string {
  const parts = Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(String(labels[k]))}`);
  return `${name}{${parts.join(",")}}`;
}

/** Splits a series key into name and labels. */
export function parseSeriesKey(key: string): { name: string; labels: Record<string, string> } {
  const brace = key.indexOf("{");
  const name = key.slice(0, brace);
  const labels: Record<string, string> = {};
  const body = key.slice(brace + 1, -1);
  for (const m of body.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*")/g)) {
    labels[m[1]] = JSON.parse(m[2]);
  }
  return { name, labels };
}

/** Adds one event to a rollup; events of names this version does not know are ignored. */
export function addEvent(rollup: Rollup, event: MetricEvent): void {
  const spec = metricSpec(event.m);
  if (!spec) return;
  const labels: Record<string, string> = {};
  for (const name of spec.labels) labels[name] = String(event.l?.[name] ?? "");
  const key = seriesKey(event.m, labels);
  rollup.lastEvent = Math.max(rollup.lastEvent, event.t);
  switch (spec.type) {
    case "counter":
      rollup.counters[key] = (rollup.counters[key] ?? 0) + event.v;
      break;
    case "gauge": {
      const old = rollup.gauges[key];
      if (!old || event.t >= old.t) rollup.gauges[key] = { v: event.v, t: event.t };
      break;
    }
    case "histogram": {
      const bounds = spec.buckets ?? [];
      const h = rollup.histograms[key] ??= {
        buckets: new Array(bounds.length + 1).fill(0),
        sum: 0,
        count: 0,
      };
      let i = bounds.findIndex((b) => event.v <= b);
      if (i === -1) i = bounds.length;
      h.buckets[i]++;
      h.sum += event.v;
      h.count++;
      break;
    }
  }
}

/** Adds rollup `b` into `a`. */
export function mergeRollup(a: Rollup, b: Rollup): void {
  for (const [k, v] of Object.entries(b.counters)) a.counters[k] = (a.counters[k] ?? 0) + v;
  for (const [k, g] of Object.entries(b.gauges)) {
    const old = a.gauges[k];
    if (!old || g.t >= old.t) a.gauges[k] = { ...g };
  }
  for (const [k, h] of Object.entries(b.histograms)) {
    const old = a.histograms[k];
    if (!old || old.buckets.length !== h.buckets.length) {
      a.histograms[k] = structuredClone(h);
      continue;
    }
    h.buckets.forEach((n, i) => old.buckets[i] += n);
    old.sum += h.sum;
    old.count += h.count;
  }
  a.lastEvent = Math.max(a.lastEvent, b.lastEvent);
}

function readTotals(dir: string): Totals | null {
  try {
    const t = JSON.parse(Deno.readTextFileSync(`${dir}/totals.json`));
    if (t?.version !== 1 || !Array.isArray(t.days)) return null;
    return t as Totals;
  } catch {
    return null;
  }
}

function readDay(dir: string, day: string): MetricEvent[] {
  try {
    return parseEvents(Deno.readTextFileSync(`${dir}/${day}.jsonl`));
  } catch {
    return [];
  }
}

/** Reads the whole store into one rollup (totals plus the day files not folded into them). */
export function readRollup(dir = metricsDir()): Rollup {
  return withStoreLock(dir, false, () => {
    const totals = readTotals(dir);
    const rollup = emptyRollup();
    if (totals) mergeRollup(rollup, totals);
    const done = new Set(totals?.days ?? []);
    for (const day of listDays(dir)) {
      if (done.has(day)) continue;
      for (const e of readDay(dir, day)) addEvent(rollup, e);
    }
    return rollup;
  });
}

/**
 * Folds the day files older than `keepDays` (relative to `now`) into totals.json and removes them.
 * Returns how many days were folded. Never throws: a store it cannot compact stays as it is.
 */
export function compactStore(dir = metricsDir(), now = Date.now(), keepDays = KEEP_DAYS): number {
  try {
    return withStoreLock(dir, true, () => {
      const cutoff = dayOf(now - keepDays * 86_400_000);
      const totals: Totals = readTotals(dir) ?? { version: 1, days: [], ...emptyRollup() };
      const old = listDays(dir).filter((d) => d < cutoff);
      const fresh = old.filter((d) => !totals.days.includes(d));
      if (old.length === 0) return 0;
      for (const day of fresh) {
        const part = emptyRollup();
        for (const e of readDay(dir, day)) addEvent(part, e);
        mergeRollup(totals, part);
        totals.days.push(day);
      }
      if (fresh.length > 0) {
        totals.days.sort();
        const tmp = `${dir}/.totals.json.${Deno.pid}.tmp`;
        Deno.writeTextFileSync(tmp, JSON.stringify(totals));
        Deno.renameSync(tmp, `${dir}/totals.json`);
      }
      // Only now that totals.json names them: a crash before this line leaves them skipped, not counted twice.
      for (const day of old) Deno.removeSync(`${dir}/${day}.jsonl`);
      return fresh.length;
    });
  } catch {
    return 0;
  }
}
