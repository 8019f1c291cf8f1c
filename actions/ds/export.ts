/**
 * Datastore `export <IMAGE_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA): prints the IMPORT_INFO a marketplace needs.
 *
 * @module
 */

import { exportImage } from "../../core/datastore/export.ts";
import { dsEnv } from "../../core/datastore/env.ts";
import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  context.print(await exportImage(dsEnv(context.args, await context.stdin())));
}
