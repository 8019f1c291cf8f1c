/**
 * A multi-host test lab on one machine.
 *
 * Each lab host is a mount + UTS + PID namespace whose PID 1 is a tiny reaper (perl, always present
 * on Debian) that runs `sshd -D` on the host's own loopback address. A host privately sees
 * /var/lib/one, /etc/one, /var/tmp/one, /var/lock/one, /root, /etc/hosts and any `extraDirs`: they
 * are bind mounts of directories under the host's `root` on the machine, so tests can inspect them
 * without ssh. Everything else (the repo checkout, /tmp, /usr) is the machine's own.
 *
 * Why not sshd itself as PID 1: a "down" host must keep its namespace and processes (libvirtd, VMs)
 * while nothing listens on its address; the reaper stops and restarts sshd on SIGUSR2 / SIGUSR1 and
 * reaps daemons that get reparented to it.
 *
 * Every lab registers itself under {@link LAB_BASE}/<name>/state.json (pids with their start
 * times, mounts), so `scripts/lab.ts down --all` and the next {@link Lab.start} can remove leftovers
 * of crashed runs. Host processes of a test lab die with the process that started it.
 *
 * Network traffic stays on 127.0.0.0/8: each lab takes a random 127.A.B.0/24.
 *
 * @module
 */

import { dirname, normalize, resolve } from "node:path";
import { CpuAccounting, type CpuSeconds } from "./cpu_accounting.ts";
import { childPids as children } from "./processes.ts";
import { concatBytes } from "../../core/bytes.ts";

/** Names of the hosts of a default lab. */
export const LAB_HOSTS = ["frontend", "replica", "hv1", "hv2"] as const;

/** Directory holding one directory per running lab (override with ONESTOR_LAB_BASE). */
export const LAB_BASE: string = Deno.env.get("ONESTOR_LAB_BASE") ?? "/tmp/onestor-labs";

/** Directories every lab host sees privately, besides its `extraDirs`. */
export const LAB_PRIVATE_DIRS: readonly string[] = [
  "/var/lib/one",
  "/etc/one",
  "/var/tmp/one",
  "/var/lock/one",
  "/root",
];

/** Uid and gid given to `oneadmin` when the lab has to create that user. */
export const ONEADMIN_ID = 9869;

/** What {@link Lab.start} builds. */
export interface LabOptions {
  /** Host names, default {@link LAB_HOSTS}. */
  hosts?: string[];
  /** More absolute directories each host gets privately (empty at start), e.g. /etc/libvirt. */
  extraDirs?: string[];
  /** Lab name (its directory under {@link LAB_BASE}); default `lab-A-B` after its subnet. */
  name?: string;
  /** Keep the lab running after this process exits (for `scripts/lab.ts up`); default false. */
  persistent?: boolean;
  /**
   * Count per host what benchmarks and round-trip tests need: SSH sessions (sshd logs each one,
   * see {@link Lab.sessions}) and CPU seconds (a cgroup per host, see {@link Lab.cpu}). Default false.
   */
  accounting?: boolean;
}

/** One host of a lab. */
export interface LabHost {
  /** Host name: its hostname and its name in every host's /etc/hosts. */
  name: string;
  /** Loopback address its sshd listens on (port 22). */
  address: string;
  /** Machine directory backing this host's private dirs: `root + "/var/lib/one"` is its /var/lib/one. */
  root: string;
}

/** Outcome of {@link Lab.exec}. */
export interface ExecResult {
  /** Exit code; 128 + signal number when killed, 124 when the timeout hit. */
  code: number;
  /** Standard output, decoded as UTF-8. */
  stdout: string;
  /** Standard error, decoded as UTF-8. */
  stderr: string;
}

/** Options of {@link Lab.exec} and {@link Lab.sh}. */
export interface ExecOptions {
  /** Bytes fed to the command's standard input (default: none, stdin is /dev/null). */
  stdin?: string | Uint8Array;
  /** Extra environment on top of PATH, HOME, USER, LOGNAME, LANG=C and DENO_DIR. */
  env?: Record<string, string>;
  /** User to run as, default root. */
  user?: "root" | "oneadmin";
  /** Working directory inside the host, default the user's home. */
  cwd?: string;
  /** Kill the command (and everything it started that is still its descendant) after this long; default 120 s. */
  timeoutMs?: number;
}

/** A lab as recorded on disk, for `scripts/lab.ts status`. */
export interface LabInfo {
  /** Lab name. */
  name: string;
  /** Lab directory. */
  dir: string;
  /** Whether it outlives the process that started it. */
  persistent: boolean;
  /** Pid of the process that started it (for a test lab: that owns it). */
  ownerPid: number;
  /** Hosts with whether their namespace is still alive. */
  hosts: (LabHost & { alive: boolean; initPid: number | null })[];
}

const DEFAULT_TIMEOUT_MS = 120_000;
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
const SUBNETS_DIR = `${LAB_BASE}/.subnets`;
const PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const TOOLS = {
  unshare: "util-linux",
  nsenter: "util-linux",
  setpriv: "util-linux",
  setsid: "util-linux",
  mount: "mount",
  umount: "mount",
  sshd: "openssh-server",
  ssh: "openssh-client",
  "ssh-keygen": "openssh-client",
  perl: "perl-base",
  useradd: "passwd",
  groupadd: "passwd",
  usermod: "passwd",
} as const;
type Tool = keyof typeof TOOLS;

/**
 * PID 1 of every host. Perl because it is on every Debian machine and, unlike a shell, reaps any
 * child with waitpid(-1) and wakes up for signals while waiting. SIGUSR1 starts sshd (no-op when it
 * runs), SIGUSR2 kills sshd and every ssh session (a down host drops its connections too).
 */
const INIT_PL = `use strict; use POSIX ();
my @sshd = @ARGV; my $pid = 0;
sub start {
  return if $pid;
  my $p = fork();
  if (!defined $p) { warn "lab init: fork failed: $!\\n"; return }
  if ($p == 0) { exec { $sshd[0] } @sshd; POSIX::_exit(127) }
  $pid = $p;
}
sub stop {
  $pid = 0;
  for my $d (glob "/proc/[0-9]*") {
    my ($n) = $d =~ m{(\\d+)$};
    next if $n == 1;
    open(my $f, "<", "$d/comm") or next;
    my $c = <$f> // "";
    kill "KILL", $n if $c =~ /^sshd/;
  }
}
$SIG{USR1} = \\&start;
$SIG{USR2} = \\&stop;
start();
while (1) {
  my $p = waitpid(-1, 0);
  if ($p > 0) { $pid = 0 if $p == $pid }
  elsif (!$!{EINTR}) { sleep 1 }
}
`;

