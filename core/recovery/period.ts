/**
 * One recovery period of one protected disk, driven by the front-end, as a transaction:
 *
 * 1. **Lease** on the disk's recovery folder on the replica (one process per disk); the record is
 *    read, an unfinished merge is finished, files the record does not name are removed.
 * 2. **Job** on the hypervisor (hypervisor_scripts.ts): the push-mode backup job copies the
 *    clusters written since the last point (or the whole disk when there is no usable bitmap, and
 *    the log says why) into a scratch qcow2 next to the disk, guest frozen by its agent when it
 *    has one; the domain's disks are checked before and after.
 * 3. **Transfer**: the replica pulls the scratch file from the hypervisor over the
 *    replica → hypervisor path the cache already uses (REPLICA_SSH_OPTS; the hypervisor's
 *    REPLICA_STORAGE_IP when set), through the copy primitive (checksummed stream, written aside,
 *    renamed). The hypervisor needs no key: it only accepts a connection.
 * 4. **Commit** on the replica: the file is chained to the head point's file, checked and
 *    checksummed, then the record naming the new point is written (conditionally).
 * 5. **After**: old increments beyond REPLICA_RECOVERY_KEEP are merged, unused files removed; on
 *    the hypervisor the scratch file and the old point's bitmap go, the new point's bitmap keeps
 *    recording; the monitoring line is written beside the disk.
 *
 * Before the commit any failure undoes step 2 on the hypervisor (scratch removed, the new
 * point's checkpoint dropped, the old bitmap kept), so the domain stays on its own disk and chain
 * and the next period builds on the same point again. After the commit a failure of step 5 is a
 * warning: the point is there, the next period finishes what was left.
 *
 * @module
 */

import { oneLine, OneStorError } from "../errors.ts";
import { metrics } from "../metrics/metrics.ts";
import type { PauseMode } from "../hypervisor/pause.ts";
import { logInfo, logWarn } from "../one/log.ts";
import type { TmServices } from "../tm/services.ts";
import { copyEntries } from "../transfer/copy.ts";
import { readRunState, writeRunState } from "./frontend_state.ts";
import {
  abandonScript,
  parseJobOutput,
  periodDoneScript,
  type PeriodJobResult,
  periodJobScript,
  statusFileScript,
} from "./hypervisor_scripts.ts";
import type { ProtectedDisk } from "./inventory.ts";
import { fullFile, incFile, scratchName } from "./names.ts";
import { hypervisorGuard } from "./guard.ts";
import {
  addPoint,
  applyMerge,
  collectGarbage,
  latestPoint,
  newRecord,
  planMerge,
  pointById,
  type RecoveryPoint,
  type RecoveryRecord,
} from "./record.ts";
import { finalizeScript, mergeScript } from "./replica_scripts.ts";
import { type DiskStore, diskStore, renewEvery, strayEntries } from "./store.ts";
import { statusLine } from "./status_line.ts";

/** Settings of a period. */
export interface PeriodOptions {
  /** REPLICA_RECOVERY_KEEP. */
  keep: number;
  /** How the guest is held still (from REPLICA_RECOVERY_QUIESCE). */
  pause: PauseMode;
  /** REPLICA_LEASE_SECONDS. */
  leaseSeconds: number;
}

