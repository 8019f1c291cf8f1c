/**
 * Every metric onestor records: its name (without the `onestor_` prefix the exposition adds), its
 * Prometheus type, its help text, the labels it carries and, for histograms, the bucket bounds.
 * The recording calls name metrics from here; `onestor metrics` takes HELP, TYPE and buckets from
 * here, so a metric exists in exactly one place. docs/operations.md lists them.
 *
 * Kept free of imports: every action loads it.
 *
 * @module
 */

/** Prometheus metric types used by onestor. */
export type MetricType = "counter" | "histogram" | "gauge";

/** One metric family. */
export interface MetricSpec {
  /** Type; counters end in `_total`. */
  readonly type: MetricType;
  /** HELP text. */
  readonly help: string;
  /** Label names every sample carries (missing ones are exported empty). */
  readonly labels: readonly string[];
  /** Histogram upper bounds (without +Inf). */
  readonly buckets?: readonly number[];
}

const SECONDS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
const LOCK_SECONDS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const RATE = [1e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6, 1e9];

/** The catalogue, by name (without the `onestor_` prefix). */
export const METRICS = {
  actions_total: {
    type: "counter",
    help: "Driver actions and admin commands run, by action, family (tm, ds, admin) and result.",
    labels: ["action", "kind", "result"],
  },
  action_duration_seconds: {
    type: "histogram",
    help: "Wall time of driver actions, by action.",
    labels: ["action"],
    buckets: SECONDS,
  },
  errors_total: {
    type: "counter",
    help: "Failed actions by cause: unreachable, auth, hostkey, timeout, command, lock, usage, input, " +
      "config, copy, oned, other.",
    labels: ["action", "kind"],
  },
  cache_hits_total: {
    type: "counter",
    help: "Deployments served from a valid replica cache entry (no image byte read on the front-end).",
    labels: ["replica", "datastore"],
  },
  cache_misses_total: {
    type: "counter",
    help: "Deployments that had to fill the replica cache from the front-end.",
    labels: ["replica", "datastore"],
  },
  cache_fills_total: {
    type: "counter",
    help: "Cache fills by result: promoted (verified and cached) or not_promoted.",
    labels: ["replica", "result"],
  },
  cache_fallbacks_total: {
    type: "counter",
    help: "Deployments copied straight from the front-end instead of through the replica cache, by reason " +
      "(unreachable, timeout, lock_timeout, no_room, error).",
    labels: ["replica", "reason"],
  },
  cache_evictions_total: {
    type: "counter",
    help:
      "Items removed from replica caches to make room or on request, by kind (entry, stale-fill, orphan).",
    labels: ["replica", "kind"],
  },
  cache_evicted_bytes_total: {
    type: "counter",
    help: "Allocated bytes freed by evictions.",
    labels: ["replica"],
  },
  cache_lock_waits_total: {
    type: "counter",
    help: "Deployments that waited for another process filling the same cache entry.",
    labels: ["replica"],
  },
  cache_lock_wait_seconds: {
    type: "histogram",
    help: "Time deployments waited for another process's cache fill.",
    labels: ["replica"],
    buckets: LOCK_SECONDS,
  },
  cache_size_bytes: {
    type: "gauge",
    help: "Allocated bytes of a replica's cache folder for an image datastore, as last seen by onestor.",
    labels: ["replica", "datastore"],
  },
  transfer_bytes_total: {
    type: "counter",
    help: "Bytes of image data streams (tar stream, holes excluded), by hop and remote host.",
    labels: ["hop", "host"],
  },
  transfer_duration_seconds: {
    type: "histogram",
    help: "Wall time of image data transfers, by hop.",
    labels: ["hop"],
    buckets: SECONDS,
  },
  transfer_rate_bytes_per_second: {
    type: "histogram",
    help: "Throughput of each image data transfer (stream bytes / wall time), by hop.",
    labels: ["hop"],
    buckets: RATE,
  },
} as const satisfies Record<string, MetricSpec>;

/** A metric name of the catalogue. */
export type MetricName = keyof typeof METRICS;

/** The spec of a name, or undefined for a name this version does not know (a newer writer's). */
export function metricSpec(name: string): MetricSpec | undefined {
  return (METRICS as Record<string, MetricSpec>)[name];
}

/** Prefix of every exported name. */
export const METRIC_PREFIX = "onestor_";
