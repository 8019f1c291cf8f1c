/**
 * TM `cpds <host>:<vm_dir>/disk.<i> <SOURCE> <snap_id> <vm_id> <ds_id>`: disk-saveas, a copy of a
 * VM disk (current state or a snapshot, running or not) becomes a new image file; see
 * core/live/save_as.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { saveAs } from "../../core/live/save_as.ts";
import { parseId } from "../../core/tm/paths.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const [disk, source, snapId, vmId] = context.args;
  await saveAs(tmServices(context.driver), { disk, source, snapId, vmId: parseId(vmId, "VM id") });
}
