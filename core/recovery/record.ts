/**
 * The chain record of a protected disk (`record.json` in its recovery folder on the replica, see
 * names.ts): which files exist, how they chain, their checksums, the recovery points and which of
 * them the disk's tracking bitmap refers to. Every change is computed here, from a record read on
 * the replica, and written back by a conditional transaction (core/cache/store.ts), so two
 * processes never both apply a change computed from the same old record.
 *
 * A **point** is a chain of files read bottom-up: `base` ← `merged` ← `inc.3` ← `inc.4` means the
 * disk as it was at point 4. `base` is a hard link of the cached image and is never written;
 * every other file is onestor's own. With REPLICA_RECOVERY_KEEP = K the last K points stay
 * restorable; increments below the oldest kept point are merged into the lowest writable file of
 * its chain (`qemu-img commit -d`): the merge writes only the increment's clusters, and until it
 * is finished the increment still shadows them, so every kept point reads the same bytes before,
 * during and after a merge. A merge is journaled in the record and redone after a crash.
 *
 * This module is pure (no I/O): tests drive it directly.
 *
 * @module
 */

import { BASE_FILE } from "./names.ts";

/** Version of the record format. */
export const RECORD_VERSION = 1;

/** One file of a disk's recovery folder. */
export interface ChainFile {
  /** Checksum of the file's bytes (program {@linkcode RecoveryRecord.algorithm}). */
  sum: string;
  /** Size of the file in bytes. */
  size: number;
  /** File it is an overlay of (same folder), null for a standalone file. */
  backing: string | null;
  /** `qcow2` or `raw`. */
  format: string;
}

/** How a point was taken. */
export type PointKind = "base" | "incremental" | "full";

/** One recovery point. */
export interface RecoveryPoint {
  /** Point id, increasing over the life of the disk (bitmap `onestor-rec-<disk>-<id>`). */
  id: number;
  /** When the point was taken: epoch seconds on the hypervisor when the backup job started. */
  time: number;
  /** Top file of its chain. */
  top: string;
  /** `base` (the image at deployment), `incremental` (changed clusters) or `full`. */
  kind: PointKind;
  /** Bytes that crossed the wire for it (0 for `base`). */
  bytes: number;
  /** Bytes of data (allocated clusters) in its own file. */
  data: number;
  /** Whether the guest's file systems were frozen by its agent (null: not applicable). */
  quiesced: boolean | null;
  /** Digest of the checksums of its chain's files (see {@linkcode chainDigest}). */
  checksum: string;
  /** Why a full point was taken instead of an increment. */
  reason?: string;
  /** Seconds the period took, front-end clock. */
  seconds?: number;
}

/** An unfinished merge: `from` committed into `into`, then `above` rebased onto `into`. */
export interface MergeStep {
  into: string;
  from: string;
  above: string;
}

/** The record of one protected disk. */
export interface RecoveryRecord {
  version: number;
  vm: number;
  disk: number;
  /** Format of the disk on the hypervisor (`qcow2`, `raw`): a restore writes this format. */
  format: string;
  /** Virtual size of the disk at its last point, bytes. */
  size: number;
  /** Checksum program of the file sums (`b2sum`, `sha256sum`, `md5sum`). */
  algorithm: string;
  /** The files of the folder that points use. */
  files: Record<string, ChainFile>;
  /** Restorable points, ascending ids. */
  points: RecoveryPoint[];
  /** The point the disk's bitmap tracks changes since (null: none, the next period is full). */
  head: number | null;
  /** Id of the next point. */
  next_id: number;
  /** The point a recreate restores (set by `onestor recovery restore --point`), null: the latest. */
  restore_point: number | null;
  /** Why the next period must copy the whole disk (a restore from backup, a revert), null otherwise. */
  broken: string | null;
  /** A merge that was started and not finished. */
  merging: MergeStep | null;
  /** Image SOURCE the disk was deployed from. */
  source: string;
  /** Replica time of creation and last change, epoch seconds. */
  created_at: number;
  updated_at: number;
  /** The last rebuild of the disk from a point. */
  last_restore: { point: number; time: number; host: string } | null;
}

/** A record that is not usable (a chain with a missing file, a loop). */
export class RecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RecordError";
  }
}

