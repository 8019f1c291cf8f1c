/**
 * What the TM actions do for recovery points, in one place:
 *
 * - clone/ln: a protected disk after `onevm recover --recreate` is rebuilt from its point
 *   ({@linkcode cloneFromRecovery}); a newly deployed one starts its protection
 *   ({@linkcode protectAfterClone});
 * - delete: the points are kept for a recreate (history ACTION 14), removed otherwise
 *   (core/tm/delete.ts);
 * - snap_revert and restore (from a backup): the disk changed under the chain: its bitmaps go and
 *   the record says the next point must be a full copy ({@linkcode chainBroken});
 * - mvds: the recovery bitmaps are removed before the disk goes back to its image
 *   ({@linkcode dropDiskBitmaps});
 * - premigrate: a recovery job running on the source is stopped, it would block the migration
 *   ({@linkcode stopRecoveryJob}); postmigrate: whether the chain goes on on the destination is
 *   logged ({@linkcode probeAfterMigration}).
 *
 * Only the recreate can fail its action (a protected disk with no usable point, see
 * REPLICA_RECOVERY_FALLBACK); every other hook logs what it could not do and lets the action go on.
 *
 * @module
 */

import { oneLine, OneStorError } from "../errors.ts";
import { metrics } from "../metrics/metrics.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { HistoryAction, LcmState, type VmView } from "../one/objects.ts";
import type { DiskFacts } from "../tm/disk_facts.ts";
import type { VmFile } from "../tm/paths.ts";
import type { TmServices } from "../tm/services.ts";
import {
  abortRecoveryJobScript,
  dropBitmapsScript,
  probeChainScript,
  statusFileScript,
} from "./hypervisor_scripts.ts";
import { markDisk, startProtection } from "./protect.ts";
import { pointById } from "./record.ts";
import { restoreDisk } from "./restore.ts";
import { diskStore } from "./store.ts";
import { hypervisorGuard } from "./guard.ts";
import { statusLine } from "./status_line.ts";

/** Whether a disk is protected: RECOVERY_SNAPSHOT_FREQ set and the system datastore has REPLICA_HOST. */
export function isProtected(facts: Pick<DiskFacts, "recoveryFreq">, replica: string): boolean {
  return replica !== "" && facts.recoveryFreq !== null && facts.recoveryFreq > 0;
}

/**
 * Whether this clone/ln is the prolog of a deployment that follows `onevm recover --recreate`: the
 * previous history record's ACTION is 14 and the VM is in its prolog (PROLOG, or PROLOG_FAILURE
 * being retried). A disk hot-attached later to a recreated VM is not (HOTPLUG states).
 */
export function isRecreate(vm: VmView): boolean {
  const lcm = vm.lcmState;
  const prolog = lcm === LcmState.PROLOG || lcm === PROLOG_FAILURE;
  return prolog && vm.historyPrev("ACTION").trim() === String(HistoryAction.DELETE_RECREATE);
}

/** LCM_STATE PROLOG_FAILURE (VirtualMachine.h). */
const PROLOG_FAILURE = 39;

/**
 * Before clone/ln copies the image: rebuilds a protected disk from its recovery point when the
 * replica has one. Returns true when the disk is in place (the caller only grows it and marks it).
 * A recreate of a protected disk without a usable point fails, unless REPLICA_RECOVERY_FALLBACK
 * is `image` (then false: the caller deploys the image, logged).
 */
export async function cloneFromRecovery(
  services: TmServices,
  vm: VmView,
  dst: VmFile,
  facts: DiskFacts,
  replica: string,
): Promise<boolean> {
  if (dst.diskId === null || !isProtected(facts, replica)) return false;
  const label = `VM ${vm.id} disk ${dst.diskId}`;
  // Not after a recreate, the disk never ran elsewhere (a first deployment, a hot attach, a retried
  // prolog): its image is its content, and protection starts (or goes on) after the copy.
  if (!isRecreate(vm)) return false;
  const outcome = await restoreDisk(services, {
    vmId: vm.id,
    diskId: dst.diskId,
    replica,
    host: dst.host,
    vmDir: dst.vmDir,
    name: dst.name,
    sparse: facts.sparse,
  });
  metrics.count("recovery_restores_total", {
    replica,
    result: outcome.kind === "no-record" ? "no_record" : outcome.kind,
  });
  if (outcome.kind === "restored") return true;
  const why = outcome.kind === "no-record"
    ? `replica ${replica} holds no recovery point of it`
    : `no recovery point can be used (${outcome.reason})`;
  if (services.config.replicaRecoveryFallback === "image") {
    logWarn(
      `${label} is protected but ${why}: deploying its image instead (REPLICA_RECOVERY_FALLBACK=image)`,
    );
    return false;
  }
  throw new OneStorError(
    `${label} is protected by recovery points but ${why}; the disk was not deployed. ` +
      `Set REPLICA_RECOVERY_FALLBACK=image in onestor.conf to deploy the image instead`,
  );
}

/**
 * After clone/ln put a protected disk in place: a disk rebuilt from point N gets the bitmap of N
 * (the next point is an increment on N); a new one starts its protection.
 */
