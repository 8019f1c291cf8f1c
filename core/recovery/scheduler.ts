/**
 * When periods run, without changing oned: `onestor recovery run` makes one pass and
 * `onestor recovery daemon` repeats passes (as a systemd service on the front-end).
 *
 * A pass reads oned's pools once (inventory.ts), the records of the protected disks once per
 * replica, and takes a point for every disk of a running VM whose newest point is at least FREQ
 * old (or has none). VMs are done in parallel, at most REPLICA_RECOVERY_PARALLEL at once; the
 * disks of one VM one after the other (libvirt runs one backup job per domain). A disk another
 * process is working on is skipped until the next pass.
 *
 * @module
 */

import { oneLine } from "../errors.ts";
import { logInfo, logWarn } from "../one/log.ts";
import type { OneClient } from "../one/xmlrpc.ts";
import type { TmServices } from "../tm/services.ts";
import { readRunState } from "./frontend_state.ts";
import { type ProtectedDisk, readInventory, runnable } from "./inventory.ts";
import { periodOptions, type PeriodOutcome, runPeriod } from "./period.ts";
import { latestPoint } from "./record.ts";
import { readReplicas, recordOf } from "./status.ts";

/** What a pass should do. */
export interface PassOptions {
  /** Only these VMs (empty: all). */
  vms?: readonly number[];
  /** Take a point now even when the newest is younger than FREQ. */
  force?: boolean;
}

/** What a pass did. */
export interface PassReport {
  /** Protected disks of running VMs seen. */
  protected: number;
  /** Periods run, with their outcomes. */
  outcomes: PeriodOutcome[];
  /** Front-end time when the next disk falls due (null: none protected). */
  nextDue: number | null;
}

/** A failed period is tried again after this long at most (not at every pass of the daemon). */
const RETRY_SECONDS = 60;

/** Runs `tasks` with at most `limit` at a time. */
export async function pool<T>(limit: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, tasks.length)) }, worker));
  return results;
}

/** Which of `disks` are due at front-end time `now`, and when the next one is. */
export async function dueDisks(
  services: TmServices,
  disks: readonly ProtectedDisk[],
  now: number,
  force: boolean,
): Promise<{ due: ProtectedDisk[]; nextDue: number | null }> {
  const snapsDir = services.config.replicaRecoverySnapsDir;
  const live = disks.filter(runnable);
  const view = await readReplicas(services.runner, snapsDir, live, services.controlTimeoutMs);
  const due: ProtectedDisk[] = [];
  let nextDue: number | null = null;
  for (const d of live) {
    const record = recordOf(view, snapsDir, d);
    const last = record ? latestPoint(record) : undefined;
    let when = last ? last.time + d.freq : now;
    const run = await readRunState(d.vmId, d.diskId);
    if (run.last_error && (!last || run.last_error.time >= last.time)) {
      // A failing disk is retried at its next FREQ, but at least every RETRY_SECONDS.
      when = Math.min(when, run.last_error.time + Math.min(d.freq, RETRY_SECONDS));
    }
    if (force || when <= now) due.push(d);
    else nextDue = nextDue === null ? when : Math.min(nextDue, when);
  }
  if (due.length > 0) nextDue = nextDue === null ? now : Math.min(nextDue, now);
  return { due, nextDue };
}

/** One pass (see the module doc). */
export async function runPass(
  services: TmServices,
  client: OneClient,
  options: PassOptions = {},
): Promise<PassReport> {
  const inventory = await readInventory(client);
  const wanted = options.vms && options.vms.length > 0 ? new Set(options.vms) : null;
  const disks = inventory.filter((d) => wanted === null || wanted.has(d.vmId));
  for (const d of disks) {
    if (d.problem !== null && (wanted !== null || d.state === 3)) {
      logWarn(`VM ${d.vmId} disk ${d.diskId} is not protected: ${d.problem}`);
    }
  }
  const now = Math.floor(Date.now() / 1000);
  const { due, nextDue } = await dueDisks(services, disks, now, options.force ?? false);
  const byVm = new Map<number, ProtectedDisk[]>();
  for (const d of due) byVm.set(d.vmId, [...(byVm.get(d.vmId) ?? []), d]);
  const opts = periodOptions(services);
  const perVm = await pool(
    services.config.replicaRecoveryParallel,
    [...byVm.values()].map((list) => async () => {
      const results: PeriodOutcome[] = [];
      for (const d of list) results.push(await runPeriod(services, d, opts));
      return results;
    }),
  );
  const outcomes = perVm.flat();
  return { protected: disks.filter(runnable).length, outcomes, nextDue };
}

/**
 * Passes until `signal` aborts, sleeping until the next disk falls due (at most
 * REPLICA_RECOVERY_POLL seconds, at least 5). A pass that fails (oned unreachable) is logged and
 * the daemon goes on.
 */
export async function runDaemon(services: TmServices, client: OneClient, signal: AbortSignal): Promise<void> {
  const poll = services.config.replicaRecoveryPoll;
  logInfo(
    `Recovery daemon started (passes at most every ${poll} s, ${services.config.replicaRecoveryParallel} VMs at once)`,
  );
  while (!signal.aborted) {
    let wait = poll;
    try {
      const report = await runPass(services, client);
      const failed = report.outcomes.filter((o) => o.status === "failed").length;
      if (report.outcomes.length > 0) {
        logInfo(
          `Pass: ${
            report.outcomes.length - failed
          } points taken, ${failed} failed, ${report.protected} disks protected`,
        );
      }
      if (report.nextDue !== null) {
        wait = Math.max(5, Math.min(poll, report.nextDue - Math.floor(Date.now() / 1000)));
      }
    } catch (error) {
      logWarn(`Recovery pass failed: ${oneLine(error)}`);
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, wait * 1000);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }
  logInfo("Recovery daemon stopped");
}
