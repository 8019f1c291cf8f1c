/**
 * Meters for benchmarks and end-to-end tests in a lab: CPU seconds spent inside each lab host, and
 * the exact number of bytes one host sends to another over SSH.
 *
 * CPU: a lab host is a PID namespace, so its CPU time is the sum over the namespace's processes of
 * their own and their reaped children's user+system time (`/proc/<pid>/stat`). A process that dies is
 * counted in the parent that reaps it, so the difference between two samples is what the host spent
 * between them, whichever processes came and went. Processes entered from outside (`Lab.exec`) are
 * reaped outside and not counted: the harness's own commands do not inflate a host's figure.
 *
 * Bytes: the source host's /etc/hosts points the destination's name at a relay on a spare address
 * of the lab's subnet; the relay (python3, zero-copy `splice`) forwards to the destination's sshd and
 * counts every byte of every connection in each direction: the SSH stream on the wire, exact.
 *
 * @module
 */

import type { Lab } from "./lab.ts";

const CLK_TCK = 100;

function initPid(lab: Lab, host: string): number {
  const state = JSON.parse(Deno.readTextFileSync(`${lab.dir}/state.json`)) as {
    hosts: { name: string; init: { pid: number } | null }[];
  };
  const pid = state.hosts.find((h) => h.name === host)?.init?.pid;
  if (!pid) throw new Error(`Lab host ${host} has no running init`);
  return pid;
}

/** CPU seconds (user + system, own and reaped children) of every process of each host, now. */
export function hostCpuSeconds(lab: Lab, hosts: readonly string[]): Record<string, number> {
  const nsOf = new Map<string, string>();
  for (const h of hosts) nsOf.set(Deno.readLinkSync(`/proc/${initPid(lab, h)}/ns/pid`), h);
  const out: Record<string, number> = Object.fromEntries(hosts.map((h) => [h, 0]));
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const host = nsOf.get(Deno.readLinkSync(`/proc/${e.name}/ns/pid`));
      if (host === undefined) continue;
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      // Fields after the command name (which may hold spaces): utime is field 14, cstime field 17.
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out[host] += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK;
    } catch {
      // The process exited while being read: its parent has it now (or will at the next sample).
    }
  }
  return out;
}

/** CPU seconds per host spent between two {@linkcode hostCpuSeconds} samples. */
export function cpuDelta(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  return Object.fromEntries(Object.keys(after).map((h) => [h, after[h] - (before[h] ?? 0)]));
}

/** The relay: listens, forwards each connection to the target, counts bytes both ways with splice. */
const RELAY_PY = String.raw`import fcntl, os, socket, sys, threading, time
lhost, lport, thost, tport, stats = sys.argv[1:6]
up = down = conns = 0
lock = threading.Lock()
dirty = True
def pump(src, dst, upward):
    global up, down, dirty
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer, larger splices
    except OSError:
        pass
    try:
        while True:
            try:
                n = os.splice(src.fileno(), w, 1 << 20)
            except OSError:
                break
            if n == 0:
                break
            with lock:
                if upward:
                    up += n
                else:
                    down += n
                dirty = True
            while n:
                n -= os.splice(r, dst.fileno(), n)
    except OSError:
        pass
    finally:
        os.close(r)
        os.close(w)
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
def serve(client):
    global conns, dirty
    try:
        target = socket.create_connection((thost, int(tport)))
    except OSError:
        client.close()
        return
    with lock:
        conns += 1
        dirty = True
    a = threading.Thread(target=pump, args=(client, target, True), daemon=True)
    b = threading.Thread(target=pump, args=(target, client, False), daemon=True)
    a.start(); b.start(); a.join(); b.join()
    client.close(); target.close()
def report():
    global dirty
    while True:
        time.sleep(0.05)
        with lock:
            if not dirty:
                continue
            text = "%d %d %d\n" % (up, down, conns)
            dirty = False
        with open(stats + ".tmp", "w") as f:
            f.write(text)
        os.rename(stats + ".tmp", stats)
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((lhost, int(lport)))
srv.listen(128)
threading.Thread(target=report, daemon=True).start()
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

/** Totals of a {@linkcode WireMeter}. */
export interface WireBytes {
  /** Bytes from the source host to the destination (SSH stream, both the data and the protocol). */
  sent: number;
  /** Bytes back from the destination. */
  received: number;
  /** TCP connections opened. */
  connections: number;
}

/**
 * Counts what `from` sends to `to` over SSH: `from` resolves `to`'s name to a relay that forwards to
 * `to`'s sshd. Connections `from` makes to `to`'s address (not its name) are not counted.
 */
export class WireMeter {
  readonly #child: Deno.ChildProcess;
  readonly #stats: string;
  readonly #hostsFile: string;
  readonly #originalHosts: string;
  #base: WireBytes = { sent: 0, received: 0, connections: 0 };

  private constructor(child: Deno.ChildProcess, stats: string, hostsFile: string, original: string) {
    this.#child = child;
    this.#stats = stats;
    this.#hostsFile = hostsFile;
    this.#originalHosts = original;
  }

  /** Starts the relay on `<lab subnet>.250` and points `from`'s /etc/hosts entry for `to` at it. */
  static async start(lab: Lab, from: string, to: string): Promise<WireMeter> {
    const target = lab.host(to).address;
    const listen = target.replace(/\.\d+$/, ".250");
    const dir = `${lab.dir}/wire-${from}-${to}`;
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${dir}/relay.py`, RELAY_PY);
    const child = new Deno.Command("python3", {
      args: ["-I", `${dir}/relay.py`, listen, "22", target, "22", `${dir}/stats`],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.getReader();
    const first = await reader.read();
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    if (first.done || !new TextDecoder().decode(first.value).startsWith("ready")) {
      child.kill("SIGKILL");
      await child.status;
      throw new Error(`The byte counting relay for ${from} → ${to} did not start`);
    }
    // /etc/hosts is a bind-mounted file: rewrite it in place (a rename would not be seen).
    const hostsFile = lab.path(from, "/etc/hosts");
    const original = await Deno.readTextFile(hostsFile);
    const rewritten = original.split("\n").map((line) => {
      const [address, ...names] = line.split(/\s+/);
      return address === target && names.includes(to) ? `${listen}\t${to}` : line;
    }).join("\n");
    await Deno.writeTextFile(hostsFile, rewritten);
    return new WireMeter(child, `${dir}/stats`, hostsFile, original);
  }

  /** Totals since the start or the last {@linkcode reset}; give the relay 0.1 s to publish new counts. */
  async read(): Promise<WireBytes> {
    await new Promise((r) => setTimeout(r, 150));
    const now = await this.#raw();
    return {
      sent: now.sent - this.#base.sent,
      received: now.received - this.#base.received,
      connections: now.connections - this.#base.connections,
    };
  }

  /** Starts counting from zero. */
  async reset(): Promise<void> {
    await new Promise((r) => setTimeout(r, 150));
    this.#base = await this.#raw();
  }

  async #raw(): Promise<WireBytes> {
    try {
      const [sent, received, connections] = (await Deno.readTextFile(this.#stats)).trim().split(" ").map(
        Number,
      );
      return { sent, received, connections };
    } catch {
      return { sent: 0, received: 0, connections: 0 };
    }
  }

  /** Puts /etc/hosts back and stops the relay. */
  async stop(): Promise<void> {
    await Deno.writeTextFile(this.#hostsFile, this.#originalHosts).catch(() => {});
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await this.#child.status;
  }
}
