/**
 * `delete <host>:<path> <vm_id> <ds_id>` (spec §3.3, §5.5): removes a disk (with its snapshots
 * folder) or a whole VM folder on a host or on the front-end. Idempotent: a path already gone is
 * success. A host that cannot be reached fails the action with a message naming it (oned retries,
 * or ignores it during a recover cleanup).
 *
 * Recovery data on the replica: when the datastore of the call (or, for a disk, the VM's system
 * datastore) has REPLICA_HOST and the VM's last history ACTION is not 14 (recover --recreate, which
 * needs it), `<REPLICA_RECOVERY_SNAPS_DIR>/<vm>` is removed for the VM folder, or just that disk's
 * entries for a disk (a detached disk's recovery points; upstream removed the whole VM's data even
 * when one volatile disk was detached). A replica that is down, or an oned that
 * cannot answer, costs only a warning: the leftover is garbage, and the VM's own delete must not
 * fail because of it.
 *
 * @module
 */

import { InputError, OneStorError } from "../errors.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { isDisk, parseLocation } from "../one/location.ts";
import { HistoryAction, type VmView } from "../one/objects.ts";
import { forgetRunStates } from "../recovery/frontend_state.ts";
import { confined, replicaConfinement } from "../remote/confine.ts";
import { sh, type ShellScript } from "../remote/shell.ts";
import { checkVmPath, parseVmFile } from "./paths.ts";
import type { TmServices } from "./services.ts";

/** Arguments of delete. */
export interface DeleteRequest {
  /** `<host>:<path>` (a disk or a VM folder). */
  target: string;
  /** VM id. */
  vmId: number;
  /** Datastore id of the call (image DS for image disks, system DS otherwise). */
  dsId: number;
}

/** A script that removes each path (retrying 10 times, 1 s apart, like upstream); absent paths are fine. */
export function removePathsScript(paths: readonly string[]): ShellScript {
  return sh`set -- ${paths}
for p in "$@"; do
  n=0
  while [ -e "$p" ] || [ -L "$p" ]; do
    if err=$(rm -rf -- "$p" 2>&1); then break; fi
    n=$((n + 1))
    if [ "$n" -ge 10 ]; then printf 'Error deleting %s: %s\\n' "$p" "$err" >&2; exit 1; fi
    sleep 1
  done
done`;
}

/**
 * The entries of the replica's recovery folder that belong to `path` (a disk or the VM folder):
 * onestor's `disk.<i>.recovery` folder of recovery points, and upstream's names (a replica that
 * upstream's driver used before).
 */
export function recoveryEntries(snapsDir: string, vmId: number, path: string): string[] {
  const vmDir = `${snapsDir.replace(/\/+$/, "")}/${vmId}`;
  if (!isDisk(path)) return [vmDir];
  const name = path.slice(path.lastIndexOf("/") + 1);
  return [
    `${vmDir}/${name}`,
    `${vmDir}/${name}.snap`,
    `${vmDir}/${name}.replica_snap`,
    `${vmDir}/${name}.recovery`,
  ];
}

/**
 * The replica that may hold recovery data for the call: REPLICA_HOST of the datastore of the call
 * (the system datastore for the VM folder), else, for a disk, of the VM's system datastore (oned
 * names the image datastore in the DELETE of an image disk).
 */
async function replicaOf(
  services: TmServices,
  request: DeleteRequest,
  path: string,
): Promise<{ replica: string; vm: VmView | null }> {
  let replica = "";
  try {
    replica = (await services.lookup.datastore(request.dsId)).replicaHost;
  } catch (error) {
    logWarn(
      `Cannot read datastore ${request.dsId}, recovery data on its replica is left: ${
        (error as Error).message
      }`,
    );
    return { replica: "", vm: null };
  }
  if (replica === "" && !isDisk(path)) return { replica: "", vm: null };
  let vm: VmView | null = null;
  try {
    vm = await services.lookup.vm(request.vmId);
  } catch (error) {
    if (replica !== "") {
      logWarn(
        `Cannot read VM ${request.vmId}, its recovery data on ${replica} is kept: ${
          (error as Error).message
        }`,
      );
    }
    return { replica: "", vm: null };
  }
  const sysDs = vm.systemDsId;
  if (replica === "" && isDisk(path) && sysDs !== null && sysDs !== request.dsId) {
    replica = await services.lookup.datastore(sysDs).then((ds) => ds.replicaHost).catch(() => "");
  }
  return { replica, vm };
}

async function cleanReplica(services: TmServices, request: DeleteRequest, path: string): Promise<void> {
  const { replica, vm } = await replicaOf(services, request, path);
  if (replica === "" || vm === null) return;
  const action = vm.historyLast("ACTION");
  if (action === String(HistoryAction.DELETE_RECREATE)) {
    logInfo(`Keeping recovery data of VM ${request.vmId} on ${replica} (recover --recreate)`);
    return;
  }
  const entries = recoveryEntries(services.config.replicaRecoverySnapsDir, request.vmId, path);
  try {
    const script = confined(
      replicaConfinement(services.config),
      replica,
      { remove: entries },
      removePathsScript(entries),
    );
    await services.runner.run(replica, script, {
      what: `Deleting ${entries[0]}`,
      timeoutMs: services.controlTimeoutMs,
    });
    if (!isDisk(path)) await forgetRunStates(request.vmId);
  } catch (error) {
    if (!(error instanceof OneStorError)) throw error;
    logWarn(`Recovery data ${entries.join(" ")} left on replica ${replica}: ${error.message}`);
  }
}

/** Runs delete (see the module doc). */
export async function deletePath(services: TmServices, request: DeleteRequest): Promise<void> {
  const location = parseLocation(request.target);
  if (!location.hasHost || location.host === "") {
    throw new InputError(`Delete target must be HOST:PATH, got '${request.target}'`);
  }
  const path = isDisk(location.path)
    ? parseVmFile(request.target, "Delete target").path
    : checkVmPath(location.path, 3, "Delete target");
  // A disk goes with its snapshots and its recovery monitoring line.
  const paths = isDisk(path) ? [path, `${path}.snap`, `${path}.recovery`] : [path];
  await cleanReplica(services, request, path);
  logInfo(`Deleting ${path}`);
  const script = confined(services.confine, location.host, { remove: paths }, removePathsScript(paths));
  await services.runner.run(location.host, script, {
    what: `Deleting ${path}`,
    timeoutMs: services.controlTimeoutMs,
  });
}
