/**
 * TM `premigrate <src_host> <dst_host> <vm_dir> <vm_id> <ds_id> [<caller_tm>]` (stdin: base64 VM XML):
 * prepares the destination VM folder of a live migration (everything the hypervisor's storage migration does not copy); see core/live/migration.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { premigrate } from "../../core/live/migration.ts";
import { runMigrationStep } from "./migration_step.ts";

/** Runs the action. */
export function run(context: ActionContext): Promise<void> {
  return runMigrationStep(context, premigrate);
}
