/**
 * `deno task bench`: speed measurements in a lab, each reported as a ratio against a baseline run in
 * the same process on the same machine (each baseline run next to its onestor run), with the CPU
 * seconds every lab host spent and the SSH commands each served, written to docs/benchmarks.md.
 * Absolute numbers drift between machines; the ratios, CPU seconds and command counts are what to
 * compare.
 *
 * Row producers: scripts/bench_cache.ts (deploys), and scripts/bench_oned.ts and
 * scripts/bench_recovery.ts when present (each exports `run(rows)`, appends rows and may return
 * Markdown details). `BENCH_ONLY=copy,startup,cache,oned,recovery` selects some of them.
 *
 * @module
 */

import { Lab } from "../tests/support/lab.ts";
import { World } from "../tests/support/world.ts";
import { runCommand } from "../core/remote/process.ts";
import { HostRunner } from "../core/remote/runner.ts";
import { SshClient } from "../core/remote/ssh.ts";
import { copyEntries } from "../core/transfer/copy.ts";
import { tmConfinement } from "../core/remote/confine.ts";
import { run as runCacheBenchmarks } from "./bench_cache.ts";
import {
  type BenchRow,
  median,
  medianPerHost,
  type PerHost,
  renderCpu,
  renderRows,
  renderSessions,
  settle,
} from "./bench_rows.ts";

const RUNS = Math.max(1, Number(Deno.env.get("BENCH_RUNS") ?? 3));
const STARTUP_RUNS = Number(Deno.env.get("BENCH_STARTUP_RUNS") ?? 20);
const IMAGE_MB = Number(Deno.env.get("BENCH_IMAGE_MB") ?? 512);
const DATA_MB = Number(Deno.env.get("BENCH_DATA_MB") ?? 128);
const ONLY = (Deno.env.get("BENCH_ONLY") ?? "copy,startup,cache,oned,recovery").split(",");

