/**
 * Getting a valid entry for an image on a replica, and delivering it to a hypervisor, with single
 * flight: however many processes on however many front-ends ask for the same uncached image at
 * once, one of them takes the lease and fills the entry; the others wait on the replica while the
 * lease lives and are served the moment the entry is promoted. If the filler dies, its lease
 * expires and one waiter takes it over and fills the entry itself.
 *
 * In SSH commands: a hit is one ("serve": validate, pin, copy, unpin; the hypervisor's receiver
 * inside it); a miss is two ("serve" finds nothing, "fill" streams and promotes, forwarding to the
 * hypervisor as the bytes arrive). A hypervisor that pulls (REPLICA_STORAGE_IP of the replica)
 * adds its own command.
 *
 * An entry is served only when its record states the front-end image's current identity (path,
 * size, mtime and content checksum) and its files on the replica still have the fingerprint taken
 * at promotion (plus, with REPLICA_CACHE_VERIFY=checksum, their content checksums). A served
 * entry is pinned first, so that no eviction or promotion removes it while the deployment copies.
 *
 * @module
 */

import { metrics } from "../metrics/metrics.ts";
import { logInfo, logWarn } from "../one/log.ts";
import type { HostRunner } from "../remote/runner.ts";
import { sh, type ShellScript } from "../remote/shell.ts";
import { hopScript } from "../remote/ssh.ts";
import {
  type Compression,
  copyPipeline,
  type CopyRequest,
  type ReceiverOutcome,
  receiverOutcome,
  receiverScript,
  senderScript,
  token,
} from "../transfer/copy.ts";
import { FALLBACK_ALGORITHM, type HashAlgorithm, hasLocally, recordLack } from "../transfer/hashes.ts";
import { type ImageIdentity, parseEntry, parseLease, type Pin, pinName, pinPrefix } from "./entry.ts";
import { type CacheLimits, cacheUsage, planEviction } from "./eviction.ts";
import { fillEntry, type FillOutcome, releaseLease } from "./fill.ts";
import { cachedIdentity, imageIdentity, type ImageStat, knownSums } from "./identity.ts";
import { jitter } from "./lease.ts";
import { type PendingInvalidation, pinnedScript, pullFifoScript } from "./scripts.ts";
import { serve } from "./serve.ts";
import { frontendStateDir } from "./state_dir.ts";
import type { ReplicaFolder } from "./store.ts";

/** How the disk reaches the hypervisor from the replica. */
export interface Delivery {
  /** The copy: from the replica's cache folder (entries renamed to the disk), to the VM folder. */
  copy: CopyRequest;
  /** Cut-through on a miss: forward the fill's stream to the hypervisor as it arrives. */
  cutThrough: boolean;
}

/** How to get the entry. */
export interface ObtainRequest {
  folder: ReplicaFolder;
  stat: ImageStat;
  owner: string;
  /** Content checksum algorithm for a fill (TRANSFER_CHECKSUM). */
  algorithm: HashAlgorithm;
  leaseSeconds: number;
  /** REPLICA_COPY_LOCK_TIMEOUT in seconds (0: wait while the lease lives). */
  lockTimeoutSeconds: number;
  verify: "size-mtime" | "checksum";
  limits: CacheLimits;
  frontendHopOptions: readonly string[];
  compression: Compression;
  /** Data transfer timeout (ms, 0: none). */
  transferTimeoutMs: number;
  /** Pin the entry for this deployment (omit for a plain warm-up). */
  pin?: Omit<Pin, "expires_at">;
  /** Deliver the disk to a hypervisor (omit: only make sure the entry exists). */
  delivery?: Delivery;
  /** Pending invalidations for this replica, applied by the first command. */
  invalidations?: readonly PendingInvalidation[];
  /** Called with each invalidation the replica applied. */
  onInvalidated?: (source: string) => void;
  /** Where progress lines go (default: `INFO:`/`WARN:` log lines). */
  log?: CacheLog;
}

/** Receives the cache's progress lines. */
export interface CacheLog {
  info(message: string): void;
  warn(message: string): void;
}

/** The default: OpenNebula log lines on stderr. */
export const DRIVER_LOG: CacheLog = { info: logInfo, warn: logWarn };

