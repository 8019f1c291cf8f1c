/**
 * TM `monitor <DS_ID>` (stdin: base64 DS_DRIVER_ACTION_DATA). A non-shared system datastore is
 * monitored from the hosts (monitor_ds), so, as upstream, this reads its input and prints nothing.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  await context.stdin();
}
