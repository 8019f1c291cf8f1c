/**
 * TM `mvds <host>:<vm_dir>/disk.<i> <SOURCE> <vm_id> <ds_id>`: copies a persistent disk (and its
 * snapshots) back to its image (see core/tm/save_disk.ts).
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { parseId } from "../../core/tm/paths.ts";
import { saveDisk } from "../../core/tm/save_disk.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const [disk, target, vmId] = context.args;
  await saveDisk(tmServices(context.driver), { disk, target, vmId: parseId(vmId, "VM id") });
}
