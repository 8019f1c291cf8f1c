/**
 * Datastore `snap_revert <IMAGE_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA): reverts a persistent image to a snapshot; prints nothing.
 *
 * @module
 */

import { revertSnapshot } from "../../core/datastore/snapshots.ts";
import { dsEnv } from "../../core/datastore/env.ts";
import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  await revertSnapshot(dsEnv(context.args, await context.stdin()));
}
