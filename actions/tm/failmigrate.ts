/**
 * TM `failmigrate <src_host> <dst_host> <vm_dir> <vm_id> <ds_id> [<caller_tm>]` (stdin: base64 VM XML):
 * undoes premigrate on the destination after a failed live migration (never touches the source); see core/live/migration.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { ARGV0_VARIABLE } from "../invocation.ts";
import { failmigrate, migrationRequestFrom } from "../../core/live/migration.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const request = migrationRequestFrom(
    context.args,
    await context.stdin(),
    Deno.env.get(ARGV0_VARIABLE),
    Deno.cwd(),
  );
  await failmigrate(tmServices(context.driver), request);
}