// ---------------------------------------------------------------------------------------------------
// Small helpers

/** Single-quotes `s` for sh. */
function q(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

const toolCache = new Map<string, string | null>();

/** Absolute path of a tool from the standard sbin/bin directories (the caller's PATH may lack sbin). */
function tool(name: string): string | null {
  if (toolCache.has(name)) return toolCache.get(name)!;
  let found: string | null = null;
  for (const dir of PATH_ENV.split(":")) {
    try {
      const st = Deno.statSync(`${dir}/${name}`);
      if (st.isFile && ((st.mode ?? 0) & 0o111) !== 0) {
        found = `${dir}/${name}`;
        break;
      }
    } catch {
      // Not in this directory.
    }
  }
  toolCache.set(name, found);
  return found;
}

function mustTool(name: Tool): string {
  const path = tool(name);
  if (!path) throw new Error(`Lab needs ${name} (apt-get install ${TOOLS[name]})`);
  return path;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A process identified by pid and start time, so a recycled pid is never mistaken for it. */
interface ProcId {
  pid: number;
  start: string;
}

/** Start time (clock ticks since boot) and state letter of a process, or null when it is gone. */
function procStat(pid: number): { start: string; state: string } | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may contain spaces and parentheses: fields are counted after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0], start: fields[19] };
  } catch {
    return null;
  }
}

function procId(pid: number): ProcId | null {
  const st = procStat(pid);
  return st ? { pid, start: st.start } : null;
}

/** Whether the process still runs (a zombie counts as gone). */
function alive(p: ProcId | null | undefined): boolean {
  if (!p) return false;
  const st = procStat(p.pid);
  return st !== null && st.start === p.start && st.state !== "Z";
}

function killIfSame(p: ProcId | null | undefined, signal: Deno.Signal): void {
  if (!alive(p)) return;
  try {
    Deno.kill(p!.pid, signal);
  } catch {
    // It exited in between.
  }
}

/** SIGKILLs a process and all its descendants; repeated so that a process forking meanwhile is caught. */
function killTree(pid: number): void {
  for (let round = 0; round < 3; round++) {
    const all: number[] = [];
    const todo = [pid];
    while (todo.length) {
      const p = todo.pop()!;
      all.push(p);
      todo.push(...children(p));
    }
    for (const p of all) {
      try {
        Deno.kill(p, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
}

async function waitFor(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>) {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 2;; delay = Math.min(delay * 2, 50)) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(delay);
  }
}

const PROBE_BANNER = new TextEncoder().encode("SSH-2.0-onestor-lab-probe\r\n");

/** Whether something accepts TCP connections on address:22. */
async function listening(address: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: address, port: 22 });
    // A client banner keeps sshd from logging an error for a connection that says nothing.
    await conn.write(PROBE_BANNER).catch(() => {});
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Writes a file atomically (temp name, then rename) with the given mode. */
async function writeFileAtomic(path: string, data: string, mode = 0o644): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, data, { mode });
  await Deno.chmod(tmp, mode);
  await Deno.rename(tmp, path);
}

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: (dec.decode(o.stdout) + dec.decode(o.stderr)).trim() };
}

