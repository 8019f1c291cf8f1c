/**
 * Eviction: before a fill, make room for it by removing least recently used entries, so that the
 * cache stays under REPLICA_MAX_SIZE_MB and the replica filesystem under REPLICA_MAX_USED_PERC.
 *
 * - Scope: every cache folder of the replica (each image datastore folder marked `replica`)
 *   counts toward REPLICA_MAX_SIZE_MB; REPLICA_MAX_USED_PERC is checked on the filesystem of the
 *   folder being filled.
 * - Order: leftovers first (fill folders whose lease is dead, image files without an entry, e.g.
 *   from upstream's cache), then entries by their recorded last use (never atime).
 * - Never evicted: an entry with a live pin (a deployment is copying from it) or a live lease (it
 *   is being filled), and the image being filled.
 * - All or nothing: when even evicting every candidate would not make room, nothing is evicted and
 *   the caller deploys without caching. Eviction itself never fails a deployment.
 * - Fills running concurrently count with what their lease reserves, so two fills cannot both
 *   take the same free space.
 *
 * The plan is a pure function of the folder states; each removal is a conditional transaction
 * that re-checks, under the replica lock, that the entry did not get pinned or leased meanwhile.
 *
 * @module
 */

import {
  entryName,
  FILL_PREFIX,
  type Lease,
  leaseLive,
  leaseName,
  livePins,
  parseEntry,
  parseLease,
} from "./entry.ts";
import { cacheFolders, type FolderState, ReplicaFolder, type StoreOp } from "./store.ts";
import { metrics } from "../metrics/metrics.ts";

/** The limits of one replica, from the front-end's configuration. */
export interface CacheLimits {
  /** REPLICA_MAX_SIZE_MB in bytes, null when unset. */
  maxBytes: number | null;
  /** REPLICA_MAX_USED_PERC. */
  maxUsedPercent: number;
}

/** Something eviction may remove. */
export interface EvictionCandidate {
  /** Cache folder it is in. */
  dir: string;
  /** Image name (`<hash>`) or fill folder name. */
  key: string;
  /** What it is. */
  kind: "stale-fill" | "orphan" | "entry";
  /** Top-level names to remove (records first). */
  names: string[];
  /** Allocated bytes freed. */
  allocated: number;
  /** Order key: last use (entries) or shifted mtime (leftovers), replica time. */
  lastUse: number;
  /** Conditions to check under the lock: record texts as read. */
  expect: Record<string, string | null>;
  /** Images that must still have no live pin when it is removed. */
  unpinned?: string[];
}

/** The cache as eviction sees it. */
export interface CacheUsage {
  /** Allocated bytes of entries, fills and leftovers. */
  cacheBytes: number;
  /** Bytes reserved by live fills beyond what they have written so far. */
  reservedBytes: number;
  /** What may be removed, in eviction order. */
  candidates: EvictionCandidate[];
  /** Entries that are pinned or being filled right now. */
  protectedKeys: string[];
}

/** The image being filled, never a candidate. */
export interface SkipImage {
  dir: string;
  image: string;
}

/** Image names as OpenNebula's fs driver makes them (md5 hex), with their side files. */
const IMAGE_FILE = /^([0-9a-f]{32})(\.snap|\.md5sum)?$/i;

