/**
 * The replica cache's records, as files next to the cached images on the replica:
 *
 * - `<hash>.onestor.json`: the entry of one cached image ({@linkcode CacheEntry}): the identity of
 *   the front-end image it is a copy of and what the cached files looked like when they were
 *   promoted. Written once, at promotion, and never changed: its **mtime is the entry's last use**
 *   (touched by every deployment that copies from it), so a use needs no rewrite of JSON;
 * - `<hash>.onestor-pin.<tag>`: one file per deployment copying from the entry now ({@linkcode Pin}),
 *   created and removed by that deployment's own script on the replica;
 * - `<hash>.onestor-lease.json`: the lease of the process filling that entry ({@linkcode Lease});
 * - `.onestor-fill-<hash>-<tag>/`: the folder a fill writes into before promotion;
 * - `.onestor-wait-<hash>.lock`: held (flock) by the filling script while it fills, so that
 *   deployments waiting for the entry wake up the moment it is promoted.
 *
 * The layout of each JSON text is fixed (the order of its keys, compact, times last), because the
 * scripts on the replica write and check records as text, under the folder's lock, without a JSON
 * parser: a record is checked by the prefix that states the image's identity, a lease or pin is
 * renewed by rewriting its final `expires_at`. This module builds, parses and judges the records;
 * reading and writing them on the replica is `store.ts` and `scripts.ts`. Times are the replica's
 * clock in epoch seconds, so that front-ends with skewed clocks agree on when a lease or pin
 * expires.
 *
 * @module
 */

/** Suffix of an entry file: `<hash>.onestor.json`. */
export const ENTRY_SUFFIX = ".onestor.json";
/** Suffix of a lease file: `<hash>.onestor-lease.json`. */
export const LEASE_SUFFIX = ".onestor-lease.json";
/** Infix of pin files: `<hash>.onestor-pin.<tag>`. */
export const PIN_INFIX = ".onestor-pin.";
/** Prefix of the wait lock of an image being filled: `.onestor-wait-<hash>.lock`. */
export const WAIT_PREFIX = ".onestor-wait-";
/** Prefix of a fill folder: `.onestor-fill-<hash>-<tag>`. */
export const FILL_PREFIX = ".onestor-fill-";
/** Lock file of a cache folder (flock, held for a few milliseconds by each state change). */
export const LOCK_NAME = ".onestor.lock";
/** Event log of a cache folder (JSON lines: fills, promotions, evictions, invalidations). */
export const LOG_NAME = ".onestor-cache.log";
/** Version of the record format (1: pins and last use inside the entry; replaced by 2). */
export const RECORD_VERSION = 2;

/** One file of an image as the front-end sees it. */
export interface SourceFile {
  /** Path relative to the image folder: `<hash>` or `<hash>.snap/<id>`. */
  name: string;
  /** `f` regular file, `d` folder, `l` symlink. */
  type: "f" | "d" | "l";
  /** Size in bytes. */
  size: number;
  /** Modification time in milliseconds. */
  mtime_ms: number;
}

/** What an entry is a copy of: the front-end image and its content checksum. */
export interface SourceRecord {
  /** Image path on the front-end (the SOURCE). */
  path: string;
  /** Size of the image file in bytes. */
  size: number;
  /** Modification time of the image file in milliseconds. */
  mtime_ms: number;
  /** Checksum algorithm (`xxh128`, `blake2b`, `sha256`, `md5`). */
  algorithm: string;
  /** Digest of the per-file checksums (see {@linkcode contentDigest}). */
  checksum: string;
  /** Per-file checksums of the regular files (image and snapshots), by relative name. */
  sums: Record<string, string>;
}

/** A cached file as promoted on the replica. */
export interface CachedFile {
  /** Relative name, as in {@linkcode SourceFile}. */
  name: string;
  /** `f`, `d` or `l`. */
  type: "f" | "d" | "l";
  /** Size in bytes. */
  size: number;
  /** Modification time, epoch seconds (what `stat -c %Y` prints). */
  mtime: number;
  /** Allocated bytes. */
  allocated: number;
}

/** A deployment that is copying from an entry; an entry with a live pin is never evicted. */
export interface Pin {
  /** Process that holds it (see {@linkcode ownerId}). */
  owner: string;
  /** VM id, for `onestor cache ls`. */
  vm: number | null;
  /** Disk id. */
  disk: number | null;
  /** Hypervisor the copy goes to. */
  host: string | null;
  /** Replica time after which the pin is dead (its holder renews it while it copies). */
  expires_at: number;
}

/** The record of one cached image (`<hash>.onestor.json`), plus what its side files say. */
export interface CacheEntry {
  version: number;
  /** Identity of the front-end image this is a copy of. */
  source: SourceRecord;
  /** The promoted files on the replica. */
  files: CachedFile[];
  /** Apparent size of the image file. */
  size: number;
  /** Allocated bytes of all files of the entry. */
  allocated: number;
  /** Replica time of the promotion. */
  created_at: number;
  /** Process that filled it. */
  filled_by: string;
  /** SHA-256 of the promoted files' listing (type, size, mtime, name): what a hit re-checks. */
  files_fp: string;
  /**
   * The replica's boot id when the entry was promoted or last had its content checked; absent in
   * records of older versions. A use in another boot checks the content first (core/cache/scripts.ts).
   */
  boot?: string;
  /** Replica time of the last deployment that used it: the record's mtime (not stored in the JSON). */
  last_use: number;
  /** Deployments copying from it now: its pin files (not stored in the JSON). */
  pins: Pin[];
}

