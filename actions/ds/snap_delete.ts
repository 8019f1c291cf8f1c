/**
 * Datastore `snap_delete <IMAGE_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA): deletes a snapshot of a persistent image; prints nothing.
 *
 * @module
 */

import { deleteSnapshot } from "../../core/datastore/snapshots.ts";
import { dsEnv } from "../../core/datastore/env.ts";
import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  await deleteSnapshot(dsEnv(context.args, await context.stdin()));
}
