/**
 * TM `restore <host>:<vm_dir> <vm_id> <img_id> <inc_id> <disk_id>`: replaces the VM's disks by
 * those of a backup image, listed by the backup datastore's driver; see core/backup/restore.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { ARGV0_VARIABLE } from "../invocation.ts";
import { restore } from "../../core/backup/restore.ts";
import { tmDirOf } from "../../core/live/migrate_other.ts";
import { dirnameOf } from "../../core/one/location.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const remotes = dirnameOf(tmDirOf(Deno.env.get(ARGV0_VARIABLE), Deno.cwd()));
  await restore(tmServices(context.driver), context.args, remotes);
}
