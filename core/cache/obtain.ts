/**
 * Getting a valid entry for an image on a replica, with single flight: however many processes on
 * however many front-ends ask for the same uncached image at once, one of them takes the lease and
 * fills the entry; the others wait while the lease lives and then use the entry (a hit). If the
 * filler dies, its lease expires and one waiter takes it over and fills the entry itself.
 *
 * An entry is served only when its recorded identity equals the front-end image's current
 * identity and its files on the replica still have the size and mtime recorded at promotion
 * (plus, with REPLICA_CACHE_VERIFY=checksum, their content checksums). A served entry is pinned
 * first, so that no eviction or promotion removes it while the deployment copies from it.
 *
 * @module
 */

import { logInfo, logWarn } from "../one/log.ts";
import type { FanoutRequest } from "../transfer/fanout.ts";
import {
  type CacheEntry,
  entryName,
  entryProblem,
  fillName,
  leaseLive,
  livePins,
  parseEntry,
  parseLease,
  type Pin,
} from "./entry.ts";
import { type CacheLimits, makeRoom } from "./eviction.ts";
import { fillEntry, type FillOutcome } from "./fill.ts";
import { imageIdentity, type ImageStat } from "./identity.ts";
import { acquireLease, jitter, pinEntry, releaseLease } from "./lease.ts";
import type { ReplicaFolder } from "./store.ts";
import { verifyContent } from "./verify.ts";
import { metrics } from "../metrics/metrics.ts";

