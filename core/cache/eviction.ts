/**
 * Eviction: before a fill, make room for it by removing least recently used entries, so that the
 * cache stays under REPLICA_MAX_SIZE_MB and the replica filesystem under REPLICA_MAX_USED_PERC.
 *
 * - Order: leftovers first (fill folders whose lease is dead, image files without an entry, e.g.
 *   from upstream's cache), then entries by their recorded last use (never atime).
 * - Never evicted: an entry with a live pin (a deployment is copying from it) or a live lease (it
 *   is being filled), and the image being filled.
 * - All or nothing: when even evicting every candidate would not make room, nothing is evicted and
 *   the caller deploys without caching. Eviction itself never fails a deployment.
 * - Fills running concurrently count with what their lease reserves, so two fills cannot both
 *   take the same free space.
 *
 * The plan is a pure function of the folder state; each removal is a conditional transaction that
 * re-checks, under the replica lock, that the entry did not get pinned or leased meanwhile.
 *
 * @module
 */

import { entryName, FILL_PREFIX, leaseLive, leaseName, livePins, parseEntry, parseLease } from "./entry.ts";
import type { FolderState, ReplicaFolder, StoreOp } from "./store.ts";

/** The limits of one replica, from the front-end's configuration. */
export interface CacheLimits {
  /** REPLICA_MAX_SIZE_MB in bytes, null when unset. */
  maxBytes: number | null;
  /** REPLICA_MAX_USED_PERC. */
  maxUsedPercent: number;
}

