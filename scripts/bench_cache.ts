/**
 * Deploy benchmarks for `deno task bench`: TM clone through the installed action in a lab (a fake
 * oned answers its lookups), each against a baseline measured in the same run with upstream's data
 * path (tar -S piped over ssh, hop by hop, no verification), each run of a baseline right next to
 * its onestor run (alternating which goes first). Besides wall time, every run records the CPU
 * seconds each lab host spent (a cgroup per host) and the SSH commands each host's sshd served.
 *
 * @module
 */

import { World } from "../tests/support/world.ts";
import { datastoreXml, DS_LOC, hostXml, imageDisk, vmXml } from "../tests/support/fixtures.ts";
import { throttleOptions } from "../tests/support/throttle.ts";
import { type BenchRow, median, medianPerHost, type PerHost, settle } from "./bench_rows.ts";

const RUNS = Math.max(1, Number(Deno.env.get("BENCH_RUNS") ?? 3));
/**
 * Runs of the parallel rows: at least 5. Their runs vary most (every lab host shares the same two
 * cores, so one run's scheduling moves its time by ±10 %), and the median of 5 says more than of 3.
 */
const PARALLEL_RUNS = Math.max(RUNS, Number(Deno.env.get("BENCH_PARALLEL_RUNS") ?? 5));
const IMAGE_MB = Number(Deno.env.get("BENCH_IMAGE_MB") ?? 512);
const DATA_MB = Number(Deno.env.get("BENCH_DATA_MB") ?? 128);
const PARALLEL = (Deno.env.get("BENCH_PARALLEL") ?? "8,16").split(",").map(Number).filter((n) => n > 0);
const IMG_DIR = "/var/lib/one/datastores/1";
const HOSTS = ["frontend", "replica", "hv1", "hv2"];
/** upstream's REPLICA_SSH_OPTS, used by its clone.replica for the replica -> host hop (and by onestor). */
const REPLICA_SSH_OPTS = "-c aes128-gcm@openssh.com -m umac-64@openssh.com";
/** The edge link (front-end → replica) and the cluster link (replica → host) of the slow-link rows. */
const EDGE_MIBPS = Number(Deno.env.get("BENCH_EDGE_MIBPS") ?? 16);
const CLUSTER_MIBPS = Number(Deno.env.get("BENCH_CLUSTER_MIBPS") ?? 32);
const EDGE_DATA_MB = Number(Deno.env.get("BENCH_EDGE_DATA_MB") ?? 48);

/** One measured operation. */
interface Sample {
  seconds: number;
  cpu: PerHost;
  sessions: PerHost;
}

async function bash(world: World, host: string, script: string): Promise<void> {
  const r = await world.lab.exec(host, ["bash", "-c", `set -o pipefail; ${script}`], {
    user: "oneadmin",
    timeoutMs: 900_000,
  });
  if (r.code !== 0) throw new Error(`${host}: ${script}: ${r.stderr}`);
}

/** Runs `fn` and returns its wall time, the CPU seconds and the SSH commands of every lab host. */
async function measure(world: World, fn: () => Promise<void>): Promise<Sample> {
  await settle();
  const cpu0 = Object.fromEntries(HOSTS.map((h) => [h, world.lab.cpu(h)]));
  const ssh0 = Object.fromEntries(
    await Promise.all(HOSTS.map(async (h) => [h, await world.lab.sessions(h)])),
  );
  const t0 = performance.now();
  await fn();
  const seconds = (performance.now() - t0) / 1000;
  const cpu: PerHost = {};
  const sessions: PerHost = {};
  for (const h of HOSTS) {
    const a = cpu0[h];
    const b = world.lab.cpu(h);
    cpu[h] = a && b ? (b.user + b.sys) - (a.user + a.sys) : NaN;
    sessions[h] = (await world.lab.sessions(h)) - (ssh0[h] as number);
  }
  return { seconds, cpu, sessions };
}

/** What runs between two measured operations (set by {@linkcode run}: removes copied disks). */
let betweenRuns: () => Promise<void> = () => Promise.resolve();

/** Pairs of runs: onestor and baseline, alternating which runs first; `cleanup` runs after each. */
async function pairs(
  runs: number,
  prepare: (run: number) => Promise<void>,
  onestor: (run: number) => Promise<Sample>,
  baseline: (run: number) => Promise<Sample>,
  cleanup: () => Promise<void> = betweenRuns,
): Promise<{ ours: Sample[]; theirs: Sample[] }> {
  const ours: Sample[] = [];
  const theirs: Sample[] = [];
  for (let r = 0; r < runs; r++) {
    await prepare(r);
    if (r % 2 === 0) {
      ours.push(await onestor(r));
      await cleanup();
      theirs.push(await baseline(r));
    } else {
      theirs.push(await baseline(r));
      await cleanup();
      ours.push(await onestor(r));
    }
    await cleanup();
  }
  return { ours, theirs };
}

