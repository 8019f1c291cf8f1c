/**
 * Deploy benchmarks under a real oned (OpenNebula 7.3.80 from ../shared/oned, see
 * tests/support/oned_world.ts): the time from `one.vm.deploy` until oned reports the VM RUNNING,
 * polled through `one.vm.info` every 0.1 s, for onestor and for upstream's own `tm/ssh` in replica
 * mode with `datastore/fs` (the scripts shipped in the same oned tarball), under the same oned, in the
 * same lab, in the same run, alternating which driver goes first.
 *
 * Scenarios: a cold deploy of a new 1 GiB dense image; a warm deploy (a second VM of that image on the
 * other hypervisor); 8 parallel deploys of one new 256 MiB image; a cold deploy of a sparse 1 GiB image
 * with 50 MiB of data; a cold deploy of a 1 MiB image (what a deployment costs besides moving bytes). Each
 * is run BENCH_ONED_RUNS times (default 3) per driver; a row gives the
 * medians, the spread, the bytes the front-end sent to the replica (counted on the wire by a relay),
 * the disks that differ from their image (`cmp`), and the CPU seconds spent in each lab host.
 *
 * Every deploy also yields a timeline: the states polled, when one_tm started and ended each action
 * process (its children, polled every 10 ms), and onestor's own `DEBUG:` lines (LOG_LEVEL=debug) with
 * the duration of every remote command. Both `deno run -A scripts/bench_oned.ts` (this file alone) and
 * `deno task bench` (which adds the rows to docs/benchmarks.md) write docs/benchmarks-oned.md: the rows,
 * every deploy's figures with the machine's load, and the timelines.
 *
 * @module
 */

import { onedSupport, OnedWorld } from "../tests/support/oned_world.ts";
import { cpuDelta, hostCpuSeconds, WireMeter } from "../tests/support/host_meters.ts";
import { DriverTrace, type TracedProcess } from "../tests/support/driver_trace.ts";
import { childText } from "../core/one/xml.ts";
import { settle } from "./bench_rows.ts";

/** One measured row (the shape scripts/bench.ts renders). */
export interface OnedRow {
  name: string;
  baseline: string;
  seconds: number;
  baselineSeconds: number;
  note: string;
}

const RUNS = Number(Deno.env.get("BENCH_ONED_RUNS") ?? 3);
const DENSE_MB = Number(Deno.env.get("BENCH_ONED_DENSE_MB") ?? 1024);
const PARALLEL_MB = Number(Deno.env.get("BENCH_ONED_PARALLEL_MB") ?? 256);
const PARALLEL = Number(Deno.env.get("BENCH_ONED_PARALLEL") ?? 8);
const SPARSE_MB = Number(Deno.env.get("BENCH_ONED_SPARSE_MB") ?? 1024);
const SPARSE_DATA_MB = Number(Deno.env.get("BENCH_ONED_SPARSE_DATA_MB") ?? 50);
const SCENARIOS = (Deno.env.get("BENCH_ONED_SCENARIOS") ?? "cold,warm,parallel,sparse,small").split(",");
const HOSTS = ["frontend", "replica", "hv1", "hv2"];
const MiB = 1 << 20;

type Driver = "onestor" | "upstream";
type Scenario = "cold" | "warm" | "parallel" | "sparse" | "small";

/** What one measured deployment (or group of parallel ones) gave. */
interface Sample {
  driver: Driver;
  scenario: Scenario;
  run: number;
  seconds: number;
  sentBytes: number;
  differing: number;
  disks: number;
  cpu: Record<string, number>;
  load: string;
  timeline: string;
}

