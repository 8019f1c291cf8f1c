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
import type { CopyRequest } from "../transfer/copy.ts";
import type { HostRunner } from "../remote/runner.ts";
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
  /**
   * Records a finished copy of the copy primitives (`started`: its `performance.now()`); the hop is
   * the request's `hop`, else what its two ends are.
   */
  copied(
    request: Pick<CopyRequest, "from" | "to" | "hop">,
    runner: HostRunner,
    bytes: number,
    started: number,
  ): void {
    try {
      const from = runner.isLocal(request.from.host) ? null : request.from.host;
      const to = runner.isLocal(request.to.host) ? null : request.to.host;
      const hop = request.hop ??
        (from === null
          ? (to === null ? "local" : "frontend_to_host")
          : to === null
          ? "host_to_frontend"
          : from === to
          ? "local"
          : "host_to_host");
      this.transfer(hop, to ?? from ?? "front-end", bytes, (performance.now() - started) / 1000);
    } catch {
      // Recording never fails an action.
    }
  },
  /** Records the size of a replica's cache folders (`<DS_LOC>/<datastore id>`), as just read. */
  cacheSizes(
    replica: string,
    folders: readonly { dir: string; items: readonly { allocated: number }[] }[],
  ): void {
    for (const f of folders) {
      const datastore = f.dir.slice(f.dir.lastIndexOf("/") + 1);
      record("cache_size_bytes", { replica, datastore }, f.items.reduce((sum, i) => sum + i.allocated, 0));
    }
  },
  /** Records the end of a cache fill: promoted (verified and cached) or not. */
  fill(replica: string, promoted: boolean): void {
    record("cache_fills_total", { replica, result: promoted ? "promoted" : "not_promoted" }, 1);
  },
  /** Records a wait for another process's cache fill. */
  lockWait(replica: string, seconds: number): void {
    record("cache_lock_waits_total", { replica }, 1);
    record("cache_lock_wait_seconds", { replica }, seconds);
  },
  /** Records one eviction from a replica cache. */
  evicted(replica: string, kind: string, bytes: number): void {
    record("cache_evictions_total", { replica, kind }, 1);
    if (bytes > 0) record("cache_evicted_bytes_total", { replica }, bytes);
  },
  /** Points recording at another folder, or null to turn it off (tests); undefined: back to the default. */
  setDir(next: string | null | undefined): void {
    dir = next;
  },
};