async function mustRun(cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.code}): ${r.out}`);
}

/**
 * Creates `path` like mkdir -p, also when a parent is a symlink to a missing directory (on Debian
 * /var/lock points to /run/lock, which a fresh container may lack).
 */
async function ensureDir(path: string): Promise<void> {
  try {
    await Deno.mkdir(path, { recursive: true });
    return;
  } catch (e) {
    if (path === "/") throw e;
  }
  await ensureDir(dirname(path));
  try {
    const link = await Deno.lstat(path);
    if (link.isSymlink) {
      await ensureDir(resolve(dirname(path), await Deno.readLink(path)));
      return;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(path, { recursive: true });
}

/** Mount points below `dir` in this process's mount namespace, deepest first. */
function mountsUnder(dir: string): string[] {
  const targets: string[] = [];
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    const target = line.split(" ")[4];
    if (!target) continue;
    // mountinfo escapes space, tab, newline and backslash as octal.
    const path = target.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
    if (path === dir || path.startsWith(dir + "/")) targets.push(path);
  }
  return targets.sort((a, b) => b.length - a.length);
}

/**
 * Adds a loopback route for the lab's /24 with quick ACKs and a source address inside the subnet.
 * Why: with delayed ACKs (40 ms minimum) and Nagle, every ssh connection waits 2-3 x 40 ms in its
 * handshake; quick ACKs on both directions make `ssh host true` ~3x faster. Only traffic of this
 * subnet is affected and it still stays on lo. Best effort: a lab without it is only slower.
 */
async function addRoute(subnet: string): Promise<void> {
  const ip = tool("ip"); // iproute2, missing in minimal containers
  if (!ip) return;
  const args = `route replace local 127.${subnet}.0/24 dev lo table local quickack 1 src 127.${subnet}.1`;
  await run(ip, args.split(" "));
}

function deleteRouteArgs(subnet: string): string[] {
  return `route del local 127.${subnet}.0/24 table local`.split(" ");
}

/** `ip route` arguments of the routes that cut hosts of a lab off (see {@link Lab.cutOff}). */
function cutRouteArgs(address: string, verb: "replace" | "del"): string[] {
  return ["route", verb, "unreachable", `${address}/32`, "table", "local"];
}

/** The addresses of a subnet that a cut-off route makes unreachable now. */
function cutAddresses(subnet: string): string[] {
  const ip = tool("ip");
  if (!ip) return [];
  const out = new Deno.Command(ip, {
    args: ["route", "show", "table", "local"],
    stdout: "piped",
    stderr: "null",
  })
    .outputSync();
  const prefix = `unreachable 127.${subnet}.`;
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.startsWith(prefix))
    .map((l) => l.split(/\s+/)[1]);
}

async function deleteRoute(subnet: string): Promise<void> {
  const ip = tool("ip");
  if (!ip) return;
  await run(ip, deleteRouteArgs(subnet));
  for (const address of cutAddresses(subnet)) await run(ip, cutRouteArgs(address, "del"));
}

/**
 * Removes a lab directory and its subnet reservation. Lab mounts exist only inside the hosts'
 * private namespaces, but a test may have mounted something below the lab dir on the machine:
 * unmount it first so that the recursive removal never reaches into a mounted file system.
 */
async function removeLabDir(dir: string, subnet: string | null): Promise<void> {
  if (subnet) await deleteRoute(subnet);
  for (const m of mountsUnder(dir)) await run(mustTool("umount"), ["--lazy", m]);
  await Deno.remove(dir, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  if (subnet) await Deno.remove(`${SUBNETS_DIR}/${subnet}`).catch(() => {});
}

function removeLabDirSync(dir: string, subnet: string | null): void {
  try {
    const ip = tool("ip");
    if (subnet && ip) {
      new Deno.Command(ip, { args: deleteRouteArgs(subnet), stdout: "null", stderr: "null" }).outputSync();
      for (const address of cutAddresses(subnet)) {
        new Deno.Command(ip, { args: cutRouteArgs(address, "del"), stdout: "null", stderr: "null" })
          .outputSync();
      }
    }
    for (const m of mountsUnder(dir)) {
      new Deno.Command(mustTool("umount"), { args: ["--lazy", m], stdout: "null", stderr: "null" })
        .outputSync();
    }
    Deno.removeSync(dir, { recursive: true });
    if (subnet) Deno.removeSync(`${SUBNETS_DIR}/${subnet}`);
  } catch {
    // Best effort at exit: the next Lab.start or `lab.ts down --all` removes what is left.
  }
}

// ---------------------------------------------------------------------------------------------------
// Machine preparation

interface Account {
  uid: number;
  gid: number;
  home: string;
}

function account(name: string): Account | null {
  for (const line of Deno.readTextFileSync("/etc/passwd").split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f.length >= 7) return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] };
  }
  return null;
}

function hasGroup(name: string): boolean {
  return Deno.readTextFileSync("/etc/group").split("\n").some((line) => line.split(":")[0] === name);
}

/** Whether sshd (without PAM) refuses the user as locked: its shadow password starts with "!". */
function locked(name: string): boolean {
  try {
    for (const line of Deno.readTextFileSync("/etc/shadow").split("\n")) {
      const f = line.split(":");
      if (f[0] === name) return (f[1] ?? "").startsWith("!");
    }
  } catch {
    // No shadow file: nothing is locked.
  }
  return false;
}

interface Machine {
  oneadmin: Account;
  /** Private /etc/shadow content for hosts when the machine's root is locked, else null. */
  shadow: string | null;
  /** Deno cache of this process, shared read-mostly with the hosts. */
  denoDir: string;
}

let machinePromise: Promise<Machine> | null = null;

/** One-time machine setup: /run/sshd, the oneadmin user, the lab base directory. Idempotent. */
function prepareMachine(): Promise<Machine> {
  return machinePromise ??= (async () => {
    await Deno.mkdir("/run/sshd", { recursive: true });
    await Deno.chmod("/run/sshd", 0o755); // sshd refuses a group/world-writable privsep dir
    if (!account("oneadmin")) {
      // A concurrent lab start may win either race: only the final state counts.
      if (!hasGroup("oneadmin")) await run(mustTool("groupadd"), ["--gid", `${ONEADMIN_ID}`, "oneadmin"]);
      const args =
        `--uid ${ONEADMIN_ID} --gid oneadmin --home-dir /var/lib/one --no-create-home --shell /bin/bash`;
      const r = await run(mustTool("useradd"), [...args.split(" "), "--password", "*", "oneadmin"]);
      if (r.code !== 0 && !account("oneadmin")) throw new Error(`Cannot create user oneadmin: ${r.out}`);
    }
    // Without PAM, sshd refuses keys of a user whose password is locked ("!"): "*" means no password
    // without locking the account.
    if (locked("oneadmin")) await mustRun(mustTool("usermod"), ["--password", "*", "oneadmin"]);
    let shadow: string | null = null;
    if (locked("root")) {
      // Do not touch the machine's root account: hosts get a private /etc/shadow instead.
      shadow = Deno.readTextFileSync("/etc/shadow").split("\n").map((line) => {
        const f = line.split(":");
        if (f[0] !== "root") return line;
        f[1] = "*";
        return f.join(":");
      }).join("\n");
    }
    const home = Deno.env.get("HOME") ?? "/root";
    const denoDir = resolve(
      Deno.env.get("DENO_DIR") ?? `${Deno.env.get("XDG_CACHE_HOME") ?? `${home}/.cache`}/deno`,
    );
    await Deno.mkdir(denoDir, { recursive: true });
    return { oneadmin: account("oneadmin")!, shadow, denoDir };
  })().catch((e) => {
    machinePromise = null;
    throw e;
  });
}

// ---------------------------------------------------------------------------------------------------
// Support check and test wrapper

let supportCache: { ok: boolean; reason: string } | null = null;

/** Whether this machine can run a lab: root, Linux, the tools, and namespaces that can be created. */
export function labSupport(): { ok: boolean; reason: string } {
  if (supportCache) return supportCache;
  const check = (): { ok: boolean; reason: string } => {
    if (Deno.build.os !== "linux") return { ok: false, reason: "needs Linux" };
    try {
      if (Deno.uid() !== 0) return { ok: false, reason: "needs root" };
    } catch {
      return { ok: false, reason: "needs --allow-all" };
    }
    const missing = (Object.keys(TOOLS) as Tool[]).filter((t) => !tool(t));
    if (missing.length) {
      const pkgs = [...new Set(missing.map((t) => TOOLS[t]))].join(" ");
      return { ok: false, reason: `needs ${missing.join(", ")} (apt-get install ${pkgs})` };
    }
    const probe = new Deno.Command(tool("unshare")!, {
      args: ["--mount", "--uts", "--pid", "--fork", "--mount-proc", "true"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    if (!probe.success) {
      const why = new TextDecoder().decode(probe.stderr).trim();
      return { ok: false, reason: `cannot create namespaces: ${why}` };
    }
    return { ok: true, reason: "" };
  };
  return supportCache = check();
}

/** Labs started by this process and not yet stopped. */
const liveLabs = new Set<Lab>();

/**
 * Registers a Deno test that needs a lab. When {@link labSupport} is not ok the test is registered as
 * ignored with the reason in its name and a line says so; with ONESTOR_LAB=require it fails instead
 * (for CI, where a silently skipped lab suite would hide a broken machine). Labs the test started
 * and did not stop are stopped when it throws.
 */
export function labTest(
  name: string,
  fn: (t: Deno.TestContext) => Promise<void>,
  options: { sanitizeResources?: boolean; sanitizeOps?: boolean } = {},
): void {
  const support = labSupport();
  if (!support.ok && Deno.env.get("ONESTOR_LAB") !== "require") {
    console.log(`lab test "${name}" skipped: ${support.reason}`);
    Deno.test({ name: `${name} (skipped: ${support.reason})`, ignore: true, fn() {} });
    return;
  }
  Deno.test({
    name,
    sanitizeResources: options.sanitizeResources ?? true,
    sanitizeOps: options.sanitizeOps ?? true,
    async fn(t) {
      if (!support.ok) throw new Error(`Lab tests are required but cannot run: ${support.reason}`);
      const before = new Set(liveLabs);
      try {
        await fn(t);
      } catch (e) {
        for (const lab of [...liveLabs]) if (!before.has(lab)) await lab.stop().catch(() => {});
        throw e;
      }
    },
  });
}

// Test labs die with this process anyway (parent-death signal); this also removes their dirs.
globalThis.addEventListener("unload", () => {
  for (const lab of liveLabs) lab.stopSync();
});

// ---------------------------------------------------------------------------------------------------
// Registry

interface HostState extends LabHost {
  /** The unshare process outside the namespaces. */
  unshare: ProcId | null;
  /** PID 1 of the host's namespaces, as seen from the machine. */
  init: ProcId | null;
}

interface LabState {
  version: 1;
  name: string;
  subnet: string;
  created: string;
  /** Process that started the lab; a test lab is in use while it lives. */
  owner: ProcId;
  /** Started by `scripts/lab.ts up`: in use while a host lives. */
  persistent: boolean;
  denoDir: string;
  privatePaths: string[];
  hosts: HostState[];
  mounts: Record<string, { source: string; target: string }[]>;
  /** The lab's cgroup folder when it accounts CPU time per host. */
  cgroup?: string;
}

async function readState(dir: string): Promise<LabState | null> {
  try {
    return JSON.parse(await Deno.readTextFile(`${dir}/state.json`)) as LabState;
  } catch {
    return null;
  }
}

/** Names of the lab directories under {@link LAB_BASE}. */
async function labDirs(): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(LAB_BASE)) {
      if (e.isDirectory && !e.name.startsWith(".")) names.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names.sort();
}

/**
 * Whether a recorded lab is still in use: the process that starts or owns it lives, or (persistent)
 * a host does.
 */
function inUse(state: LabState): boolean {
  if (alive(state.owner)) return true;
  return state.persistent && state.hosts.some((h) => alive(h.init) || alive(h.unshare));
}

/** Kills every recorded process of a lab and waits until they are gone. */
async function killRecorded(state: LabState): Promise<void> {
  for (const h of state.hosts) {
    killIfSame(h.init, "SIGKILL");
    killIfSame(h.unshare, "SIGKILL");
  }
  await waitFor("lab processes to exit", STOP_TIMEOUT_MS, () => {
    return state.hosts.every((h) => !alive(h.init) && !alive(h.unshare));
  });
}

/**
 * Removes labs whose owner died without stopping them (a crashed or killed test run) and subnet
 * reservations without a lab. A lab dir without a state file is left alone for a minute: its lab
 * may be starting right now.
 */
async function collectStaleLabs(): Promise<void> {
  for (const name of await labDirs()) {
    const dir = `${LAB_BASE}/${name}`;
    const state = await readState(dir);
    if (state ? inUse(state) : await youngerThan(dir, 60_000)) continue;
    if (state) await killRecorded(state).catch(() => {});
    if (state?.cgroup) CpuAccounting.remove(state.cgroup);
    await removeLabDir(dir, state?.subnet ?? null).catch(() => {});
  }
  try {
    for await (const e of Deno.readDir(SUBNETS_DIR)) {
      const path = `${SUBNETS_DIR}/${e.name}`;
      const target = await Deno.readLink(path).catch(() => "");
      if ((await youngerThan(path, 60_000)) || (target && (await exists(`${LAB_BASE}/${target}`)))) continue;
      await Deno.remove(path).catch(() => {});
    }
  } catch {
    // No reservations yet.
  }
}

async function youngerThan(path: string, ms: number): Promise<boolean> {
  try {
    const st = await Deno.lstat(path);
    return Date.now() - (st.mtime?.getTime() ?? 0) < ms;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Labs recorded on this machine, alive or not. */
export async function listLabs(): Promise<LabInfo[]> {
  const out: LabInfo[] = [];
  for (const name of await labDirs()) {
    const dir = `${LAB_BASE}/${name}`;
    const state = await readState(dir);
    if (!state) continue;
    out.push({
      name,
      dir,
      persistent: state.persistent,
      ownerPid: state.owner.pid,
      hosts: state.hosts.map((h) => ({
        name: h.name,
        address: h.address,
        root: h.root,
        alive: alive(h.init),
        initPid: h.init?.pid ?? null,
      })),
    });
  }
  return out;
}

/**
 * Kills every lab of this machine, including leftovers not (or no longer) in the registry: any
 * unshare/perl/sshd process whose command line names a path under {@link LAB_BASE}. Then removes
 * {@link LAB_BASE}. Returns the names of the labs found in the registry.
 */
export async function downAllLabs(): Promise<string[]> {
  const names = await labDirs();
  for (const name of names) {
    const state = await readState(`${LAB_BASE}/${name}`);
    if (state) await killRecorded(state).catch(() => {});
  }
  const strays: ProcId[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const pid = Number(e.name);
    try {
      const comm = Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
      if (!["unshare", "perl", "sshd", "setsid", "setpriv"].includes(comm)) continue;
      const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
      const id = procId(pid);
      if (cmdline.includes(`${LAB_BASE}/`) && id) strays.push(id);
    } catch {
      // Exited meanwhile.
    }
  }
  for (const p of strays) killIfSame(p, "SIGKILL");
  await waitFor("leftover lab processes to exit", STOP_TIMEOUT_MS, () => strays.every((p) => !alive(p)));
  for (const m of mountsUnder(LAB_BASE)) await run(mustTool("umount"), ["--lazy", m]);
  // A subnet is reserved before its route is added and released after: the reservations name
  // every route a lab of this base may have left, even one whose state file is lost.
  try {
    for await (const e of Deno.readDir(SUBNETS_DIR)) await deleteRoute(e.name);
  } catch {
    // No reservations.
  }
  await Deno.remove(LAB_BASE, { recursive: true }).catch(() => {});
  return names;
}

// ---------------------------------------------------------------------------------------------------
// The lab

interface HostRuntime {
  state: HostState;
  /** The unshare child when this process started the host (test labs): awaited on stop. */
  child: Deno.ChildProcess | null;
  status: Promise<Deno.CommandStatus> | null;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** A running lab: several hosts on one machine, reachable over SSH by name. */
export class Lab {
  /** Lab root directory on the machine, {@link LAB_BASE}/<name>. */
  readonly dir: string;
  /** Lab name. */
  readonly name: string;
  /** ssh_config that lets a process outside the namespaces reach every host by its name. */
  readonly sshConfig: string;
  /** Hosts by name, in start order. */
  readonly hosts: Map<string, LabHost>;
  readonly #runtime: Map<string, HostRuntime>;
  readonly #state: LabState;
  #stopping: Promise<void> | null = null;
  #accounting: CpuAccounting | null = null;
  #countSessions = false;

  private constructor(state: LabState, runtime: Map<string, HostRuntime>) {
    this.name = state.name;
    this.dir = `${LAB_BASE}/${state.name}`;
    this.sshConfig = `${this.dir}/ssh/config`;
    this.#state = state;
    this.#runtime = runtime;
    this.hosts = new Map(
      state.hosts.map((h) => [h.name, { name: h.name, address: h.address, root: h.root }]),
    );
  }

  /** Starts a lab and returns once every host's sshd accepts connections. */
  static async start(options: LabOptions = {}): Promise<Lab> {
    const support = labSupport();
    if (!support.ok) throw new Error(`Cannot start a lab: ${support.reason}`);
    const names = options.hosts ?? [...LAB_HOSTS];
    if (!names.length) throw new Error("A lab needs at least one host");
    for (const n of names) {
      if (!/^[a-z][a-z0-9-]{0,62}$/.test(n)) throw new Error(`Invalid lab host name: ${n}`);
    }
    if (new Set(names).size !== names.length) throw new Error(`Duplicate lab host names: ${names}`);
    if (names.length > 250) throw new Error("A lab has at most 250 hosts");
    const extraDirs = (options.extraDirs ?? []).map((d) => {
      const n = normalize(d).replace(/\/$/, "");
      // Covering one of these with an empty dir would leave the host without sshd or the lab.
      const vital = [LAB_BASE, "/usr/sbin/sshd", "/etc/passwd", "/etc/ssh", "/run/sshd", "/proc"];
      if (!d.startsWith("/") || !n || vital.some((v) => v === n || v.startsWith(n + "/"))) {
        throw new Error(`Invalid extra dir: ${d}`);
      }
      return n;
    });
    if (options.name !== undefined && !NAME_RE.test(options.name)) {
      throw new Error(`Invalid lab name: ${options.name}`);
    }

    const machine = await prepareMachine();
    // Every time: `down --all` may have removed the base since this process prepared the machine.
    await Deno.mkdir(SUBNETS_DIR, { recursive: true });
    // Host processes run as oneadmin must reach files under the lab dir (e.g. the Deno cache bind).
    await Deno.chmod(LAB_BASE, 0o755);
    await collectStaleLabs();
    const { subnet, name } = await reserve(options.name, names.length);
    const dir = `${LAB_BASE}/${name}`;
    const privateDirs = [...new Set([...LAB_PRIVATE_DIRS, ...extraDirs])].sort();
    const privateFiles = ["/etc/hosts", ...(machine.shadow ? ["/etc/shadow"] : [])];
    // The Deno cache must be reachable from inside; a cache under a private dir (/root/.cache/deno)
    // is bound onto a directory of the lab instead.
    const underPrivate = privateDirs.some((d) =>
      machine.denoDir === d || machine.denoDir.startsWith(d + "/")
    );
    const denoDir = underPrivate ? `${dir}/deno_dir` : machine.denoDir;

    const state: LabState = {
      version: 1,
      name,
      subnet,
      created: new Date().toISOString(),
      owner: procId(Deno.pid)!,
      persistent: !!options.persistent,
      denoDir,
      privatePaths: [...privateDirs, ...privateFiles],
      hosts: names.map((n, i) => ({
        name: n,
        address: `127.${subnet}.${i + 2}`,
        root: `${dir}/hosts/${n}/fs`,
        unshare: null,
        init: null,
      })),
      mounts: {},
    };
    const runtime = new Map<string, HostRuntime>(
      state.hosts.map((h) => [h.name, { state: h, child: null, status: null }]),
    );
    const lab = new Lab(state, runtime);
    lab.#countSessions = !!options.accounting;
    if (!options.persistent) liveLabs.add(lab);
    try {
      await writeFileAtomic(`${dir}/state.json`, JSON.stringify(state, null, 2));
      await addRoute(subnet);
      await Promise.all([...privateDirs, "/run/sshd"].map(ensureDir));
      if (underPrivate) await Deno.mkdir(denoDir);
      await lab.#writeFiles(machine, privateDirs, privateFiles, underPrivate);
      await Promise.all(state.hosts.map((h) => lab.#spawn(runtime.get(h.name)!, !!options.persistent)));
      await lab.#saveState();
      await Promise.all(state.hosts.map((h) => lab.#waitListening(h.name, true)));
      if (options.accounting) {
        lab.#accounting = CpuAccounting.create(name, names);
        if (lab.#accounting) {
          for (const h of state.hosts) lab.#accounting.adopt(h.name, h.init!.pid);
          state.cgroup = lab.#accounting.dir;
          await lab.#saveState();
        }
      }
    } catch (e) {
      await lab.stop().catch(() => {});
      throw e;
    }
    return lab;
  }

  /** Opens a lab started by another process (e.g. `scripts/lab.ts up`); default: the only one. */
  static async open(name?: string): Promise<Lab> {
    if (name === undefined) {
      const all = (await listLabs()).filter((l) => l.hosts.some((h) => h.alive));
      if (all.length !== 1) {
        throw new Error(
          all.length
            ? `Several labs run (${all.map((l) => l.name).join(", ")}): name one`
            : "No lab is running",
        );
      }
      name = all[0].name;
    }
    if (!NAME_RE.test(name)) throw new Error(`Invalid lab name: ${name}`);
    const state = await readState(`${LAB_BASE}/${name}`);
    if (!state) throw new Error(`No lab named ${name}`);
    return new Lab(state, new Map(state.hosts.map((h) => [h.name, { state: h, child: null, status: null }])));
  }

  /** A host by name; throws for an unknown name. */
  host(name: string): LabHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`Unknown lab host ${name}; the lab has ${[...this.hosts.keys()].join(", ")}`);
    return h;
  }

  /**
   * Machine path of `p` as seen by `host`: under the host's `root` when `p` is in one of its
   * private dirs (or is its /etc/hosts), else `p` itself (shared with the machine).
   */
  path(host: string, p: string): string {
    const h = this.host(host);
    if (!p.startsWith("/")) throw new Error(`Lab path must be absolute: ${p}`);
    const n = normalize(p).replace(/(.)\/$/, "$1");
    const inside = this.#state.privatePaths.some((d) => n === d || n.startsWith(d + "/"));
    return inside ? h.root + n : n;
  }

  /**
   * Runs argv inside a host (its mount, UTS and PID namespaces) with a clean environment, as root
   * or oneadmin. Never throws for a failing command: look at `code`.
   */
  async exec(host: string, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const rt = this.#live(host);
    if (!argv.length) throw new Error("Lab exec needs a command");
    const user = opts.user ?? "root";
    const home = user === "root" ? "/root" : "/var/lib/one";
    const env: Record<string, string> = {
      PATH: PATH_ENV,
      HOME: home,
      USER: user,
      LOGNAME: user,
      LANG: "C",
      DENO_DIR: this.#state.denoDir,
      ...opts.env,
    };
    const asUser = user === "root"
      ? []
      : [mustTool("setpriv"), "--reuid=oneadmin", "--regid=oneadmin", "--init-groups", "--"];
    // nsenter --wd would resolve the directory outside the host: cd once inside instead.
    const args = [
      `--target=${rt.state.init!.pid}`,
      "--mount",
      "--uts",
      "--pid",
      "--",
      ...asUser,
      "/bin/sh",
      "-c",
      'cd -- "$1" && shift && exec "$@"',
      "sh",
      opts.cwd ?? home,
      ...argv,
    ];
    // With CPU accounting the command first moves itself into the host's cgroup, so that it and
    // everything it starts (ssh master connections included) count for that host.
    const [program, programArgs] = this.#accounting
      ? ["/bin/sh", [
        "-c",
        'echo $$ >"$1" && shift && exec "$@"',
        "sh",
        this.#accounting.procsFile(host),
        mustTool("nsenter"),
        ...args,
      ]]
      : [mustTool("nsenter"), args];
    const child = new Deno.Command(program, {
      args: programArgs,
      clearEnv: true,
      env,
      stdin: opts.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const feeding = (async () => {
      if (opts.stdin === undefined) return;
      const data = typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin;
      const writer = child.stdin.getWriter();
      try {
        await writer.write(data);
        await writer.close();
      } catch {
        // The command exited without reading all input: its exit status tells the story.
      }
    })();
    // Read both streams ourselves: a daemon the command left behind may hold them open, and after
    // a timeout the reads must be cancellable.
    const readers = [child.stdout.getReader(), child.stderr.getReader()];
    const drain = async (reader: ReadableStreamDefaultReader<Uint8Array>) => {
      const chunks: Uint8Array[] = [];
      try {
        for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(r.value);
      } catch {
        // Cancelled after a timeout.
      }
      return new TextDecoder().decode(concatBytes(chunks));
    };
    let timedOut = false;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const timer = setTimeout(async () => {
      timedOut = true;
      killTree(child.pid);
      await child.status;
      await sleep(50); // output already in the pipes still arrives
      for (const r of readers) r.cancel().catch(() => {});
    }, timeoutMs);
    try {
      const [status, stdout, stderr] = await Promise.all([
        child.status,
        drain(readers[0]),
        drain(readers[1]),
        feeding,
      ]);
      if (!timedOut) return { code: status.code, stdout, stderr };
      const sep = stderr && !stderr.endsWith("\n") ? "\n" : "";
      return { code: 124, stdout, stderr: `${stderr}${sep}Lab exec timed out after ${timeoutMs} ms\n` };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs a shell script inside a host: `exec(host, ["sh", "-c", script], opts)`. */
  sh(host: string, script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    return this.exec(host, ["sh", "-c", script], opts);
  }

  /**
   * SSH sessions the host's sshd has started so far (one per command run over SSH, multiplexed
   * or not), counted from its log. Needs `accounting: true` (sshd logs at VERBOSE level).
   */
  async sessions(host: string): Promise<number> {
    if (!this.#countSessions) throw new Error("Lab.sessions() needs a lab started with accounting: true");
    this.host(host);
    const log = await Deno.readTextFile(`${this.dir}/hosts/${host}/log`).catch(() => "");
    return log.split("\n").filter((l) => l.includes("Starting session: ")).length;
  }

  /**
   * CPU seconds spent so far by everything that ran in the host (see tests/support/cpu_accounting.ts),
   * or null when the lab does not account CPU time (not asked, or the machine's cgroups do not allow
   * it).
   */
  cpu(host: string): CpuSeconds | null {
    this.host(host);
    return this.#accounting ? this.#accounting.read(host) : null;
  }

  /** Stops the host's sshd and drops its ssh sessions; its namespace, processes and files stay. */
  async stopSshd(host: string): Promise<void> {
    const rt = this.#live(host);
    Deno.kill(rt.state.init!.pid, "SIGUSR2");
    await this.#waitListening(host, false);
  }

  /** Starts the host's sshd again after {@link stopSshd} (a no-op when it runs). */
  async startSshd(host: string): Promise<void> {
    const rt = this.#live(host);
    Deno.kill(rt.state.init!.pid, "SIGUSR1");
    await this.#waitListening(host, true);
  }

  /**
   * Takes the host off the network, as when its link drops: its address becomes unreachable (an
   * `unreachable` route for it, so new connections fail with "No route to host" and packets of
   * established ones vanish: they stall), and with `killSshd` its sshd and every ssh session are
   * killed as well. Its namespace, processes and files stay. {@link reconnect} undoes it; stopping
   * the lab (or the next lab start after a crash) removes the route too.
   */
  async cutOff(host: string, options: { killSshd?: boolean } = {}): Promise<void> {
    const address = this.host(host).address;
    const ip = tool("ip");
    if (!ip) throw new Error("Cutting a lab host off needs ip (apt-get install iproute2)");
    await mustRun(ip, cutRouteArgs(address, "replace"));
    if (options.killSshd) {
      const rt = this.#live(host);
      Deno.kill(rt.state.init!.pid, "SIGUSR2");
    }
  }

  /** Brings a host cut off by {@link cutOff} back: route removed, sshd started. */
  async reconnect(host: string): Promise<void> {
    const address = this.host(host).address;
    const ip = tool("ip");
    if (ip) await run(ip, cutRouteArgs(address, "del"));
    await this.startSshd(host);
  }

  /**
   * Kills a host as a power cut would: SIGKILL of its PID 1 ends every process of its PID
   * namespace at once (sshd, libvirtd, QEMU); nothing listens on its address any more. Its files
   * stay on the machine (under its `root`) but no other host can reach them.
   */
  async killHost(host: string): Promise<void> {
    const rt = this.#live(host);
    killIfSame(rt.state.init, "SIGKILL");
    killIfSame(rt.state.unshare, "SIGKILL");
    await waitFor(`host ${host} to die`, STOP_TIMEOUT_MS, () => !alive(rt.state.init));
  }

  /** Kills every host, removes the lab dir and its registry entry. Idempotent. */
  stop(): Promise<void> {
    return this.#stopping ??= this.#doStop();
  }

  /** Disposes of the lab with `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Synchronous last-resort stop at process exit. @internal */
  stopSync(): void {
    if (this.#stopping) return;
    this.#stopping = Promise.resolve();
    liveLabs.delete(this);
    for (const h of this.#state.hosts) {
      killIfSame(h.init, "SIGKILL");
      killIfSame(h.unshare, "SIGKILL");
    }
    this.#accounting?.remove();
    removeLabDirSync(this.dir, this.#state.subnet);
  }

  async #doStop(): Promise<void> {
    liveLabs.delete(this);
    // SIGKILL of PID 1 kills everything in the host; unshare --fork ignores SIGTERM.
    for (const rt of this.#runtime.values()) {
      killIfSame(rt.state.init, "SIGKILL");
      killIfSame(rt.state.unshare, "SIGKILL");
      if (rt.child && !rt.state.unshare) {
        try {
          rt.child.kill("SIGKILL");
        } catch {
          // Already exited.
        }
      }
    }
    const own = [...this.#runtime.values()].flatMap((rt) => rt.status ? [rt.status] : []);
    await Promise.all(own);
    await waitFor("lab processes to exit", STOP_TIMEOUT_MS, () => {
      return this.#state.hosts.every((h) => !alive(h.init) && !alive(h.unshare));
    });
    if (this.#accounting) {
      // Tasks leave a cgroup a moment after they die: retry the removal briefly.
      for (let i = 0; i < 50 && (await exists(this.#accounting.dir)); i++) {
        this.#accounting.remove();
        if (await exists(this.#accounting.dir)) await sleep(20);
      }
    }
    await removeLabDir(this.dir, this.#state.subnet);
  }

  #live(host: string): HostRuntime {
    this.host(host);
    if (this.#stopping) throw new Error(`Lab ${this.name} is stopped`);
    const rt = this.#runtime.get(host)!;
    if (!alive(rt.state.init)) throw new Error(`Lab host ${host} is not running`);
    return rt;
  }

  async #saveState(): Promise<void> {
    await writeFileAtomic(`${this.dir}/state.json`, JSON.stringify(this.#state, null, 2));
  }

  /** Waits until the host's sshd accepts connections (or refuses them), re-signalling its init. */
  async #waitListening(host: string, up: boolean): Promise<void> {
    const rt = this.#runtime.get(host)!;
    const address = rt.state.address;
    let next = Date.now() + 1000;
    try {
      await waitFor(
        `sshd of ${host} to ${up ? "accept" : "refuse"} connections`,
        START_TIMEOUT_MS,
        async () => {
          if (!alive(rt.state.init) && rt.state.init) throw new Error(`Lab host ${host} died`);
          if ((await listening(address)) === up) return true;
          // A fresh sshd may have lost a race for the port with the one just killed: ask again.
          if (up && rt.state.init && Date.now() > next) {
            next = Date.now() + 1000;
            killIfSame(rt.state.init, "SIGUSR1");
          }
          return false;
        },
      );
    } catch (e) {
      const log = await Deno.readTextFile(`${this.dir}/hosts/${host}/log`).catch(() => "");
      const tail = log.trim().split("\n").slice(-5).join(" | ");
      throw new Error(`${(e as Error).message}${tail ? `; its log says: ${tail}` : ""}`, { cause: e });
    }
  }

  /** Starts one host: unshare → boot script (hostname, binds) → perl init → sshd -D. */
  async #spawn(rt: HostRuntime, persistent: boolean): Promise<void> {
    const h = rt.state;
    const hostDir = `${this.dir}/hosts/${h.name}`;
    const unshareArgs = [
      "--mount",
      "--uts",
      "--pid",
      "--fork",
      "--kill-child=SIGKILL",
      "--mount-proc",
      "--propagation",
      "private",
      "--",
      "/bin/sh",
      `${hostDir}/boot.sh`,
    ];
    // A test lab dies with its test process (parent-death signal on unshare, which passes it on to
    // the host's PID 1); a persistent lab gets its own session so that closing a terminal keeps it.
    const [cmd, args] = persistent
      ? [mustTool("setsid"), [mustTool("unshare"), ...unshareArgs]]
      : [mustTool("setpriv"), ["--pdeathsig", "SIGKILL", "--", mustTool("unshare"), ...unshareArgs]];
    const child = new Deno.Command(cmd, {
      args,
      clearEnv: true,
      env: { PATH: PATH_ENV, LANG: "C" },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    if (persistent) {
      child.unref();
    } else {
      rt.child = child;
      rt.status = child.status;
    }
    // setpriv and setsid exec unshare in place (the child is no process group leader), so the
    // child's pid is unshare's; its only child is the host's PID 1.
    let initPid = 0;
    await waitFor(`host ${h.name} to start`, START_TIMEOUT_MS, () => {
      if (!procStat(child.pid) || procStat(child.pid)!.state === "Z") {
        throw new Error(`Host ${h.name} exited during start; see ${hostDir}/log`);
      }
      const kids = children(child.pid);
      if (kids.length) initPid = kids[0];
      return initPid !== 0;
    });
    h.unshare = procId(child.pid);
    h.init = procId(initPid);
    if (!h.unshare || !h.init) throw new Error(`Host ${h.name} exited during start; see ${hostDir}/log`);
  }

  /** Writes keys, configs and the private trees of every host. */
  async #writeFiles(machine: Machine, privateDirs: string[], privateFiles: string[], bindDeno: boolean) {
    const dir = this.dir;
    const sshDir = `${dir}/ssh`;
    await Deno.mkdir(sshDir, { mode: 0o700 });
    const keygen = mustTool("ssh-keygen");
    await Promise.all([
      mustRun(keygen, [
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "onestor-lab-host",
        "-f",
        `${sshDir}/host_ed25519`,
      ]),
      mustRun(keygen, ["-q", "-t", "ed25519", "-N", "", "-C", "onestor-lab", "-f", `${sshDir}/id_ed25519`]),
    ]);
    const hostPub = (await Deno.readTextFile(`${sshDir}/host_ed25519.pub`)).trim();
    const userKey = await Deno.readTextFile(`${sshDir}/id_ed25519`);
    const userPub = await Deno.readTextFile(`${sshDir}/id_ed25519.pub`);
    const hosts = this.#state.hosts;
    const knownHosts = hosts.map((h) => `${h.name},${h.address} ${hostPub}\n`).join("");
    const etcHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
      hosts.map((h) => `${h.address}\t${h.name}\n`).join("");
    const clientConfig = (identity: string, known: string, extra: string[] = []) =>
      [
        "Host *",
        ...extra,
        "  BatchMode yes",
        "  StrictHostKeyChecking yes",
        `  IdentityFile ${identity}`,
        "  IdentitiesOnly yes",
        `  UserKnownHostsFile ${known}`,
        "  GlobalKnownHostsFile /dev/null",
        "  GSSAPIAuthentication no",
        "  LogLevel ERROR",
        "",
      ].join("\n");
    await Deno.writeTextFile(`${sshDir}/known_hosts`, knownHosts);
    await Deno.writeTextFile(
      this.sshConfig,
      hosts.map((h) => `Host ${h.name}\n  HostName ${h.address}\n`).join("") + "\n" +
        clientConfig(`${sshDir}/id_ed25519`, `${sshDir}/known_hosts`, ["  User root"]),
    );
    await Deno.writeTextFile(`${dir}/init.pl`, INIT_PL);

    const { uid, gid } = machine.oneadmin;
    await Promise.all(hosts.map(async (h) => {
      const hostDir = `${dir}/hosts/${h.name}`;
      const root = h.root;
      for (const d of privateDirs) await Deno.mkdir(root + d, { recursive: true });
      for (const d of ["/var/lib/one", "/var/lib/one/datastores", "/var/lib/one/remotes", "/etc/one"]) {
        await Deno.mkdir(root + d, { recursive: true });
      }
      await Deno.mkdir(`${root}/etc`, { recursive: true });
      await Deno.writeTextFile(`${root}/etc/hosts`, etcHosts);
      if (machine.shadow) await Deno.writeTextFile(`${root}/etc/shadow`, machine.shadow, { mode: 0o640 });
      await Deno.chmod(`${root}/root`, 0o700);
      // ssh material for root and oneadmin; oneadmin's files are owned by oneadmin.
      for (const [home, owner] of [["/root", null], ["/var/lib/one", [uid, gid]]] as const) {
        const ssh = `${root}${home}/.ssh`;
        await Deno.mkdir(ssh, { mode: 0o700 });
        await Deno.writeTextFile(`${ssh}/id_ed25519`, userKey, { mode: 0o600 });
        await Deno.writeTextFile(`${ssh}/id_ed25519.pub`, userPub);
        await Deno.writeTextFile(`${ssh}/authorized_keys`, userPub, { mode: 0o600 });
        await Deno.writeTextFile(`${ssh}/known_hosts`, knownHosts);
        await Deno.writeTextFile(`${ssh}/config`, clientConfig("~/.ssh/id_ed25519", "~/.ssh/known_hosts"));
        if (owner) {
          for (
            const f of ["", "/id_ed25519", "/id_ed25519.pub", "/authorized_keys", "/known_hosts", "/config"]
          ) {
            await Deno.chown(ssh + f, owner[0], owner[1]);
          }
        }
      }
      for (const d of ["/var/lib/one", "/var/lib/one/datastores", "/var/lib/one/remotes", "/etc/one"]) {
        await Deno.chown(root + d, uid, gid);
      }
      for (const d of ["/var/tmp/one", "/var/lock/one"]) await Deno.chown(root + d, uid, gid);

      await Deno.writeTextFile(
        `${hostDir}/sshd_config`,
        [
          `ListenAddress ${h.address}`,
          "Port 22",
          `HostKey ${sshDir}/host_ed25519`,
          "PidFile none",
          "UsePAM no",
          "StrictModes no",
          "PermitRootLogin prohibit-password",
          "PubkeyAuthentication yes",
          "PasswordAuthentication no",
          "KbdInteractiveAuthentication no",
          "AuthorizedKeysFile .ssh/authorized_keys",
          "UseDNS no",
          "PrintMotd no",
          "X11Forwarding no",
          // sntrup761 costs ~70 ms of CPU per connection here; the lab tests storage, not PQ crypto.
          "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256",
          "MaxStartups 100:30:200",
          "MaxSessions 100",
          // VERBOSE logs one "Starting session" line per command run (multiplexed ones too): the
          // sessions a benchmark or a round-trip test counts.
          `LogLevel ${this.#countSessions ? "VERBOSE" : "ERROR"}`,
          "Subsystem sftp internal-sftp",
          "",
        ].join("\n"),
      );

      const mounts: { source: string; target: string }[] = [];
      // The Deno cache first: once /root is covered its machine path is out of sight.
      if (bindDeno) mounts.push({ source: machine.denoDir, target: this.#state.denoDir });
      for (const d of privateDirs) mounts.push({ source: root + d, target: d });
      for (const f of privateFiles) mounts.push({ source: root + f, target: f });
      this.#state.mounts[h.name] = mounts;
      const mountTool = mustTool("mount");
      const boot = [
        "#!/bin/sh",
        `# onestor lab host ${h.name}: runs as PID 1 of its new namespaces, then becomes the init.`,
        `exec >>${q(`${hostDir}/log`)} 2>&1`,
        "set -e",
        `printf %s ${q(h.name)} >/proc/sys/kernel/hostname`,
        ...mounts.map((m) => `${mountTool} --bind ${q(m.source)} ${q(m.target)}`),
        `exec ${q(mustTool("perl"))} ${q(`${dir}/init.pl`)} ${q(mustTool("sshd"))} -D -e -f ${
          q(`${hostDir}/sshd_config`)
        }`,
        "",
      ].join("\n");
      await Deno.writeTextFile(`${hostDir}/boot.sh`, boot);
    }));
  }
}

/**
 * Reserves a free random 127.A.B.0/24 (A in 100..250) and creates the lab dir. A reservation is a
 * symlink .subnets/A.B -> lab name, created atomically, so concurrent starts never share a subnet.
 */
async function reserve(
  name: string | undefined,
  hostCount: number,
): Promise<{ subnet: string; name: string }> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const subnet = `${100 + Math.floor(Math.random() * 151)}.${Math.floor(Math.random() * 256)}`;
    const labName = name ?? `lab-${subnet.replace(".", "-")}`;
    try {
      await Deno.symlink(labName, `${SUBNETS_DIR}/${subnet}`);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) continue;
      throw e;
    }
    // Something outside the registry (another tool, a stale sshd) may listen there.
    const taken = await Promise.all(
      Array.from({ length: hostCount }, (_, i) => listening(`127.${subnet}.${i + 2}`)),
    );
    if (taken.some((t) => t)) continue; // keep the reservation: the subnet is unusable anyway
    try {
      await Deno.mkdir(`${LAB_BASE}/${labName}`, { mode: 0o755 });
      await Deno.chmod(`${LAB_BASE}/${labName}`, 0o755);
    } catch (e) {
      await Deno.remove(`${SUBNETS_DIR}/${subnet}`).catch(() => {});
      if (e instanceof Deno.errors.AlreadyExists) {
        if (name !== undefined) {
          throw new Error(`Lab ${name} already exists (scripts/lab.ts down --name ${name})`);
        }
        continue;
      }
      throw e;
    }
    return { subnet, name: labName };
  }
  throw new Error("Found no free 127.A.B.0/24 subnet for the lab");
}