async function must(argv: string[], what: string): Promise<string> {
  const r = await runCommand(argv, { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`${what} failed: ${r.stderr}`);
  return r.stdout;
}

/** The copy primitive host to host, against upstream's unverified tar pipe (both run from hv1). */
async function copyBenchmarks(rows: BenchRow[]): Promise<void> {
  const hosts = ["hv1", "hv2"];
  await using lab = await Lab.start({ hosts, accounting: true });
  const ssh = new SshClient({ configFile: lab.sshConfig, controlDir: `/tmp/onestor-bench-${Deno.pid}` });
  const runner = new HostRunner(ssh, ["frontend-is-not-this-process"]);
  const img = "/var/lib/one/datastores/1";
  const made = await lab.sh(
    "hv1",
    `mkdir -p ${img} && truncate -s ${IMAGE_MB}M ${img}/img && dd if=/dev/urandom of=${img}/img bs=1M ` +
      `count=${DATA_MB} seek=${Math.floor(IMAGE_MB / 4)} conv=notrunc status=none`,
  );
  if (made.code !== 0) throw new Error(made.stderr);
  const sample = async (fn: () => Promise<void>) => {
    await settle();
    const cpu0 = hosts.map((h) => lab.cpu(h));
    const ssh0 = await Promise.all(hosts.map((h) => lab.sessions(h)));
    const t0 = performance.now();
    await fn();
    const seconds = (performance.now() - t0) / 1000;
    const cpu: PerHost = {};
    const sessions: PerHost = {};
    for (const [i, h] of hosts.entries()) {
      const a = cpu0[i];
      const b = lab.cpu(h);
      cpu[h] = a && b ? b.user + b.sys - a.user - a.sys : NaN;
      sessions[h] = (await lab.sessions(h)) - ssh0[i];
    }
    await lab.sh("hv2", "rm -rf /var/lib/one/datastores/0");
    return { seconds, cpu, sessions };
  };
  const upstream = () =>
    sample(async () => {
      const r = await lab.exec("hv1", [
        "bash",
        "-c",
        `set -o pipefail; tar -C ${img} -cSf - img | ` +
        "ssh hv2 'mkdir -p /var/lib/one/datastores/0/9 && tar -C /var/lib/one/datastores/0/9 -xSf -'",
      ]);
      if (r.code !== 0) throw new Error(r.stderr);
    });
  const ours = (checksum: string) => () =>
    sample(async () => {
      await copyEntries(runner, {
        from: { host: "hv1", dir: img, entries: [{ name: "img", as: "disk.0" }] },
        to: {
          host: "hv2",
          dir: "/var/lib/one/datastores/0/8",
          confine: tmConfinement({ datastoreLocation: null }),
        },
        checksum,
      });
    });
  for (
    const [checksum, name, note, target] of [
      [
        "none",
        `copy ${IMAGE_MB} MiB image (${DATA_MB} MiB data), verified write-then-rename`,
        "one SSH command; renamed into place only when the trailer proves the sender finished and the byte counts " +
        "agree (SSH's MAC covers the bytes); 64 KiB tar records",
        1.1,
      ],
      [
        "xxh128",
        "the same copy with TRANSFER_VERIFY=content (xxh128 of the files on both ends)",
        "informational: what hashing the content on both ends costs",
        undefined,
      ],
    ] as const
  ) {
    const a: Awaited<ReturnType<typeof upstream>>[] = [];
    const b: typeof a = [];
    for (let r = 0; r < RUNS; r++) {
      if (r % 2 === 0) {
        b.push(await ours(checksum)());
        a.push(await upstream());
      } else {
        a.push(await upstream());
        b.push(await ours(checksum)());
      }
    }
    rows.push({
      name,
      baseline: "upstream tar -S \\| ssh \\| tar -x, unverified",
      seconds: median(b.map((x) => x.seconds)),
      baselineSeconds: median(a.map((x) => x.seconds)),
      runs: { seconds: b.map((x) => x.seconds), baselineSeconds: a.map((x) => x.seconds) },
      target,
      note: `${RUNS} runs, hv1 → hv2, run on hv1 in both cases. ${note}`,
      cpu: { onestor: medianPerHost(b.map((x) => x.cpu)), baseline: medianPerHost(a.map((x) => x.cpu)) },
      sessions: {
        onestor: medianPerHost(b.map((x) => x.sessions)),
        baseline: medianPerHost(a.map((x) => x.sessions)),
      },
    });
  }
  await ssh.closeMasters();
}

/** CPU and wall time of running a command many times on the front-end of a lab. */
async function startupSamples(
  world: World,
  argv: string[],
  stdin?: string,
  env: Record<string, string> = {},
) {
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < STARTUP_RUNS; i++) {
    const before = world.lab.cpu("frontend");
    const t0 = performance.now();
    const r = await world.lab.exec("frontend", argv, { user: "oneadmin", stdin, env: world.env(env) });
    wall.push((performance.now() - t0) / 1000);
    const after = world.lab.cpu("frontend");
    if (before && after) cpu.push(after.user + after.sys - before.user - before.sys);
    if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  }
  return { wall, cpu };
}

