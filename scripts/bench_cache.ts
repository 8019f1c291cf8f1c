/**
 * Replica-cache benchmarks for `deno task bench`: deploys through the installed clone action in a
 * lab, each against a baseline measured in the same run with upstream's data path (tar -S piped
 * over ssh, hop by hop, no verification).
 *
 * @module
 */

import { World } from "../tests/support/world.ts";
import { datastoreXml, DS_LOC, hostXml, imageDisk, vmXml } from "../tests/support/fixtures.ts";
import { throttleOptions } from "../tests/support/throttle.ts";

/** One measured row (see scripts/bench.ts). */
export interface CacheRow {
  name: string;
  baseline: string;
  seconds: number;
  baselineSeconds: number;
  note: string;
}

const IMAGE_MB = Number(Deno.env.get("BENCH_IMAGE_MB") ?? 512);
const DATA_MB = Number(Deno.env.get("BENCH_DATA_MB") ?? 128);
const PARALLEL = Number(Deno.env.get("BENCH_PARALLEL") ?? 8);
const IMG_DIR = "/var/lib/one/datastores/1";
/** The edge link (front-end → replica) and the cluster link (replica → host) of the slow-link rows. */
const EDGE_MIBPS = Number(Deno.env.get("BENCH_EDGE_MIBPS") ?? 16);
const CLUSTER_MIBPS = Number(Deno.env.get("BENCH_CLUSTER_MIBPS") ?? 32);
const EDGE_DATA_MB = Number(Deno.env.get("BENCH_EDGE_DATA_MB") ?? 48);

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function bash(world: World, host: string, script: string): Promise<void> {
  const r = await world.lab.exec(host, ["bash", "-c", `set -o pipefail; ${script}`], { user: "oneadmin" });
  if (r.code !== 0) throw new Error(`${host}: ${r.stderr}`);
}

