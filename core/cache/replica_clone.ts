/**
 * The replica path of TM clone/ln (spec §4): front-end -> the cluster's replica cache -> the
 * hypervisor. Called by the clone/ln actions when the VM's system datastore has REPLICA_HOST.
 *
 * - **Hit** (one SSH command, to the replica, which streams to the hypervisor): the entry is
 *   validated, pinned, copied replica -> hypervisor, unpinned; the front-end only stats the image
 *   (its checksum comes from the sidecar), no image byte leaves it.
 * - **Miss** (two): one process fills the entry (single flight, see obtain.ts) and forwards the
 *   stream to the hypervisor while it arrives (cut-through: about one hop for a cold deployment,
 *   SPARSE=NO disks and pulling hypervisors included); the others wait on the replica and are
 *   served the moment the entry is promoted.
 * - **No room** in the cache: the disk is copied straight from the front-end, uncached, logged.
 * - **Replica unusable** (unreachable, failing, or a fill not waitable within
 *   REPLICA_COPY_LOCK_TIMEOUT) and REPLICA_FALLBACK=yes: straight from the front-end, logged with
 *   the reason. A down cache host alone never fails a deployment.
 *
 * The hypervisor's side of every path is the same receiver (core/transfer/copy.ts): it makes the
 * VM folder and the `.monitor` marker, renames the verified disk into place and grows it to SIZE
 * (the TM action hands those steps over as `prepare` and `finish`).
 *
 * @module
 */

import { LockError, oneLine } from "../errors.ts";
import { errorKind } from "../metrics/error_kind.ts";
import { metrics } from "../metrics/metrics.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { basenameOf, dirnameOf } from "../one/location.ts";
import type { OneLookup } from "../one/lookup.ts";
import type { HostRunner } from "../remote/runner.ts";
import type { Confinement } from "../remote/confine.ts";
import type { ShellScript } from "../remote/shell.ts";
import {
  copyEntries,
  type CopyEntry,
  type CopyRequest,
  type CopyResult,
  FinishError,
} from "../transfer/copy.ts";
import type { Compression } from "../transfer/copy.ts";
import { agreedAlgorithm, type HashAlgorithm } from "../transfer/hashes.ts";
import { ownerId } from "./entry.ts";
import { logNotPromoted } from "./fill.ts";
import { type ImageStat, statImage } from "./identity.ts";
import { journalApplied, pendingInvalidations } from "./invalidate.ts";
import { DeliveryError, obtainEntry } from "./obtain.ts";
import { frontendStateDir } from "./state_dir.ts";
import { ReplicaFolder } from "./store.ts";
import { storageRoute } from "./targets.ts";

/** The settings the replica path reads. */
export interface ReplicaSettings {
  fallback: boolean;
  cutThrough: boolean;
  leaseSeconds: number;
  lockTimeoutSeconds: number;
  verify: "size-mtime" | "checksum";
  maxSizeMb: number | null;
  maxUsedPercent: number;
  /** REPLICA_SSH_FE_OPTS and REPLICA_SSH_OPTS. */
  frontendHopOptions: readonly string[];
  replicaHopOptions: readonly string[];
  /** TRANSFER_CHECKSUM (content identity of entries). */
  algorithm: HashAlgorithm;
  /** Content verification of copies ("none" or an algorithm). */
  copyChecksum: string;
  compression: Compression;
  controlTimeoutMs: number;
  transferTimeoutMs: number;
}

/** A clone/ln in replica mode, as the TM action hands it over. */
export interface ReplicaCloneRequest {
  action: "clone" | "ln";
  vmId: number;
  diskId: number | null;
  /** Image path on the front-end (the SOURCE, already normalised). */
  sourcePath: string;
  imageDsId: number;
  /** Hypervisor and `<vmdir>/disk.<i>`. */
  dest: { host: string; path: string };
  /** REPLICA_HOST of the system datastore. */
  replica: string;
  sparse: boolean;
  /** Runs on the hypervisor before the disk arrives (VM folder, `.monitor` marker). */
  prepare: ShellScript;
  /** Runs on the hypervisor once the disk is in place (growth, QCOW2_OPTIONS); null: nothing. */
  finish: ShellScript | null;
  /** Error text of a failed `finish`. */
  finishWhat: string;
  /** Where the copy may write on the hypervisor, and what `prepare`/`finish` write besides the disk. */
  confine: Confinement;
  writes: readonly string[];
}

