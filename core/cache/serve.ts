/**
 * Runs the "serve" script on a replica (scripts.ts) and reads what it found: one SSH command that
 * validates, pins, copies to the hypervisor and unpins (a hit), or waits for another process's
 * fill and then does the same, or reports a miss with what eviction needs to know.
 *
 * @module
 */

import { RemoteError } from "../errors.ts";
import { lastLines } from "../remote/process.ts";
import type { ShellScript } from "../remote/shell.ts";
import { type ReceiverOutcome, receiverOutcome } from "../transfer/copy.ts";
import { type HashAlgorithm, isHashAlgorithm } from "../transfer/hashes.ts";
import { type Pin, pinName, pinPrefix, recordHead, recordPrefix } from "./entry.ts";
import type { ImageIdentity } from "./entry.ts";
import type { ImageStat } from "./identity.ts";
import { fillLeasePrefix } from "./fill.ts";
import { type PendingInvalidation, serveScript } from "./scripts.ts";
import { type FolderState, parseFolderOutput, parseRecordLines, type ReplicaFolder } from "./store.ts";

/** What "serve" is asked. */
export interface ServeRequest {
  folder: ReplicaFolder;
  stat: ImageStat;
  /** The image's identity when the front-end knows it (sidecar), else null. */
  identity: ImageIdentity | null;
  /** The identity was computed in the algorithm of the record found earlier (see scripts.ts). */
  identityChecked?: boolean;
  owner: string;
  /** Pin for a deployment; omitted: only look (`onestor cache warm`). */
  pin?: Omit<Pin, "expires_at">;
  leaseSeconds: number;
  /** Longest wait in this command for another process's fill. */
  waitSeconds: number;
  /**
   * Re-read the entry on the replica on every use (REPLICA_CACHE_VERIFY=checksum), with the
   * identity's sums; without, only on its first use after the replica restarted.
   */
  verify: boolean;
  /** The copy to the hypervisor, run while pinned (push); null with a pin: leave it pinned (pull). */
  copy: ShellScript | null;
  invalidations: readonly PendingInvalidation[];
  /** Scan every cache folder under this parent on a miss (for eviction). */
  scan: string | null;
  /** Timeout of the whole command (ms, 0: none): it may include the copy. */
  timeoutMs: number;
  /** Take the fill lease on a miss (when this process would fill). */
  takeLease: boolean;
  /** Follow a fill of this front-end in progress into this hop to the hypervisor (see scripts.ts). */
  join?: ShellScript | null;
}

/** What "serve" found. */
export type ServeOutcome =
  /** Valid and, with a copy, copied (`copy` says how the receiver ended). */
  | { kind: "hit"; copy: ReceiverOutcome | null; copyRc: number | null; waitedSeconds: number | null }
  /** Another deployment's fill was followed as it arrived (`copy` says how the receiver ended). */
  | { kind: "joined"; holder: string; copy: ReceiverOutcome; copyRc: number }
  /** Valid and pinned for a pull. */
  | { kind: "pinned"; waitedSeconds: number | null }
  /** A record of this image version exists with a checksum the front-end must compare. */
  | { kind: "identity"; entryText: string; algorithm: HashAlgorithm | null; checksum: string | null }
  /** Another process's lease was still live when the wait budget ran out. */
  | { kind: "wait"; holder: string }
  /** No usable entry and no live lease of another process. */
  | {
    kind: "miss";
    state: "absent" | "broken" | "changed";
    entryText: string | null;
    leaseText: string | null;
    now: number;
    folders: FolderState[];
    /** Replica time the lease was taken for this process, null when it was not. */
    acquired: number | null;
  }
  /** The content check found the entry corrupt (dropped unless in use). */
  | { kind: "bad"; reason: string }
  /** The replica lacks the entry's checksum program. */
  | { kind: "nohash"; algorithm: HashAlgorithm }
  /** The folder lock stayed busy. */
  | { kind: "busy" };

/** Lines of the serve output, the command's result and its stderr. */
export interface ServeRun {
  outcome: ServeOutcome;
  invalidated: string[];
  stderr: string;
  /** Replica time seen by the script. */
  now: number | null;
  /** The owner of the lease it waited for, if it waited. */
  waitingFor: string | null;
}

function marker(out: string, key: string): string | undefined {
  return out.match(new RegExp(`^${key}=(\\S*)$`, "m"))?.[1];
}

