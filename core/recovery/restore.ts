/**
 * Rebuilding a protected disk from a recovery point: what clone/ln do after `onevm recover
 * --recreate` (spec §5.5), and what `onestor recovery restore VMID --point N` prepares.
 *
 * The point's chain (`base` ← `merged` ← `inc.<n>`, or `full.<n>`) is checked file by file
 * against the checksums recorded when each file was written, converted on the replica into one
 * standalone file in the disk's own format (a raw disk comes back raw), compared with the chain by
 * `qemu-img compare`, and only then copied to the hypervisor through the copy primitive (stream
 * checksum, written aside, renamed into `disk.<i>`). The disk is a regular file, like any other
 * deployment: persistent images come back as real files (upstream #6147).
 *
 * Which point: the one chosen with `onestor recovery restore --point N`, else the newest. When
 * the newest cannot be verified, older kept points are tried in turn and the log says which one
 * was used and why; a chosen point is the only one tried.
 *
 * @module
 */

import { oneLine, OneStorError } from "../errors.ts";
import { logInfo, logWarn } from "../one/log.ts";
import type { TmServices } from "../tm/services.ts";
import { storageRoute } from "../cache/targets.ts";
import { copyEntries } from "../transfer/copy.ts";
import { trackCopy } from "../progress/copy_progress.ts";
import { pointById, pointChain, type RecoveryPoint, type RecoveryRecord } from "./record.ts";
import { rebuildScript, verifyChainScript } from "./replica_scripts.ts";
import { diskStore, renewEvery } from "./store.ts";

/** What a recreate found. */
export type RestoreOutcome =
  /** The disk was rebuilt from `point`. */
  | { kind: "restored"; point: RecoveryPoint; record: RecoveryRecord; seconds: number }
  /** The replica holds no recovery record for the disk (never protected, or its data was removed). */
  | { kind: "no-record" }
  /** There is a record, but no point could be used (or the replica could not be asked): why. */
  | { kind: "unusable"; reason: string };

/** The disk to rebuild. */
export interface RestoreRequest {
  vmId: number;
  diskId: number;
  replica: string;
  /** Hypervisor, VM folder and disk file name (`disk.<i>`). */
  host: string;
  vmDir: string;
  name: string;
  /** Keep holes (SPARSE). */
  sparse: boolean;
}

