/**
 * The replica cache's figures for one image datastore, from the metrics store: hit ratio over all
 * time and the allocated size of its cache folders on every replica (as last seen). The image
 * datastore's monitor adds them to its output.
 *
 * @module
 */

import { parseSeriesKey, type Rollup } from "./rollup.ts";

/** Cache figures of one image datastore. */
export interface CacheFigures {
  hits: number;
  misses: number;
  /** hits / (hits + misses), null before the first deployment through a cache. */
  hitRatio: number | null;
  /** Sum over replicas of the datastore's cache folder size in bytes, null when never seen. */
  sizeBytes: number | null;
}

/** The figures of image datastore `datastoreId`. */
export function cacheFigures(rollup: Rollup, datastoreId: number): CacheFigures {
  const ds = String(datastoreId);
  let hits = 0;
  let misses = 0;
  for (const [key, v] of Object.entries(rollup.counters)) {
    const { name, labels } = parseSeriesKey(key);
    if (labels.datastore !== ds) continue;
    if (name === "cache_hits_total") hits += v;
    else if (name === "cache_misses_total") misses += v;
  }
  let size: number | null = null;
  for (const [key, g] of Object.entries(rollup.gauges)) {
    const { name, labels } = parseSeriesKey(key);
    if (name === "cache_size_bytes" && labels.datastore === ds) size = (size ?? 0) + g.v;
  }
  return { hits, misses, hitRatio: hits + misses > 0 ? hits / (hits + misses) : null, sizeBytes: size };
}
