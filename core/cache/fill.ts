/**
 * Filling an entry: one stream from the front-end into the replica's fill folder (optionally
 * forwarded on to a hypervisor at the same time), then **verified promotion**: the entry is moved
 * into place and its record written only when
 * - the replica received the exact stream the front-end sent (stream checksum), and
 * - the checksum of every file as unpacked on the replica equals the checksum the front-end
 *   computed from the files it sent, and
 * - the image did not change on the front-end while it was read, and
 * - this process still holds the lease.
 * Anything else leaves the fill folder to be removed: a truncated or corrupt copy is never served.
 *
 * @module
 */

import { logInfo, logWarn } from "../one/log.ts";
import { fanoutCopy, type FanoutRequest } from "../transfer/fanout.ts";
import {
  type CacheEntry,
  encodeRecord,
  entryName,
  type ImageIdentity,
  leaseName,
  livePins,
  parseEntry,
  type Pin,
  RECORD_VERSION,
  sameSums,
} from "./entry.ts";
import { identityFrom, type ImageStat, recordIdentity, sameStat, statImage } from "./identity.ts";
import { type HeldLease, renewLease, startRenewal } from "./lease.ts";
import { parseStatLines, type ReplicaFolder, type StoreOp } from "./store.ts";

/** What a fill needs. */
export interface FillRequest {
  folder: ReplicaFolder;
  /** The image as stat'ed before the fill. */
  stat: ImageStat;
  /** The lease this process holds for it. */
  held: HeldLease;
  owner: string;
  /** Content checksum program. */
  algorithm: string;
  /** Stream checksum program (TRANSFER_CHECKSUM). */
  checksum: string;
  /** REPLICA_SSH_FE_OPTS. */
  frontendHopOptions: readonly string[];
  /** Cut-through target, if any. */
  forward?: FanoutRequest["forward"];
  /** Keep holes. */
  sparse: boolean;
  /** Data transfer timeout (ms, 0: none). */
  timeoutMs: number;
  leaseSeconds: number;
  /** Pin the promoted entry for this deployment when the forward did not deliver the disk. */
  pin?: Omit<Pin, "expires_at">;
  /** Where the success line goes (default: an `INFO:` log line). */
  log?: { info(message: string): void };
}

/** What a fill achieved. */
export interface FillOutcome {
  /** Whether the entry was promoted. */
  promoted: boolean;
  /** The promoted entry's text (pinned for the caller when asked and needed). */
  entryText: string | null;
  /** The image's identity as computed from the stream, when it could be. */
  identity: ImageIdentity | null;
  /** Whether the forward delivered the disk (null: no forward). */
  forwarded: boolean | null;
  /** Why the forward did not deliver it. */
  forwardProblem: string | null;
  /** Why the entry was not promoted. */
  problem: string | null;
  streamBytes: number;
  seconds: number;
}

const mib = (bytes: number) => (bytes / 1048576).toFixed(1);

