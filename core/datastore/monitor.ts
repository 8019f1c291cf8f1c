/**
 * Datastore `monitor` (spec §6.2): the space of BASE_PATH's file system, from `df -B1M -P`, on the
 * front-end or a BRIDGE_LIST host (random among the usable ones, as upstream).
 *
 * @module
 */

import { OneStorError } from "../errors.ts";
import { controlTimeoutMs } from "../runtime.ts";
import { type DsEnv, workHost } from "./env.ts";
import { checkBasePath } from "./paths.ts";
import { fsSpace } from "./space.ts";

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
  return `USED_MB=${space.used}\nFREE_MB=${space.free}\nTOTAL_MB=${space.total}`;
}
