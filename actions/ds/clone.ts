/**
 * Datastore `clone <IMAGE_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA): copies an image into a new one; prints `<SOURCE> [<DRIVER>]`.
 *
 * @module
 */

import { cloneImage } from "../../core/datastore/clone.ts";
import { dsEnv } from "../../core/datastore/env.ts";
import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const result = await cloneImage(dsEnv(context.args, await context.stdin()));
  context.print(result.driver ? `${result.source} ${result.driver}` : result.source);
}