/** Adds one folder's contents to `usage`. */
function addFolder(usage: CacheUsage, state: FolderState, skip: SkipImage | null): void {
  const now = state.now;
  const dir = state.dir;
  const skipped = (image: string) => skip !== null && skip.dir === dir && skip.image === image;
  const sizeOf = new Map(state.items.map((i) => [i.name, i]));
  const liveLeases = new Map<string, Lease>();
  for (const [image, text] of state.leases) {
    const lease = parseLease(text);
    if (lease && leaseLive(lease, now)) liveLeases.set(image, lease);
  }
  const liveFills = new Set([...liveLeases.values()].map((l) => l.fill));
  const claimed = new Set<string>();

  for (const [image, text] of state.entries) {
    const names = [image, `${image}.snap`, `${image}.md5sum`].filter((n) => sizeOf.has(n));
    names.forEach((n) => claimed.add(n));
    const allocated = names.reduce((sum, n) => sum + (sizeOf.get(n)?.allocated ?? 0), 0);
    usage.cacheBytes += allocated;
    const entry = parseEntry(text, { lastUse: state.entryMtimes?.get(image), pins: state.pins?.get(image) });
    const pinned = (state.pins?.get(image) ?? []).some((p) => p.expires_at > now);
    const busy = skipped(image) || liveLeases.has(image) || pinned ||
      (entry !== null && livePins(entry, now).length > 0);
    if (busy) {
      usage.protectedKeys.push(image);
      continue;
    }
    usage.candidates.push({
      dir,
      key: image,
      kind: "entry",
      names: [entryName(image), ...names],
      allocated,
      lastUse: entry?.last_use ?? 0,
      expect: { [entryName(image)]: text, [leaseName(image)]: state.leases.get(image) ?? null },
      unpinned: [image],
    });
  }

  const orphans = new Map<string, string[]>();
  for (const item of state.items) {
    if (claimed.has(item.name)) continue;
    if (item.name.startsWith(FILL_PREFIX)) {
      usage.cacheBytes += item.allocated;
      if (liveFills.has(item.name)) continue;
      usage.candidates.push({
        dir,
        key: item.name,
        kind: "stale-fill",
        names: [item.name],
        allocated: item.allocated,
        lastUse: -Infinity,
        expect: {},
      });
      continue;
    }
    const m = item.name.match(IMAGE_FILE);
    if (!m) continue;
    usage.cacheBytes += item.allocated;
    const list = orphans.get(m[1]) ?? [];
    list.push(item.name);
    orphans.set(m[1], list);
  }
  for (const [image, names] of orphans) {
    if (skipped(image) || liveLeases.has(image)) {
      usage.protectedKeys.push(image);
      continue;
    }
    // Leftovers go before entries: their mtime is shifted far into the past.
    usage.candidates.push({
      dir,
      key: image,
      kind: "orphan",
      names,
      allocated: names.reduce((sum, n) => sum + (sizeOf.get(n)?.allocated ?? 0), 0),
      lastUse: Math.max(...names.map((n) => sizeOf.get(n)?.mtime ?? 0)) - 1e10,
      expect: { [entryName(image)]: null, [leaseName(image)]: state.leases.get(image) ?? null },
      unpinned: [image],
    });
  }

  for (const [image, lease] of liveLeases) {
    if (skipped(image)) continue;
    const written = sizeOf.get(lease.fill)?.allocated ?? 0;
    usage.reservedBytes += Math.max(0, (lease.reserve ?? 0) - written);
  }
}

/**
 * Classifies the contents of a replica's cache folders for eviction; `skip` is the image being
 * filled (never a candidate, its reservation not counted: the caller adds what it needs).
 */
export function cacheUsage(states: readonly FolderState[], skip: SkipImage | null = null): CacheUsage {
  const usage: CacheUsage = { cacheBytes: 0, reservedBytes: 0, candidates: [], protectedKeys: [] };
  for (const state of states) addFolder(usage, state, skip);
  usage.candidates.sort((a, b) => a.lastUse - b.lastUse);
  return usage;
}

