/**
 * When oned's driver processes start and end the action scripts: polls the children of a driver
 * process (`one_tm.rb`, `one_datastore.rb`) of a lab host every 10 ms and records each child's
 * command line, first and last sighting. 10 ms resolution, no instrumentation of the drivers: what
 * runs is exactly what oned runs.
 *
 * @module
 */

import type { Lab } from "./lab.ts";

/** One action process seen. */
export interface TracedProcess {
  pid: number;
  /** Command line (arguments joined by spaces). */
  command: string;
  /** Epoch ms of the first poll that saw it. */
  start: number;
  /** Epoch ms of the first poll that no longer saw it (null: still running). */
  end: number | null;
}

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** Pid (as seen from the machine) of the process of `host` whose command line matches `pattern`. */
export function findHostProcess(lab: Lab, host: string, pattern: RegExp): number {
  const state = JSON.parse(Deno.readTextFileSync(`${lab.dir}/state.json`)) as {
    hosts: { name: string; init: { pid: number } | null }[];
  };
  const init = state.hosts.find((h) => h.name === host)?.init?.pid;
  if (!init) throw new Error(`Lab host ${host} is not running`);
  const ns = Deno.readLinkSync(`/proc/${init}/ns/pid`);
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readLinkSync(`/proc/${e.name}/ns/pid`) !== ns) continue;
    } catch {
      continue;
    }
    const cmd = readText(`/proc/${e.name}/cmdline`)?.replaceAll("\0", " ") ?? "";
    if (pattern.test(cmd)) return Number(e.name);
  }
  throw new Error(`No process matching ${pattern} on ${host}`);
}

/** Records the children of one process until stopped. */
export class DriverTrace {
  readonly #pid: number;
  readonly #parentCommand: string;
  readonly #seen = new Map<number, TracedProcess>();
  #running = true;
  readonly #loop: Promise<void>;

  private constructor(pid: number) {
    this.#pid = pid;
    this.#parentCommand = readText(`/proc/${pid}/cmdline`)?.replaceAll("\0", " ").trim() ?? "";
    this.#loop = this.#run();
  }

  /** Starts tracing the children of the process of `host` matching `pattern` (e.g. /one_tm\.rb/). */
  static start(lab: Lab, host: string, pattern: RegExp): DriverTrace {
    return new DriverTrace(findHostProcess(lab, host, pattern));
  }

  #children(): number[] {
    const out: number[] = [];
    try {
      for (const t of Deno.readDirSync(`/proc/${this.#pid}/task`)) {
        const text = readText(`/proc/${this.#pid}/task/${t.name}/children`)?.trim();
        if (text) out.push(...text.split(/\s+/).map(Number));
      }
    } catch {
      // The driver exited.
    }
    return out;
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const now = performance.timeOrigin + performance.now();
      const live = new Set(this.#children());
      for (const pid of live) {
        const known = this.#seen.get(pid);
        const cmd = () => readText(`/proc/${pid}/cmdline`)?.replaceAll("\0", " ").trim() ?? "";
        if (known && known.end === null) {
          // Seen between fork and exec, it still had the driver's command line.
          if (known.command === this.#parentCommand) known.command = cmd();
          continue;
        }
        this.#seen.set(pid, { pid, command: cmd(), start: now, end: null });
      }
      for (const p of this.#seen.values()) if (p.end === null && !live.has(p.pid)) p.end = now;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops polling and returns every process seen, in start order. */
  async stop(): Promise<TracedProcess[]> {
    this.#running = false;
    await this.#loop;
    return [...this.#seen.values()].sort((a, b) => a.start - b.start);
  }
}
