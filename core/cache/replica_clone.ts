/**
 * The replica path of TM clone/ln (spec §4): front-end -> the cluster's replica cache -> the
 * hypervisor. Called by the clone/ln actions when the VM's system datastore has REPLICA_HOST.
 *
 * - **Hit**: the entry is validated, pinned, and copied replica -> hypervisor; the front-end only
 *   stats the image (its checksum comes from the sidecar), no image byte leaves it.
 * - **Miss**: one process fills the entry (single flight, see obtain.ts) and, when the disk may be
 *   sparse and the replica pushes to the hypervisor, forwards the stream to the hypervisor while
 *   it arrives (cut-through: about one hop for a cold deployment); otherwise it pushes from the
 *   freshly promoted entry.
 * - **No room** in the cache: the disk is copied straight from the front-end, uncached, logged.
 * - **Replica unusable** (unreachable, failing, or a fill not waitable within
 *   REPLICA_COPY_LOCK_TIMEOUT) and REPLICA_FALLBACK=yes: straight from the front-end, logged with
 *   the reason. A down cache host alone never fails a deployment.
 *
 * The TM action does the rest (VM folder, `.monitor` marker, growth to SIZE).
 *
 * @module
 */

import { LockError, oneLine } from "../errors.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { basenameOf, dirnameOf } from "../one/location.ts";
import {
  checksumProgram,
  controlTimeoutMs,
  getConfig,
  getLookup,
  getRunner,
  transferTimeoutMs,
} from "../runtime.ts";
import { tmConfinement } from "../remote/confine.ts";
import { copyEntries, type CopyEntry } from "../transfer/copy.ts";
import { routedCopy } from "../transfer/routed_copy.ts";
import { ownerId } from "./entry.ts";
import { logNotPromoted } from "./fill.ts";
import { identityAlgorithm, type ImageStat, statImage } from "./identity.ts";
import { renewPin, startRenewal, unpinEntry } from "./lease.ts";
import { applyPendingInvalidations } from "./invalidate.ts";
import { obtainEntry } from "./obtain.ts";
import { ReplicaFolder } from "./store.ts";
import { storageRoute } from "./targets.ts";
import { metrics } from "../metrics/metrics.ts";
import { errorKind } from "../metrics/error_kind.ts";

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
}

const mib = (bytes: number) => (bytes / 1048576).toFixed(1);

/** Entries of a disk copy: the image as `disk.<i>`, its `.snap` folder as `disk.<i>.snap`. */
function diskEntries(image: string, disk: string): CopyEntry[] {
  return [{ name: image, as: disk }, { name: `${image}.snap`, as: `${disk}.snap`, optional: true }];
}

/** Copies the image straight from the front-end to the hypervisor (no cache involved). */
async function directCopy(request: ReplicaCloneRequest, stat: ImageStat): Promise<void> {
  const result = await copyEntries(getRunner(), {
    from: { host: null, dir: stat.dir, entries: diskEntries(stat.name, basenameOf(request.dest.path)) },
    to: { host: request.dest.host, dir: dirnameOf(request.dest.path), confine: tmConfinement(getConfig()) },
    sparse: request.sparse,
    checksum: checksumProgram(),
    timeoutMs: transferTimeoutMs(),
    what: `Error copying ${request.sourcePath} to ${request.dest.host}:${request.dest.path}`,
  });
  logInfo(
    `Copied ${mib(result.streamBytes)} MiB straight from the front-end in ${result.seconds.toFixed(1)} s`,
  );
}

/** Copies the image (and its `.snap` folder) to dest.path through the cluster's replica cache; falls back to a direct front-end copy when allowed. */
export async function replicaClone(request: ReplicaCloneRequest): Promise<void> {
  const config = getConfig();
  const stat = await statImage(request.sourcePath);
  const where = `${request.dest.host}:${request.dest.path}`;
  logInfo(`Cloning ${request.sourcePath} via replica ${request.replica} in ${where}`);
  let delivered = false;
  try {
    delivered = await viaReplica(request, stat, () => delivered = true);
  } catch (error) {
    if (delivered) {
      logWarn(`The disk was delivered, but the replica cache reported: ${oneLine(error)}`);
      return;
    }
    if (error instanceof LockError || !config.replicaFallback) throw error;
    logWarn(
      `Replica ${request.replica} cannot serve ${request.sourcePath} (${oneLine(error)}): ` +
        `copying straight from the front-end to ${request.dest.host} (REPLICA_FALLBACK=yes)`,
    );
    metrics.count("cache_fallbacks_total", { replica: request.replica, reason: errorKind(error) });
    await directCopy(request, stat);
    return;
  }
  if (!delivered) await directCopy(request, stat);
}