/** A row from paired samples. */
function row(
  name: string,
  baseline: string,
  s: { ours: Sample[]; theirs: Sample[] },
  note: string,
  target?: number,
): BenchRow {
  return {
    name,
    baseline,
    seconds: median(s.ours.map((x) => x.seconds)),
    baselineSeconds: median(s.theirs.map((x) => x.seconds)),
    runs: { seconds: s.ours.map((x) => x.seconds), baselineSeconds: s.theirs.map((x) => x.seconds) },
    target,
    note: `${s.ours.length} runs. ${note}`,
    cpu: {
      onestor: medianPerHost(s.ours.map((x) => x.cpu)),
      baseline: medianPerHost(s.theirs.map((x) => x.cpu)),
    },
    sessions: {
      onestor: medianPerHost(s.ours.map((x) => x.sessions)),
      baseline: medianPerHost(s.theirs.map((x) => x.sessions)),
    },
  };
}

const hash = (prefix: string, n: number) => `${prefix}${n.toString(16)}`.padEnd(32, "0");

/** Runs the deploy benchmarks, appends their rows and returns Markdown details (SSH commands per action). */
export async function run(rows: BenchRow[]): Promise<string> {
  await using world = await World.start({ accounting: true });
  world.oned.addDatastore(datastoreXml({ id: 1, dsMad: world.dsName, tmMad: world.tmName }));
  world.oned.addDatastore(
    datastoreXml({ id: 100, type: 1, tmMad: world.tmName, template: { REPLICA_HOST: "replica" } }),
  );
  world.oned.addDatastore(datastoreXml({ id: 101, type: 1, tmMad: world.tmName }));
  for (const [id, name] of [[1, "replica"], [2, "hv1"], [3, "hv2"]] as const) {
    world.oned.addHost(hostXml({ id, name }));
  }
  if (!world.lab.cpu("frontend")) console.log("bench: this machine does not allow per-host CPU accounting");
  const makeImage = async (name: string, dataMb = DATA_MB): Promise<string> => {
    const image = `${IMG_DIR}/${name}`;
    await bash(
      world,
      "frontend",
      `mkdir -p ${IMG_DIR} && rm -f ${image} && truncate -s ${IMAGE_MB}M ${image} && ` +
        `dd if=/dev/urandom of=${image} bs=1M count=${dataMb} seek=${
          Math.floor(IMAGE_MB / 4)
        } conv=notrunc status=none`,
    );
    return image;
  };
  let vm = 0;
  /** A VM with one image disk (SIZE = ORIGINAL_SIZE: no growth) on `host`, deployed to `sysDs`. */
  const addVm = (image: string, host: string, sysDs = 100): number => {
    const id = vm++;
    world.oned.addVm(vmXml({
      id,
      disks: [
        imageDisk({ DISK_ID: 0, SOURCE: image, FORMAT: "raw", SIZE: IMAGE_MB, ORIGINAL_SIZE: IMAGE_MB }),
      ],
      history: [{ hostname: host, hid: host === "hv1" ? 2 : 3, dsId: sysDs }],
    }));
    return id;
  };
  const tm = async (action: string, args: (string | number)[]) => {
    const r = await world.tm(action, args);
    if (r.code !== 0) throw new Error(`${action} failed: ${r.stderr}`);
    return r;
  };
  const deploy = async (image: string, host: string, sysDs = 100): Promise<number> => {
    const id = addVm(image, host, sysDs);
    await tm("clone", [`frontend:${image}`, `${host}:${DS_LOC}/${sysDs}/${id}/disk.0`, id, 1]);
    return id;
  };
  const tarTo = (host: string, dest: string, opts = "") =>
    `ssh ${opts} ${host} 'rm -rf ${dest} && mkdir -p ${dest} && tar -C ${dest} -xSf -'`;
  // Deployed disks and baseline copies are removed between runs (the machine's disk is shared).
  const clean = async () => {
    for (const h of ["hv1", "hv2", "replica"]) {
      await world.lab.exec(h, [
        "sh",
        "-c",
        "rm -rf /var/lib/one/datastores/100/[0-9]* /var/lib/one/datastores/101/[0-9]* /var/tmp/one/*",
      ]);
    }
  };
  betweenRuns = clean;
  const fills = async (name: string) =>
    (await world.lab.exec("replica", ["cat", `${IMG_DIR}/.onestor-cache.log`])).stdout.split("\n")
      .filter((l) => l.includes('"fill-start"') && l.includes(name)).length;

  // ---- Cold: a new image per run; upstream reads it once for MD5, then two hops one after the other.
  const cold: string[] = [];
  const coldRuns = await pairs(
    RUNS,
    async (r) => {
      cold[r] = await makeImage(hash("c", r));
    },
    (r) => measure(world, async () => void await deploy(cold[r], "hv1")),
    (r) => {
      const name = cold[r].split("/").pop();
      return measure(world, async () => {
        await bash(
          world,
          "frontend",
          `md5sum ${cold[r]} >/dev/null && tar -C ${IMG_DIR} -cSf - ${name} | ${
            tarTo("replica", `/var/tmp/one/up${r}`)
          }`,
        );
        await bash(
          world,
          "replica",
          `tar -C /var/tmp/one/up${r} -cSf - . | ${tarTo("hv1", `/var/tmp/one/up${r}`, REPLICA_SSH_OPTS)}`,
        );
      });
    },
  );
  rows.push(row(
    `cold deploy of a ${IMAGE_MB} MiB image (${DATA_MB} MiB data) through the replica (cut-through)`,
    "upstream: MD5 of the image on first use, front-end → replica, then replica → host, unverified",
    coldRuns,
    "onestor: 2 SSH commands to the replica (serve: miss; fill: stream, forward, promote) and the replica's hop to " +
      "the host; includes the driver's start-up and oned lookups",
    0.8,
  ));
  // The same cold deploys against one front-end → replica hop of the same bytes.
  const hop: Sample[] = [];
  for (let r = 0; r < RUNS; r++) {
    const name = cold[r].split("/").pop();
    hop.push(
      await measure(world, () =>
        bash(
          world,
          "frontend",
          `tar -C ${IMG_DIR} -cSf - ${name} | ${tarTo("replica", "/var/tmp/one/hop")}`,
        )),
    );
  }
  rows.push(row(
    "cold deploy through the replica (the same runs)",
    "one front-end → replica tar -S \\| ssh \\| tar -x of the same image",
    { ours: coldRuns.ours, theirs: hop },
    "a miss costs about one hop: the host receives the bytes while the replica caches them",
    1.25,
  ));

  // ---- Warm: the image is cached; upstream copies replica → host with REPLICA_SSH_OPTS.
  const cachedName = cold[0].split("/").pop();
  const warmRuns = await pairs(
    RUNS,
    () => Promise.resolve(),
    () => measure(world, async () => void await deploy(cold[0], "hv2")),
    (r) =>
      measure(world, () =>
        bash(
          world,
          "replica",
          `tar -C ${IMG_DIR} -cSf - ${cachedName} | ${tarTo("hv2", `/var/tmp/one/w${r}`, REPLICA_SSH_OPTS)}`,
        )),
  );
  rows.push(row(
    "warm deploy (cache hit) of the same image",
    `one replica → host tar -S \\| ssh ${REPLICA_SSH_OPTS} \\| tar -x of the image`,
    warmRuns,
    "onestor: 1 SSH command to the replica (validate, pin, copy, unpin) and its hop to the host; no image byte " +
      "leaves the front-end",
    1.1,
  ));

  // ---- Without a replica: clone straight from the front-end (system datastore 101).
  const directRuns = await pairs(
    RUNS,
    () => Promise.resolve(),
    () => measure(world, async () => void await deploy(cold[0], "hv1", 101)),
    (r) =>
      measure(
        world,
        () =>
          bash(
            world,
            "frontend",
            `tar -C ${IMG_DIR} -cSf - ${cachedName} | ${tarTo("hv1", `/var/tmp/one/d${r}`)}`,
          ),
      ),
  );
  rows.push(row(
    "clone without a replica (front-end → host)",
    "upstream tm/ssh clone: tar -S \\| ssh \\| tar -x",
    directRuns,
    "onestor: 1 SSH command (folder, marker, copy, rename, growth in one receiver)",
  ));

  // ---- N parallel deploys of one uncached image vs N direct front-end → host copies.
  for (const n of PARALLEL) {
    const images: string[] = [];
    const egress: number[] = [];
    const parallel = await pairs(
      PARALLEL_RUNS,
      async (r) => {
        images[r] = await makeImage(hash(`p${n}x`, r));
      },
      async (r) => {
        const s = await measure(world, async () => {
          await Promise.all(Array.from({ length: n }, (_, i) => deploy(images[r], i % 2 ? "hv2" : "hv1")));
        });
        egress.push(await fills(images[r].split("/").pop()!));
        return s;
      },
      (r) =>
        measure(world, async () => {
          const name = images[r].split("/").pop();
          await Promise.all(Array.from({ length: n }, (_, i) =>
            bash(
              world,
              "frontend",
              `tar -C ${IMG_DIR} -cSf - ${name} | ${tarTo(i % 2 ? "hv2" : "hv1", `/var/tmp/one/p${i}`)}`,
            )));
        }),
    );
    rows.push(row(
      `${n} parallel deploys of one uncached image`,
      `${n} parallel direct front-end → host copies`,
      parallel,
      `front-end egress: the image crossed it ${egress.join(", ")} time(s) per run (vs ${n}); all on one ` +
        "machine, so CPU bounds both",
      1.0,
    ));
  }

  // ---- Slow links, as at an edge site: the front-end → replica and replica → host hops throttled.
  const slow = await throttleOptions(world.lab.dir);
  const edge = slow(EDGE_MIBPS << 20);
  const cluster = slow(CLUSTER_MIBPS << 20);
  await world.writeFile(
    "frontend",
    "/var/lib/one/remotes/etc/tm/ssh/sshrc",
    `REPLICA_SSH_FE_OPTS="${edge}"\nREPLICA_SSH_OPTS="${cluster}"\n`,
  );
  const edgeImages: string[] = [];
  const edgeCold = await pairs(
    RUNS,
    async (r) => {
      edgeImages[r] = await makeImage(hash("e", r), EDGE_DATA_MB);
    },
    (r) => measure(world, async () => void await deploy(edgeImages[r], "hv1")),
    (r) => {
      const name = edgeImages[r].split("/").pop();
      return measure(world, async () => {
        await bash(
          world,
          "frontend",
          `md5sum ${edgeImages[r]} >/dev/null && tar -C ${IMG_DIR} -cSf - ${name} | ${
            tarTo("replica", `/var/tmp/one/e${r}`, edge)
          }`,
        );
        await bash(
          world,
          "replica",
          `tar -C /var/tmp/one/e${r} -cSf - . | ${tarTo("hv1", `/var/tmp/one/e${r}`, cluster)}`,
        );
      });
    },
  );
  rows.push(row(
    `cold deploy over slow links (${EDGE_MIBPS} MiB/s to the replica, ${CLUSTER_MIBPS} MiB/s to the host; ` +
      `${EDGE_DATA_MB} MiB data)`,
    "upstream: MD5 on first use, then the two hops one after the other",
    edgeCold,
    "cut-through: the host receives the bytes while the replica caches them",
  ));
  const edgeName = edgeImages[0].split("/").pop();
  const edgeWarm = await pairs(
    RUNS,
    () => Promise.resolve(),
    () => measure(world, async () => void await deploy(edgeImages[0], "hv2")),
    (r) =>
      measure(
        world,
        () =>
          bash(
            world,
            "replica",
            `tar -C ${IMG_DIR} -cSf - ${edgeName} | ${tarTo("hv2", `/var/tmp/one/ew${r}`, cluster)}`,
          ),
      ),
  );
  rows.push(row(
    "warm deploy over the slow cluster link",
    "upstream: replica → host",
    edgeWarm,
    "the front-end's slow link is not used at all",
  ));
  await world.writeFile("frontend", "/var/lib/one/remotes/etc/tm/ssh/sshrc", "\n");

  // ---- SSH commands per action (each host's sshd counts them).
  const actions: [string, Sample][] = [];
  const id = addVm(cold[0], "hv1");
  actions.push(["clone, cold (cache miss, cut-through)", coldRuns.ours[0]]);
  actions.push(["clone, warm (cache hit)", warmRuns.ours[0]]);
  actions.push(["clone without a replica", directRuns.ours[0]]);
  actions.push([
    "mkswap",
    await measure(
      world,
      async () => void await tm("mkswap", [64, `hv1:${DS_LOC}/100/${id}/disk.1`, id, 100]),
    ),
  ]);
  actions.push([
    "mkimage",
    await measure(
      world,
      async () => void await tm("mkimage", [64, "raw", `hv1:${DS_LOC}/100/${id}/disk.2`, id, 100]),
    ),
  ]);
  actions.push([
    "delete (disk)",
    await measure(world, async () => void await tm("delete", [`hv1:${DS_LOC}/100/${id}/disk.1`, id, 100])),
  ]);
  actions.push([
    "delete (VM folder, replica datastore)",
    await measure(world, async () => void await tm("delete", [`hv1:${DS_LOC}/100/${id}`, id, 100])),
  ]);
  const detail = [
    "### SSH commands per action",
    "",
    "Counted by each lab host's sshd (one `Starting session` line per command, multiplexed or not), so a",
    "replica's own hop to a hypervisor counts on the hypervisor. The front-end runs its own part locally.",
    "",
    "| action | SSH commands per host | total | CPU s per host |",
    "|---|---|---|---|",
    ...actions.map(([name, s]) => {
      const per = HOSTS.filter((h) => s.sessions[h] > 0).map((h) => `${h} ${s.sessions[h]}`).join(", ") ||
        "0";
      const total = HOSTS.reduce((a, h) => a + s.sessions[h], 0);
      const cpu = HOSTS.map((h) => `${h} ${s.cpu[h].toFixed(2)}`).join(", ");
      return `| ${name} | ${per} | ${total} | ${cpu} |`;
    }),
    "",
  ];
  return detail.join("\n");
}
