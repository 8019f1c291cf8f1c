/**
 * TM `postbackup_live <host>:<vm_dir> <disk_ids> <deploy_id> <bj_id> <vm_id> <ds_id>` (stdin: VM XML):
 * aborts a leftover live backup job and removes the backup folders; see core/backup/postbackup.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { postbackup } from "../../core/backup/postbackup.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  await postbackup(tmServices(context.driver), context.args, await context.stdin(), true);
}
