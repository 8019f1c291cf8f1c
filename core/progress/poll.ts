/**
 * Progress of work whose bytes cannot be counted as they pass (a copy run by a remote pipeline):
 * what has arrived at the destination is measured every `intervalMs` and handed to the reporter.
 *
 * @module
 */

import type { HostRunner } from "../remote/runner.ts";
import { sh } from "../remote/shell.ts";

/** Calls `measure` every `intervalMs` (one call at a time) and reports its result, until stopped. */
export function pollBytes(
  measure: () => Promise<number>,
  onBytes: (bytes: number) => void,
  intervalMs = 1000,
): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (running) return;
    running = measure().then(onBytes, () => {}).finally(() => running = null);
  }, intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      if (running) await running;
    },
  };
}

/**
 * Allocated bytes of the entries of `dir` on `host` whose names start with `prefix` (e.g. the
 * temporary folders copies write into, `.onestor-xfer-`).
 */
export async function allocatedBytes(
  runner: HostRunner,
  host: string | null,
  dir: string,
  prefix: string,
): Promise<number> {
  const out = await runner.output(
    host,
    sh`cd -- ${dir} 2>/dev/null || exit 0
for d in ${prefix}*; do [ -e "$d" ] && du -sB1 -- "$d" | cut -f1; done`,
    { check: false, timeoutMs: 10_000 },
  );
  return out.split("\n").map(Number).filter((n) => Number.isFinite(n)).reduce((a, b) => a + b, 0);
}
