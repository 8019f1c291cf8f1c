/**
 * What premigrate, postmigrate and failmigrate share: the arguments and the base64 VM XML on stdin
 * become one request for their step in core/live/migration.ts.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { ARGV0_VARIABLE } from "../invocation.ts";
import { type MigrationRequest, migrationRequestFrom } from "../../core/live/migration.ts";
import { type TmServices, tmServices } from "../../core/tm/services.ts";

/** Runs one step of a live migration as an action. */
export async function runMigrationStep(
  context: ActionContext,
  step: (services: TmServices, request: MigrationRequest) => Promise<void>,
): Promise<void> {
  const request = migrationRequestFrom(
    context.args,
    await context.stdin(),
    Deno.env.get(ARGV0_VARIABLE),
    Deno.cwd(),
  );
  await step(tmServices(context.driver), request);
}
