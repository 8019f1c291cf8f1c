/**
 * Recovery-point benchmarks for `deno task bench`, in a lab with real libvirt + QEMU (TCG) on hv1
 * and hv2: a VM with a protected qcow2 disk and a protected raw disk, deployed through the
 * installed clone/ln, whose guest writes known amounts between periods. Each row compares onestor
 * with a baseline measured in the same run:
 *
 * - a qcow2 period (push-mode job of the changed clusters, pulled by the replica) against
 *   upstream's period (disk-only snapshot, rsync of the whole overlay to the replica, blockcommit);
 *   the bytes moved per period are reported against the bytes the guest wrote;
 * - a raw period (a full sparse copy: libvirt has no changed-block tracking for raw disks);
 * - the rebuild of the qcow2 disk on hv2 at recreate time against a plain copy of the same bytes;
 * - the data path of a period: the replica pulling from the hypervisor against the front-end
 *   relaying the same stream (hypervisor → front-end → replica).
 *
 * `BENCH_RECOVERY_DEBUG=1` prints each remote command of a period with its duration.
 *
 * @module
 */

import { World } from "../tests/support/world.ts";
import {
  datastoreXml,
  DS_LOC,
  hostXml,
  imageDisk,
  persistentDisk,
  vmXml,
} from "../tests/support/fixtures.ts";
import { domainXml, LIBVIRT_DIRS, LibvirtLab } from "../tests/support/libvirt_lab.ts";

/** One measured row (see scripts/bench.ts). */
export interface RecoveryRow {
  name: string;
  baseline: string;
  seconds: number;
  baselineSeconds: number;
  note: string;
}

const DISK_MB = Number(Deno.env.get("BENCH_RECOVERY_DISK_MB") ?? 1024);
const IMAGE_DATA_MB = Number(Deno.env.get("BENCH_RECOVERY_IMAGE_DATA_MB") ?? 256);
const WRITE_MB = Number(Deno.env.get("BENCH_RECOVERY_WRITE_MB") ?? 32);
const PERIODS = Number(Deno.env.get("BENCH_RECOVERY_PERIODS") ?? 3);
const VM = 60;
const DOMAIN = `one-${VM}`;
const DS = "/var/lib/one/datastores";
const VM_DIR = `${DS}/100/${VM}`;
const IMG_A = `${DS}/1/${"c".repeat(32)}`;
const IMG_B = `${DS}/1/${"d".repeat(32)}`;
const LAUNCHER = "/var/lib/one/remotes/tm/onestor/.onestor";
const MiB = 1 << 20;

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

async function must(world: World, host: string, script: string, user: "root" | "oneadmin" = "oneadmin") {
  const r = await world.lab.exec(host, ["bash", "-c", `set -o pipefail; ${script}`], {
    user,
    timeoutMs: 600_000,
  });
  if (r.code !== 0) throw new Error(`${host}: ${script}: ${r.stderr}`);
  return r.stdout;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, (performance.now() - t0) / 1000];
}