/** What the disk's copy reported back (the output of `finish`). */
export interface ReplicaCloneResult {
  finishOutput: string;
}

/** Services of the replica path. */
export interface ReplicaServices {
  runner: HostRunner;
  lookup: OneLookup;
  settings: ReplicaSettings;
}

const mib = (bytes: number) => (bytes / 1048576).toFixed(1);

/** Entries of a disk copy: the image as `disk.<i>`, its `.snap` folder as `disk.<i>.snap`. */
function diskEntries(image: string, disk: string): CopyEntry[] {
  return [{ name: image, as: disk }, { name: `${image}.snap`, as: `${disk}.snap`, optional: true }];
}

/** The copy of the disk from `fromHost` (null: the front-end) into the VM folder. */
function diskCopy(
  s: ReplicaServices,
  request: ReplicaCloneRequest,
  stat: ImageStat,
  fromHost: string | null,
): CopyRequest {
  return {
    from: { host: fromHost, dir: stat.dir, entries: diskEntries(stat.name, basenameOf(request.dest.path)) },
    to: {
      host: request.dest.host,
      dir: dirnameOf(request.dest.path),
      confine: request.confine,
      writes: request.writes,
      prepare: request.prepare,
      finish: request.finish ?? undefined,
      finishWhat: request.finishWhat,
    },
    sparse: request.sparse,
    mirror: true,
    checksum: s.settings.copyChecksum,
    compression: s.settings.compression,
    toHopOptions: fromHost === null ? undefined : s.settings.replicaHopOptions,
    timeoutMs: s.settings.transferTimeoutMs,
    what: `Error copying ${
      fromHost ?? "front-end"
    }:${request.sourcePath} to ${request.dest.host}:${request.dest.path}`,
  };
}

/** Copies the image straight from the front-end to the hypervisor (no cache involved). */
async function directCopy(
  s: ReplicaServices,
  request: ReplicaCloneRequest,
  stat: ImageStat,
): Promise<CopyResult> {
  const result = await copyEntries(s.runner, diskCopy(s, request, stat, null));
  logInfo(
    `Copied ${mib(result.streamBytes)} MiB straight from the front-end in ${result.seconds.toFixed(1)} s`,
  );
  return result;
}

/**
 * Copies the image (and its `.snap` folder) to dest.path through the cluster's replica cache,
 * with the hypervisor's `prepare` and `finish`; falls back to a direct front-end copy when allowed.
 */
export async function replicaClone(
  s: ReplicaServices,
  request: ReplicaCloneRequest,
): Promise<ReplicaCloneResult> {
  const stat = await statImage(request.sourcePath);
  const where = `${request.dest.host}:${request.dest.path}`;
  logInfo(`Cloning ${request.sourcePath} via replica ${request.replica} in ${where}`);
  let delivered: ReplicaCloneResult | null = null;
  try {
    delivered = await viaReplica(s, request, stat);
  } catch (error) {
    if (error instanceof FinishError) throw error;
    if (error instanceof LockError || !s.settings.fallback) throw error;
    logWarn(
      `Replica ${request.replica} cannot serve ${request.sourcePath} (${oneLine(error)}): ` +
        `copying straight from the front-end to ${request.dest.host} (REPLICA_FALLBACK=yes)`,
    );
    metrics.count("cache_fallbacks_total", { replica: request.replica, reason: errorKind(error) });
  }
  if (delivered) return delivered;
  const result = await directCopy(s, request, stat);
  return { finishOutput: result.finishOutput };
}