/** The replica path; returns false when the disk must be copied straight from the front-end instead. */
async function viaReplica(
  request: ReplicaCloneRequest,
  stat: ImageStat,
  markDelivered: () => void,
): Promise<boolean> {
  const config = getConfig();
  const runner = getRunner();
  const replica = request.replica;
  const folder = new ReplicaFolder(runner, replica, stat.dir, controlTimeoutMs());
  await folder.ensure();
  await applyPendingInvalidations(runner, replica).catch(() => 0);
  const route = await storageRoute(getLookup(), request.dest.host, replica);
  const destDir = dirnameOf(request.dest.path);
  const entries = diskEntries(stat.name, basenameOf(request.dest.path));
  const owner = ownerId();
  const cutThrough = config.replicaCutThrough && request.sparse && route.mode === "push";
  const pin = { owner, vm: request.vmId, disk: request.diskId, host: request.dest.host };
  const outcome = await obtainEntry({
    folder,
    stat,
    owner,
    algorithm: identityAlgorithm(checksumProgram()),
    checksum: checksumProgram(),
    leaseSeconds: config.replicaLeaseSeconds,
    lockTimeoutSeconds: config.replicaCopyLockTimeout,
    verify: config.replicaCacheVerify,
    limits: {
      maxBytes: config.replicaMaxSizeMb === null ? null : config.replicaMaxSizeMb * 1024 * 1024,
      maxUsedPercent: config.replicaMaxUsedPerc,
    },
    frontendHopOptions: config.replicaSshFeOpts,
    transferTimeoutMs: transferTimeoutMs(),
    controlTimeoutMs: controlTimeoutMs(),
    sparse: true,
    pin,
    forward: cutThrough
      ? {
        host: request.dest.host,
        address: route.address,
        dir: destDir,
        entries,
        confine: tmConfinement(config),
        hopOptions: config.replicaSshOpts,
      }
      : undefined,
  });
  switch (outcome.kind) {
    case "no-room":
      logWarn(
        `No room in the cache of ${replica} (${outcome.reason}): copying ${request.sourcePath} without caching it`,
      );
      metrics.count("cache_fallbacks_total", { replica, reason: "no_room" });
      return false;
    case "timeout": {
      const message =
        `Waited ${outcome.waitedSeconds} s (REPLICA_COPY_LOCK_TIMEOUT) for ${outcome.holder} to fill ` +
        `the cache of ${replica} with ${request.sourcePath}`;
      if (!config.replicaFallback) {
        throw new LockError(`${message}; set REPLICA_FALLBACK=yes or raise the timeout`);
      }
      logWarn(`${message}: copying straight from the front-end instead`);
      metrics.count("cache_fallbacks_total", { replica, reason: "lock_timeout" });
      return false;
    }
    case "filled": {
      metrics.count("cache_misses_total", { replica, datastore: request.imageDsId });
      const fill = outcome.fill;
      logNotPromoted(fill, replica, request.sourcePath);
      if (fill.forwarded === true) {
        markDelivered();
        logInfo(
          `Cache miss: ${mib(fill.streamBytes)} MiB sent once, written to ${replica} and forwarded to ` +
            `${request.dest.host} in ${fill.seconds.toFixed(1)} s`,
        );
        return true;
      }
      if (fill.forwarded === false) {
        logWarn(`Forwarding to ${request.dest.host} failed: ${fill.forwardProblem}`);
      }
      if (!fill.promoted) throw new Error(`the fill was not cached (${fill.problem})`);
      break;
    }
    case "hit":
      metrics.count("cache_hits_total", { replica, datastore: request.imageDsId });
      logInfo(`Cache hit for ${request.sourcePath} on ${replica}`);
      break;
  }
  const renewal = startRenewal(
    Math.max(1000, (config.replicaLeaseSeconds * 1000) / 3),
    () => renewPin(folder, stat.name, owner, config.replicaLeaseSeconds),
  );
  try {
    const result = await routedCopy(runner, {
      from: { host: replica, dir: stat.dir, entries },
      to: { host: request.dest.host, dir: destDir, confine: tmConfinement(config) },
      sparse: request.sparse,
      checksum: checksumProgram(),
      toHopOptions: config.replicaSshOpts,
      hop: "replica_to_host",
      timeoutMs: transferTimeoutMs(),
      what: `Error copying ${replica}:${request.sourcePath} to ${request.dest.host}:${request.dest.path}`,
    }, route);
    markDelivered();
    logInfo(
      `Copied ${mib(result.streamBytes)} MiB from ${replica} to ${request.dest.host} in ${
        result.seconds.toFixed(1)
      } s`,
    );
  } finally {
    await renewal.stop();
    await unpinEntry(folder, stat.name, owner).catch(() => {});
  }
  return true;
}
