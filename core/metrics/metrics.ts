/**
 * Recording metrics: one call per event, appended to the front-end's store ({@link ./store.ts})
 * by the process itself (no extra process, no SSH, a few microseconds). A call never throws and
 * never fails the action that makes it; `ONESTOR_METRICS=off` turns recording off.
 *
 * @example
 * ```ts
 * metrics.count("cache_hits_total", { replica, datastore: "1" });
 * metrics.observe("cache_lock_wait_seconds", { replica }, 4.2);
 * ```
 *
 * @module
 */

import type { MetricName } from "./catalog.ts";
import { appendEvent, metricsDir } from "./store.ts";

/** Label values of one event. */
export type Labels = Record<string, string | number>;

let dir: string | null | undefined;

function storeDir(): string | null {
  if (dir !== undefined) return dir;
  try {
    dir = Deno.env.get("ONESTOR_METRICS") === "off" ? null : metricsDir();
  } catch {
    dir = null; // no env permission: no store
  }
  return dir;
}

function record(name: MetricName, labels: Labels, value: number): void {
  try {
    const target = storeDir();
    if (target === null || !Number.isFinite(value)) return;
    const l: Record<string, string> = {};
    for (const [k, v] of Object.entries(labels)) l[k] = String(v);
    appendEvent(target, { t: Date.now(), m: name, l, v: value });
  } catch {
    // Recording never fails an action.
  }
}

/** The recording API. */
export const metrics = {
  /** Adds `value` (default 1) to a counter. */
  count(name: MetricName, labels: Labels = {}, value = 1): void {
    if (value !== 0) record(name, labels, value);
  },
  /** Records one observation of a histogram (a duration in seconds, a rate in bytes/s). */
  observe(name: MetricName, labels: Labels, value: number): void {
    record(name, labels, value);
  },
  /** Sets a gauge (the latest recorded value wins). */
  gauge(name: MetricName, labels: Labels, value: number): void {
    record(name, labels, value);
  },
  /** Records one finished image data transfer: bytes, duration and rate. */
  transfer(hop: string, host: string, bytes: number, seconds: number): void {
    record("transfer_bytes_total", { hop, host }, bytes);
    record("transfer_duration_seconds", { hop }, seconds);
    if (seconds > 0) record("transfer_rate_bytes_per_second", { hop }, bytes / seconds);
  },
  /** Points recording at another folder, or null to turn it off (tests); undefined: back to the default. */
  setDir(next: string | null | undefined): void {
    dir = next;
  },
};
