/**
 * TM `mkimage <size_mb> <format> <host>:<vm_dir>/disk.<i> <vm_id> <ds_id>`: a volatile disk with
 * the disk's FS in the given format (see core/tm/volatile.ts).
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { parseId } from "../../core/tm/paths.ts";
import { tmServices } from "../../core/tm/services.ts";
import { makeVolatileDisk } from "../../core/tm/volatile.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const [sizeMb, format, destination, vmId] = context.args;
  await makeVolatileDisk(tmServices(context.driver), {
    sizeMb,
    format,
    destination,
    vmId: parseId(vmId, "VM id"),
  });
}