/** Parses what the serve script printed. */
export function parseServe(
  stdout: string,
): { outcome: ServeOutcome | null; invalidated: string[]; now: number | null; waitingFor: string | null } {
  const lines = stdout.split("\n");
  const invalidated = lines.filter((l) => l.startsWith("ONESTOR_INVALIDATED ")).map((l) =>
    l.slice("ONESTOR_INVALIDATED ".length)
  );
  const nowText = marker(stdout, "ONESTOR_NOW");
  const now = nowText ? Number(nowText) : null;
  const waited = lines.find((l) => l.startsWith("ONESTOR_WAITED "));
  const waitingFor = lines.find((l) => l.startsWith("ONESTOR_WAITING "))?.slice("ONESTOR_WAITING ".length) ??
    null;
  const waitedSeconds = waited ? Number(waited.split(" ")[1]) : null;
  const at = lines.findIndex((l) => l.startsWith("ONESTOR_SERVE "));
  if (at < 0) return { outcome: null, invalidated, now, waitingFor };
  const [, kind, ...rest] = lines[at].split(" ");
  const detail = rest.join(" ");
  let outcome: ServeOutcome | null = null;
  switch (kind) {
    case "joined": {
      outcome = {
        kind: "joined",
        holder: lines.find((l) => l.startsWith("ONESTOR_JOINED "))?.slice("ONESTOR_JOINED ".length) ?? "",
        copy: receiverOutcome(stdout),
        copyRc: Number(detail.match(/rc=(\d+)/)?.[1] ?? 1),
      };
      break;
    }
    case "hit": {
      const rc = detail.match(/rc=(\d+)/);
      outcome = {
        kind: "hit",
        copy: rc ? receiverOutcome(stdout) : null,
        copyRc: rc ? Number(rc[1]) : null,
        waitedSeconds,
      };
      break;
    }
    case "pinned":
      outcome = { kind: "pinned", waitedSeconds };
      break;
    case "identity": {
      const records = parseRecordLines(
        lines.filter((l) => l.startsWith("ONESTOR_RECORD ")).map((l) => l.slice("ONESTOR_RECORD ".length)),
      );
      const text = [...records.values()][0]?.text ?? "";
      const alg = text.match(/"algorithm":"([^"]*)"/)?.[1] ?? "";
      outcome = {
        kind: "identity",
        entryText: text,
        algorithm: isHashAlgorithm(alg) ? alg : null,
        checksum: text.match(/"checksum":"([0-9a-f]*)"/)?.[1] ?? null,
      };
      break;
    }
    case "wait":
      outcome = { kind: "wait", holder: detail };
      break;
    case "miss": {
      const acquired = lines.find((l) => l.startsWith("ONESTOR_LEASE "));
      const before = lines.slice(at + 1);
      const firstFolder = before.findIndex((l) => l.startsWith("ONESTOR_FOLDER "));
      const recordLines = (firstFolder < 0 ? before : before.slice(0, firstFolder))
        .filter((l) => l.startsWith("ONESTOR_RECORD ")).map((l) => l.slice("ONESTOR_RECORD ".length));
      const records = parseRecordLines(recordLines);
      const text = (suffix: string) => [...records].find(([name]) => name.endsWith(suffix))?.[1].text ?? null;
      const folders: FolderState[] = [];
      if (firstFolder >= 0) {
        let dir = "";
        let block: string[] = [];
        const flush = () => {
          if (dir) folders.push(parseFolderOutput(dir, block.join("\n")));
        };
        for (const l of before.slice(firstFolder)) {
          if (l.startsWith("ONESTOR_FOLDER ")) {
            flush();
            dir = l.slice("ONESTOR_FOLDER ".length);
            block = [];
          } else block.push(l);
        }
        flush();
      }
      const state = detail === "broken" || detail === "changed" ? detail : "absent";
      outcome = {
        kind: "miss",
        state,
        entryText: text(".onestor.json"),
        leaseText: text(".onestor-lease.json"),
        now: now ?? Math.floor(Date.now() / 1000),
        folders,
        acquired: acquired ? Number(acquired.split(" ")[1]) : null,
      };
      break;
    }
    case "bad":
      outcome = { kind: "bad", reason: detail };
      break;
    case "nohash":
      outcome = isHashAlgorithm(detail)
        ? { kind: "nohash", algorithm: detail }
        : { kind: "bad", reason: detail };
      break;
    case "busy":
      outcome = { kind: "busy" };
      break;
  }
  return { outcome, invalidated, now, waitingFor };
}

/** Runs "serve" (see the module doc). @throws {RemoteError} when the replica cannot be used. */
export async function serve(request: ServeRequest): Promise<ServeRun> {
  const { folder, stat } = request;
  const script = serveScript({
    host: folder.replica,
    confine: folder.confine,
    dir: folder.dir,
    image: stat.name,
    expect: request.identity ? recordPrefix(request.identity) : null,
    head: recordHead(stat),
    identityChecked: request.identityChecked,
    owner: request.owner,
    pin: request.pin ? { name: pinName(stat.name, request.owner), prefix: pinPrefix(request.pin) } : null,
    leaseSeconds: request.leaseSeconds,
    waitSeconds: request.waitSeconds,
    // The sums travel on every use: the replica also checks an entry's content on its first use
    // after it restarted (scripts.ts).
    verify: request.identity ? { algorithm: request.identity.algorithm, sums: request.identity.sums } : null,
    verifyEveryUse: request.verify,
    copy: request.copy,
    invalidations: request.invalidations,
    scan: request.scan,
    lease: request.takeLease ? { prefix: fillLeasePrefix(stat, request.owner) } : null,
    join: request.join
      ? { script: request.join, frontend: request.owner.split(":")[0], source: stat.path }
      : null,
  });
  const result = await folder.runner.run(folder.replica, script, {
    shell: "bash",
    check: false,
    timeoutMs: request.timeoutMs,
    what: `Error using the cache of ${folder.replica} for ${stat.path}`,
  });
  const parsed = parseServe(result.stdout);
  if (parsed.now !== null) folder.observe(parsed.now);
  if (!parsed.outcome) {
    throw new RemoteError(
      `Error using the cache of ${folder.replica} for ${stat.path}: ${
        lastLines(result.stderr) || `exit code ${result.code}`
      }`,
      { host: folder.replica, kind: "command", status: result.code, stderr: result.stderr },
    );
  }
  return {
    outcome: parsed.outcome,
    invalidated: parsed.invalidated,
    stderr: result.stderr,
    now: parsed.now,
    waitingFor: parsed.waitingFor,
  };
}
