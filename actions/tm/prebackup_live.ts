/**
 * TM `prebackup_live <host>:<vm_dir> <disk_ids> <deploy_id> <bj_id> <vm_id> <ds_id>` (stdin: VM XML):
 * live backup of a running VM's disks into its backup folder (libvirt push-mode job); see core/backup/prebackup.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { prebackup } from "../../core/backup/prebackup.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  await prebackup(tmServices(context.driver), context.args, await context.stdin(), true);
}
