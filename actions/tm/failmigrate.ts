/**
 * TM `failmigrate <src_host> <dst_host> <vm_dir> <vm_id> <ds_id> [<caller_tm>]` (stdin: base64 VM XML):
 * undoes premigrate on the destination after a failed live migration (never touches the source); see core/live/migration.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { failmigrate } from "../../core/live/migration.ts";
import { runMigrationStep } from "./migration_step.ts";

/** Runs the action. */
export function run(context: ActionContext): Promise<void> {
  return runMigrationStep(context, failmigrate);
}