/** Fills and promotes an entry (see the module doc). Throws only when the replica cannot be used. */
export async function fillEntry(request: FillRequest): Promise<FillOutcome> {
  const { folder, stat, held } = request;
  const name = stat.name;
  const renewal = startRenewal(
    Math.max(1000, (request.leaseSeconds * 1000) / 3),
    () => renewLease(folder, held, request.leaseSeconds),
  );
  let result;
  try {
    result = await fanoutCopy(folder.runner, {
      from: { dir: stat.dir, entries: [{ name }, { name: `${name}.snap`, optional: true }] },
      relay: {
        host: folder.replica,
        dir: folder.dir,
        fill: held.lease.fill,
        confine: folder.confine,
        hopOptions: request.frontendHopOptions,
      },
      forward: request.forward,
      sparse: request.sparse,
      checksum: request.checksum,
      contentChecksum: request.algorithm,
      startLog: JSON.stringify({
        at: folder.now(),
        event: "fill-start",
        image: name,
        source: stat.path,
        owner: request.owner,
        forward: request.forward?.host ?? null,
      }),
      timeoutMs: request.timeoutMs,
      what: `Error filling the cache of ${folder.replica} with ${stat.path}`,
    });
  } finally {
    await renewal.stop();
  }
  const outcome: FillOutcome = {
    promoted: false,
    entryText: null,
    identity: null,
    forwarded: result.forward ? result.forward.ok : null,
    forwardProblem: result.forward?.problem ?? null,
    problem: null,
    streamBytes: result.streamBytes,
    seconds: result.seconds,
  };
  const after = await statImage(stat.path).catch(() => null);
  if (!after || !sameStat(after, stat)) {
    outcome.problem = "the image changed on the front-end while it was copied";
    return outcome;
  }
  if (result.sourceSums === null || Object.keys(result.sourceSums).length === 0) {
    outcome.problem = "the front-end could not checksum the files it sent";
    return outcome;
  }
  const identity = await identityFrom(stat, request.algorithm, result.sourceSums);
  outcome.identity = identity;
  await recordIdentity(stat, identity);
  if (!result.relay.ok) {
    outcome.problem = result.relay.problem;
    return outcome;
  }
  if (!sameSums(result.relay.sums, identity.sums)) {
    outcome.problem = "the files unpacked on the replica do not have the checksums of the front-end's";
    return outcome;
  }
  if (held.lost) {
    outcome.problem = "another process took the fill lease over";
    return outcome;
  }
  const files = parseStatLines(result.relay.statLines);
  if (!files.some((f) => f.name === name && f.type === "f")) {
    outcome.problem = "the image file is missing from the fill folder";
    return outcome;
  }
  const current = await folder.image(name);
  const old = parseEntry(current.entryText);
  if (old && livePins(old, current.now).length > 0) {
    outcome.problem = "the previous entry is still being copied by a deployment";
    return outcome;
  }
  const now = folder.now();
  const needPin = request.pin !== undefined && outcome.forwarded !== true;
  const entry: CacheEntry = {
    version: RECORD_VERSION,
    source: {
      path: stat.path,
      size: stat.size,
      mtime_ms: stat.mtime_ms,
      algorithm: identity.algorithm,
      checksum: identity.checksum,
      sums: identity.sums,
    },
    files,
    size: stat.size,
    allocated: files.reduce((sum, f) => sum + f.allocated, 0),
    created_at: now,
    filled_by: request.owner,
    last_use: now,
    pins: needPin ? [{ ...request.pin!, expires_at: now + request.leaseSeconds }] : [],
  };
  const text = encodeRecord(entry);
  const fill = held.lease.fill;
  const ops: StoreOp[] = [
    {
      op: "log",
      event: {
        at: now,
        event: "promote",
        image: name,
        source: stat.path,
        owner: request.owner,
        bytes: result.streamBytes,
      },
    },
    { op: "remove", name: entryName(name) },
    { op: "remove", name: `${name}.md5sum` },
    { op: "remove", name: `${name}.snap` },
    { op: "move", from: `${fill}/${name}`, to: name },
    { op: "move", from: `${fill}/${name}.snap`, to: `${name}.snap` },
    { op: "write", name: entryName(name), text },
    { op: "remove", name: leaseName(name) },
    { op: "remove", name: fill },
  ];
  const committed = await folder.transact({
    expect: { [leaseName(name)]: held.text, [entryName(name)]: current.entryText },
    ops,
  });
  if (committed !== "committed") {
    outcome.problem = committed === "busy"
      ? "the replica's cache lock stayed busy"
      : "the cache records changed meanwhile";
    return outcome;
  }
  held.lost = true; // The promotion removed the lease.
  outcome.promoted = true;
  outcome.entryText = text;
  (request.log?.info ?? logInfo)(
    `Cached ${stat.path} on ${folder.replica}: ${mib(result.streamBytes)} MiB in ${
      result.seconds.toFixed(1)
    } s, ` +
      `content verified`,
  );
  return outcome;
}

/** Logs why a fill was not promoted (the deployment itself may still have succeeded). */
export function logNotPromoted(outcome: FillOutcome, replica: string, path: string): void {
  if (!outcome.promoted) logWarn(`The copy of ${path} on ${replica} was not cached: ${outcome.problem}`);
}
