/**
 * Datastore `snap_flatten <IMAGE_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA): makes a snapshot the image and drops the others; prints nothing.
 *
 * @module
 */

import { flattenSnapshot } from "../../core/datastore/snapshots.ts";
import { dsEnv } from "../../core/datastore/env.ts";
import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  await flattenSnapshot(dsEnv(context.args, await context.stdin()));
}