/** The replica path; returns null when the disk must be copied straight from the front-end instead. */
async function viaReplica(
  s: ReplicaServices,
  request: ReplicaCloneRequest,
  stat: ImageStat,
): Promise<ReplicaCloneResult | null> {
  const settings = s.settings;
  const replica = request.replica;
  const folder = new ReplicaFolder(s.runner, replica, stat.dir, settings.controlTimeoutMs);
  const [route, pending] = await Promise.all([
    storageRoute(s.lookup, request.dest.host, replica),
    pendingInvalidations(replica),
  ]);
  const copy: CopyRequest = { ...diskCopy(s, request, stat, replica), route };
  const owner = ownerId();
  const stateDir = frontendStateDir();
  // The replica re-reads an entry with this algorithm (every use with REPLICA_CACHE_VERIFY=checksum,
  // else the first use after it restarted): a replica known to lack it gets the fallback.
  const algorithm = agreedAlgorithm(settings.algorithm, [null, replica], stateDir);
  const outcome = await obtainEntry(s.runner, {
    folder,
    stat,
    owner,
    algorithm,
    leaseSeconds: settings.leaseSeconds,
    lockTimeoutSeconds: settings.lockTimeoutSeconds,
    verify: settings.verify,
    limits: {
      maxBytes: settings.maxSizeMb === null ? null : settings.maxSizeMb * 1024 * 1024,
      maxUsedPercent: settings.maxUsedPercent,
    },
    frontendHopOptions: settings.frontendHopOptions,
    compression: settings.compression,
    transferTimeoutMs: settings.transferTimeoutMs,
    pin: { owner, vm: request.vmId, disk: request.diskId, host: request.dest.host },
    delivery: { copy, cutThrough: settings.cutThrough },
    invalidations: pending.map((p) => p.record),
    onInvalidated: (source) => journalApplied(replica, pending, source),
  }).catch((error) => {
    if (error instanceof DeliveryError) throw new Error(error.message);
    throw error;
  });
  switch (outcome.kind) {
    case "no-room":
      logWarn(
        `No room in the cache of ${replica} (${outcome.reason}): copying ${request.sourcePath} without caching it`,
      );
      metrics.count("cache_fallbacks_total", { replica, reason: "no_room" });
      return null;
    case "timeout": {
      const message =
        `Waited ${outcome.waitedSeconds} s (REPLICA_COPY_LOCK_TIMEOUT) for ${outcome.holder} to fill ` +
        `the cache of ${replica} with ${request.sourcePath}`;
      if (!settings.fallback) {
        throw new LockError(`${message}; set REPLICA_FALLBACK=yes or raise the timeout`);
      }
      logWarn(`${message}: copying straight from the front-end instead`);
      metrics.count("cache_fallbacks_total", { replica, reason: "lock_timeout" });
      return null;
    }
    case "filled": {
      metrics.count("cache_misses_total", { replica, datastore: request.imageDsId });
      const fill = outcome.fill;
      logNotPromoted(fill, replica, request.sourcePath);
      const forward = fill.forward;
      if (forward?.finishFailed) {
        throw new FinishError(`${request.finishWhat}: ${forward.finishError || "failed"}`);
      }
      if (forward?.ok) {
        logInfo(
          `Cache miss: ${mib(fill.streamBytes)} MiB sent once, written to ${replica} and forwarded to ` +
            `${request.dest.host} in ${fill.seconds.toFixed(1)} s`,
        );
        return { finishOutput: forward.finishOutput };
      }
      throw new Error(`the fill was not cached (${fill.problem ?? "the forward failed"})`);
    }
    case "hit": {
      metrics.count("cache_hits_total", { replica, datastore: request.imageDsId });
      logInfo(`Cache hit for ${request.sourcePath} on ${replica}`);
      const c = outcome.copy;
      if (c) metrics.transfer("replica_to_host", request.dest.host, c.bytes, outcome.seconds);
      if (c?.finishFailed) throw new FinishError(`${request.finishWhat}: ${c.finishError || "failed"}`);
      logInfo(`Copied ${mib(c?.bytes ?? 0)} MiB from ${replica} to ${request.dest.host}`);
      return { finishOutput: c?.finishOutput ?? "" };
    }
  }
}
