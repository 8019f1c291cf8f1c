/**
 * TM `postbackup <host>:<vm_dir> <disk_ids> <deploy_id> <bj_id> <vm_id> <ds_id>` (stdin: VM XML):
 * removes the backup folders once the backup datastore has the files; see core/backup/postbackup.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { postbackup } from "../../core/backup/postbackup.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  await postbackup(tmServices(context.driver), context.args, await context.stdin(), false);
}
