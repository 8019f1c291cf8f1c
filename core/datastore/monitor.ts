/**
 * Datastore `monitor` (spec §6.2): the space of BASE_PATH's file system, from `df -B1M -P`, on the
 * front-end or a BRIDGE_LIST host (random among the usable ones, as upstream).
 *
 * After the three values oned reads it adds the replica cache's figures for this image datastore,
 * from the front-end's metrics store (no SSH: a slow replica must never delay a monitor):
 * `REPLICA_CACHE_HIT_RATIO` (hits / deployments through a cache, all time) and
 * `REPLICA_CACHE_SIZE_MB` (its cache folders on every replica, as last seen). oned parses the
 * output as a template, so extra attributes are accepted; oned 7.x keeps only the three sizes.
 *
 * @module
 */

import { OneStorError } from "../errors.ts";
import { controlTimeoutMs } from "../runtime.ts";
import { type DsEnv, workHost } from "./env.ts";
import { checkBasePath } from "./paths.ts";
import { fsSpace } from "./space.ts";
import { cacheFigures } from "../metrics/cache_figures.ts";
import { readRollup } from "../metrics/rollup.ts";

/** `monitor` failed: stdout carries the message, as upstream's (exit 1). */
export class MonitorError extends OneStorError {
  constructor(message: string) {
    super(message, { exitCode: 1 });
    this.name = "MonitorError";
  }
}

/** Runs `monitor`: the three lines oned parses. */
export async function monitorDatastore(env: DsEnv): Promise<string> {
  const basePath = checkBasePath(env.action.dsBasePath);
  const host = await workHost(env.action.bridgeList, null);
  const space = await fsSpace(env.runner, host, basePath, "1M", controlTimeoutMs());
  if (space.used === "" || space.total === "" || space.free === "") {
    throw new MonitorError(
      `Empty value found: USED_MB=${space.used}, TOTAL_MB=${space.total}, FREE_MB=${space.free}`,
    );
  }
  const lines = [`USED_MB=${space.used}`, `FREE_MB=${space.free}`, `TOTAL_MB=${space.total}`];
  return [...lines, ...cacheLines(env.id)].join("\n");
}

/** The cache's lines for datastore `id` (none before its first deployment through a cache). */
export function cacheLines(id: number | null): string[] {
  if (id === null) return [];
  try {
    const figures = cacheFigures(readRollup(), id);
    const out: string[] = [];
    if (figures.hitRatio !== null) out.push(`REPLICA_CACHE_HIT_RATIO=${figures.hitRatio.toFixed(2)}`);
    if (figures.sizeBytes !== null) {
      out.push(`REPLICA_CACHE_SIZE_MB=${Math.ceil(figures.sizeBytes / 1048576)}`);
    }
    return out;
  } catch {
    return []; // the monitor's own values never depend on the metrics store
  }
}