export async function protectAfterClone(
  services: TmServices,
  vm: VmView,
  dst: VmFile,
  facts: DiskFacts,
  replica: string,
  source: string,
  restored: boolean,
): Promise<void> {
  if (dst.diskId === null) return;
  if (!isProtected(facts, replica)) {
    if (facts.recoveryFreq !== null && replica === "") {
      logInfo(
        `RECOVERY_SNAPSHOT_FREQ of disk ${dst.diskId} has no effect: the system datastore has no REPLICA_HOST`,
      );
    }
    return;
  }
  if (!restored) {
    await startProtection(services, {
      vmId: vm.id,
      diskId: dst.diskId,
      host: dst.host,
      vmDir: dst.vmDir,
      disk: dst.path,
      replica,
      source,
    });
    return;
  }
  const store = diskStore(services, replica, vm.id, dst.diskId);
  try {
    const record = (await store.read()).record;
    const head = record?.head ?? null;
    const point = record && head !== null ? pointById(record, head) : undefined;
    if (!point) return;
    const marked = await markDisk(
      services,
      {
        host: dst.host,
        vmDir: dst.vmDir,
        disk: dst.path,
        diskId: dst.diskId,
      },
      point.id,
      statusLine(dst.diskId, point.time, null),
    );
    if (!marked.bitmap) {
      logInfo(`Disk ${dst.diskId}: no changed-block bitmap (${marked.why}): the next point is a full copy`);
    }
  } catch (error) {
    logWarn(
      `Disk ${dst.diskId}: recovery bitmap not added (${oneLine(error)}): the next point is a full copy`,
    );
  }
}

/**
 * Records on the replica that the disk's content changed under its chain (`why`: reverted to a
 * snapshot, restored from a backup): the next period copies the whole disk. Best effort.
 */
export async function chainBroken(
  services: TmServices,
  vm: VmView,
  diskId: number,
  why: string,
): Promise<void> {
  const disk = vm.disk(diskId);
  if (!disk || disk.recoverySnapshotFreq === null) return;
  let replica = "";
  try {
    const dsId = vm.systemDsId;
    replica = dsId === null ? "" : (await services.lookup.datastore(dsId)).replicaHost;
  } catch (error) {
    logWarn(`Disk ${diskId}: recovery record not updated (${oneLine(error)})`);
    return;
  }
  if (replica === "") return;
  const store = diskStore(services, replica, vm.id, diskId);
  for (let i = 0; i < 5; i++) {
    try {
      const state = await store.read();
      if (!state.record) return;
      await store.writeRecord(state.recordText, { ...state.record, broken: why, updated_at: store.now() });
      logInfo(`Disk ${diskId}: ${why}; its next recovery point is a full copy`);
      return;
    } catch (error) {
      if (i === 4) logWarn(`Disk ${diskId}: recovery record not updated (${oneLine(error)}); ${why}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Removes the recovery bitmaps of a disk no domain uses (best effort). */
export async function dropDiskBitmaps(services: TmServices, host: string, disk: string): Promise<void> {
  await services.runner.run(host, dropBitmapsScript(hypervisorGuard(services.config, host), disk), {
    what: `Error removing the recovery bitmaps of ${disk}`,
    timeoutMs: services.controlTimeoutMs,
  }).catch((error) => logWarn(`Recovery bitmaps left in ${host}:${disk}: ${oneLine(error)}`));
}

/** premigrate: stops a recovery job on the source domain (it is taken again after the migration). */
export async function stopRecoveryJob(services: TmServices, host: string, domain: string): Promise<void> {
  try {
    const out = await services.runner.output(
      host,
      abortRecoveryJobScript(services.config.libvirtUri, domain),
      {
        timeoutMs: services.controlTimeoutMs,
      },
    );
    if (/ONESTOR_ABORTED=1/.test(out)) {
      logInfo(
        `Stopped a recovery point job of ${domain} on ${host} for the migration; it is taken again afterwards`,
      );
    }
  } catch (error) {
    logWarn(`Could not check for a recovery job on ${host}: ${oneLine(error)}`);
  }
}

/**
 * postmigrate: for each protected disk, whether the bitmap of its last point came along with the
 * disk (the next point is then an increment) or not (a full copy), logged; the monitoring line
 * came along with the VM folder.
 */
export async function probeAfterMigration(
  services: TmServices,
  vm: VmView,
  host: string,
  vmDir: string,
  domain: string,
): Promise<void> {
  const disks = vm.disks().filter((d) => d.id !== null && (d.recoverySnapshotFreq ?? 0) > 0);
  if (disks.length === 0) return;
  let replica = "";
  try {
    const dsId = vm.systemDsId;
    replica = dsId === null ? "" : (await services.lookup.datastore(dsId)).replicaHost;
  } catch {
    return;
  }
  if (replica === "") return;
  for (const d of disks) {
    const diskId = d.id!;
    try {
      const store = diskStore(services, replica, vm.id, diskId);
      const record = (await store.read()).record;
      if (!record || record.head === null) continue;
      const out = await services.runner.output(
        host,
        probeChainScript(services.config.libvirtUri, domain, `${vmDir}/disk.${diskId}`, diskId, record.head),
        { timeoutMs: services.controlTimeoutMs },
      );
      const chain = out.match(/^ONESTOR_CHAIN=(.*)$/m)?.[1] ?? "unknown";
      if (chain === "ok") {
        logInfo(`Disk ${diskId}: the recovery bitmap came along; the next point is an increment`);
      } else logInfo(`Disk ${diskId}: the next recovery point is a full copy (${chain})`);
    } catch (error) {
      logWarn(`Disk ${diskId}: recovery chain not checked on ${host}: ${oneLine(error)}`);
    }
  }
}

/** Leaves a monitoring line for a disk (best effort). */
export async function leaveStatus(
  services: TmServices,
  host: string,
  vmDir: string,
  diskId: number,
  time: number | null,
  error: string | null,
): Promise<void> {
  await services.runner.run(
    host,
    statusFileScript(hypervisorGuard(services.config, host), vmDir, diskId, statusLine(diskId, time, error)),
    {
      what: `Error writing the recovery status of disk ${diskId} in ${vmDir}`,
      check: false,
      timeoutMs: services.controlTimeoutMs,
    },
  ).catch(() => {});
}
