/**
 * Datastore `cp <IMAGE_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA): registers an image; prints `<SOURCE> <FORMAT>`.
 *
 * @module
 */

import { importImage } from "../../core/datastore/import.ts";
import { dsEnv } from "../../core/datastore/env.ts";
import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const result = await importImage(dsEnv(context.args, await context.stdin()));
  context.print(`${result.source} ${result.format}`);
}