interface Setup {
  images: Record<Driver, number>;
  system: Record<Driver, number>;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function load(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

async function bash(one: OnedWorld, host: string, script: string): Promise<void> {
  const r = await one.lab.exec(host, ["bash", "-c", `set -e -o pipefail; ${script}`], { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`${host}: ${script}: ${r.stderr}`);
}

/** The datastores an administrator creates for each driver: an image datastore and a replica system one. */
async function createDatastores(one: OnedWorld): Promise<Setup> {
  const images = {
    onestor: await one.createDatastore({
      NAME: "onestor_images",
      DS_MAD: "onestor",
      TM_MAD: "onestor",
      TYPE: "IMAGE_DS",
      SAFE_DIRS: one.files,
    }),
    upstream: await one.createDatastore({
      NAME: "ssh_images",
      DS_MAD: "fs",
      TM_MAD: "ssh",
      TYPE: "IMAGE_DS",
      SAFE_DIRS: one.files,
    }),
  };
  const system = {
    onestor: await one.createDatastore({
      NAME: "onestor_replica",
      TM_MAD: "onestor",
      TYPE: "SYSTEM_DS",
      REPLICA_HOST: "replica",
    }),
    upstream: await one.createDatastore({
      NAME: "ssh_replica",
      TM_MAD: "ssh",
      TYPE: "SYSTEM_DS",
      REPLICA_HOST: "replica",
    }),
  };
  return { images, system };
}

/** Source files on the machine (readable by oneadmin): dense random data, and a sparse image. */
async function makeSources(one: OnedWorld): Promise<Record<string, string>> {
  const dense = `${one.files}/dense.raw`;
  const parallel = `${one.files}/parallel.raw`;
  const sparse = `${one.files}/sparse.raw`;
  const small = `${one.files}/small.raw`;
  await bash(
    one,
    "frontend",
    `head -c ${DENSE_MB * MiB} /dev/urandom > ${dense}; head -c ${
      PARALLEL_MB * MiB
    } /dev/urandom > ${parallel}; ` +
      `truncate -s ${SPARSE_MB}M ${sparse}; ` +
      `dd if=/dev/urandom of=${sparse} bs=1M count=${SPARSE_DATA_MB} seek=${
        Math.floor(SPARSE_MB / 3)
      } conv=notrunc status=none; head -c ${MiB} /dev/urandom > ${small}; chmod 644 ${dense} ${parallel} ${sparse} ${small}`,
  );
  return { dense, parallel, sparse, small };
}

let imageCount = 0;

async function newImage(one: OnedWorld, ds: number, path: string): Promise<{ id: number; source: string }> {
  const id = await one.createImage(ds, { NAME: `bench-${++imageCount}`, PATH: path, TYPE: "OS" }, 900_000);
  return { id, source: childText(await one.imageInfo(id), "SOURCE") };
}

/** How many of the VMs' disk.0 differ from the image (byte for byte, on the machine). */
async function differing(one: OnedWorld, source: string, vms: number[]): Promise<number> {
  let count = 0;
  for (const vm of vms) {
    const { host, dir } = await one.placement(vm);
    const out = await new Deno.Command("cmp", {
      args: ["-s", one.lab.path("frontend", source), one.lab.path(host, `${dir}/disk.0`)],
    }).output();
    if (out.code !== 0) count++;
  }
  return count;
}

function fmt(ms: number): string {
  return `+${(ms / 1000).toFixed(3)}s`;
}

/** A readable timeline of one measurement: states, action processes, onestor's debug lines. */
function timeline(
  one: OnedWorld,
  t0: number,
  vms: number[],
  procs: TracedProcess[],
  onedLog: string,
): string {
  const events: [number, string][] = [[t0, "one.vm.deploy sent"]];
  for (const vm of vms) {
    for (const s of one.states.seen(vm)) if (s.at >= t0) events.push([s.at, `VM ${vm} ${s.name}`]);
  }
  for (const p of procs) {
    const words = p.command.split(" ");
    const at = words.findIndex((w) => /\/remotes\/tm\//.test(w));
    const action = at >= 0 ? words.slice(at).join(" ").replace(/^\S*\/remotes\/tm\//, "tm/") : p.command;
    const short = action.length > 150 ? `${action.slice(0, 150)}…` : action;
    events.push([p.start, `start ${short}`]);
    if (p.end !== null) events.push([p.end, `end   ${short} (${((p.end - p.start) / 1000).toFixed(3)} s)`]);
  }
  events.sort((a, b) => a[0] - b[0]);
  const lines = events.map(([at, what]) => `  ${fmt(at - t0).padStart(9)} ${what}`);
  const driverLines = onedLog.split("\n").filter((l) => /\[TrM\]\[[DIEW]\]: (?!Message received)/.test(l))
    .map((l) => `  ${l.replace(/^\w+ \w+ +\d+ (\d\d:\d\d:\d\d) \d+ \[Z0\]/, "$1")}`);
  if (driverLines.length) lines.push("  oned.log (whole seconds):", ...driverLines.map((l) => `  ${l}`));
  return lines.join("\n");
}

/**
 * Deploys `vms` (already created on hold) at once to `hosts[i % n]` on datastore `ds` and measures
 * until all are RUNNING.
 */
async function measure(
  one: OnedWorld,
  meter: WireMeter,
  options: {
    driver: Driver;
    scenario: Scenario;
    run: number;
    vms: number[];
    hosts: string[];
    ds: number;
    source: string;
  },
): Promise<Sample> {
  await settle();
  const logFile = one.lab.path("frontend", "/opt/one/var/oned.log");
  const logStart = (await Deno.stat(logFile)).size;
  await meter.reset();
  const loadBefore = load();
  const trace = DriverTrace.start(one.lab, "frontend", /one_tm\.rb/);
  const cpu0 = hostCpuSeconds(one.lab, HOSTS);
  const t0 = performance.timeOrigin + performance.now();
  await Promise.all(options.vms.map((vm, i) => {
    one.states.watch(vm);
    const host = one.hostIds.get(options.hosts[i % options.hosts.length])!;
    return one.one.call("one.vm.deploy", [vm, host, false, options.ds, ""], `VM ${vm}`);
  }));
  await Promise.all(options.vms.map((vm) => one.waitVm(vm, "RUNNING", 900_000)));
  const t1 = Math.max(...options.vms.map((vm) => one.states.seen(vm).find((s) => s.name === "RUNNING")!.at));
  const cpu1 = hostCpuSeconds(one.lab, HOSTS);
  const procs = await trace.stop();
  const wire = await meter.read();
  const log = await Deno.open(logFile);
  await log.seek(logStart, Deno.SeekMode.Start);
  const onedLog = new TextDecoder().decode(await new Response(log.readable).arrayBuffer());
  for (const vm of options.vms) await one.assertNeverFailed(vm);
  return {
    driver: options.driver,
    scenario: options.scenario,
    run: options.run,
    seconds: (t1 - t0) / 1000,
    sentBytes: wire.sent,
    differing: await differing(one, options.source, options.vms),
    disks: options.vms.length,
    cpu: cpuDelta(cpu0, cpu1),
    load: `${loadBefore} → ${load()}`,
    timeline: timeline(one, t0, options.vms, procs, options.vms.length === 1 ? onedLog : ""),
  };
}

async function cleanup(one: OnedWorld, vms: number[], image: number): Promise<void> {
  await Promise.all(vms.map((vm) => one.vmAction(vm, ["terminate", "--hard"], "DONE", 300_000)));
  await one.cli(["oneimage", "delete", image]);
  await one.waitImageGone(image);
}

/** One run of every scenario for one driver. */
async function runDriver(
  one: OnedWorld,
  meter: WireMeter,
  setup: Setup,
  sources: Record<string, string>,
  driver: Driver,
  run: number,
): Promise<Sample[]> {
  const out: Sample[] = [];
  const ds = setup.system[driver];
  const log = (s: Sample) => {
    console.log(
      `${driver} ${s.scenario} run ${run}: ${s.seconds.toFixed(2)} s, sent ${
        (s.sentBytes / MiB).toFixed(1)
      } MiB, ` +
        `${s.differing}/${s.disks} differ, cpu ${
          HOSTS.map((h) => `${h} ${s.cpu[h].toFixed(2)}`).join(" ")
        }, load ${s.load}`,
    );
    out.push(s);
  };
  if (SCENARIOS.includes("cold") || SCENARIOS.includes("warm")) {
    const image = await newImage(one, setup.images[driver], sources.dense);
    const a = await one.createVm({ name: `${driver}-cold-${run}`, disks: [{ image: image.id }] });
    const b = await one.createVm({ name: `${driver}-warm-${run}`, disks: [{ image: image.id }] });
    await one.closeSshMasters();
    const common = { driver, run, ds, source: image.source };
    log(await measure(one, meter, { ...common, scenario: "cold", vms: [a], hosts: ["hv1"] }));
    // Warm: right after, as an administrator's second deploy; SSH connections left open are reused.
    if (SCENARIOS.includes("warm")) {
      log(await measure(one, meter, { ...common, scenario: "warm", vms: [b], hosts: ["hv2"] }));
      await cleanup(one, [a, b], image.id);
    } else {
      await cleanup(one, [a], image.id);
      await one.vmAction(b, ["terminate", "--hard"], "DONE");
    }
  }
  if (SCENARIOS.includes("parallel")) {
    const image = await newImage(one, setup.images[driver], sources.parallel);
    const vms: number[] = [];
    for (let i = 0; i < PARALLEL; i++) {
      vms.push(await one.createVm({ name: `${driver}-parallel-${run}-${i}`, disks: [{ image: image.id }] }));
    }
    await one.closeSshMasters();
    log(
      await measure(one, meter, {
        driver,
        run,
        ds,
        source: image.source,
        scenario: "parallel",
        vms,
        hosts: ["hv1", "hv2"],
      }),
    );
    await cleanup(one, vms, image.id);
  }
  // One new image, one VM on hv1: a sparse image, and an almost empty one (what a deployment costs
  // besides moving bytes: lookups, connections, bookkeeping).
  for (const [scenario, source] of [["sparse", sources.sparse], ["small", sources.small]] as const) {
    if (!SCENARIOS.includes(scenario)) continue;
    const image = await newImage(one, setup.images[driver], source);
    const vm = await one.createVm({ name: `${driver}-${scenario}-${run}`, disks: [{ image: image.id }] });
    await one.closeSshMasters();
    log(
      await measure(one, meter, {
        driver,
        run,
        ds,
        source: image.source,
        scenario,
        vms: [vm],
        hosts: ["hv1"],
      }),
    );
    await cleanup(one, [vm], image.id);
  }
  return out;
}

const TITLES: Record<Scenario, string> = {
  cold: `cold deploy to RUNNING, new ${DENSE_MB} MiB dense image, replica datastore`,
  warm: "warm deploy to RUNNING (second VM of that image, other host)",
  parallel: `${PARALLEL} parallel deploys to RUNNING of one new ${PARALLEL_MB} MiB image`,
  sparse: `cold deploy to RUNNING, new ${SPARSE_MB} MiB sparse image with ${SPARSE_DATA_MB} MiB data`,
  small: "cold deploy to RUNNING, new 1 MiB image (the fixed cost of a deployment)",
};

function rowsOf(samples: Sample[]): OnedRow[] {
  const rows: OnedRow[] = [];
  for (const scenario of ["cold", "warm", "parallel", "sparse", "small"] as Scenario[]) {
    const of = (d: Driver) => samples.filter((s) => s.driver === d && s.scenario === scenario);
    const [ours, theirs] = [of("onestor"), of("upstream")];
    if (!ours.length || !theirs.length) continue;
    const secs = (l: Sample[]) => l.map((s) => s.seconds);
    const spread = (l: Sample[]) => `${Math.min(...secs(l)).toFixed(2)}–${Math.max(...secs(l)).toFixed(2)} s`;
    const sent = (l: Sample[]) => (median(l.map((s) => s.sentBytes)) / MiB).toFixed(0);
    const diff = (l: Sample[]) =>
      `${l.reduce((n, s) => n + s.differing, 0)}/${l.reduce((n, s) => n + s.disks, 0)}`;
    const cpu = (l: Sample[]) => HOSTS.map((h) => median(l.map((s) => s.cpu[h])).toFixed(1)).join("/");
    rows.push({
      name: `oned: ${TITLES[scenario]}`,
      baseline: "upstream tm/ssh (replica) + datastore/fs, same oned and lab",
      seconds: median(secs(ours)),
      baselineSeconds: median(secs(theirs)),
      note: `${ours.length} runs; spread onestor ${spread(ours)}, upstream ${spread(theirs)}; ` +
        `MiB front-end → replica ${sent(ours)} vs ${sent(theirs)}; disks ≠ image ${diff(ours)} vs ${
          diff(theirs)
        }; CPU s frontend/replica/hv1/hv2 ${cpu(ours)} vs ${cpu(theirs)}`,
    });
  }
  return rows;
}

/** Runs the oned benchmarks, appends their rows and writes docs/benchmarks-oned.md. */
export async function run(rows: OnedRow[]): Promise<void> {
  const support = onedSupport();
  if (!support.ok) {
    console.log(`oned benchmarks skipped: ${support.reason}`);
    return;
  }
  const samples: Sample[] = [];
  {
    await using one = await OnedWorld.start({ logLevel: "debug" });
    const setup = await createDatastores(one);
    const sources = await makeSources(one);
    const meter = await WireMeter.start(one.lab, "frontend", "replica");
    try {
      for (let r = 1; r <= RUNS; r++) {
        const order: Driver[] = r % 2 ? ["onestor", "upstream"] : ["upstream", "onestor"];
        for (const d of order) samples.push(...await runDriver(one, meter, setup, sources, d, r));
      }
    } finally {
      await meter.stop();
    }
  }
  const found = rowsOf(samples);
  rows.push(...found);
  const cpus =
    Deno.readTextFileSync("/proc/cpuinfo").split("\n").filter((l) => l.startsWith("processor")).length;
  const text = [
    "# Benchmarks under a real oned",
    "",
    `Measured by \`scripts/bench_oned.ts\` on ${
      new Date().toISOString().slice(0, 10)
    } (${cpus} CPUs, every lab host on`,
    "the same machine; the load averages of each deploy are below). Method: scripts/bench_oned.ts. Time is from",
    "`one.vm.deploy` to the first poll (every 0.1 s) that sees RUNNING; ratio = onestor / upstream (below 1 is",
    "faster). CPU seconds are those of every process of each lab host (its PID namespace), bytes are those the",
    "front-end's SSH connections to the replica carried, counted by a relay. Before each deploy the machine's",
    "dirty pages are written out (`sync`): the lab's hosts share one disk, and oned's database waits in",
    "fdatasync for whatever a previous deploy left unwritten.",
    "",
    "| measurement | baseline | onestor (s) | upstream (s) | ratio | note |",
    "|---|---|---|---|---|---|",
    ...found.map((r) =>
      `| ${r.name} | ${r.baseline} | ${r.seconds.toFixed(2)} | ${r.baselineSeconds.toFixed(2)} | ${
        (r.seconds / r.baselineSeconds).toFixed(2)
      } | ${r.note} |`
    ),
    "",
    "## Per deploy",
    "",
    "| driver | scenario | run | s | MiB sent to replica | disks ≠ image | CPU s frontend | replica | hv1 | hv2 | load (1/5/15 min) before → after |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
    ...samples.map((s) =>
      `| ${s.driver} | ${s.scenario} | ${s.run} | ${s.seconds.toFixed(2)} | ${
        (s.sentBytes / MiB).toFixed(1)
      } | ${s.differing}/${s.disks} | ${HOSTS.map((h) => s.cpu[h].toFixed(2)).join(" | ")} | ${s.load} |`
    ),
    "",
    "## Timelines (first run of each driver and scenario)",
    "",
    "Seconds after `one.vm.deploy`: the states polled, when one_tm started and ended each action process",
    "(polled every 10 ms), then the driver's lines in oned.log (whole seconds; onestor's `DEBUG:` lines give",
    "each remote command's duration).",
    "",
    ...samples.filter((s) => s.run === 1).flatMap((s) => [
      `### ${s.driver}, ${s.scenario}`,
      "",
      "```",
      s.timeline,
      "```",
      "",
    ]),
  ].join("\n");
  const out = new URL("../docs/benchmarks-oned.md", import.meta.url).pathname;
  await Deno.writeTextFile(out, text);
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", out] }).output();
}

if (import.meta.main) {
  const rows: OnedRow[] = [];
  await run(rows);
  for (const r of rows) {
    console.log(
      `${r.name}: ${r.seconds.toFixed(2)} s vs ${r.baselineSeconds.toFixed(2)} s, ratio ${
        (r.seconds / r.baselineSeconds).toFixed(2)
      }; ${r.note}`,
    );
  }
}
