/**
 * TM `postmigrate <src_host> <dst_host> <vm_dir> <vm_id> <ds_id> [<caller_tm>]` (stdin: base64 VM XML):
 * removes the source VM folder of a live migration, once the destination is verified; see core/live/migration.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { ARGV0_VARIABLE } from "../invocation.ts";
import { migrationRequestFrom, postmigrate } from "../../core/live/migration.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const request = migrationRequestFrom(
    context.args,
    await context.stdin(),
    Deno.env.get(ARGV0_VARIABLE),
    Deno.cwd(),
  );
  await postmigrate(tmServices(context.driver), request);
}
