/**
 * Datastore `rm <IMAGE_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA): deletes an image, its snapshots and side files; prints nothing.
 *
 * @module
 */

import { removeImage } from "../../core/datastore/remove.ts";
import { dsEnv } from "../../core/datastore/env.ts";
import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  await removeImage(dsEnv(context.args, await context.stdin()));
}
