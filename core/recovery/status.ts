/**
 * The state of every protected disk, for `onestor recovery status [--json]`, the scheduler and
 * `onestor doctor`: oned's pools (which disks, where they run), the replicas' records (the points)
 * and the front-end's memory of the last periods (errors the replica never saw).
 *
 * The JSON form is an interface (the doctor reads it): fields are only ever added. Version 1:
 * ```
 * { "version": 1, "generated_at": <epoch s>, "disks": [ {
 *     "vm": 7, "vm_name": "web", "disk": 0, "host": "hv1", "replica": "replica",
 *     "freq_seconds": 3600, "state": "ok", "problem": null, "vm_running": true,
 *     "last_point": { "id": 3, "time": <epoch s>, "age_seconds": 812, "kind": "incremental",
 *                     "bytes": 1049600, "data": 1048576, "quiesced": false } | null,
 *     "points": [ { "id": 3, "time": <epoch s>, "kind": "incremental" } ],
 *     "next_due": <epoch s> | null, "restore_point": null, "chain_broken": null,
 *     "last_error": { "time": <epoch s>, "message": "..." } | null, "last_warning": null,
 *     "replica_error": null } ] }
 * ```
 * `state`: `ok` (a point younger than FREQ), `due` (older than FREQ: the next pass takes one),
 * `stale` (older than twice FREQ while the VM runs), `failing` (the last period failed), `no-point` (none yet), `not-running` (the VM does not
 * run: no point is due), `not-protected` (the attribute is set but cannot work, see `problem`),
 * `unknown` (the replica could not be read, see `replica_error`).
 *
 * @module
 */

import type { HostRunner } from "../remote/runner.ts";
import { type DiskRunState, readRunState } from "./frontend_state.ts";
import { type ProtectedDisk, runnable } from "./inventory.ts";
import { diskRecoveryDir } from "./names.ts";
import { latestPoint, type PointKind, type RecoveryRecord } from "./record.ts";
import { readRecords } from "./store.ts";

/** Version of the JSON document. */
export const STATUS_VERSION = 1;

/** States of a protected disk (see the module doc). */
export type DiskState =
  | "ok"
  | "due"
  | "stale"
  | "failing"
  | "no-point"
  | "not-running"
  | "not-protected"
  | "unknown";

/** The status of one protected disk (JSON field names are part of the interface). */
export interface DiskStatus {
  vm: number;
  vm_name: string;
  disk: number;
  host: string;
  replica: string;
  freq_seconds: number;
  state: DiskState;
  problem: string | null;
  vm_running: boolean;
  last_point: {
    id: number;
    time: number;
    age_seconds: number;
    kind: PointKind;
    bytes: number;
    data: number;
    quiesced: boolean | null;
  } | null;
  points: { id: number; time: number; kind: PointKind }[];
  next_due: number | null;
  restore_point: number | null;
  chain_broken: string | null;
  last_error: { time: number; message: string } | null;
  last_warning: string | null;
  replica_error: string | null;
}

/** The whole report. */
export interface StatusReport {
  version: number;
  generated_at: number;
  disks: DiskStatus[];
}

/** What the replicas said about the disks: records by folder, or the error of each replica. */
export interface ReplicaView {
  records: Map<string, RecoveryRecord | null>;
  errors: Map<string, string>;
}

/** Reads the records of `disks` from their replicas (one call per replica, in parallel). */
export async function readReplicas(
  runner: HostRunner,
  snapsDir: string,
  disks: readonly ProtectedDisk[],
  timeoutMs: number,
): Promise<ReplicaView> {
  const byReplica = new Map<string, string[]>();
  for (const d of disks) {
    if (d.replica === "" || d.problem !== null) continue;
    const list = byReplica.get(d.replica) ?? [];
    list.push(diskRecoveryDir(snapsDir, d.vmId, d.diskId));
    byReplica.set(d.replica, list);
  }
  const records = new Map<string, RecoveryRecord | null>();
  const errors = new Map<string, string>();
  await Promise.all([...byReplica.entries()].map(async ([replica, dirs]) => {
    try {
      const read = await readRecords(runner, replica, dirs, timeoutMs);
      for (const [dir, record] of read.records) records.set(`${replica}\0${dir}`, record);
    } catch (error) {
      errors.set(replica, error instanceof Error ? error.message : String(error));
    }
  }));
  return { records, errors };
}