/** What a period did. */
export interface PeriodOutcome {
  vmId: number;
  diskId: number;
  /** `done`: a new point; `failed`; `busy`: another process works on the disk. */
  status: "done" | "failed" | "busy";
  point: RecoveryPoint | null;
  /** The failure, or why the disk was busy. */
  error: string | null;
  /** Something left for the next period after the point was made. */
  warning: string | null;
  seconds: number;
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** The options of a period from the configuration. */
export function periodOptions(services: TmServices): PeriodOptions {
  return {
    keep: services.config.replicaRecoveryKeep,
    pause: services.config.replicaRecoveryQuiesce === "none" ? "none" : "agent-if-present",
    leaseSeconds: services.config.replicaLeaseSeconds,
  };
}

/** The address the replica connects to when it pulls from `host`: its REPLICA_STORAGE_IP, else its name. */
export async function pullAddress(services: TmServices, host: string): Promise<string> {
  try {
    const ip = (await services.lookup.host(host)).replicaStorageIp;
    return ip === "" ? host : ip;
  } catch {
    return host;
  }
}

/** Finishes a merge the record says was started (a crash in the middle). */
async function finishMerge(
  services: TmServices,
  store: DiskStore,
  recordText: string,
  record: RecoveryRecord,
): Promise<{ text: string; record: RecoveryRecord }> {
  const step = record.merging!;
  const out = await services.runner.output(
    store.replica,
    mergeScript(
      store.guard,
      store.dir,
      step.from,
      step.into,
      step.above,
      record.files[step.into].format,
      record.algorithm,
    ),
    { what: `Error merging ${step.from} into ${step.into}`, timeoutMs: services.transferTimeoutMs },
  );
  const above = markers(
    out.replace(/^ONESTOR_(SUM|SIZE)=.*$/gm, "").replace(/^ONESTOR_ABOVE_/gm, "ONESTOR_"),
  );
  const next = await applyMerge(record, step, markers(out), above, store.now());
  const text = await store.writeRecord(recordText, next);
  await store.remove([step.from]);
  return { text, record: next };
}

function markers(out: string): { sum: string; size: number } {
  const sum = out.match(/^ONESTOR_SUM=(\S+)$/m)?.[1];
  const size = Number(out.match(/^ONESTOR_SIZE=([0-9]+)$/m)?.[1]);
  if (!sum || !Number.isFinite(size)) {
    throw new OneStorError(`Unexpected answer from the replica: ${out.slice(0, 200)}`);
  }
  return { sum, size };
}

/** Merges and removes what REPLICA_RECOVERY_KEEP no longer needs; returns the record written. */
async function compact(
  services: TmServices,
  store: DiskStore,
  text: string,
  record: RecoveryRecord,
  keep: number,
): Promise<{ text: string; record: RecoveryRecord }> {
  for (let i = 0; i < 64; i++) {
    const step = planMerge(record, keep);
    if (!step) break;
    const journaled = { ...record, merging: step, updated_at: store.now() };
    text = await store.writeRecord(text, journaled);
    ({ text, record } = await finishMerge(services, store, text, journaled));
  }
  const garbage = collectGarbage(record, keep);
  if (garbage.remove.length > 0 || garbage.record.points.length !== record.points.length) {
    text = await store.writeRecord(text, { ...garbage.record, updated_at: store.now() });
    record = garbage.record;
    await store.remove(garbage.remove);
  }
  return { text, record };
}

/** Runs one period for `disk` (see the module doc). Never throws: the outcome says what happened. */
export async function runPeriod(
  services: TmServices,
  disk: ProtectedDisk,
  options: PeriodOptions,
): Promise<PeriodOutcome> {
  const started = performance.now();
  const runState = await readRunState(disk.vmId, disk.diskId);
  const now = () => Math.floor(Date.now() / 1000);
  runState.last_attempt = now();
  const label = `VM ${disk.vmId} disk ${disk.diskId}`;
  const outcome = (partial: Partial<PeriodOutcome>): PeriodOutcome => ({
    vmId: disk.vmId,
    diskId: disk.diskId,
    status: "failed",
    point: null,
    error: null,
    warning: null,
    seconds: (performance.now() - started) / 1000,
    ...partial,
  });
  const store = diskStore(services, disk.replica, disk.vmId, disk.diskId);
  const runner = services.runner;
  const uri = services.config.libvirtUri;
  const hvGuard = hypervisorGuard(services.config, disk.host);
  let lastPointTime: number | null = runState.last_point_time ?? null;
  let job: PeriodJobResult | null = null;
  let record: RecoveryRecord | null = null;
  let newId = 0;
  const scratch = scratchName(disk.diskId);
  let committed: RecoveryPoint | null = null;

  const held = await store.acquire("period", options.leaseSeconds).catch((error) => error as Error);
  if (held === null) {
    const holder = await store.holder().catch(() => null);
    return outcome({
      status: "busy",
      error: `${holder ? `${holder.owner} (${holder.purpose})` : "another process"} works on this disk`,
    });
  }
  if (held instanceof Error) {
    const message = `Replica ${disk.replica} cannot be used: ${oneLine(held)}`;
    await fail(message, false);
    return outcome({ error: message });
  }
  const renewal = renewEvery(store, held, options.leaseSeconds);
  try {
    const state = await store.read();
    let recordText = state.recordText;
    record = state.record;
    if (recordText !== null && record === null) {
      throw new OneStorError(`The recovery record in ${disk.replica}:${store.dir} is unreadable`);
    }
    if (record?.merging) {
      ({ text: recordText, record } = await finishMerge(services, store, recordText!, record));
    }
    lastPointTime = record ? latestPoint(record)?.time ?? null : null;
    runState.last_point_time = lastPointTime;
    const stray = strayEntries(state.entries, record);
    if (stray.length > 0) await store.remove(stray);

    const head = record && record.head !== null && record.broken === null
      ? pointById(record, record.head) ?? null
      : null;
    newId = record?.next_id ?? 0;
    const jobOut = await runner.output(
      disk.host,
      periodJobScript(hvGuard, {
        uri,
        domain: disk.domain,
        vmDir: disk.vmDir,
        disk: `${disk.vmDir}/disk.${disk.diskId}`,
        diskId: disk.diskId,
        head: head ? { id: head.id, time: head.time } : null,
        newId,
        scratch,
        pause: options.pause,
        freezeTimeoutSeconds: services.config.virshTimeout,
        timeoutSeconds: Math.ceil(services.transferTimeoutMs / 1000),
      }),
      {
        what: `Error taking recovery point ${newId} of ${label} on ${disk.host}`,
        timeoutMs: services.transferTimeoutMs,
      },
    );
    job = parseJobOutput(jobOut);
    const reason = job.mode === "full"
      ? (record?.broken ??
        (job.reason || (record ? "no earlier point" : "no recovery record on the replica")))
      : "";
    if (job.mode === "full") logInfo(`${label}: point ${newId} is a full copy: ${reason}`);

    const file = job.mode === "incremental" ? incFile(newId) : fullFile(newId);
    const copy = await copyEntries(runner, {
      from: { host: disk.host, dir: disk.vmDir, entries: [{ name: scratch, as: file }] },
      to: { host: disk.replica, dir: store.dir, confine: store.guard.confine },
      sparse: true,
      checksum: services.checksum,
      toHopOptions: services.config.replicaSshOpts,
      timeoutMs: services.transferTimeoutMs,
      hop: "host_to_replica",
      what: `Error copying recovery point ${newId} of ${label} from ${disk.host} to ${disk.replica}`,
      route: { mode: "pull", address: await pullAddress(services, disk.host) },
    });

    if (record === null) {
      record = newRecord({
        vm: disk.vmId,
        disk: disk.diskId,
        format: job.format,
        size: job.vsize,
        algorithm: algorithmOf(services),
        source: disk.source,
        now: store.now(),
      });
    }
    const parent = job.mode === "incremental" ? head!.top : null;
    const fin = await runner.output(
      disk.replica,
      finalizeScript(store.guard, {
        dir: store.dir,
        file,
        parent,
        parentFormat: parent === null ? "qcow2" : record.files[parent].format,
        algorithm: record.algorithm,
      }),
      {
        what: `Error checking recovery point ${newId} of ${label} on ${disk.replica}`,
        timeoutMs: services.transferTimeoutMs,
      },
    );
    const sizes = markers(fin);
    const data = Number(fin.match(/^ONESTOR_DATA=([0-9]+)$/m)?.[1] ?? job.data);
    const vsize = Number(fin.match(/^ONESTOR_VSIZE=([0-9]+)$/m)?.[1] ?? job.vsize);
    const seconds = (performance.now() - started) / 1000;
    const next = await addPoint(
      record,
      {
        id: newId,
        time: job.time,
        top: file,
        kind: job.mode,
        bytes: copy.streamBytes,
        data,
        quiesced: job.quiesced,
        ...(job.mode === "full" ? { reason } : {}),
        seconds: Math.round(seconds * 1000) / 1000,
      },
      { sum: sizes.sum, size: sizes.size, backing: parent, format: "qcow2" },
      store.now(),
      vsize,
    );
    const text = await store.writeRecord(recordText, next);
    record = next;
    committed = pointById(next, newId)!;
    lastPointTime = committed.time;

    const warnings: string[] = [];
    try {
      ({ record } = await compact(services, store, text, record, options.keep));
    } catch (error) {
      warnings.push(`merging older points is left for the next period: ${oneLine(error)}`);
    }
    try {
      await runner.run(
        disk.host,
        periodDoneScript(hvGuard, {
          uri,
          domain: disk.domain,
          vmDir: disk.vmDir,
          diskId: disk.diskId,
          scratch,
          oldHead: head?.id ?? null,
          newId,
          target: job.target,
          statusLine: statusLine(disk.diskId, committed.time, null),
        }),
        {
          what: `Error cleaning up after recovery point ${newId} of ${label} on ${disk.host}`,
          timeoutMs: services.controlTimeoutMs,
        },
      );
    } catch (error) {
      warnings.push(`the clean-up on ${disk.host} is left for the next period: ${oneLine(error)}`);
    }
    const warning = warnings.length > 0 ? warnings.join("; ") : null;
    if (warning) logWarn(`${label}: ${warning}`);
    logInfo(
      `${label}: point ${newId} (${job.mode}${
        job.quiesced ? ", file systems frozen" : ""
      }) on ${disk.replica}: ` +
        `${mib(copy.streamBytes)} moved, ${mib(data)} of data, in ${seconds.toFixed(1)} s`,
    );
    metrics.count("recovery_points_total", { replica: disk.replica, kind: job.mode, result: "done" });
    metrics.count("recovery_point_bytes_total", { replica: disk.replica, kind: job.mode }, copy.streamBytes);
    metrics.observe("recovery_period_seconds", { kind: job.mode }, seconds);
    runState.last_success = now();
    runState.last_point_time = committed.time;
    runState.last_error = null;
    runState.last_warning = warning;
    runState.last_period = {
      point: newId,
      kind: job.mode,
      reason,
      bytes: copy.streamBytes,
      data,
      seconds,
      host: disk.host,
    };
    await writeRunState(runState);
    return outcome({ status: "done", point: committed, warning });
  } catch (error) {
    const message = oneLine(error);
    await fail(message, true);
    return outcome({ error: message });
  } finally {
    await renewal.stop();
    await store.release(held);
  }

  /** Undoes the job on the hypervisor, leaves the error beside the disk and in the front-end state. */
  async function fail(message: string, undo: boolean): Promise<void> {
    logWarn(`${label}: recovery point not taken: ${message}`);
    const line = statusLine(disk.diskId, lastPointTime, message);
    if (undo && committed === null) {
      await runner.run(
        disk.host,
        abandonScript(hvGuard, {
          uri,
          domain: disk.domain,
          vmDir: disk.vmDir,
          diskId: disk.diskId,
          scratch,
          oldHead: record?.head ?? null,
          newId,
          statusLine: line,
        }),
        { check: false, timeoutMs: services.controlTimeoutMs },
      ).catch((e) => logWarn(`${label}: clean-up on ${disk.host} failed: ${oneLine(e)}`));
    } else {
      await runner.run(disk.host, statusFileScript(hvGuard, disk.vmDir, disk.diskId, line), {
        what: `Error writing the recovery status of disk ${disk.diskId} in ${disk.vmDir}`,
        check: false,
        timeoutMs: services.controlTimeoutMs,
      }).catch(() => {});
    }
    metrics.count("recovery_points_total", {
      replica: disk.replica,
      kind: job?.mode ?? "none",
      result: "failed",
    });
    runState.last_error = { time: now(), message };
    runState.last_period = {
      point: null,
      kind: job?.mode ?? null,
      reason: job?.reason ?? "",
      bytes: 0,
      data: 0,
      seconds: (performance.now() - started) / 1000,
      host: disk.host,
    };
    await writeRunState(runState);
  }
}

/**
 * The checksum program of the recovery files, on the replica: TRANSFER_CHECKSUM's coreutils program
 * (sha256sum, md5sum), else b2sum (coreutils, on every replica; xxhsum may be missing there).
 */
export function algorithmOf(services: TmServices): string {
  const algorithm = services.config.transferChecksum;
  return algorithm === "sha256" ? "sha256sum" : algorithm === "md5" ? "md5sum" : "b2sum";
}
