/**
 * TM `clone <fe>:<SOURCE> <host>:<vm_dir>/disk.<i> <vm_id> <ds_id>`: copies a non-persistent image
 * into the VM folder (see core/tm/clone.ts).
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { cloneDisk } from "../../core/tm/clone.ts";
import { parseId } from "../../core/tm/paths.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const [source, destination, vmId, dsId] = context.args;
  await cloneDisk(tmServices(context.driver), {
    action: "clone",
    source,
    destination,
    vmId: parseId(vmId, "VM id"),
    dsId: parseId(dsId, "Datastore id"),
    replicaHost: context.name.endsWith(".replica") ? (context.args[4] ?? "") : undefined,
  });
}