/** The lease of the process filling an entry (`<hash>.onestor-lease.json`). */
export interface Lease {
  version: number;
  /** Holder (see {@linkcode ownerId}). */
  owner: string;
  /** Front-end the holder runs on. */
  frontend: string;
  /** Pid of the holder on that front-end. */
  pid: number;
  /** Image path being filled. */
  source: string;
  /** Fill folder name (removed by whoever takes an expired lease over). */
  fill: string;
  /** Bytes the fill will need, counted as used by concurrent evictions. */
  reserve: number;
  /** Replica time when it was first taken. */
  acquired_at: number;
  /** Replica time after which it is dead unless renewed. */
  expires_at: number;
}

/** A process-unique owner id: front-end host name, pid and a random tag. */
export function ownerId(): string {
  let host = "frontend";
  try {
    host = Deno.hostname();
  } catch {
    // Keep the generic name: the pid and random tag still make the id unique.
  }
  return `${host}:${Deno.pid}:${randomTag()}`;
}

/** Eight random hex digits. */
export function randomTag(): string {
  return [...crypto.getRandomValues(new Uint8Array(4))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** `<hash>.onestor.json`. */
export function entryName(image: string): string {
  return `${image}${ENTRY_SUFFIX}`;
}

/** `<hash>.onestor-lease.json`. */
export function leaseName(image: string): string {
  return `${image}${LEASE_SUFFIX}`;
}

/** A fill folder name for `image` owned by `owner`: safe characters only. */
export function fillName(image: string, owner: string): string {
  const tag = owner.replace(/[^A-Za-z0-9]+/g, "-").slice(-40);
  return `${FILL_PREFIX}${image}-${tag}`;
}

/** `<hash>.onestor-pin.<tag>` for a deployment `owner`. */
export function pinName(image: string, owner: string): string {
  return `${image}${PIN_INFIX}${owner.replace(/[^A-Za-z0-9]+/g, "-").slice(-40)}`;
}

/** `.onestor-wait-<hash>.lock`. */
export function waitLockName(image: string): string {
  return `${WAIT_PREFIX}${image}.lock`;
}

/** The sums of an entry as stored: keys sorted, so the text is the same wherever it is built. */
export function sortedSums(sums: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(sums).sort()) out[k] = sums[k];
  return out;
}

/**
 * The start of every record of one image version, up to the algorithm: what a record must begin
 * with to be a copy of that image at that size and mtime.
 */
export function recordHead(source: { path: string; size: number; mtime_ms: number }): string {
  return `{"version":${RECORD_VERSION},"source":{"path":${
    JSON.stringify(source.path)
  },"size":${source.size},` +
    `"mtime_ms":${source.mtime_ms},`;
}

/** The start of a record that is a copy of exactly `identity` (head, algorithm and checksum). */
export function recordPrefix(identity: ImageIdentity): string {
  return `${recordHead(identity)}"algorithm":${JSON.stringify(identity.algorithm)},"checksum":${
    JSON.stringify(identity.checksum)
  },`;
}

/** Serialises a record as compact JSON in its fixed layout (no trailing newline: texts are compared byte for byte). */
export function encodeRecord(record: CacheEntry | Lease): string {
  if ("files" in record) {
    const e = record;
    return `${recordPrefix({ ...e.source })}"sums":${JSON.stringify(sortedSums(e.source.sums))}},` +
      `"files":${
        JSON.stringify(e.files.map((f) => ({ ...f })))
      },"size":${e.size},"allocated":${e.allocated},` +
      `"created_at":${e.created_at},"filled_by":${JSON.stringify(e.filled_by)},"files_fp":${
        JSON.stringify(e.files_fp)
      }${e.boot === undefined ? "" : `,"boot":${JSON.stringify(e.boot)}`}}`;
  }
  return `${leasePrefix(record)}${record.acquired_at},"expires_at":${record.expires_at}}`;
}

/** A lease's text up to its `acquired_at` value (the replica appends the times). */
export function leasePrefix(lease: Omit<Lease, "acquired_at" | "expires_at">): string {
  return `{"version":${RECORD_VERSION},"owner":${JSON.stringify(lease.owner)},"frontend":${
    JSON.stringify(lease.frontend)
  },"pid":${lease.pid},"source":${JSON.stringify(lease.source)},"fill":${JSON.stringify(lease.fill)},` +
    `"reserve":${lease.reserve},"acquired_at":`;
}

/** A pin's text up to its `expires_at` value (the replica appends it). */
export function pinPrefix(pin: Omit<Pin, "expires_at">): string {
  return `{"owner":${JSON.stringify(pin.owner)},"vm":${JSON.stringify(pin.vm)},"disk":${
    JSON.stringify(pin.disk)
  },"host":${JSON.stringify(pin.host)},"expires_at":`;
}

/** Serialises a pin. */
export function encodePin(pin: Pin): string {
  return `${pinPrefix(pin)}${pin.expires_at}}`;
}

/** Parses a pin file; null when unreadable (an unreadable pin protects nothing). */
export function parsePin(text: string | null): Pin | null {
  if (text === null) return null;
  try {
    const value = JSON.parse(text);
    if (!isObject(value) || !str(value.owner) || !num(value.expires_at)) return null;
    return {
      owner: value.owner,
      vm: num(value.vm) ? value.vm : null,
      disk: num(value.disk) ? value.disk : null,
      host: str(value.host) ? value.host : null,
      expires_at: value.expires_at,
    };
  } catch {
    return null;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const num = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const str = (v: unknown): v is string => typeof v === "string";

/**
 * Parses an entry file; null when it is not a well-formed entry (it is then never served).
 * `use` adds what the side files say: the record's mtime (last use) and the pins.
 */
export function parseEntry(
  text: string | null,
  use: { lastUse?: number | null; pins?: readonly Pin[] } = {},
): CacheEntry | null {
  if (text === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(value) || value.version !== RECORD_VERSION) return null;
  const s = value.source;
  if (
    !isObject(s) || !str(s.path) || !num(s.size) || !num(s.mtime_ms) || !str(s.algorithm) ||
    !str(s.checksum) || !isObject(s.sums)
  ) return null;
  if (!Array.isArray(value.files) || !str(value.files_fp) || !str(value.filled_by)) return null;
  for (const f of value.files) {
    if (!isObject(f) || !str(f.name) || !str(f.type) || !num(f.size) || !num(f.mtime) || !num(f.allocated)) {
      return null;
    }
  }
  if (!num(value.size) || !num(value.allocated) || !num(value.created_at)) return null;
  const entry = value as unknown as CacheEntry;
  entry.last_use = use.lastUse ?? entry.created_at;
  entry.pins = [...(use.pins ?? [])];
  return entry;
}

/** Parses a lease file; null when absent or unreadable (an unreadable lease counts as expired). */
export function parseLease(text: string | null): Lease | null {
  if (text === null) return null;
  try {
    const value = JSON.parse(text);
    if (!isObject(value) || !str(value.owner) || !num(value.expires_at)) return null;
    return value as unknown as Lease;
  } catch {
    return null;
  }
}

/** Whether a lease still protects a fill at replica time `now`. */
export function leaseLive(lease: Lease | null, now: number): boolean {
  return lease !== null && lease.expires_at > now;
}

/** The pins of an entry that are still alive at replica time `now`. */
export function livePins(entry: CacheEntry, now: number): Pin[] {
  return entry.pins.filter((p) => p.expires_at > now);
}

/** The identity a front-end computes for an image (what an entry must match to be served). */
export interface ImageIdentity {
  path: string;
  size: number;
  mtime_ms: number;
  algorithm: string;
  checksum: string;
  sums: Record<string, string>;
}

/** Why an entry cannot be served, or null when it can. */
export function entryProblem(
  entry: CacheEntry,
  identity: ImageIdentity,
  files: readonly CachedFile[],
): string | null {
  const s = entry.source;
  if (s.path !== identity.path) return `it caches ${s.path}`;
  if (s.size !== identity.size || s.mtime_ms !== identity.mtime_ms) {
    return "the image changed on the front-end since it was cached";
  }
  if (s.algorithm !== identity.algorithm || s.checksum !== identity.checksum) {
    return "its recorded checksum differs from the front-end image's";
  }
  return filesProblem(entry, files);
}

/** Why the cached files on the replica no longer look as they did at promotion, or null. */
export function filesProblem(entry: CacheEntry, files: readonly CachedFile[]): string | null {
  const now = new Map(files.map((f) => [f.name, f]));
  for (const f of entry.files) {
    const seen = now.get(f.name);
    if (!seen) return `${f.name} is missing on the replica`;
    if (seen.type !== f.type) return `${f.name} changed type on the replica`;
    if (f.type === "f" && seen.size !== f.size) {
      return `${f.name} is ${seen.size} bytes on the replica, ${f.size} when cached`;
    }
    if (f.type === "f" && seen.mtime !== f.mtime) return `${f.name} was modified on the replica`;
  }
  for (const f of files) {
    if (f.type === "f" && !entry.files.some((e) => e.name === f.name)) {
      return `${f.name} on the replica is not part of the entry`;
    }
  }
  return null;
}

/**
 * The content checksum of an image: a SHA-256 over the sorted `<sum>  <name>` lines of its regular
 * files (image and snapshots), so that a snapshot added, removed or changed changes it too.
 */
export async function contentDigest(algorithm: string, sums: Record<string, string>): Promise<string> {
  const lines = Object.keys(sums).sort().map((name) => `${sums[name]}  ${name}\n`).join("");
  const data = new TextEncoder().encode(`${algorithm}\n${lines}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether two per-file checksum maps are equal. */
export function sameSums(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}