/** Start-up of an action through the installed symlink, against bare `deno run` and bash. */
async function startupBenchmark(rows: BenchRow[]): Promise<void> {
  await using world = await World.start({ hosts: ["frontend"], accounting: true });
  const empty = `${world.lab.dir}/empty.ts`;
  await Deno.writeTextFile(empty, "\n");
  await Deno.chmod(world.lab.dir, 0o755);
  const launcher = await Deno.readTextFile(
    world.lab.path("frontend", `/var/lib/one/remotes/tm/${world.tmName}/.onestor`),
  );
  const deno = launcher.match(/exec '([^']+)' run/)?.[1] ?? Deno.execPath();
  const flags = [
    "run",
    "--quiet",
    "--no-check",
    "--no-config",
    "--no-lock",
    "--cached-only",
    "--no-remote",
    "--allow-all",
  ];
  const stdin = "PERTX0RSSVZFUl9BQ1RJT05fREFUQT4=";
  const action = await startupSamples(
    world,
    [`/var/lib/one/remotes/tm/${world.tmName}/monitor`, "100"],
    stdin,
  );
  // The same Deno cache as the launcher gives actions (one oneadmin can write), so that the baseline is
  // Deno itself under the same conditions.
  const denoDir = launcher.match(/^DENO_DIR='([^']+)'$/m)?.[1];
  const bare = await startupSamples(
    world,
    [deno, ...flags, empty],
    stdin,
    denoDir ? { DENO_DIR: denoDir } : {},
  );
  const bash = await startupSamples(world, ["bash", "-c", "cat >/dev/null"], stdin);
  const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`;
  for (
    const [base, label, sample] of [[bare, "bare `deno run` of an empty script (same flags)", "deno"], [
      bash,
      "bash running the same no-op",
      "bash",
    ]] as const
  ) {
    rows.push({
      name: "start-up of an action through the installed symlink (tm monitor)",
      baseline: label,
      seconds: median(action.wall),
      baselineSeconds: median(base.wall),
      note:
        `median of ${STARTUP_RUNS}; CPU ${ms(median(action.cpu))} vs ${ms(median(base.cpu))} (${sample}); ` +
        "what onestor adds over Deno itself is its own module loading and dispatch",
    });
  }
}

/** A row producer of another module, when its file exists. */
async function producer(name: string): Promise<((rows: BenchRow[]) => Promise<unknown>) | null> {
  const url = new URL(`./${name}.ts`, import.meta.url);
  try {
    await Deno.stat(url);
  } catch {
    return null;
  }
  const module = await import(url.href);
  return typeof module.run === "function" ? module.run : null;
}

function render(rows: BenchRow[], details: string[], load: string): string {
  const when = new Date().toISOString().slice(0, 10);
  const cores = navigator.hardwareConcurrency;
  return [
    "# Benchmarks",
    "",
    `Measured by \`deno task bench\` on ${when} on ${cores} CPU cores (a lab on one machine: hosts in`,
    "namespaces, SSH over loopback). Load average while measuring: " + `${load}.`,
    "",
    "Method. Every row compares onestor with a baseline of the same bytes measured in the same run, each baseline",
    "run right next to its onestor run (alternating which goes first). The ratio is onestor's time divided by the",
    "baseline's (below 1 is faster): the median of the per-run ratios, with their range (5 runs for the parallel",
    "rows, whose runs vary most; the note of each row says how many). Deploys run the installed",
    "TM action as oned does (its start-up, oned lookups from a fake oned, every check included). CPU seconds are",
    "the user + system time of everything each lab host ran (a cgroup per host: every process a host starts, and",
    "every command run inside it, is counted whether or not anyone waits for it), medians per run. SSH commands",
    "are counted by each host's sshd. On this machine every host shares the same cores, so wall time is bounded",
    "by the total CPU of all hosts; on separate machines each host pays only its own column. Before every",
    "measured run the machine's dirty pages are written out (`sync`), so no run pays for another's writes.",
    "",
    ...renderRows(rows),
    "",
    "## CPU seconds per host (one run)",
    "",
    ...renderCpu(rows),
    "",
    "## SSH commands per host (one run)",
    "",
    ...renderSessions(rows),
    "",
    ...details,
  ].join("\n");
}

async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

if (import.meta.main) {
  const rows: BenchRow[] = [];
  const details: string[] = [];
  const loads: string[] = [await loadAverage()];
  if (ONLY.includes("copy")) await copyBenchmarks(rows);
  if (ONLY.includes("startup")) await startupBenchmark(rows);
  loads.push(await loadAverage());
  if (ONLY.includes("cache")) details.push(await runCacheBenchmarks(rows));
  loads.push(await loadAverage());
  for (const name of ["bench_oned", "bench_recovery"]) {
    if (!ONLY.includes(name.replace("bench_", ""))) continue;
    const run = await producer(name);
    if (!run) continue;
    const more = await run(rows);
    if (typeof more === "string" && more.trim() !== "") details.push(more);
    loads.push(await loadAverage());
  }
  const text = render(rows, details, loads.join("; "));
  const out = new URL("../docs/benchmarks.md", import.meta.url).pathname;
  await Deno.writeTextFile(out, text);
  // Keep the generated file as `deno fmt` wants it, so the CI format gate stays green.
  await must([Deno.execPath(), "fmt", "--quiet", out], "deno fmt");
  console.log(await Deno.readTextFile(out));
}
