/**
 * Filling an entry, in one SSH command: the front-end streams the image (and its `.snap` folder)
 * into the replica's "fill" script (scripts.ts), which takes the lease, writes the fill folder,
 * forwards the same bytes to the hypervisor when asked (cut-through), and promotes the entry when
 * everything checks out (**verified promotion**):
 * - the replica received the complete stream (trailer, byte counts; SSH authenticated every byte);
 * - the image did not change on the front-end while it was read (fingerprint before and after);
 * - the front-end computed the content checksum of every file it sent (read in parallel with the
 *   stream): the record is written from those, which become the entry's identity and this
 *   front-end's sidecar (no second read of the image, ever);
 * - this process still holds the lease, and the record it replaces is still the one it saw.
 * Anything else leaves the fill folder to be removed: a truncated or corrupt copy is never served.
 *
 * A watchdog on the front-end end of the stream stops it when the onestor process that owns it
 * is gone, so a killed deployment leaves no orphan copy behind.
 *
 * @module
 */

import { RemoteError } from "../errors.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { lastLines } from "../remote/process.ts";
import { confine } from "../remote/confine.ts";
import type { HostRunner } from "../remote/runner.ts";
import { sh, type ShellScript } from "../remote/shell.ts";
import { classifySshFailure, describeSshFailure } from "../remote/ssh.ts";
import {
  type Compression,
  type CopyRequest,
  type KnownSums,
  type ReceiverOutcome,
  receiverOutcome,
  senderScript,
  sourceSums,
} from "../transfer/copy.ts";
import type { HashAlgorithm } from "../transfer/hashes.ts";
import { fillName, type ImageIdentity, leaseName, leasePrefix, LOCK_NAME, recordHead } from "./entry.ts";
import { type EvictionCandidate, removalOps } from "./eviction.ts";
import { identityFrom, type ImageStat, recordIdentity, senderFingerprint } from "./identity.ts";
import { type FillForward, fillScript } from "./scripts.ts";
import type { ReplicaFolder } from "./store.ts";

/** What a fill needs. */
export interface FillRequest {
  folder: ReplicaFolder;
  /** The image as stat'ed before the fill. */
  stat: ImageStat;
  owner: string;
  /** Content checksum algorithm of the entry. */
  algorithm: HashAlgorithm;
  /** The image's checksums from the sidecar (null: computed while the stream is sent). */
  known?: KnownSums | null;
  /** When "serve" took the lease for this process (replica time). */
  acquired: number;
  /** The record text "serve" saw (null: absent). */
  expectRecord: string | null;
  /** Evictions to apply first (conditional: each is skipped as a whole if it changed). */
  evictions: readonly EvictionCandidate[];
  /** Replica time for the event log lines. */
  now: number;
  /** REPLICA_SSH_FE_OPTS. */
  frontendHopOptions: readonly string[];
  /** Cut-through target, if any. */
  forward: FillForward | null;
  compression: Compression;
  /** Data transfer timeout (ms, 0: none). */
  timeoutMs: number;
  leaseSeconds: number;
  /** Process whose death stops the stream (default: this process). */
  ownerPid?: number;
  /** Where the success line goes (default: an `INFO:` log line). */
  log?: { info(message: string): void };
  /** Lines logged once the fill has started (not when it found its lease gone). */
  announce?: readonly string[];
}

/** What a fill achieved. */
export interface FillOutcome {
  /** Set when nothing was done because the replica's state changed since "serve" looked. */
  conflict: string | null;
  /** Whether the entry was promoted. */
  promoted: boolean;
  /** Why it was not. */
  problem: string | null;
  /** The image's identity from the stream's checksums, when they could be computed. */
  identity: ImageIdentity | null;
  /** The forward's receiver (push), null without a push forward. */
  forward: ReceiverOutcome | null;
  streamBytes: number;
  seconds: number;
}

const mib = (bytes: number) => (bytes / 1048576).toFixed(1);