/** A decision: evict these to make room for `need` bytes, or it cannot fit. */
export interface EvictionPlan {
  fits: boolean;
  evict: EvictionCandidate[];
  /** Why it does not fit (for the log). */
  reason: string;
}

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${Math.ceil(bytes / MIB)} MiB`;

/**
 * Plans the evictions that make room for `need` more bytes under `limits`; `fs` is the filesystem
 * of the folder being filled.
 */
export function planEviction(
  fs: FolderState["fs"],
  usage: CacheUsage,
  need: number,
  limits: CacheLimits,
): EvictionPlan {
  if (limits.maxBytes !== null && need > limits.maxBytes) {
    return { fits: false, evict: [], reason: `the image (${mib(need)}) is larger than REPLICA_MAX_SIZE_MB` };
  }
  const fsLimit = fs.total > 0 ? Math.floor(fs.total * limits.maxUsedPercent / 100) : Infinity;
  let cache = usage.cacheBytes + usage.reservedBytes + need;
  let fsUsed = fs.used + usage.reservedBytes + need;
  const over = () => (limits.maxBytes !== null && cache > limits.maxBytes) || fsUsed > fsLimit;
  const evict: EvictionCandidate[] = [];
  for (const candidate of usage.candidates) {
    if (!over()) break;
    evict.push(candidate);
    cache -= candidate.allocated;
    fsUsed -= candidate.allocated;
  }
  if (over()) {
    const which = limits.maxBytes !== null && cache > limits.maxBytes
      ? `REPLICA_MAX_SIZE_MB (${mib(limits.maxBytes)}; ${mib(usage.cacheBytes)} cached)`
      : `REPLICA_MAX_USED_PERC (${limits.maxUsedPercent}% of ${mib(fs.total)}; ${mib(fs.used)} used)`;
    return {
      fits: false,
      evict: [],
      reason: `${mib(need)} more would exceed ${which} even after evicting every unpinned entry ` +
        `(${usage.protectedKeys.length} pinned or being filled)`,
    };
  }
  return { fits: true, evict, reason: "" };
}

/** What {@linkcode makeRoom} did. */
export interface RoomResult {
  /** Whether the fill fits now. */
  ok: boolean;
  /** What was evicted. */
  evicted: EvictionCandidate[];
  /** Why not, when not ok. */
  reason: string;
}

/** Ops that remove a candidate (the record first, so nothing half-removed is ever served). */
export function removalOps(candidate: EvictionCandidate, now: number, why: string): StoreOp[] {
  const records = candidate.names.filter((n) => n.endsWith(".onestor.json"));
  const rest = candidate.names.filter((n) => !n.endsWith(".onestor.json"));
  return [
    { op: "log", event: { at: now, event: "evict", image: candidate.key, kind: candidate.kind, why } },
    ...records.map((name) => ({ op: "remove" as const, name })),
    ...rest.map((name) => ({ op: "remove" as const, name })),
    ...(candidate.kind === "stale-fill" ? [] : [{ op: "removePins" as const, image: candidate.key }]),
  ];
}

/** Reads every cache folder of `folder`'s replica (the folders next to `folder.dir`, and it). */
export async function replicaFolders(folder: ReplicaFolder): Promise<FolderState[]> {
  const parent = folder.dir.slice(0, folder.dir.lastIndexOf("/")) || "/";
  const dirs = new Set(
    await cacheFolders(folder.runner, folder.replica, parent, { timeoutMs: folder.timeoutMs }),
  );
  dirs.add(folder.dir);
  return await Promise.all(
    [...dirs].map((d) =>
      d === folder.dir
        ? folder.folder()
        : new ReplicaFolder(folder.runner, folder.replica, d, folder.timeoutMs, folder.confine).folder()
    ),
  );
}

/** Removes candidates, each under its folder's lock; returns those removed (others changed meanwhile). */
export async function evictCandidates(
  folder: ReplicaFolder,
  candidates: readonly EvictionCandidate[],
  why: string,
): Promise<EvictionCandidate[]> {
  const done: EvictionCandidate[] = [];
  for (const candidate of candidates) {
    const target = candidate.dir === folder.dir
      ? folder
      : new ReplicaFolder(folder.runner, folder.replica, candidate.dir, folder.timeoutMs, folder.confine);
    const result = await target.transact({
      expect: candidate.expect,
      unpinned: candidate.unpinned,
      ops: removalOps(candidate, target.now(), why),
    });
    if (result === "committed") done.push(candidate);
    if (result === "committed") metrics.evicted(folder.replica, candidate.kind, candidate.allocated);
  }
  return done;
}

/** Evicts what the plan says until `need` bytes fit, re-planning when other processes change the folders. */
export async function makeRoom(
  folder: ReplicaFolder,
  need: number,
  limits: CacheLimits,
  skip: string | null,
): Promise<RoomResult> {
  const evicted: EvictionCandidate[] = [];
  for (let round = 0; round < 4; round++) {
    const states = await replicaFolders(folder);
    metrics.cacheSizes(folder.replica, states);
    const own = states.find((s) => s.dir === folder.dir)!;
    const usage = cacheUsage(states, skip === null ? null : { dir: folder.dir, image: skip });
    const plan = planEviction(own.fs, usage, need, limits);
    if (!plan.fits) return { ok: false, evicted, reason: plan.reason };
    if (plan.evict.length === 0) return { ok: true, evicted, reason: "" };
    const done = await evictCandidates(folder, plan.evict, "room for a fill");
    evicted.push(...done);
    if (done.length === plan.evict.length) return { ok: true, evicted, reason: "" };
  }
  return { ok: false, evicted, reason: "the cache folders kept changing while making room" };
}
