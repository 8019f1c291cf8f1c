/**
 * TM `context <context.sh> [file...] <host>:<vm_dir>/disk.<i> <vm_id> <ds_id>`: builds the context
 * ISO on the front-end and sends it to the host (see core/tm/context_iso.ts).
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { contextDisk } from "../../core/tm/context_iso.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  await contextDisk(tmServices(context.driver), context.args);
}