/** How to get the entry. */
export interface ObtainRequest {
  folder: ReplicaFolder;
  stat: ImageStat;
  owner: string;
  /** Content checksum program. */
  algorithm: string;
  /** Stream checksum program. */
  checksum: string;
  leaseSeconds: number;
  /** REPLICA_COPY_LOCK_TIMEOUT in seconds (0: wait while the lease lives). */
  lockTimeoutSeconds: number;
  verify: "size-mtime" | "checksum";
  limits: CacheLimits;
  frontendHopOptions: readonly string[];
  /** Data transfer timeout (ms, 0: none). */
  transferTimeoutMs: number;
  /** Control command timeout (ms, 0: none). */
  controlTimeoutMs: number;
  /** Keep holes when filling. */
  sparse: boolean;
  /** Pin the entry for this deployment (omit for a plain warm-up). */
  pin?: Omit<Pin, "expires_at">;
  /** Cut-through: forward the fill's stream to this destination. */
  forward?: FanoutRequest["forward"];
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
  /** A valid entry, pinned when a pin was asked for. */
  | { kind: "hit"; entryText: string; entry: CacheEntry }
  /** This process filled the entry; with a forward, `fill.forwarded` says whether the disk arrived. */
  | { kind: "filled"; fill: FillOutcome }
  /** No room could be made: deploy without caching. */
  | { kind: "no-room"; reason: string }
  /** REPLICA_COPY_LOCK_TIMEOUT elapsed while another process was filling. */
  | { kind: "timeout"; holder: string; waitedSeconds: number };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Removes an entry found bad (best effort; never one that is pinned). */
async function dropEntry(folder: ReplicaFolder, image: string, text: string, why: string): Promise<void> {
  const entry = parseEntry(text);
  if (entry && livePins(entry, folder.now()).length > 0) return;
  await folder.transact({
    expect: { [entryName(image)]: text },
    ops: [
      { op: "log", event: { at: folder.now(), event: "drop", image, why } },
      { op: "remove", name: entryName(image) },
      { op: "remove", name: image },
      { op: "remove", name: `${image}.snap` },
    ],
  }).catch(() => {});
}

/** Gets a valid entry (see the module doc). */
export async function obtainEntry(request: ObtainRequest): Promise<ObtainOutcome> {
  const { folder, stat, owner } = request;
  const log = request.log ?? DRIVER_LOG;
  const name = stat.name;
  let waitedMs = 0;
  let waitingFor: string | null = null;
  let delay = 250;
  for (;;) {
    const state = await folder.image(name);
    const entry = parseEntry(state.entryText);
    if (entry && state.entryText !== null) {
      let problem: string | null = null;
      if (
        entry.source.size !== stat.size || entry.source.mtime_ms !== stat.mtime_ms ||
        entry.source.path !== stat.path
      ) {
        problem = "the image changed on the front-end since it was cached";
      } else {
        const identity = await imageIdentity(folder.runner, stat, request.algorithm);
        problem = entryProblem(entry, identity, state.files);
        if (problem === null && request.verify === "checksum") {
          problem = await verifyContent(folder, entry, request.transferTimeoutMs);
          if (problem !== null) await dropEntry(folder, name, state.entryText, problem);
        }
      }
      if (problem === null) {
        if (!request.pin) return { kind: "hit", entryText: state.entryText, entry };
        const pinned = await pinEntry(folder, name, state.entryText, request.pin, request.leaseSeconds);
        if (pinned !== null) {
          if (waitingFor) {
            metrics.lockWait(folder.replica, waitedMs / 1000);
            log.info(`${waitingFor} filled the cache; waited ${(waitedMs / 1000).toFixed(1)} s`);
          }
          return { kind: "hit", entryText: pinned, entry: parseEntry(pinned)! };
        }
        await jitter();
        continue;
      }
      if (!leaseLive(parseLease(state.leaseText), state.now)) {
        log.info(`The cached copy of ${stat.path} on ${folder.replica} is not used: ${problem}`);
      }
    } else if (state.entryText !== null) {
      log.warn(`The cache record of ${stat.path} on ${folder.replica} is unreadable; it will be replaced`);
    }

    const lease = parseLease(state.leaseText);
    if (state.leaseText !== null && leaseLive(lease, state.now) && lease!.owner !== owner) {
      if (waitingFor === null) {
        waitingFor = lease!.owner;
        log.info(
          `Waiting for ${lease!.owner} to fill the cache of ${folder.replica} with ${stat.path} ` +
            `(its lease is renewed while it copies)`,
        );
      }
      if (request.lockTimeoutSeconds > 0 && waitedMs >= request.lockTimeoutSeconds * 1000) {
        metrics.lockWait(folder.replica, waitedMs / 1000);
        return { kind: "timeout", holder: lease!.owner, waitedSeconds: Math.round(waitedMs / 1000) };
      }
      await sleep(delay);
      waitedMs += delay;
      delay = Math.min(1000, Math.round(delay * 1.5));
      continue;
    }

    const fill = fillName(name, owner);
    const held = await acquireLease(folder, name, state.leaseText, {
      owner,
      source: stat.path,
      fill,
      reserve: stat.allocated,
      leaseSeconds: request.leaseSeconds,
    });
    if (!held) {
      await jitter();
      continue;
    }
    if (state.leaseText !== null && lease) {
      log.info(
        `The fill lease of ${lease.owner} expired ${state.now - lease.expires_at} s ago: taking it over`,
      );
    }
    try {
      const room = await makeRoom(folder, stat.allocated, request.limits, name).catch((error) => ({
        ok: false,
        evicted: [],
        reason: `eviction failed: ${error instanceof Error ? error.message : String(error)}`,
      }));
      for (const e of room.evicted) {
        log.info(
          `Evicted ${e.key} (${e.kind}, ${(e.allocated / 1048576).toFixed(1)} MiB) from ${folder.replica}`,
        );
      }
      if (!room.ok) return { kind: "no-room", reason: room.reason };
      log.info(
        `Filling the cache of ${folder.replica} with ${stat.path}` +
          (request.forward ? `, forwarding to ${request.forward.host} as it arrives` : ""),
      );
      const outcome = await fillEntry({
        folder,
        stat,
        held,
        owner,
        algorithm: request.algorithm,
        checksum: request.checksum,
        frontendHopOptions: request.frontendHopOptions,
        forward: request.forward,
        sparse: request.sparse,
        timeoutMs: request.transferTimeoutMs,
        leaseSeconds: request.leaseSeconds,
        pin: request.pin,
        log,
      });
      metrics.fill(folder.replica, outcome.promoted);
      return { kind: "filled", fill: outcome };
    } finally {
      await releaseLease(folder, held).catch(() => {});
    }
  }
}
