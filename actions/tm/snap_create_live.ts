/**
 * TM `snap_create_live <host>:<vm_dir>/disk.<i> <snap_id> <vm_id> <ds_id>`: a disk snapshot of a
 * running VM taken by the hypervisor; see core/live/snap_create_live.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { snapCreateLive } from "../../core/live/snap_create_live.ts";
import { parseId } from "../../core/tm/paths.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const [disk, snapId, vmId] = context.args;
  await snapCreateLive(tmServices(context.driver), { disk, snapId, vmId: parseId(vmId, "VM id") });
}
