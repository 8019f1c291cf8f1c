/**
 * TM `mkswap <size_mb> <host>:<vm_dir>/disk.<i> <vm_id> <ds_id>`: a volatile swap disk (raw, swap
 * signature labelled `swap`); see core/tm/volatile.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { parseId } from "../../core/tm/paths.ts";
import { tmServices } from "../../core/tm/services.ts";
import { makeVolatileDisk } from "../../core/tm/volatile.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const [sizeMb, destination, vmId] = context.args;
  await makeVolatileDisk(tmServices(context.driver), {
    sizeMb,
    format: "swap",
    destination,
    vmId: parseId(vmId, "VM id"),
  });
}