/** A new, empty record. */
export function newRecord(init: {
  vm: number;
  disk: number;
  format: string;
  size: number;
  algorithm: string;
  source: string;
  now: number;
}): RecoveryRecord {
  return {
    version: RECORD_VERSION,
    vm: init.vm,
    disk: init.disk,
    format: init.format,
    size: init.size,
    algorithm: init.algorithm,
    files: {},
    points: [],
    head: null,
    next_id: 0,
    restore_point: null,
    broken: null,
    merging: null,
    source: init.source,
    created_at: init.now,
    updated_at: init.now,
    last_restore: null,
  };
}

/** Serialises a record (compact; the stored text is compared byte for byte by transactions). */
export function encodeRecord(record: RecoveryRecord): string {
  return JSON.stringify(record);
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const num = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const str = (v: unknown): v is string => typeof v === "string";
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Parses a record; null when absent or not a well-formed record of this version. */
export function parseRecord(text: string | null): RecoveryRecord | null {
  if (text === null) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(v) || v.version !== RECORD_VERSION) return null;
  if (!num(v.vm) || !num(v.disk) || !str(v.format) || !num(v.size) || !str(v.algorithm)) return null;
  if (!isObject(v.files) || !Array.isArray(v.points) || !num(v.next_id)) return null;
  for (const [name, f] of Object.entries(v.files)) {
    if (!FILE_NAME.test(name) || !isObject(f) || !str(f.sum) || !num(f.size) || !str(f.format)) return null;
    if (f.backing !== null && (!str(f.backing) || !FILE_NAME.test(f.backing))) return null;
  }
  for (const p of v.points) {
    if (!isObject(p) || !num(p.id) || !num(p.time) || !str(p.top) || !str(p.kind) || !str(p.checksum)) {
      return null;
    }
  }
  if (v.head !== null && !num(v.head)) return null;
  return v as unknown as RecoveryRecord;
}

/** The files of the chain ending in `top`, bottom first. @throws {RecordError} when it is broken. */
export function chainOf(record: RecoveryRecord, top: string): string[] {
  const chain: string[] = [];
  let name: string | null = top;
  while (name !== null) {
    if (chain.includes(name)) throw new RecordError(`the chain of ${top} loops through ${name}`);
    const file: ChainFile | undefined = record.files[name];
    if (!file) throw new RecordError(`${name} (in the chain of ${top}) is not in the record`);
    chain.unshift(name);
    name = file.backing;
  }
  return chain;
}

/** A point by id. */
export function pointById(record: RecoveryRecord, id: number): RecoveryPoint | undefined {
  return record.points.find((p) => p.id === id);
}

/** The newest point, if any. */
export function latestPoint(record: RecoveryRecord): RecoveryPoint | undefined {
  return record.points.length === 0 ? undefined : record.points[record.points.length - 1];
}

/** The chain of point `id`, bottom first. */
export function pointChain(record: RecoveryRecord, id: number): string[] {
  const point = pointById(record, id);
  if (!point) throw new RecordError(`point ${id} does not exist`);
  return chainOf(record, point.top);
}

/**
 * The checksum of a point: SHA-256 over the checksum program and the `<sum>  <name>` lines of its
 * chain, bottom first (the order is part of what a point is).
 */
