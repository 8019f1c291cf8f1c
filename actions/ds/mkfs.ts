/**
 * Datastore `mkfs <IMAGE_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA): makes an empty datablock (or reserves a name for FORMAT save_as); prints `<SOURCE>`.
 *
 * @module
 */

import { makeDatablockImage } from "../../core/datastore/mkfs.ts";
import { dsEnv } from "../../core/datastore/env.ts";
import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  context.print(await makeDatablockImage(dsEnv(context.args, await context.stdin())));
}
