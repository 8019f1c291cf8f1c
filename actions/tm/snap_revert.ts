/**
 * TM `snap_revert <host>:<vm_dir>/disk.<i> <snap_id> <vm_id> <ds_id>`: the disk becomes a copy of snapshot `<id>`
 * (see core/tm/snapshot.ts).
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { parseId } from "../../core/tm/paths.ts";
import { tmServices } from "../../core/tm/services.ts";
import { revertSnapshot } from "../../core/tm/snapshot.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const [disk, snapId, vmId] = context.args;
  await revertSnapshot(tmServices(context.driver), { disk, snapId, vmId: parseId(vmId, "VM id") });
}
