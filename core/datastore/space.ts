/**
 * Space of the file system holding a datastore's BASE_PATH, from `df -P` (created first, as
 * upstream's monitor does): the numbers of `monitor` and the room left for an import.
 *
 * @module
 */

import type { HostRunner } from "../remote/runner.ts";
import { sh, type ShellScript } from "../remote/shell.ts";

/** Sizes of a file system in the unit asked for. */
export interface FsSpace {
  /** Size of the file system. */
  total: string;
  /** Used. */
  used: string;
  /** Available to unprivileged users. */
  free: string;
}

/** Prints `<total> <used> <available>` of the file system holding `path` (created if missing). */
export function spaceScript(path: string, blockSize: "1M" | "1"): ShellScript {
  return sh`[ -d ${path} ] || mkdir -p -- ${path}
df -B${blockSize} -P -- ${path} 2>/dev/null | tail -n 1 | awk '{print $2, $3, $4}'`;
}

/** Parses what {@linkcode spaceScript} printed; empty fields stay empty. */
export function parseSpace(output: string): FsSpace {
  const [total = "", used = "", free = ""] = output.trim().split(/\s+/);
  const clean = (v: string) => (/^[0-9]+$/.test(v) ? v : "");
  return { total: clean(total), used: clean(used), free: clean(free) };
}

/** Space of the file system holding `path` on `host`, in MiB (`1M`) or bytes (`1`). */
export async function fsSpace(
  runner: HostRunner,
  host: string | null,
  path: string,
  blockSize: "1M" | "1",
  timeoutMs?: number,
): Promise<FsSpace> {
  const out = await runner.output(host, spaceScript(path, blockSize), {
    what: `Reading the space of ${path}`,
    timeoutMs,
  });
  return parseSpace(out);
}
