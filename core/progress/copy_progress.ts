/**
 * Progress of one copy made with the copy primitive (core/transfer/copy.ts): it writes into a
 * temporary folder `.onestor-xfer-*` inside the destination folder, so what has arrived is the
 * size of that folder, measured on the destination host every `intervalMs` while the copy runs.
 * For restores (backup, recovery points): long copies whose bytes pass through a remote pipeline.
 *
 * @module
 */

import type { HostRunner } from "../remote/runner.ts";
import { allocatedBytes, pollBytes } from "./poll.ts";
import { type ProgressMode, ProgressReporter } from "./reporter.ts";

/** What is copied where. */
export interface TrackedCopy {
  /** What the progress line says, e.g. `Restoring disk 0 of VM 7`. */
  label: string;
  /** Allocated bytes expected at the destination (the source's allocated size). */
  total: number | null;
  /** Destination host (null: the front-end) and folder. */
  host: string | null;
  dir: string;
  /** Default: bar on a terminal, INFO lines otherwise. */
  mode?: ProgressMode;
  /** Poll period (default 2 s). */
  intervalMs?: number;
}

/** Runs `copy` while reporting the progress of what arrives at the destination. */
export async function trackCopy<T>(runner: HostRunner, copy: TrackedCopy, run: () => Promise<T>): Promise<T> {
  const progress = new ProgressReporter({ label: copy.label, total: copy.total, mode: copy.mode });
  const poll = progress.mode === "off" ? null : pollBytes(
    () => allocatedBytes(runner, copy.host, copy.dir, ".onestor-xfer-"),
    (bytes) => progress.set(bytes),
    copy.intervalMs ?? 2000,
  );
  try {
    const result = await run();
    if (copy.total !== null) progress.set(copy.total);
    return result;
  } finally {
    await poll?.stop();
    progress.finish();
  }
}

/** Allocated bytes of a local file or folder tree (what a sparse copy writes), null when unreadable. */
export function localAllocated(path: string): number | null {
  try {
    const st = Deno.statSync(path);
    if (!st.isDirectory) return (st.blocks ?? 0) * 512;
    let sum = 0;
    for (const e of Deno.readDirSync(path)) sum += localAllocated(`${path}/${e.name}`) ?? 0;
    return sum;
  } catch {
    return null;
  }
}