/** Runs the cache benchmarks and appends their rows. */
export async function run(rows: CacheRow[]): Promise<void> {
  await using world = await World.start();
  world.oned.addDatastore(datastoreXml({ id: 1, dsMad: world.dsName, tmMad: world.tmName }));
  world.oned.addDatastore(
    datastoreXml({ id: 100, type: 1, tmMad: world.tmName, template: { REPLICA_HOST: "replica" } }),
  );
  for (const [id, name] of [[1, "replica"], [2, "hv1"], [3, "hv2"]] as const) {
    world.oned.addHost(hostXml({ id, name }));
  }
  const images = ["a", "b", "c", "d"].map((n) => `${IMG_DIR}/${n.repeat(32)}`);
  for (const image of images) {
    await bash(
      world,
      "frontend",
      `mkdir -p ${IMG_DIR} && truncate -s ${IMAGE_MB}M ${image} && ` +
        `dd if=/dev/urandom of=${image} bs=1M count=${image === images[3] ? EDGE_DATA_MB : DATA_MB} seek=${
          Math.floor(IMAGE_MB / 4)
        } conv=notrunc status=none`,
    );
  }
  let vm = 0;
  const deploy = async (image: string, host: string): Promise<void> => {
    const id = vm++;
    world.oned.addVm(vmXml({
      id,
      disks: [
        imageDisk({ DISK_ID: 0, SOURCE: image, FORMAT: "raw", SIZE: IMAGE_MB, ORIGINAL_SIZE: IMAGE_MB }),
      ],
      history: [{ hostname: host, hid: host === "hv1" ? 2 : 3, dsId: 100 }],
    }));
    const r = await world.tm("clone", [`frontend:${image}`, `${host}:${DS_LOC}/100/${id}/disk.0`, id, 1]);
    if (r.code !== 0) throw new Error(`clone failed: ${r.stderr}`);
  };

  // Upstream's cold path: the front-end reads the whole image once for its MD5 sidecar (first use),
  // sends the image to the replica, then the replica sends it to the host.
  const upstreamCold = await timed(async () => {
    await bash(
      world,
      "frontend",
      `md5sum ${images[0]} >/dev/null && tar -C ${IMG_DIR} -cSf - ${
        images[0].split("/").pop()
      } | ssh replica 'mkdir -p /var/tmp/one/up && tar -C /var/tmp/one/up -xSf -'`,
    );
    await bash(
      world,
      "replica",
      `tar -C /var/tmp/one/up -cSf - . | ssh hv1 'mkdir -p /var/tmp/one/up && tar -C /var/tmp/one/up -xSf -'`,
    );
  });
  const cold = await timed(() => deploy(images[0], "hv1"));
  rows.push({
    name: `cold deploy of a ${IMAGE_MB} MiB image (${DATA_MB} MiB data) through the replica (cut-through)`,
    baseline: "upstream: MD5 of the image on first use, front-end → replica, then replica → host, unverified",
    seconds: cold,
    baselineSeconds: upstreamCold,
    note: "onestor's time includes oned lookups, checksums on every hop, the cache records and SIZE growth",
  });

  // Warm: the image is cached; upstream copies replica → host only.
  const upstreamWarm = await timed(() =>
    bash(
      world,
      "replica",
      `tar -C /var/tmp/one/up -cSf - . | ssh hv2 'mkdir -p /var/tmp/one/up && tar -C /var/tmp/one/up -xSf -'`,
    )
  );
  const warm = await timed(() => deploy(images[0], "hv2"));
  rows.push({
    name: "warm deploy (cache hit) of the same image",
    baseline: "upstream: replica → host, unverified",
    seconds: warm,
    baselineSeconds: upstreamWarm,
    note: "no image byte leaves the front-end; the entry is re-validated and pinned",
  });

  // N parallel deploys of one uncached image vs N direct copies from the front-end (no cache).
  const direct = await timed(async () => {
    await Promise.all(
      Array.from({ length: PARALLEL }, (_, i) =>
        bash(
          world,
          "frontend",
          `tar -C ${IMG_DIR} -cSf - ${images[2].split("/").pop()} | ` +
            `ssh ${i % 2 ? "hv2" : "hv1"} 'mkdir -p /var/tmp/one/d${i} && tar -C /var/tmp/one/d${i} -xSf -'`,
        )),
    );
  });
  const parallel = await timed(async () => {
    await Promise.all(Array.from({ length: PARALLEL }, (_, i) => deploy(images[1], i % 2 ? "hv2" : "hv1")));
  });
  const log = await world.lab.exec("replica", ["cat", `${IMG_DIR}/.onestor-cache.log`]);
  const fills =
    log.stdout.split("\n").filter((l) =>
      l.includes('"fill-start"') && l.includes(images[1].split("/").pop()!)
    )
      .length;
  rows.push({
    name: `${PARALLEL} parallel deploys of one uncached image (front-end sent it ${fills}× vs ${PARALLEL}×)`,
    baseline: `${PARALLEL} parallel direct front-end → host copies`,
    seconds: parallel,
    baselineSeconds: direct,
    note: `front-end egress ratio ${
      (fills / PARALLEL).toFixed(2)
    }; all on one machine, so CPU, not the link, bounds both`,
  });

  // Slow links, as at an edge site: the front-end → replica hop and the replica → host hop throttled.
  const slow = await throttleOptions(world.lab.dir);
  const edge = slow(EDGE_MIBPS << 20);
  const cluster = slow(CLUSTER_MIBPS << 20);
  await world.writeFile(
    "frontend",
    "/var/lib/one/remotes/etc/tm/ssh/sshrc",
    `REPLICA_SSH_FE_OPTS="${edge}"\nREPLICA_SSH_OPTS="${cluster}"\n`,
  );
  const name = images[3].split("/").pop();
  const upstreamEdge = await timed(async () => {
    await bash(
      world,
      "frontend",
      `md5sum ${
        images[3]
      } >/dev/null && tar -C ${IMG_DIR} -cSf - ${name} | ssh ${edge} replica 'mkdir -p /var/tmp/one/edge && tar -C /var/tmp/one/edge -xSf -'`,
    );
    await bash(
      world,
      "replica",
      `tar -C /var/tmp/one/edge -cSf - . | ssh ${cluster} hv1 'mkdir -p /var/tmp/one/edge && tar -C /var/tmp/one/edge -xSf -'`,
    );
  });
  const edgeCold = await timed(() => deploy(images[3], "hv1"));
  rows.push({
    name:
      `cold deploy over slow links (${EDGE_MIBPS} MiB/s to the replica, ${CLUSTER_MIBPS} MiB/s to the host; ` +
      `${EDGE_DATA_MB} MiB data)`,
    baseline: "upstream: MD5 on first use, then the two hops one after the other",
    seconds: edgeCold,
    baselineSeconds: upstreamEdge,
    note:
      "cut-through: the host receives the bytes while the replica caches them, so a miss costs about one hop",
  });
  const upstreamEdgeWarm = await timed(() =>
    bash(
      world,
      "replica",
      `tar -C /var/tmp/one/edge -cSf - . | ssh ${cluster} hv2 'mkdir -p /var/tmp/one/edge2 && tar -C /var/tmp/one/edge2 -xSf -'`,
    )
  );
  const edgeWarm = await timed(() => deploy(images[3], "hv2"));
  rows.push({
    name: "warm deploy over the slow cluster link",
    baseline: "upstream: replica → host",
    seconds: edgeWarm,
    baselineSeconds: upstreamEdgeWarm,
    note: "the front-end's slow link is not used at all",
  });
}
