/**
 * TM `delete <host>:<path> <vm_id> <ds_id>`: removes a disk or a VM folder (see core/tm/delete.ts).
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { parseId } from "../../core/tm/paths.ts";
import { deletePath } from "../../core/tm/delete.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const [target, vmId, dsId] = context.args;
  await deletePath(tmServices(context.driver), {
    target,
    vmId: parseId(vmId, "VM id"),
    dsId: parseId(dsId, "Datastore id"),
  });
}
