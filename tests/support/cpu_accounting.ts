/**
 * CPU seconds per lab host, for benchmarks: each host of a lab gets a cgroup of its own, and the
 * kernel adds up the user and system time of every task in it.
 *
 * Why a cgroup: a lab host is a PID namespace whose processes come and go (sshd sessions, the
 * pipelines of a copy, ssh master connections that daemonise, tar, qemu-img), and several of them
 * are never waited for by a process the benchmark controls, so neither `time` nor the rusage of
 * the children of one process sees them all. A cgroup is inherited by every task forked inside it
 * and counts a task's time whether or not anyone reaps it, so "the CPU a host spent" is exactly
 * the growth of its counter. The host's existing processes are moved in when accounting starts;
 * commands the lab runs inside a host from outside (`Lab.exec`, e.g. the driver on the front-end)
 * move themselves in before they enter the host.
 *
 * Works with cgroup v1 (`cpuacct` controller: `cpuacct.usage_user`/`usage_sys`, nanoseconds) and
 * v2 (`cpu.stat`: `user_usec`/`system_usec`). Where neither can be written (no root, a read-only
 * cgroup file system) {@linkcode CpuAccounting.create} returns null and benchmarks say so.
 *
 * @module
 */

import { childPids as children } from "./processes.ts";

/** CPU time in seconds. */
export interface CpuSeconds {
  user: number;
  sys: number;
}

interface Flavour {
  /** Folder under which the lab's cgroups are made. */
  base: string;
  /** Reads user and system seconds of a cgroup folder. */
  read(dir: string): CpuSeconds;
}

function writable(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function flavour(): Flavour | null {
  const v1 = "/sys/fs/cgroup/cpuacct";
  if (writable(v1) && exists(`${v1}/cpuacct.usage`)) {
    return {
      base: v1,
      read(dir) {
        const ns = (f: string) => Number(Deno.readTextFileSync(`${dir}/${f}`).trim());
        return { user: ns("cpuacct.usage_user") / 1e9, sys: ns("cpuacct.usage_sys") / 1e9 };
      },
    };
  }
  for (const v2 of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]) {
    if (!exists(`${v2}/cgroup.controllers`)) continue;
    return {
      base: v2,
      read(dir) {
        const stat = Deno.readTextFileSync(`${dir}/cpu.stat`);
        const usec = (k: string) => Number(stat.match(new RegExp(`^${k} (\\d+)$`, "m"))?.[1] ?? 0);
        return { user: usec("user_usec") / 1e6, sys: usec("system_usec") / 1e6 };
      },
    };
  }
  return null;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** One cgroup per host of a lab. */
export class CpuAccounting {
  /** The lab's cgroup folder (holding one folder per host). */
  readonly dir: string;
  readonly #flavour: Flavour;

  private constructor(dir: string, f: Flavour) {
    this.dir = dir;
    this.#flavour = f;
  }

  /** Makes the cgroups of a lab named `name`; null when this machine does not allow it. */
  static create(name: string, hosts: readonly string[]): CpuAccounting | null {
    const f = flavour();
    if (!f) return null;
    const dir = `${f.base}/onestor-${name}`;
    try {
      Deno.mkdirSync(dir, { recursive: true });
      for (const h of hosts) Deno.mkdirSync(`${dir}/${h}`, { recursive: true });
      // A probe: can this process move a task (itself would do, but a short-lived child is safer).
      const probe = new Deno.Command("sh", {
        args: ["-c", 'echo $$ >"$1"', "sh", `${dir}/${hosts[0]}/cgroup.procs`],
        stdout: "null",
        stderr: "null",
      }).outputSync();
      if (!probe.success) throw new Error("cannot move tasks");
    } catch {
      CpuAccounting.remove(dir);
      return null;
    }
    return new CpuAccounting(dir, f);
  }

  /** The `cgroup.procs` file of a host: a process writing its pid there is accounted to the host. */
  procsFile(host: string): string {
    return `${this.dir}/${host}/cgroup.procs`;
  }

  /** Moves process `pid` and all its descendants into the cgroup of `host`. */
  adopt(host: string, pid: number): void {
    const todo = [pid];
    const seen = new Set<number>();
    while (todo.length) {
      const p = todo.pop()!;
      if (seen.has(p)) continue;
      seen.add(p);
      try {
        Deno.writeTextFileSync(this.procsFile(host), `${p}\n`);
      } catch {
        // Exited meanwhile.
      }
      todo.push(...children(p));
    }
  }

  /** CPU seconds spent so far by everything that ran in `host`. */
  read(host: string): CpuSeconds {
    return this.#flavour.read(`${this.dir}/${host}`);
  }

  /** Removes the cgroups (they must be empty: call once the hosts' processes are gone). */
  remove(): void {
    CpuAccounting.remove(this.dir);
  }

  /** Removes a lab cgroup folder and its host folders, best effort. */
  static remove(dir: string): void {
    try {
      for (const e of Deno.readDirSync(dir)) {
        if (e.isDirectory) {
          try {
            Deno.removeSync(`${dir}/${e.name}`);
          } catch {
            // Still has tasks, or already gone.
          }
        }
      }
      Deno.removeSync(dir);
    } catch {
      // Gone, or still in use.
    }
  }
}

/** `after - before`, per field. */
export function cpuDelta(before: CpuSeconds, after: CpuSeconds): CpuSeconds {
  return { user: after.user - before.user, sys: after.sys - before.sys };
}
