/**
 * Datastore `stat <IMAGE_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA): prints the size in MiB the image will take.
 *
 * @module
 */

import { imageSizeMb } from "../../core/datastore/stat.ts";
import { dsEnv } from "../../core/datastore/env.ts";
import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  context.print(String(await imageSizeMb(dsEnv(context.args, await context.stdin()))));
}
