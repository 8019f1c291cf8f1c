/**
 * Failpoints of the recovery steps, for fault-injection tests and for rehearsing failures on a
 * real cluster: `ONESTOR_RECOVERY_FAILPOINT=<step>[,<step>...]` in the environment of the process
 * that drives the step makes the remote script of that step fail at that exact place, after
 * everything before it in the script ran for real. The code around it (clean-up, retries, status)
 * runs unchanged. Steps: `commit` (on the replica, after the new point's file was received and
 * checked, before the record names it), `merge` (on the replica, before an old increment is
 * committed into the merged file), `cleanup` (on the hypervisor, after the point was committed),
 * `restore` (on the replica, after a point was rebuilt, before it is sent to the hypervisor).
 *
 * The other failures of a period are made for real in the tests: a backup job refused because
 * another one runs, a transfer whose connection is cut, a replica whose sshd is stopped.
 *
 * @module
 */

import { raw, sh, type ShellScript } from "../remote/shell.ts";

/** The steps that have a failpoint. */
export type FailpointStep = "commit" | "merge" | "cleanup" | "restore";

/** Exit status of a script stopped by a failpoint. */
export const EXIT_FAILPOINT = 97;

/** Whether the environment arms the failpoint of `step`. */
export function failpointArmed(step: FailpointStep): boolean {
  const value = Deno.env.get("ONESTOR_RECOVERY_FAILPOINT") ?? "";
  return value.split(",").map((s) => s.trim()).includes(step);
}

/** The shell line of the failpoint of `step`: a failure when armed, nothing otherwise. */
export function failpoint(step: FailpointStep): ShellScript {
  if (!failpointArmed(step)) return raw(":");
  return sh`echo ${`Injected failure at the ${step} step (ONESTOR_RECOVERY_FAILPOINT)`} >&2; exit ${EXIT_FAILPOINT}`;
}
