/**
 * TM `resize <host>:<vm_dir>/disk.<i> <size_mb> <vm_id> [<ds_id>]`: grows a disk of a VM that is
 * not running (see core/tm/resize.ts).
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { parseId } from "../../core/tm/paths.ts";
import { resizeDisk } from "../../core/tm/resize.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const [disk, sizeMb, vmId] = context.args;
  await resizeDisk(tmServices(context.driver), { disk, sizeMb, vmId: parseId(vmId, "VM id") });
}