/** Something eviction may remove. */
export interface EvictionCandidate {
  /** Image name (`<hash>`) or fill folder name. */
  key: string;
  /** What it is. */
  kind: "stale-fill" | "orphan" | "entry";
  /** Top-level names to remove (records last). */
  names: string[];
  /** Allocated bytes freed. */
  allocated: number;
  /** Order key: last use (entries) or mtime (leftovers), replica time. */
  lastUse: number;
  /** Conditions to check under the lock: record texts as read. */
  expect: Record<string, string | null>;
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

/** Image names as OpenNebula's fs driver makes them (md5 hex), with their side files. */
const IMAGE_FILE = /^([0-9a-f]{32})(\.snap|\.md5sum)?$/i;

/** Classifies the folder's contents for eviction; `skip` is the image being filled (never a candidate). */
export function cacheUsage(state: FolderState, skip: string | null = null): CacheUsage {
  const now = state.now;
  const sizeOf = new Map(state.items.map((i) => [i.name, i]));
  const liveLeases = new Map<string, ReturnType<typeof parseLease>>();
  for (const [image, text] of state.leases) {
    const lease = parseLease(text);
    if (leaseLive(lease, now)) liveLeases.set(image, lease);
  }
  const liveFills = new Set([...liveLeases.values()].map((l) => l!.fill));
  const candidates: EvictionCandidate[] = [];
  const protectedKeys: string[] = [];
  let cacheBytes = 0;
  let reservedBytes = 0;
  const claimed = new Set<string>();

  for (const [image, text] of state.entries) {
    const names = [image, `${image}.snap`, `${image}.md5sum`].filter((n) => sizeOf.has(n));
    names.forEach((n) => claimed.add(n));
    const allocated = names.reduce((sum, n) => sum + (sizeOf.get(n)?.allocated ?? 0), 0);
    cacheBytes += allocated;
    const entry = parseEntry(text);
    const busy = image === skip || liveLeases.has(image) ||
      (entry !== null && livePins(entry, now).length > 0);
    if (busy) {
      protectedKeys.push(image);
      continue;
    }
    candidates.push({
      key: image,
      kind: "entry",
      names: [entryName(image), ...names],
      allocated,
      lastUse: entry?.last_use ?? 0,
      expect: { [entryName(image)]: text, [leaseName(image)]: state.leases.get(image) ?? null },
    });
  }

  const orphans = new Map<string, string[]>();
  for (const item of state.items) {
    if (claimed.has(item.name)) continue;
    if (item.name.startsWith(FILL_PREFIX)) {
      cacheBytes += item.allocated;
      if (liveFills.has(item.name)) continue;
      candidates.push({
        key: item.name,
        kind: "stale-fill",
        names: [item.name],
        allocated: item.allocated,
        lastUse: item.mtime - 1e12,
        expect: {},
      });
      continue;
    }
    const m = item.name.match(IMAGE_FILE);
    if (!m) continue;
    cacheBytes += item.allocated;
    const list = orphans.get(m[1]) ?? [];
    list.push(item.name);
    orphans.set(m[1], list);
  }
  for (const [image, names] of orphans) {
    if (image === skip || liveLeases.has(image)) {
      protectedKeys.push(image);
      continue;
    }
    candidates.push({
      key: image,
      kind: "orphan",
      names,
      allocated: names.reduce((sum, n) => sum + (sizeOf.get(n)?.allocated ?? 0), 0),
      lastUse: Math.max(...names.map((n) => sizeOf.get(n)?.mtime ?? 0)) - 1e9,
      expect: { [entryName(image)]: null, [leaseName(image)]: state.leases.get(image) ?? null },
    });
  }

  for (const [image, lease] of liveLeases) {
    if (image === skip) continue;
    const written = sizeOf.get(lease!.fill)?.allocated ?? 0;
    reservedBytes += Math.max(0, (lease!.reserve ?? 0) - written);
  }
  candidates.sort((a, b) => a.lastUse - b.lastUse);
  return { cacheBytes, reservedBytes, candidates, protectedKeys };
}

/** A decision: evict these to make room for `need` bytes, or it cannot fit. */
export interface EvictionPlan {
  fits: boolean;
  evict: EvictionCandidate[];
  /** Why it does not fit (for the log), or what limit applied. */
  reason: string;
}

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${Math.ceil(bytes / MIB)} MiB`;

/** Plans the evictions that make room for `need` more bytes under `limits`. */
export function planEviction(
  state: FolderState,
  usage: CacheUsage,
  need: number,
  limits: CacheLimits,
): EvictionPlan {
  const fsLimit = state.fs.total > 0 ? Math.floor(state.fs.total * limits.maxUsedPercent / 100) : Infinity;
  let cache = usage.cacheBytes + usage.reservedBytes + need;
  let fsUsed = state.fs.used + usage.reservedBytes + need;
  const over = () => (limits.maxBytes !== null && cache > limits.maxBytes) || fsUsed > fsLimit;
  if (limits.maxBytes !== null && need > limits.maxBytes) {
    return { fits: false, evict: [], reason: `the image (${mib(need)}) is larger than REPLICA_MAX_SIZE_MB` };
  }
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
      : `REPLICA_MAX_USED_PERC (${limits.maxUsedPercent}% of ${mib(state.fs.total)}; ${
        mib(state.fs.used)
      } used)`;
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
  /** Keys evicted. */
  evicted: EvictionCandidate[];
  /** Why not, when not ok. */
  reason: string;
}

/** Ops that remove a candidate (records first, so nothing half-removed is ever served). */
export function removalOps(candidate: EvictionCandidate, now: number, why: string): StoreOp[] {
  const records = candidate.names.filter((n) => n.endsWith(".onestor.json"));
  const rest = candidate.names.filter((n) => !n.endsWith(".onestor.json"));
  return [
    { op: "log", event: { at: now, event: "evict", image: candidate.key, kind: candidate.kind, why } },
    ...records.map((name) => ({ op: "remove" as const, name })),
    ...rest.map((name) => ({ op: "remove" as const, name })),
  ];
}

/** Evicts what the plan says until `need` bytes fit (a few re-plans when others change the folder). */
export async function makeRoom(
  folder: ReplicaFolder,
  need: number,
  limits: CacheLimits,
  skip: string | null,
): Promise<RoomResult> {
  const evicted: EvictionCandidate[] = [];
  for (let round = 0; round < 4; round++) {
    const state = await folder.folder();
    const usage = cacheUsage(state, skip);
    const plan = planEviction(state, usage, need, limits);
    if (!plan.fits) return { ok: false, evicted, reason: plan.reason };
    if (plan.evict.length === 0) return { ok: true, evicted, reason: "" };
    let conflict = false;
    for (const candidate of plan.evict) {
      const result = await folder.transact({
        expect: candidate.expect,
        ops: removalOps(candidate, state.now, "room for a fill"),
      });
      if (result === "committed") evicted.push(candidate);
      else conflict = true;
    }
    if (!conflict) return { ok: true, evicted, reason: "" };
  }
  return { ok: false, evicted, reason: "the cache folder kept changing while making room" };
}
