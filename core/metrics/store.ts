/**
 * The metrics store on the front-end: one append-only file of JSON lines per UTC day
 * (`<state>/metrics/YYYY-MM-DD.jsonl`), one line per event, appended by every onestor process.
 *
 * Why this is safe with many processes at once and needs no lock on the write path: every event is
 * one `write()` of one whole line to a file opened with O_APPEND, and the kernel places each such
 * write at the end of the file atomically with respect to other appends, so lines never interleave
 * (the unit test runs concurrent writer processes and counts every line). A process killed half-way
 * loses at most its own unwritten events; a torn last line (disk full) is skipped when read.
 *
 * Reads fold the day files into totals. So that reading stays cheap however long onestor runs,
 * day files older than {@linkcode KEEP_DAYS} are compacted into `totals.json` (written aside and
 * renamed, listing the days it holds, so a crash between the rename and the removal of those files
 * cannot count them twice). Compaction takes an exclusive flock on `.lock`; readers take it shared.
 *
 * @module
 */

import { frontendStateDir } from "../cache/state_dir.ts";

/** One recorded event, as stored. */
export interface MetricEvent {
  /** Epoch milliseconds. */
  t: number;
  /** Metric name (catalogue name, without prefix). */
  m: string;
  /** Labels. */
  l?: Record<string, string>;
  /** Counter increment, histogram observation or gauge value. */
  v: number;
}

/** Day files older than this many days are folded into totals.json. */
export const KEEP_DAYS = 7;

/** The store folder: `$ONESTOR_METRICS_DIR`, else `<front-end state folder>/metrics`. */
export function metricsDir(): string {
  const explicit = Deno.env.get("ONESTOR_METRICS_DIR");
  if (explicit) return explicit.replace(/\/+$/, "");
  return `${frontendStateDir()}/metrics`;
}

/** `YYYY-MM-DD` of an epoch millisecond time, in UTC. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Path of the day file of time `ms` in `dir`. */
export function dayFile(dir: string, ms: number): string {
  return `${dir}/${dayOf(ms)}.jsonl`;
}

const encoder = new TextEncoder();

/**
 * Appends one event as one line with a single O_APPEND write. Returns false instead of throwing:
 * recording must never fail an action.
 */
export function appendEvent(dir: string, event: MetricEvent): boolean {
  const line = encoder.encode(JSON.stringify(event) + "\n");
  const path = dayFile(dir, event.t);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const file = Deno.openSync(path, { append: true, create: true, mode: 0o644 });
      try {
        // One write of the whole line: the append is atomic, the line whole.
        return file.writeSync(line) === line.length;
      } finally {
        file.close();
      }
    } catch (error) {
      if (attempt === 0 && error instanceof Deno.errors.NotFound) {
        try {
          Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
        } catch {
          return false;
        }
        continue;
      }
      return false;
    }
  }
  return false;
}

/** Parses the lines of a day file; lines that are not whole events are skipped. */
export function parseEvents(text: string): MetricEvent[] {
  const out: MetricEvent[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      const e = JSON.parse(line);
      if (typeof e?.m === "string" && typeof e.v === "number" && Number.isFinite(e.v)) {
        out.push({ t: Number(e.t) || 0, m: e.m, l: typeof e.l === "object" && e.l ? e.l : {}, v: e.v });
      }
    } catch {
      // A torn line (a writer killed by a full disk): skipped.
    }
  }
  return out;
}

/** The day files of the store, oldest first (names `YYYY-MM-DD.jsonl`). */
export function listDays(dir: string): string[] {
  const days: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      const m = e.name.match(/^(\d{4}-\d{2}-\d{2})\.jsonl$/);
      if (m && e.isFile) days.push(m[1]);
    }
  } catch {
    // No store yet.
  }
  return days.sort();
}

/** Runs `fn` holding the store's lock (shared for readers, exclusive for compaction). */
export function withStoreLock<T>(dir: string, exclusive: boolean, fn: () => T): T {
  let file: Deno.FsFile | null = null;
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
    file = Deno.openSync(`${dir}/.lock`, { read: true, write: true, create: true, mode: 0o644 });
    file.lockSync(exclusive);
  } catch {
    // A store we cannot lock (read-only, another user's): read without the lock.
    file?.close();
    file = null;
  }
  try {
    return fn();
  } finally {
    if (file) {
      try {
        file.unlockSync();
      } catch {
        // Closing releases it anyway.
      }
      file.close();
    }
  }
}