/** The result. */
export type ObtainOutcome =
  /** A valid entry; with a delivery, copied to the hypervisor (`copy`). */
  | { kind: "hit"; copy: ReceiverOutcome | null; waitedSeconds: number | null; seconds: number }
  /** This process filled the entry; with a cut-through, `fill.forward` says whether the disk arrived. */
  | { kind: "filled"; fill: FillOutcome }
  /** No room could be made: deploy without caching. */
  | { kind: "no-room"; reason: string }
  /** REPLICA_COPY_LOCK_TIMEOUT elapsed while another process was filling. */
  | { kind: "timeout"; holder: string; waitedSeconds: number };

/** Thrown when a copy from the cache to the hypervisor failed. */
export class DeliveryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeliveryError";
  }
}

/** The parent folder of a cache folder (where the replica's cache folders are scanned). */
function parentOf(dir: string): string {
  return dir.slice(0, dir.lastIndexOf("/")) || "/";
}

/**
 * The identity the process that filled `entryText` records, when that process runs on this
 * front-end: waited for while it is alive (it records it right after its fill returns), at most
 * 30 s. Null when the record was filled elsewhere or the filler ended without recording it.
 */
async function fillerIdentity(
  stat: ImageStat,
  algorithm: HashAlgorithm,
  entryText: string,
  owner: string,
): Promise<ImageIdentity | null> {
  const filledBy = parseEntry(entryText)?.filled_by ?? "";
  const [host, pid] = filledBy.split(":");
  if (!host || host !== owner.split(":")[0] || !/^[0-9]+$/.test(pid ?? "")) return null;
  const alive = () => {
    try {
      Deno.statSync(`/proc/${pid}`);
      return true;
    } catch {
      return false;
    }
  };
  const until = Date.now() + 30_000;
  for (;;) {
    const known = await cachedIdentity(stat, algorithm);
    if (known || !alive() || Date.now() > until) return known;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Gets (and delivers) a valid entry (see the module doc). @throws {RemoteError} when the replica is unusable. */
export async function obtainEntry(runner: HostRunner, request: ObtainRequest): Promise<ObtainOutcome> {
  const { folder, stat } = request;
  const log = request.log ?? DRIVER_LOG;
  const stateDir = frontendStateDir();
  const delivery = request.delivery;
  const route = delivery?.copy.route ??
    (delivery ? { mode: "push" as const, address: delivery.copy.to.host! } : null);
  let algorithm = request.algorithm;
  let identity: ImageIdentity | null = await cachedIdentity(stat, algorithm);
  let identityChecked = false;
  let invalidations = request.invalidations ?? [];
  const started = Date.now();
  let announcedWait = false;
  let joinFailed = false;
  for (let attempt = 0;; attempt++) {
    const waited = (Date.now() - started) / 1000;
    const waitBudget = request.lockTimeoutSeconds > 0
      ? Math.max(0, Math.ceil(request.lockTimeoutSeconds - waited))
      : 60;
    // The copy runs inside "serve" while the entry is pinned (push); a pulling hypervisor copies
    // in a command of its own once the entry is pinned.
    let tmp = "";
    let copy: ShellScript | null = null;
    let join: ShellScript | null = null;
    if (delivery && route?.mode === "push" && request.pin) {
      tmp = `.onestor-xfer-${token()}`;
      copy = senderScript(
        delivery.copy,
        pushSink(runner, request.folder.replica, delivery.copy, route.address, tmp),
      );
      // A fill's spool holds the front-end's stream as sent (compressed as the fill is).
      if (delivery.cutThrough && !joinFailed) {
        const streamed: CopyRequest = { ...delivery.copy, compression: request.compression };
        join = pushSink(runner, request.folder.replica, streamed, route.address, tmp);
      }
    }
    const served = performance.now();
    const run = await serve({
      folder,
      stat,
      identity,
      identityChecked,
      owner: request.owner,
      pin: request.pin,
      leaseSeconds: request.leaseSeconds,
      waitSeconds: waitBudget,
      verify: request.verify === "checksum",
      copy,
      invalidations,
      scan: parentOf(folder.dir),
      timeoutMs: request.transferTimeoutMs,
      takeLease: true,
      join,
    });
    for (const source of run.invalidated) request.onInvalidated?.(source);
    if (run.invalidated.length > 0) {
      log.info(`Applied ${run.invalidated.length} pending cache invalidation(s) on ${folder.replica}`);
    }
    invalidations = [];
    const outcome = run.outcome;
    if (!announcedWait && run.waitingFor !== null) {
      announcedWait = true;
      log.info(
        `Waiting for ${run.waitingFor} to fill the cache of ${folder.replica} with ${stat.path} ` +
          "(its lease is renewed while it copies)",
      );
    }
    switch (outcome.kind) {
      case "hit": {
        if (outcome.waitedSeconds !== null) {
          metrics.lockWait(folder.replica, outcome.waitedSeconds);
          log.info(`Another deployment filled the cache; waited ${outcome.waitedSeconds} s`);
        }
        if (copy && (!outcome.copy || !outcome.copy.ok)) {
          throw new DeliveryError(
            `copying from the cache failed: ${outcome.copy?.reason ?? lastStderr(run.stderr)}`,
          );
        }
        return {
          kind: "hit",
          copy: outcome.copy,
          waitedSeconds: outcome.waitedSeconds,
          seconds: (performance.now() - served) / 1000 - (outcome.waitedSeconds ?? 0),
        };
      }
      case "joined": {
        // Received and renamed into place (a failed finishing step is the caller's to report).
        if (outcome.copy.ok) {
          log.info(
            `Followed the fill of ${outcome.holder} on ${folder.replica}: the disk was copied as the image arrived`,
          );
          return {
            kind: "hit",
            copy: outcome.copy,
            waitedSeconds: null,
            seconds: (performance.now() - served) / 1000,
          };
        }
        // The fill it followed failed or stopped: go the usual way (wait, or fill).
        joinFailed = true;
        log.info(
          `Following the fill of ${outcome.holder} on ${folder.replica} failed (${
            outcome.copy.reason ?? `exit ${outcome.copyRc}`
          }): using the cache instead`,
        );
        continue;
      }
      case "pinned": {
        if (outcome.waitedSeconds !== null) {
          metrics.lockWait(folder.replica, outcome.waitedSeconds);
          log.info(`Another deployment filled the cache; waited ${outcome.waitedSeconds} s`);
        }
        const pulled = performance.now();
        const result = await pullPinned(runner, request, delivery!, route!);
        return {
          kind: "hit",
          copy: result,
          waitedSeconds: outcome.waitedSeconds,
          seconds: (performance.now() - pulled) / 1000,
        };
      }
      case "identity": {
        // A record of this image version filled elsewhere (another front-end, or another
        // algorithm): compare with the image's checksum in the record's algorithm.
        const alg = outcome.algorithm ?? algorithm;
        // Filled a moment ago by another deployment on this front-end, which records the
        // identity as soon as its fill returns: wait for that rather than read the image again.
        const fromFiller = await fillerIdentity(stat, alg, outcome.entryText, request.owner);
        if (fromFiller) {
          identity = fromFiller;
        } else if (!hasLocally(alg)) {
          identity = await cachedIdentity(stat, algorithm) ?? await imageIdentity(runner, stat, algorithm);
        } else {
          identity = await imageIdentity(runner, stat, alg);
        }
        identityChecked = true;
        continue;
      }
      case "wait":
        if (request.lockTimeoutSeconds > 0 && waited >= request.lockTimeoutSeconds) {
          metrics.lockWait(folder.replica, waited);
          return { kind: "timeout", holder: outcome.holder, waitedSeconds: Math.round(waited) };
        }
        if (!announcedWait) {
          announcedWait = true;
          log.info(`Waiting for ${outcome.holder} to fill the cache of ${folder.replica} with ${stat.path}`);
        }
        continue;
      case "busy":
        await jitter();
        continue;
      case "bad":
        log.warn(`The cached copy of ${stat.path} on ${folder.replica} was dropped: ${outcome.reason}`);
        continue;
      case "nohash":
        recordLack(stateDir, folder.replica, outcome.algorithm);
        log.warn(
          `${folder.replica} cannot compute ${outcome.algorithm} checksums (install package xxhash there): ` +
            `its cached copy of ${stat.path} is filled again with ${FALLBACK_ALGORITHM}`,
        );
        algorithm = FALLBACK_ALGORITHM;
        identity = await cachedIdentity(stat, algorithm);
        identityChecked = false;
        continue;
      case "miss": {
        if (outcome.state !== "absent" && outcome.entryText !== null) {
          log.info(
            `The cached copy of ${stat.path} on ${folder.replica} is not used: ${
              outcome.state === "broken"
                ? "its files changed on the replica"
                : "the image changed on the front-end since it was cached"
            }`,
          );
        }
        if (outcome.acquired === null) {
          await jitter();
          continue;
        }
        const acquired = outcome.acquired;
        metrics.cacheSizes(folder.replica, outcome.folders);
        const own = outcome.folders.find((f) => f.dir === folder.dir);
        const usage = cacheUsage(outcome.folders, { dir: folder.dir, image: stat.name });
        const plan = planEviction(
          own?.fs ?? { total: 0, used: 0, available: 0 },
          usage,
          stat.allocated,
          request.limits,
        );
        if (!plan.fits) {
          await releaseLease(folder, stat, request.owner, acquired);
          return { kind: "no-room", reason: plan.reason };
        }
        const old = parseLease(outcome.leaseText);
        if (old && old.owner !== request.owner) {
          log.info(
            `The fill lease of ${old.owner} expired ${outcome.now - old.expires_at} s ago: taking it over`,
          );
        }
        const cutThrough = delivery?.cutThrough === true && request.pin !== undefined;
        // Said once the fill has started (a fill that finds its lease gone says nothing).
        const announce = [
          ...plan.evict.map((e) =>
            `Evicted ${e.key} (${e.kind}, ${(e.allocated / 1048576).toFixed(1)} MiB) from ${folder.replica}`
          ),
          `Filling the cache of ${folder.replica} with ${stat.path}` +
          (cutThrough ? `, forwarding to ${delivery!.copy.to.host} as it arrives` : ""),
        ];
        const fill = await fillWithForward(runner, request, {
          announce,
          algorithm,
          acquired,
          expectRecord: outcome.entryText,
          evictions: plan.evict,
          now: outcome.now,
          cutThrough,
        });
        if (fill.conflict) {
          await jitter();
          continue;
        }
        for (const e of plan.evict) metrics.evicted(folder.replica, e.kind, e.allocated);
        metrics.fill(folder.replica, fill.promoted);
        metrics.transfer("frontend_to_replica", folder.replica, fill.streamBytes, fill.seconds);
        if (fill.forward?.ok) {
          metrics.transfer("replica_to_host", delivery!.copy.to.host!, fill.forward.bytes, fill.seconds);
        }
        if (fill.identity) {
          identity = fill.identity;
          identityChecked = false;
        }
        if (cutThrough && fill.forward?.ok) return { kind: "filled", fill };
        if (cutThrough && fill.forward && !fill.forward.ok && !fill.forward.finishFailed) {
          log.warn(`Forwarding to ${delivery!.copy.to.host} failed: ${fill.forward.reason ?? "no answer"}`);
        }
        if (fill.forward?.finishFailed) return { kind: "filled", fill };
        if (!fill.promoted) return { kind: "filled", fill };
        if (!delivery || !request.pin) return { kind: "filled", fill };
        // Promoted, but the disk did not arrive with the fill: serve it from the new entry.
        continue;
      }
    }
  }
}

function lastStderr(stderr: string): string {
  return stderr.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("ONESTOR_")).slice(-3)
    .join("; ") || "no answer from the hypervisor";
}

/** Runs a fill, with the hypervisor pulling the cut-through stream in a command of its own when it pulls. */
async function fillWithForward(
  runner: HostRunner,
  request: ObtainRequest,
  f: {
    announce: readonly string[];
    algorithm: HashAlgorithm;
    acquired: number;
    expectRecord: string | null;
    evictions: Parameters<typeof fillEntry>[1]["evictions"];
    now: number;
    cutThrough: boolean;
  },
): Promise<FillOutcome> {
  const delivery = request.delivery;
  const base = {
    folder: request.folder,
    stat: request.stat,
    owner: request.owner,
    algorithm: f.algorithm,
    known: await knownSums(request.stat, f.algorithm),
    announce: f.announce,
    acquired: f.acquired,
    expectRecord: f.expectRecord,
    evictions: f.evictions,
    now: f.now,
    frontendHopOptions: request.frontendHopOptions,
    compression: request.compression,
    timeoutMs: request.transferTimeoutMs,
    leaseSeconds: request.leaseSeconds,
    log: request.log,
  };
  if (!f.cutThrough || !delivery) return await fillEntry(runner, { ...base, forward: null });
  const copy: CopyRequest = { ...delivery.copy, compression: request.compression };
  const route = copy.route ?? { mode: "push" as const, address: copy.to.host! };
  const tmp = `.onestor-xfer-${token()}`;
  if (route.mode === "push") {
    const script = pushSink(runner, request.folder.replica, copy, route.address, tmp);
    return await fillEntry(runner, { ...base, forward: { kind: "push", script } });
  }
  // Pull: the hypervisor reads the fill's named pipe through its own hop to the replica.
  const fifo = `.onestor-fwd-${token()}`;
  const connectSeconds = Math.max(15, (runner.ssh.settings.connectTimeout ?? 10) + 5);
  const pull = pullFifoScript(request.folder.dir, fifo, connectSeconds);
  const puller = pullForward(runner, copy, route.address, pull, tmp);
  const [fill, pulled] = await Promise.all([
    fillEntry(runner, { ...base, forward: { kind: "pull", fifo, connectSeconds } }),
    puller,
  ]);
  return { ...fill, forward: pulled };
}

/**
 * What the replica pipes a disk into: the hypervisor's receiver behind the replica's own hop to
 * `address` (REPLICA_SSH_OPTS), or run directly when the replica is the hypervisor itself. Built
 * for the replica, whatever is local to this front-end.
 */
function pushSink(
  runner: HostRunner,
  replica: string,
  copy: CopyRequest,
  address: string,
  tmp: string,
): ShellScript {
  const receiver = receiverScript(copy, tmp);
  if (address === replica || copy.to.host === replica) return sh`bash -c ${receiver.text}`;
  return hopScript(address, receiver, {
    hopOptions: copy.toHopOptions,
    connectTimeout: runner.ssh.settings.connectTimeout,
    shell: "bash",
  });
}

/** The hypervisor's side of a pulled cut-through: read the named pipe on the replica, receive. */
async function pullForward(
  runner: HostRunner,
  copy: CopyRequest,
  address: string,
  pull: ShellScript,
  tmp: string,
): Promise<ReceiverOutcome> {
  const hop = hopScript(address, pull, {
    hopOptions: copy.toHopOptions,
    connectTimeout: runner.ssh.settings.connectTimeout,
    shell: "bash",
  });
  const result = await runner.run(
    copy.to.host,
    sh`set -o pipefail
${hop} | bash -c ${receiverScript(copy, tmp).text}`,
    { shell: "bash", check: false, timeoutMs: copy.timeoutMs ?? 0, what: copy.what },
  );
  return receiverOutcome(result.stdout);
}

/** Copies a pinned entry to a hypervisor that pulls, unpinning it at the end on the replica. */
async function pullPinned(
  runner: HostRunner,
  request: ObtainRequest,
  delivery: Delivery,
  route: { mode: "pull" | "push"; address: string },
): Promise<ReceiverOutcome> {
  const tmp = `.onestor-xfer-${token()}`;
  const image = request.stat.name;
  const pin = { name: pinName(image, request.owner), prefix: pinPrefix(request.pin!) };
  const pipeline = copyPipeline(
    runner,
    { ...delivery.copy, route: { mode: "pull", address: route.address } },
    tmp,
    {
      wrapSender: (sender) =>
        sh`cd -- ${request.folder.dir} || exit 66
${pinnedScript({ image, pin, leaseSeconds: request.leaseSeconds }, sh`bash -c ${sender.text}`)}
exit $copyrc`,
    },
  );
  const result = await runner.run(pipeline.runOn, pipeline.script, {
    shell: "bash",
    check: false,
    timeoutMs: delivery.copy.timeoutMs ?? 0,
    what: delivery.copy.what,
  });
  const outcome = receiverOutcome(result.stdout);
  if (!outcome.ok) {
    throw new DeliveryError(`copying from the cache failed: ${outcome.reason ?? lastStderr(result.stderr)}`);
  }
  return outcome;
}