function marker(text: string, key: string): string | undefined {
  return text.match(new RegExp(`(?:^|\\s)${key}=(\\S*)`))?.[1];
}

/**
 * The front-end end of the stream: ssh into the replica's fill script, with a watchdog that stops
 * it when process `ownerPid` (the onestor process) is gone.
 */
export function watchedSink(sshArgv: readonly string[], ownerPid: number): ShellScript {
  return sh`${sshArgv} <&0 &
sp=$!
( while kill -0 ${ownerPid} 2>/dev/null && kill -0 $sp 2>/dev/null; do sleep 1; done
  kill -0 ${ownerPid} 2>/dev/null || kill $sp ) >/dev/null 2>&1 &
wp=$!
wait $sp
rc=$?
kill $wp 2>/dev/null
exit $rc`;
}

/** The text of this process's fill lease of `stat`, up to its `acquired_at` value. */
export function fillLeasePrefix(stat: ImageStat, owner: string): string {
  const [frontend = "", pid = "0"] = owner.split(":");
  return leasePrefix({
    version: 2,
    owner,
    frontend,
    pid: Number(pid),
    source: stat.path,
    fill: fillName(stat.name, owner),
    reserve: stat.allocated,
  });
}

/** Gives up a lease "serve" took for this process (when no fill follows), unless it changed. */
export async function releaseLease(folder: ReplicaFolder, stat: ImageStat, owner: string, acquired: number) {
  const prefix = `${fillLeasePrefix(stat, owner)}${acquired},`;
  await folder.runner.run(
    folder.replica,
    sh`${
      confine(folder.confine, folder.replica, {
        write: [`${folder.dir}/${LOCK_NAME}`],
        remove: [`${folder.dir}/${leaseName(stat.name)}`],
      })
    }
cd -- ${folder.dir} || exit 0
exec 9>>${LOCK_NAME} && flock -w 30 9 || exit 0
lease=${leaseName(stat.name)}
[[ $(cat -- "$lease" 2>/dev/null) == ${prefix}* ]] && rm -f -- "$lease"
exit 0`,
    {
      shell: "bash",
      check: false,
      timeoutMs: folder.timeoutMs,
      what: `Error releasing the lease of ${stat.path}`,
    },
  ).catch(() => {});
}

