/**
 * Upstream's `migrate_other`: a live migration is announced to the system datastore's driver only,
 * so that driver passes premigrate / postmigrate / failmigrate on to the driver of every other
 * `TM_MAD` among the VM's disks (a Ceph or shared image next to local disks), with the same
 * arguments plus its own name as 6th argument and the same base64 VM XML on stdin. A call that
 * already carries a 6th argument came from another driver and is not passed on again.
 *
 * Differences from upstream: a missing script is skipped with a warning (upstream ran it anyway and
 * ignored the error); a failing one is reported, so premigrate does not go on as if the other
 * driver had prepared its disks.
 *
 * @module
 */

import { OneStorError } from "../errors.ts";
import { logInfo, logWarn } from "../one/log.ts";
import type { VmView } from "../one/objects.ts";
import { lastLines, runCommand } from "../remote/process.ts";

/** The other drivers to call: distinct `DISK/TM_MAD` values other than `self`, in disk order. */
export function otherTmMads(vm: VmView, self: string): string[] {
  const out: string[] = [];
  for (const disk of vm.disks()) {
    const tm = disk.tmMad.trim();
    if (tm === "" || tm === self || out.includes(tm)) continue;
    // A driver name is a folder name under remotes/tm: never a path.
    if (!/^[A-Za-z0-9_.-]+$/.test(tm) || tm === "." || tm === "..") {
      logWarn(`Ignoring disk TM_MAD '${tm}': not a driver name`);
      continue;
    }
    out.push(tm);
  }
  return out;
}

/** What {@linkcode migrateOther} passes on. */
export interface MigrateOtherRequest {
  /** `premigrate`, `postmigrate` or `failmigrate`. */
  action: string;
  /** The 5 arguments oned gave (src host, dst host, VM dir, VM id, DS id). */
  args: readonly string[];
  /** The 6th argument when another driver called us; nothing is passed on then. */
  caller?: string;
  /** The base64 VM XML of stdin. */
  vmXmlBase64: string;
  /** The VM parsed from it. */
  vm: VmView;
  /** This driver's name (its folder under remotes/tm). */
  driver: string;
  /** The remotes `tm` folder holding the drivers. */
  tmDir: string;
  /** Kill a script after this long (0: no limit). */
  timeoutMs: number;
}

/** Runs the action of every other driver of the VM's disks; throws when one fails. */
export async function migrateOther(request: MigrateOtherRequest): Promise<void> {
  if (request.caller) return;
  const failures: string[] = [];
  for (const tm of otherTmMads(request.vm, request.driver)) {
    const script = `${request.tmDir}/${tm}/${request.action}`;
    try {
      await Deno.stat(script);
    } catch {
      logWarn(`No ${script} for the disks of driver ${tm}: skipped`);
      continue;
    }
    logInfo(`Call ${tm}/${request.action}`);
    const result = await runCommand([script, ...request.args, request.driver], {
      stdin: request.vmXmlBase64,
      timeoutMs: request.timeoutMs,
    });
    if (result.code !== 0) {
      const detail = lastLines(result.stderr.replace(/^(INFO|WARN|DEBUG|ERROR):.*$/gm, ""));
      failures.push(`${tm}/${request.action} failed (exit ${result.code})${detail ? `: ${detail}` : ""}`);
    }
  }
  if (failures.length > 0) throw new OneStorError(failures.join("; "));
}

/** The `tm` folder of the remotes onestor runs from: `<remotes>/tm` of the invoked path, or the default. */
export function tmDirOf(invokedAs: string | undefined, cwd = "/"): string {
  if (invokedAs && invokedAs.includes("/")) {
    const absolute = invokedAs.startsWith("/") ? invokedAs : `${cwd.replace(/\/$/, "")}/${invokedAs}`;
    const parts = absolute.split("/");
    // <remotes>/tm/<driver>/<action>
    if (parts.length >= 3) return parts.slice(0, -2).join("/") || "/";
  }
  const location = Deno.env.get("ONE_LOCATION");
  return location ? `${location}/var/remotes/tm` : "/var/lib/one/remotes/tm";
}