/** The record of a disk in a {@linkcode ReplicaView} (undefined: none on the replica). */
export function recordOf(
  view: ReplicaView,
  snapsDir: string,
  disk: ProtectedDisk,
): RecoveryRecord | null | undefined {
  return view.records.get(`${disk.replica}\0${diskRecoveryDir(snapsDir, disk.vmId, disk.diskId)}`);
}

/** The status of one disk at front-end time `now`. */
export function diskStatus(
  disk: ProtectedDisk,
  record: RecoveryRecord | null | undefined,
  run: DiskRunState,
  replicaError: string | null,
  now: number,
): DiskStatus {
  const running = runnable(disk);
  const last = record ? latestPoint(record) : undefined;
  const age = last ? Math.max(0, now - last.time) : null;
  let state: DiskState;
  const failedLast = run.last_error !== null && (last === undefined || run.last_error.time >= last.time);
  if (disk.problem !== null) state = "not-protected";
  else if (replicaError !== null) state = "unknown";
  else if (!running) state = last ? "not-running" : "no-point";
  else if (failedLast) state = "failing";
  else if (!last) state = "no-point";
  else if (age! > 2 * disk.freq) state = "stale";
  else if (age! >= disk.freq) state = "due";
  else state = "ok";
  return {
    vm: disk.vmId,
    vm_name: disk.vmName,
    disk: disk.diskId,
    host: disk.host,
    replica: disk.replica,
    freq_seconds: disk.freq,
    state,
    problem: disk.problem,
    vm_running: running,
    last_point: last
      ? {
        id: last.id,
        time: last.time,
        age_seconds: age!,
        kind: last.kind,
        bytes: last.bytes,
        data: last.data,
        quiesced: last.quiesced,
      }
      : null,
    points: (record?.points ?? []).map((p) => ({ id: p.id, time: p.time, kind: p.kind })),
    next_due: running && disk.problem === null ? (last ? last.time + disk.freq : now) : null,
    restore_point: record?.restore_point ?? null,
    chain_broken: record?.broken ?? null,
    last_error: failedLast ? run.last_error : null,
    last_warning: run.last_warning,
    replica_error: replicaError,
  };
}

/** The status of every disk of an inventory. */
export async function statusReport(
  runner: HostRunner,
  snapsDir: string,
  disks: readonly ProtectedDisk[],
  timeoutMs: number,
): Promise<StatusReport> {
  const view = await readReplicas(runner, snapsDir, disks, timeoutMs);
  const now = Math.floor(Date.now() / 1000);
  const out: DiskStatus[] = [];
  for (const d of disks) {
    const run = await readRunState(d.vmId, d.diskId);
    out.push(diskStatus(d, recordOf(view, snapsDir, d), run, view.errors.get(d.replica) ?? null, now));
  }
  return { version: STATUS_VERSION, generated_at: now, disks: out };
}

function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)}h`;
  return `${(seconds / 86400).toFixed(1)}d`;
}

function mib(bytes: number): string {
  return bytes < 1048576 ? `${(bytes / 1024).toFixed(0)}K` : `${(bytes / 1048576).toFixed(1)}M`;
}

/** The report as a table for people. */
export function formatStatus(report: StatusReport): string {
  const rows = [[
    "VM",
    "DISK",
    "HOST",
    "REPLICA",
    "FREQ",
    "STATE",
    "LAST POINT",
    "AGE",
    "LAST INC",
    "POINTS",
    "NOTE",
  ]];
  for (const d of report.disks) {
    const p = d.last_point;
    const note = d.problem ?? d.last_error?.message ?? d.replica_error ?? d.chain_broken ?? d.last_warning ??
      "";
    rows.push([
      String(d.vm),
      String(d.disk),
      d.host || "-",
      d.replica || "-",
      age(d.freq_seconds),
      d.state,
      p ? `${p.id} (${p.kind})` : "-",
      p ? age(p.age_seconds) : "-",
      p ? mib(p.bytes) : "-",
      d.points.map((x) => x.id).join(",") || "-",
      note.length > 80 ? `${note.slice(0, 77)}...` : note,
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}