export async function chainDigest(
  algorithm: string,
  files: Record<string, ChainFile>,
  chain: readonly string[],
): Promise<string> {
  const lines = chain.map((name) => `${files[name]?.sum ?? "?"}  ${name}\n`).join("");
  const data = new TextEncoder().encode(`${algorithm}\n${lines}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Recomputes every point's checksum from the file sums (after a merge changed a file). */
export async function refreshChecksums(record: RecoveryRecord): Promise<RecoveryRecord> {
  const points: RecoveryPoint[] = [];
  for (const p of record.points) {
    points.push({
      ...p,
      checksum: await chainDigest(record.algorithm, record.files, chainOf(record, p.top)),
    });
  }
  return { ...record, points };
}

/** The points that stay restorable: the newest `keep`. */
export function keptPoints(record: RecoveryRecord, keep: number): RecoveryPoint[] {
  return record.points.slice(-Math.max(1, keep));
}

/** The file a new increment of `record` goes on top of: the head point's top (null: none). */
export function incrementParent(record: RecoveryRecord): string | null {
  if (record.head === null) return null;
  return pointById(record, record.head)?.top ?? null;
}

/**
 * Adds a new point taken since the head (or standalone), whose own file `file` was just received.
 * Points newer than the head (left by a restore from an older point) are dropped: the new point
 * continues the restored disk, not them.
 */
export async function addPoint(
  record: RecoveryRecord,
  point: Omit<RecoveryPoint, "checksum">,
  file: ChainFile,
  now: number,
  size: number,
): Promise<RecoveryRecord> {
  if (record.files[point.top]) throw new RecordError(`${point.top} is already in the record`);
  const head = record.head;
  const files = { ...record.files, [point.top]: file };
  const chain = chainOf({ ...record, files }, point.top);
  const checksum = await chainDigest(record.algorithm, files, chain);
  const points = record.points.filter((p) => head === null || p.id <= head);
  return {
    ...record,
    files,
    points: [...points, { ...point, checksum }],
    head: point.id,
    next_id: Math.max(record.next_id, point.id + 1),
    restore_point: null,
    broken: null,
    size,
    updated_at: now,
  };
}

/**
 * The next merge to do so that the oldest kept point's chain holds no more than one file between
 * its writable bottom and its top, or null. The writable bottom is the lowest file that is not
 * `base` (the hard link of the cached image is never written).
 */
export function planMerge(record: RecoveryRecord, keep: number): MergeStep | null {
  const kept = keptPoints(record, keep);
  if (kept.length === 0) return null;
  const chain = chainOf(record, kept[0].top);
  const w = chain[0] === BASE_FILE ? 1 : 0;
  const k = chain.length - 1;
  if (k - w < 2) return null;
  return { into: chain[w], from: chain[w + 1], above: chain[w + 2] };
}

/**
 * The record after merge `step` finished: `from` is gone, `above` is an overlay of `into`; the new
 * checksums and sizes of both are given; points whose top was `from` are gone (they were not kept).
 */
export async function applyMerge(
  record: RecoveryRecord,
  step: MergeStep,
  into: { sum: string; size: number },
  above: { sum: string; size: number },
  now: number,
): Promise<RecoveryRecord> {
  const files = { ...record.files };
  if (!files[step.into] || !files[step.from] || !files[step.above]) {
    throw new RecordError(`merge of ${step.from} into ${step.into} names a file the record lacks`);
  }
  files[step.into] = { ...files[step.into], sum: into.sum, size: into.size };
  // Re-chaining rewrote the header of `above`: its bytes, so its checksum, changed too.
  files[step.above] = { ...files[step.above], backing: step.into, sum: above.sum, size: above.size };
  delete files[step.from];
  const merged: RecoveryRecord = {
    ...record,
    files,
    points: record.points.filter((p) => p.top !== step.from),
    merging: null,
    updated_at: now,
  };
  return await refreshChecksums(merged);
}

/**
 * Drops the points beyond `keep` and names the files no kept point needs (to delete after the
 * record is written).
 */
export function collectGarbage(
  record: RecoveryRecord,
  keep: number,
): { record: RecoveryRecord; remove: string[] } {
  const kept = keptPoints(record, keep);
  const needed = new Set<string>();
  for (const p of kept) for (const f of chainOf(record, p.top)) needed.add(f);
  if (record.merging) {
    for (const f of [record.merging.into, record.merging.from, record.merging.above]) needed.add(f);
  }
  const files: Record<string, ChainFile> = {};
  const remove: string[] = [];
  for (const [name, f] of Object.entries(record.files)) {
    if (needed.has(name)) files[name] = f;
    else remove.push(name);
  }
  const head = record.head !== null && kept.some((p) => p.id === record.head) ? record.head : null;
  const restore = record.restore_point !== null && kept.some((p) => p.id === record.restore_point)
    ? record.restore_point
    : null;
  return { record: { ...record, files, points: kept, head, restore_point: restore }, remove: remove.sort() };
}

/** The point a recreate rebuilds the disk from: the chosen one, else the latest. */
export function restoreTarget(record: RecoveryRecord): RecoveryPoint | undefined {
  if (record.restore_point !== null) return pointById(record, record.restore_point);
  return latestPoint(record);
}
