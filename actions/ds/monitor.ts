/**
 * Datastore `monitor <DS_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA): prints USED_MB, FREE_MB and
 * TOTAL_MB of the datastore's file system. On an empty value it prints upstream's
 * `Empty value found: ...` line on stdout too, and exits 1.
 *
 * @module
 */

import { dsEnv } from "../../core/datastore/env.ts";
import { monitorDatastore, MonitorError } from "../../core/datastore/monitor.ts";
import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  try {
    context.print(await monitorDatastore(dsEnv(context.args, await context.stdin(), "Datastore id")));
  } catch (error) {
    if (error instanceof MonitorError) context.print(error.message);
    throw error;
  }
}
