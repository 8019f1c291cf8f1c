/**
 * TM `postmigrate <src_host> <dst_host> <vm_dir> <vm_id> <ds_id> [<caller_tm>]` (stdin: base64 VM XML):
 * removes the source VM folder of a live migration, once the destination is verified; see core/live/migration.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { postmigrate } from "../../core/live/migration.ts";
import { runMigrationStep } from "./migration_step.ts";

/** Runs the action. */
export function run(context: ActionContext): Promise<void> {
  return runMigrationStep(context, postmigrate);
}