/** Fills and promotes an entry (see the module doc). @throws {RemoteError} when the replica cannot be reached. */
export async function fillEntry(runner: HostRunner, request: FillRequest): Promise<FillOutcome> {
  const started = performance.now();
  const { folder, stat } = request;
  const name = stat.name;
  const fill = fillName(name, request.owner);
  const regular = stat.files.filter((f) => f.type === "f").map((f) => f.name);
  const script = fillScript({
    host: folder.replica,
    confine: folder.confine,
    dir: folder.dir,
    image: name,
    fill,
    acquired: request.acquired,
    expectRecord: request.expectRecord,
    leasePrefix: fillLeasePrefix(stat, request.owner),
    leaseSeconds: request.leaseSeconds,
    evictions: request.evictions.map((c) => ({
      dir: c.dir,
      change: { expect: c.expect, unpinned: c.unpinned, ops: removalOps(c, request.now, "room for a fill") },
    })),
    startLog: JSON.stringify({
      at: request.now,
      event: "fill-start",
      image: name,
      source: stat.path,
      owner: request.owner,
      forward: request.forward ? request.forward.kind : null,
    }),
    record: {
      source: stat.path,
      head: recordHead(stat),
      algorithm: request.algorithm,
      filledBy: request.owner,
      size: stat.size,
      sumNames: regular,
      files: stat.files.map((f) => f.name),
    },
    forward: request.forward,
    decompress: { none: "", gzip: "gzip -dc", zstd: "zstd -dcq", xz: "xz -dc" }[request.compression],
    spoolBytes: request.forward?.kind === "push" ? stat.allocated : 0,
  });
  const sender: CopyRequest = {
    from: { host: null, dir: stat.dir, entries: [{ name }, { name: `${name}.snap`, optional: true }] },
    // The fill script on the replica does the receiving (and its own confinement).
    to: { host: folder.replica, dir: folder.dir, confine: folder.confine },
    compression: request.compression,
    checksum: "none",
  };
  const ssh = runner.ssh.argv(folder.replica, script, request.frontendHopOptions, "bash");
  const pipeline = senderScript(sender, sh`bash -c ${watchedSink(ssh, request.ownerPid ?? Deno.pid).text}`, {
    sums: {
      algorithm: request.algorithm,
      names: regular,
      known: request.known && regular.every((n) => request.known!.sums[n]) ? request.known : undefined,
    },
    fingerprint: true,
  });
  const what = `Error filling the cache of ${folder.replica} with ${stat.path}`;
  const result = await runner.run(null, pipeline, {
    shell: "bash",
    check: false,
    timeoutMs: request.timeoutMs,
    what,
  });
  const out = result.stdout;
  const err = result.stderr;
  const fillLine = out.split("\n").filter((l) => l.startsWith("ONESTOR_FILL ")).map((l) =>
    l.slice("ONESTOR_FILL ".length)
  );
  const conflict = fillLine.find((l) => l.startsWith("conflict"));
  const outcome: FillOutcome = {
    conflict: conflict ? conflict.slice("conflict".length).trim() || "the cache records changed" : null,
    promoted: fillLine.some((l) => l.startsWith("promoted")),
    problem: null,
    identity: null,
    forward: request.forward?.kind === "push" && fillLine.includes("started") ? receiverOutcome(out) : null,
    streamBytes: Number(marker(err, "ONESTOR_SRC_BYTES") || "0"),
    seconds: (performance.now() - started) / 1000,
  };
  if (outcome.conflict) return outcome;
  if (!fillLine.includes("started")) {
    const kind = classifySshFailure(result.code, err, result.timedOut);
    if (kind !== "command") {
      throw new RemoteError(describeSshFailure(folder.replica, kind, result, what, request.timeoutMs), {
        host: folder.replica,
        kind,
        status: result.code,
        stderr: err,
      });
    }
    throw new RemoteError(
      `${what}: ${lastLines(err.replace(/^ONESTOR_\S+.*$/gm, "")) || `exit ${result.code}`}`,
      {
        host: folder.replica,
        kind: "command",
        status: result.code,
        stderr: err,
      },
    );
  }
  for (const line of request.announce ?? []) (request.log?.info ?? logInfo)(line);
  if (!outcome.promoted) {
    outcome.problem = fillLine.find((l) =>
      l.startsWith("not-promoted")
    )?.slice("not-promoted".length).trim() ||
      lastLines(err.replace(/^ONESTOR_\S+.*$/gm, "")) || `the stream ended (exit ${result.code})`;
  }
  // The sums of the files sent are this image version's identity, whether or not the replica
  // kept the copy: the next deployment compares entries with it without reading the image.
  const sums = sourceSums(err);
  if (marker(err, "ONESTOR_SRC_CHANGED") === "0" && sums && regular.every((n) => n in sums)) {
    outcome.identity = await identityFrom(stat, request.algorithm, sums);
    await recordIdentity(stat, outcome.identity, senderFingerprint(err));
  }
  if (outcome.promoted) {
    (request.log?.info ?? logInfo)(
      `Cached ${stat.path} on ${folder.replica}: ${mib(outcome.streamBytes)} MiB in ${
        outcome.seconds.toFixed(1)
      } s, ` +
        "complete and unchanged",
    );
  }
  return outcome;
}

/** Logs why a fill was not promoted (the deployment itself may still have succeeded). */
export function logNotPromoted(outcome: FillOutcome, replica: string, path: string): void {
  if (!outcome.promoted && !outcome.conflict) {
    logWarn(`The copy of ${path} on ${replica} was not cached: ${outcome.problem}`);
  }
}