function token(): string {
  return [...crypto.getRandomValues(new Uint8Array(5))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Rebuilds the disk from its newest (or chosen) usable point (see the module doc). */
export async function restoreDisk(services: TmServices, request: RestoreRequest): Promise<RestoreOutcome> {
  const started = performance.now();
  const label = `VM ${request.vmId} disk ${request.diskId}`;
  const store = diskStore(services, request.replica, request.vmId, request.diskId);
  const leaseSeconds = services.config.replicaLeaseSeconds;
  let state;
  try {
    state = await store.read();
  } catch (error) {
    return { kind: "unusable", reason: `replica ${request.replica} cannot be read: ${oneLine(error)}` };
  }
  if (!state.exists || state.recordText === null) return { kind: "no-record" };
  // A period still running (an old host that is alive) finishes first; a dead holder's lease expires.
  const held = await store.acquire("restore", leaseSeconds, leaseSeconds * 2 + 5).catch((e) => e as Error);
  if (held === null) return { kind: "unusable", reason: `the recovery data of ${label} stays busy` };
  if (held instanceof Error) return { kind: "unusable", reason: oneLine(held) };
  const renewal = renewEvery(store, held, leaseSeconds);
  try {
    state = await store.read();
    const record = state.record;
    if (!record) {
      return {
        kind: "unusable",
        reason: state.recordText === null
          ? "its recovery record is gone"
          : "its recovery record is unreadable",
      };
    }
    const chosen = record.restore_point;
    const candidates = chosen !== null
      ? [pointById(record, chosen)].filter((p): p is RecoveryPoint => p !== undefined)
      : [...record.points].reverse();
    if (candidates.length === 0) {
      return {
        kind: "unusable",
        reason: chosen !== null ? `the chosen point ${chosen} does not exist` : "it has no recovery point",
      };
    }
    const problems: string[] = [];
    const out = `.restore-${token()}`;
    for (const point of candidates) {
      let chain: string[];
      let allocated: number | null = null;
      try {
        chain = pointChain(record, point.id);
        const rebuilt = await services.runner.output(
          request.replica,
          rebuildScript(store.guard, {
            dir: store.dir,
            chain: chain.map((name) => ({ name, sum: record.files[name].sum })),
            algorithm: record.algorithm,
            outDir: out,
            outName: request.name,
            format: record.format === "raw" ? "raw" : "qcow2",
          }),
          { what: `Error rebuilding point ${point.id} of ${label}`, timeoutMs: services.transferTimeoutMs },
        );
        allocated = Number(rebuilt.match(/^ONESTOR_ALLOCATED=([0-9]+)$/m)?.[1]) || null;
      } catch (error) {
        problems.push(`point ${point.id}: ${oneLine(error)}`);
        logWarn(`${label}: point ${point.id} cannot be used: ${oneLine(error)}`);
        continue;
      }
      try {
        const route = await storageRoute(services.lookup, request.host, request.replica);
        const copy = await trackCopy(services.runner, {
          label: `Rebuilding disk ${request.diskId} of VM ${request.vmId} from recovery point ${point.id}`,
          total: allocated,
          host: request.host,
          dir: request.vmDir,
        }, () =>
          copyEntries(services.runner, {
            from: { host: request.replica, dir: `${store.dir}/${out}`, entries: [{ name: request.name }] },
            to: { host: request.host, dir: request.vmDir, confine: services.confine },
            sparse: request.sparse,
            checksum: services.checksum,
            toHopOptions: services.config.replicaSshOpts,
            timeoutMs: services.transferTimeoutMs,
            hop: "replica_to_host",
            what: `Error copying point ${point.id} of ${label} from ${request.replica} to ${request.host}`,
            route,
          }));
        const when = new Date(point.time * 1000).toISOString();
        if (point.id !== candidates[0].id) {
          logWarn(`${label}: rebuilt from the older point ${point.id} (${when}): ${problems.join("; ")}`);
        }
        logInfo(
          `${label}: rebuilt from recovery point ${point.id} of ${when} ` +
            `(${(copy.streamBytes / 1048576).toFixed(1)} MiB from ${request.replica} in ${
              copy.seconds.toFixed(1)
            } s)`,
        );
      } finally {
        await store.remove([out]).catch(() => {});
      }
      const next: RecoveryRecord = {
        ...record,
        head: point.id,
        restore_point: null,
        broken: null,
        last_restore: { point: point.id, time: store.now(), host: request.host },
        updated_at: store.now(),
      };
      await store.writeRecord(state.recordText, next);
      return { kind: "restored", point, record: next, seconds: (performance.now() - started) / 1000 };
    }
    return { kind: "unusable", reason: problems.join("; ") };
  } finally {
    await renewal.stop();
    await store.release(held);
  }
}

/**
 * `onestor recovery restore VMID --point N`: checks point N of a disk (its files against their
 * checksums) and makes it the point the next recreate rebuilds the disk from; `null` goes back to
 * the newest.
 */
export async function choosePoint(
  services: TmServices,
  target: { vmId: number; diskId: number; replica: string },
  point: number | null,
): Promise<RecoveryPoint | null> {
  const label = `VM ${target.vmId} disk ${target.diskId}`;
  const store = diskStore(services, target.replica, target.vmId, target.diskId);
  const leaseSeconds = services.config.replicaLeaseSeconds;
  const held = await store.acquire("select", leaseSeconds, leaseSeconds * 2 + 5);
  if (!held) throw new OneStorError(`The recovery data of ${label} is busy; try again`);
  try {
    const state = await store.read();
    const record = state.record;
    if (!record) throw new OneStorError(`${label} has no recovery record on ${target.replica}`);
    let chosen: RecoveryPoint | null = null;
    if (point !== null) {
      chosen = pointById(record, point) ?? null;
      if (!chosen) {
        const ids = record.points.map((p) => p.id).join(", ") || "none";
        throw new OneStorError(`${label} has no recovery point ${point} (points: ${ids})`);
      }
      const chain = pointChain(record, point);
      await services.runner.run(
        target.replica,
        verifyChainScript(
          store.dir,
          chain.map((name) => ({ name, sum: record.files[name].sum })),
          record.algorithm,
        ),
        { what: `Point ${point} of ${label} is not usable`, timeoutMs: services.transferTimeoutMs },
      );
    }
    await store.writeRecord(state.recordText, { ...record, restore_point: point, updated_at: store.now() });
    return chosen;
  } finally {
    await store.release(held);
  }
}
