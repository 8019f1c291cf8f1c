/**
 * Invalidation of replica cache entries when an image changes or disappears on the front-end.
 * Called by every path that changes image content (datastore rm, snap_revert, snap_flatten, TM
 * mvds, a new SOURCE). Never throws: a replica that cannot be told now is told later, and entries
 * are also re-validated against the source on every use.
 *
 * What it does: forgets the front-end's checksum sidecar of the image, then on every replica
 * (the REPLICA_HOST of every system datastore) removes the image's entry record and, unless a
 * deployment is copying from it right now, its files (a pinned copy is left to its reader and
 * removed by a later eviction as a leftover). A replica that cannot be reached gets a journal
 * record on this front-end (`<state>/invalidations/<replica>/`), applied at the next contact: the
 * next clone through that replica, the next invalidation, or `onestor cache`.
 *
 * @module
 */

import { oneLine } from "../errors.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { OneClient } from "../one/xmlrpc.ts";
import type { HostRunner } from "../remote/runner.ts";
import { confine, type Confinement, replicaConfinement } from "../remote/confine.ts";
import { controlTimeoutMs, getConfig, getRunner } from "../runtime.ts";
import { sh } from "../remote/shell.ts";
import { forgetIdentity } from "./identity.ts";
import { invalidationsScript, prelude } from "./scripts.ts";
import { frontendStateDir, keyFileName } from "./state_dir.ts";
import { cacheTopology } from "./targets.ts";

/** Why an image is invalidated, for the log. */
export type InvalidationReason = "rm" | "mvds" | "snap_revert" | "snap_flatten" | "cp" | "clone" | "other";

/** A pending invalidation in the journal. */
export interface JournalRecord {
  source: string;
  reason: InvalidationReason;
  /** Epoch milliseconds on this front-end. */
  at: number;
}

function journalDir(replica: string): string {
  return `${frontendStateDir()}/invalidations/${encodeURIComponent(replica)}`;
}

/** Records an invalidation to apply on `replica` later (one file per image, written atomically). */
export async function journalInvalidation(replica: string, record: JournalRecord): Promise<void> {
  const dir = journalDir(replica);
  await Deno.mkdir(dir, { recursive: true });
  const file = `${dir}/${await keyFileName(record.source)}.json`;
  const tmp = `${file}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(record));
  await Deno.rename(tmp, file);
}

/** The pending invalidations of `replica`, with their files. */
export async function pendingInvalidations(
  replica: string,
): Promise<{ file: string; record: JournalRecord }[]> {
  const dir = journalDir(replica);
  const out: { file: string; record: JournalRecord }[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.endsWith(".json")) continue;
      try {
        const record = JSON.parse(await Deno.readTextFile(`${dir}/${e.name}`)) as JournalRecord;
        if (typeof record.source === "string") out.push({ file: `${dir}/${e.name}`, record });
      } catch {
        // A record being written or unreadable: the next pass sees it.
      }
    }
  } catch {
    // No journal for this replica.
  }
  return out.sort((a, b) => a.record.at - b.record.at);
}

/**
 * Applies invalidations on `replica` now, in one command; returns the sources done.
 * @throws when the replica cannot be reached.
 */
export async function invalidateOnReplica(
  runner: HostRunner,
  replica: string,
  records: readonly { source: string; reason: string }[],
  confinement: Confinement = replicaConfinement(getConfig()),
): Promise<string[]> {
  if (records.length === 0) return [];
  const out = await runner.output(
    replica,
    sh`${confine(confinement, replica, { remove: records.map((r) => r.source) })}
${prelude()}
${invalidationsScript(records)}`,
    {
      shell: "bash",
      what: `Error invalidating cached images on ${replica}`,
      timeoutMs: controlTimeoutMs(),
    },
  );
  return out.split("\n").filter((l) => l.startsWith("ONESTOR_INVALIDATED ")).map((l) =>
    l.slice("ONESTOR_INVALIDATED ".length)
  );
}

/** Removes the journal record of `source` once the replica applied it. */
export function journalApplied(
  replica: string,
  pending: readonly { file: string; record: JournalRecord }[],
  source: string,
): void {
  for (const p of pending) {
    if (p.record.source === source) {
      try {
        Deno.removeSync(p.file);
      } catch {
        // Already gone.
      }
    }
  }
  void replica;
}

/** Applies the journal of `replica` (best effort; records that fail stay for the next contact). */
export async function applyPendingInvalidations(
  runner: HostRunner,
  replica: string,
  confinement?: Confinement,
): Promise<number> {
  const pending = await pendingInvalidations(replica);
  if (pending.length === 0) return 0;
  let done: string[] = [];
  try {
    done = await invalidateOnReplica(runner, replica, pending.map((p) => p.record), confinement);
  } catch {
    return 0;
  }
  for (const source of done) journalApplied(replica, pending, source);
  if (done.length > 0) logInfo(`Applied ${done.length} pending cache invalidation(s) on ${replica}`);
  return done.length;
}

/** Marks every cached copy of `source` (an image path on the front-end) as invalid. */
export async function invalidateImage(source: string, reason: InvalidationReason): Promise<void> {
  try {
    const path = source.replace(/\/{2,}/g, "/");
    await forgetIdentity(path);
    const runner = getRunner();
    const { replicas } = await cacheTopology(new OneClient());
    await Promise.all(replicas.map(async ({ host }) => {
      try {
        const pending = await pendingInvalidations(host);
        const done = await invalidateOnReplica(runner, host, [
          ...pending.map((p) => p.record),
          { source: path, reason },
        ]);
        for (const source of done) journalApplied(host, pending, source);
        if (done.length > 1) logInfo(`Applied ${done.length - 1} pending cache invalidation(s) on ${host}`);
        if (done.includes(path)) {
          logInfo(`Invalidated the cached copy of ${path} on replica ${host} (${reason})`);
        }
      } catch (error) {
        logWarn(
          `Cannot invalidate the cached copy of ${path} on ${host} now (${
            oneLine(error)
          }); it will be done at the next contact`,
        );
        await journalInvalidation(host, { source: path, reason, at: Date.now() }).catch((e) =>
          logWarn(`Cannot record the pending invalidation of ${path} for ${host}: ${oneLine(e)}`)
        );
      }
    }));
  } catch (error) {
    logWarn(`Cache invalidation of ${source} (${reason}) incomplete: ${oneLine(error)}`);
  }
}
