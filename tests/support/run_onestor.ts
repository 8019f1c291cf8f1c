/**
 * Helpers to run onestor as oned does: through the installed launcher symlinks, or as
 * `deno run main.ts` for subcommands.
 *
 * @module
 */

import { runCommand, type RunResult } from "../../core/remote/process.ts";

/** Absolute path of the checkout's main.ts. */
export const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Runs `onestor ARGS` as `deno run main.ts ARGS`. */
export function onestor(
  args: string[],
  options: { stdin?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RunResult> {
  return runCommand([Deno.execPath(), "run", "-A", "--no-check", "--quiet", MAIN, ...args], {
    stdin: options.stdin,
    env: options.env,
    timeoutMs: options.timeoutMs ?? 120_000,
  });
}

/** Installs onestor under `remotes` and returns the TM and DS folders. */
export async function installInto(
  remotes: string,
  names: { tm?: string; ds?: string } = {},
): Promise<{ tm: string; ds: string }> {
  const tm = names.tm ?? "onestor";
  const ds = names.ds ?? "onestor";
  // The bundle goes to the state folder: a scratch one next to the remotes, not the machine's.
  const result = await onestor([
    "install",
    "--remotes",
    remotes,
    "--tm-name",
    tm,
    "--ds-name",
    ds,
    "--quiet",
  ], { env: { ONESTOR_STATE_DIR: `${remotes}/.state` } });
  if (result.code !== 0) throw new Error(`install failed: ${result.stderr}`);
  return { tm: `${remotes}/tm/${tm}`, ds: `${remotes}/datastore/${ds}` };
}
