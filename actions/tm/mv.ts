/**
 * TM `mv <hostA>:<path> <hostB>:<path> <vm_id> <ds_id>`: moves a VM folder between hosts and the
 * front-end (cold migration, stop/undeploy, resume); see core/tm/move.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { moveVmDir } from "../../core/tm/move.ts";
import { parseId } from "../../core/tm/paths.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const [source, destination, vmId, dsId] = context.args;
  await moveVmDir(tmServices(context.driver), {
    source,
    destination,
    vmId: parseId(vmId, "VM id"),
    dsId: parseId(dsId, "Datastore id"),
  });
}
