/**
 * Processes of the machine seen from a lab test: the ones an action started (found by a marker in
 * their environment, e.g. `ONESTOR_TEST_ROLE=filler-1`, which the lab passes into the hosts), and
 * polling until something happens.
 *
 * @module
 */

/** Polls `check` until it returns a value (not null), for at most 60 s. */
export async function waitFor<T>(what: string, check: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const value = await check();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Machine pids of processes whose environment holds `marker` (optionally with that comm), except
 * shared ssh master connections (they outlive the process that opened them, by design) and their
 * throttling proxies.
 */
export function processesWith(marker: string, comm?: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const environ = Deno.readTextFileSync(`/proc/${e.name}/environ`);
      if (!environ.split("\0").includes(marker)) continue;
      const name = Deno.readTextFileSync(`/proc/${e.name}/comm`).trim();
      const cmdline = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (comm && name !== comm) continue;
      if (cmdline.includes("[mux]") || cmdline.includes("throttle.pl")) continue;
      const state = Deno.readTextFileSync(`/proc/${e.name}/stat`).split(") ")[1]?.[0];
      if (state === "Z") continue;
      pids.push(Number(e.name));
    } catch {
      // Gone, or not ours to read.
    }
  }
  return pids;
}

/** Direct children of a process, from /proc/<pid>/task/<tid>/children (empty once it is gone). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const text = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim();
        if (text) out.push(...text.split(/\s+/).map(Number));
      } catch {
        // Thread exited.
      }
    }
  } catch {
    // Process exited.
  }
  return out;
}