/** Runs the recovery benchmarks and appends their rows. */
export async function run(rows: RecoveryRow[]): Promise<void> {
  await using world = await World.start({ extraDirs: [...LIBVIRT_DIRS] });
  const hv = await LibvirtLab.start(world.lab, ["hv1", "hv2"]);
  world.oned.addDatastore(datastoreXml({ id: 1 }));
  world.oned.addDatastore(datastoreXml({ id: 100, template: { REPLICA_HOST: "replica" } }));
  for (const [id, name] of [[1, "hv1"], [2, "hv2"], [3, "replica"]] as const) {
    world.oned.addHost(hostXml({ id, name }));
  }
  for (const host of ["frontend", "replica", "hv1", "hv2"]) {
    await must(world, host, `mkdir -p ${DS}/1 ${DS}/100 && chown -R oneadmin: ${DS}`, "root");
  }
  await world.writeFile(
    "frontend",
    "/var/lib/one/remotes/etc/onestor/onestor.conf",
    `REPLICA_RECOVERY_KEEP=1\n${Deno.env.get("BENCH_RECOVERY_DEBUG") ? "LOG_LEVEL=debug\n" : ""}`,
  );
  await must(
    world,
    "frontend",
    `head -c ${IMAGE_DATA_MB * MiB} /dev/urandom > ${IMG_B} && truncate -s ${DISK_MB}M ${IMG_B} && ` +
      `qemu-img convert -q -f raw -O qcow2 ${IMG_B} ${IMG_A}`,
  );
  const disks = [
    imageDisk({
      DISK_ID: 0,
      IMAGE_ID: 1,
      SOURCE: IMG_A.replace(DS, DS_LOC),
      FORMAT: "qcow2",
      SIZE: DISK_MB,
      ORIGINAL_SIZE: DISK_MB,
      RECOVERY_SNAPSHOT_FREQ: 3600,
    }),
    persistentDisk({
      DISK_ID: 1,
      IMAGE_ID: 2,
      SOURCE: IMG_B.replace(DS, DS_LOC),
      FORMAT: "raw",
      SIZE: DISK_MB,
      ORIGINAL_SIZE: DISK_MB,
      RECOVERY_SNAPSHOT_FREQ: 3600,
    }),
  ];
  const vm = (history: { hostname: string; hid: number; dsId: number; action?: number }[], lcmState = 3) =>
    vmXml({ id: VM, deployId: DOMAIN, lcmState, disks, context: null, history });
  world.oned.addVm(vm([{ hostname: "hv1", hid: 1, dsId: 100 }]));
  for (const [action, disk, img] of [["clone", 0, IMG_A], ["ln", 1, IMG_B]] as const) {
    const r = await world.tm(action, [
      `frontend:${img.replace(DS, DS_LOC)}`,
      `hv1:${DS_LOC}/100/${VM}/disk.${disk}`,
      VM,
      1,
    ]);
    if (r.code !== 0) throw new Error(`${action}: ${r.stderr}`);
  }
  await hv.create(
    "hv1",
    domainXml({
      vmId: VM,
      disks: [
        { path: `${VM_DIR}/disk.0`, target: "vda", format: "qcow2" },
        { path: `${VM_DIR}/disk.1`, target: "vdb", format: "raw" },
      ],
    }),
  );
  const period = async () => {
    const r = await world.lab.exec("frontend", [LAUNCHER, "recovery", "run", "--force", "--json"], {
      user: "oneadmin",
      env: world.env(),
      timeoutMs: 600_000,
    });
    if (r.code !== 0) throw new Error(`recovery run: ${r.stderr}`);
    if (Deno.env.get("BENCH_RECOVERY_DEBUG")) console.error(r.stderr);
    return JSON.parse(r.stdout).outcomes as {
      diskId: number;
      seconds: number;
      point: { bytes: number; kind: string };
    }[];
  };

  // onestor: PERIODS periods, WRITE_MB written by the guest before each (fresh regions every time).
  const qcow: { seconds: number; bytes: number }[] = [];
  const raw: { seconds: number; bytes: number }[] = [];
  for (let i = 0; i < PERIODS; i++) {
    for (const target of ["vda", "vdb"]) {
      for (let m = 0; m < WRITE_MB; m += 8) {
        await hv.qemuIo(
          "hv1",
          DOMAIN,
          target,
          `write -P ${0x40 + i} ${(IMAGE_DATA_MB + 64 + i * WRITE_MB + m) * MiB} 8M`,
        );
      }
      await hv.qemuIo("hv1", DOMAIN, target, "flush");
    }
    for (const o of await period()) {
      (o.diskId === 0 ? qcow : raw).push({ seconds: o.seconds, bytes: o.point.bytes });
      if (o.diskId === 0 && o.point.kind !== "incremental") throw new Error(`period ${i}: ${o.point.kind}`);
    }
  }

  // Upstream's period on a copy of the same disk, in its recovery layout on hv1: disk.0 -> base.1
  // over base; each period snapshot-create-as rs_tmp, rsync base.1 to the replica, blockcommit.
  const U = 61;
  const UDIR = `${DS}/100/${U}`;
  await must(
    world,
    "hv1",
    `mkdir -p ${UDIR}/disk.0.snap && cd ${UDIR} && ` +
      `qemu-img convert -q -U -O qcow2 ${VM_DIR}/disk.0 disk.0.snap/base && ` +
      `ln -sf . disk.0.snap/disk.0.snap && qemu-img create -q -f qcow2 -b disk.0.snap/base -F qcow2 disk.0.snap/base.1 && ` +
      `ln -sf disk.0.snap/base.1 disk.0`,
  );
  await must(world, "replica", `mkdir -p ${DS}/replica_snaps/${U}/disk.0.snap`);
  await hv.create(
    "hv1",
    domainXml({ vmId: U, disks: [{ path: `${UDIR}/disk.0.snap/base.1`, target: "vda", format: "qcow2" }] }),
  );
  const upstream: { seconds: number; bytes: number }[] = [];
  for (let i = 0; i < PERIODS; i++) {
    for (let m = 0; m < WRITE_MB; m += 8) {
      await hv.qemuIo(
        "hv1",
        `one-${U}`,
        "vda",
        `write -P ${0x40 + i} ${(IMAGE_DATA_MB + 64 + i * WRITE_MB + m) * MiB} 8M`,
      );
    }
    await hv.qemuIo("hv1", `one-${U}`, "vda", "flush");
    const [out, seconds] = await timed(() =>
      must(
        world,
        "hv1",
        `cd ${UDIR} && V="virsh -q -c qemu:///system" && rm -f disk.0.snap/rs_tmp && touch disk.0.snap/rs_tmp && ` +
          `$V snapshot-create-as one-${U} recovery_snap --diskspec ${UDIR}/disk.0.snap/base.1,file=${UDIR}/disk.0.snap/rs_tmp ` +
          `--disk-only --atomic --no-metadata >/dev/null && ` +
          `rsync --stats -e 'ssh -c aes128-gcm@openssh.com -m umac-64@openssh.com' ${UDIR}/disk.0.snap/base.1 ` +
          `replica:${DS}/replica_snaps/${U}/disk.0.snap/ | sed -n 's/^Total bytes sent: //p' | tr -d , ; ` +
          `$V blockcommit one-${U} ${UDIR}/disk.0.snap/rs_tmp --base ${UDIR}/disk.0.snap/base.1 ` +
          `--top ${UDIR}/disk.0.snap/rs_tmp --active --pivot --wait >/dev/null`,
      )
    );
    upstream.push({ seconds, bytes: Number(out.trim()) || 0 });
  }
  const avg = (xs: { seconds: number; bytes: number }[], key: "seconds" | "bytes") =>
    xs.reduce((n, x) => n + x[key], 0) / xs.length;
  const guest = WRITE_MB * MiB;
  rows.push({
    name: `recovery period of a qcow2 disk (${DISK_MB} MiB, ${IMAGE_DATA_MB} MiB image data), ` +
      `guest wrote ${WRITE_MB} MiB since the last point (mean of ${PERIODS})`,
    baseline: "upstream: snapshot-create-as, rsync of the whole overlay base.1 to the replica, blockcommit",
    seconds: avg(qcow, "seconds"),
    baselineSeconds: avg(upstream, "seconds"),
    note: `bytes moved per period: onestor ${
      qcow.map((p) => mib(p.bytes)).join(", ")
    } for ${mib(guest)} written ` +
      `each time; upstream rsync sent ${
        upstream.map((p) => mib(p.bytes)).join(", ")
      } (its overlay ` +
      `grows by every write since deployment and is read whole on both ends)`,
  });
  rows.push({
    name:
      `recovery period of a raw disk (${DISK_MB} MiB, ${IMAGE_DATA_MB} MiB data + writes), full sparse copy`,
    baseline: "the qcow2 period above (changed clusters only)",
    seconds: avg(raw, "seconds"),
    baselineSeconds: avg(qcow, "seconds"),
    note: `bytes moved per period: ${
      raw.map((p) => mib(p.bytes)).join(", ")
    }: libvirt tracks changed blocks ` +
      `only in qcow2 disks, so a raw disk's point copies its allocated data`,
  });

  // Rebuild at recreate: the qcow2 disk on hv2 from its point, against copying the same bytes.
  await hv.destroy("hv1", DOMAIN);
  world.oned.addVm(
    vm([{ hostname: "hv1", hid: 1, dsId: 100, action: 14 }, { hostname: "hv2", hid: 2, dsId: 100 }], 1),
  );
  const [rebuilt, restoreSeconds] = await timed(() =>
    world.tm("clone", [`frontend:${IMG_A.replace(DS, DS_LOC)}`, `hv2:${DS_LOC}/100/${VM}/disk.0`, VM, 1])
  );
  if (rebuilt.code !== 0) throw new Error(`recreate: ${rebuilt.stderr}`);
  const [, copySeconds] = await timed(() =>
    must(
      world,
      "replica",
      `tar -C ${DS}/replica_snaps/${VM}/disk.0.recovery -cSf - base merged | ` +
        `ssh -c aes128-gcm@openssh.com hv2 'mkdir -p /var/tmp/one/copy && tar -C /var/tmp/one/copy -xSf -'`,
    )
  );
  rows.push({
    name: `rebuild of the qcow2 disk on another host at recreate (tm clone from its recovery point)`,
    baseline: "tar -S \\| ssh of the point's files replica → host, unverified",
    seconds: restoreSeconds,
    baselineSeconds: copySeconds,
    note: "onestor checks every file of the point against its checksum, converts the chain into one disk, " +
      "compares it with the chain, copies it checksummed and adds the bitmap of the point",
  });

  // The data path of a period: the replica pulls vs the front-end relays.
  await must(
    world,
    "hv2",
    `qemu-img create -q -f qcow2 /var/tmp/one/inc 1G && ` +
      `qemu-io -f qcow2 -c 'write -P 0x5a 0 ${WRITE_MB * 4}M' /var/tmp/one/inc >/dev/null`,
  );
  const opts = "-c aes128-gcm@openssh.com -m umac-64@openssh.com";
  const [, pull] = await timed(() =>
    must(world, "replica", `ssh ${opts} hv2 'tar -C /var/tmp/one -cSf - inc' | tar -C /var/tmp/one -xSf -`)
  );
  const [, relay] = await timed(() =>
    must(
      world,
      "frontend",
      `ssh ${opts} hv2 'tar -C /var/tmp/one -cSf - inc' | ssh ${opts} replica 'mkdir -p /var/tmp/one/r && tar -C /var/tmp/one/r -xSf -'`,
    )
  );
  rows.push({
    name: `data path of a period: the replica pulls a ${WRITE_MB * 4} MiB increment from the hypervisor`,
    baseline: "the front-end relays it (hypervisor → front-end → replica)",
    seconds: pull,
    baselineSeconds: relay,
    note: "one hop instead of two, the front-end's link and CPU unused; the hypervisor needs no key " +
      "(it accepts the replica's connection, as for cache copies)",
  });
}

if (import.meta.main) {
  const rows: RecoveryRow[] = [];
  await run(rows);
  for (const r of rows) console.log(JSON.stringify(r));
}
