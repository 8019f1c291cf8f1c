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
import { controlTimeoutMs, getRunner } from "../runtime.ts";
import { entryName, leaseName, livePins, parseEntry } from "./entry.ts";
import { forgetIdentity } from "./identity.ts";
import { frontendStateDir, keyFileName } from "./state_dir.ts";
import { ReplicaFolder } from "./store.ts";
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

/** Removes the entry of image `source` on `replica` now. @throws when the replica cannot be reached. */
export async function invalidateOnReplica(
  runner: HostRunner,
  replica: string,
  source: string,
  reason: string,
): Promise<boolean> {
  const slash = source.lastIndexOf("/");
  const folder = new ReplicaFolder(runner, replica, source.slice(0, slash) || "/", controlTimeoutMs());
  const image = source.slice(slash + 1);
  for (let attempt = 0; attempt < 5; attempt++) {
    const state = await folder.image(image);
    if (state.entryText === null && state.files.length === 0) return false;
    const entry = parseEntry(state.entryText);
    const pinned = entry !== null && livePins(entry, state.now).length > 0;
    const ops = [
      { op: "log" as const, event: { at: state.now, event: "invalidate", image, source, reason, pinned } },
      { op: "remove" as const, name: entryName(image) },
    ];
    if (!pinned) {
      ops.push({ op: "remove", name: image }, { op: "remove", name: `${image}.snap` }, {
        op: "remove",
        name: `${image}.md5sum`,
      });
    }
    const result = await folder.transact({
      expect: { [entryName(image)]: state.entryText, [leaseName(image)]: state.leaseText },
      ops,
    });
    if (result === "committed") return true;
  }
  throw new Error(`the cache records of ${source} on ${replica} kept changing`);
}

/** Applies the journal of `replica` (best effort; records that fail stay for the next contact). */
export async function applyPendingInvalidations(runner: HostRunner, replica: string): Promise<number> {
  let applied = 0;
  for (const { file, record } of await pendingInvalidations(replica)) {
    try {
      await invalidateOnReplica(runner, replica, record.source, record.reason);
      await Deno.remove(file).catch(() => {});
      applied++;
    } catch {
      break;
    }
  }
  if (applied > 0) logInfo(`Applied ${applied} pending cache invalidation(s) on ${replica}`);
  return applied;
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
        await applyPendingInvalidations(runner, host);
        if (await invalidateOnReplica(runner, host, path, reason)) {
          logInfo(`Removed the cached copy of ${path} from replica ${host} (${reason})`);
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
