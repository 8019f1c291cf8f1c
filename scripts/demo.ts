/**
 * `deno task demo`: a short, readable tour of onestor on a local lab cluster. It starts four hosts
 * (frontend, replica, hv1, hv2) and a stand-in for oned's XML-RPC API, installs onestor on the
 * frontend, and then calls the installed actions exactly as oned would: register an image, create
 * a datablock, deploy two VMs through the cluster's replica cache, snapshot, migrate, terminate.
 *
 * @module
 */

import { World } from "../tests/support/world.ts";
import {
  datastoreXml,
  driverActionBase64,
  DS_LOC,
  hostXml,
  imageDisk,
  imageXml,
  vmXml,
  volatileDisk,
} from "../tests/support/fixtures.ts";
import { makeImage } from "../tests/support/disk_checks.ts";

const bold = (s: string) => Deno.stdout.isTerminal() ? `\x1b[1m${s}\x1b[0m` : s;
const dim = (s: string) => Deno.stdout.isTerminal() ? `\x1b[2m${s}\x1b[0m` : s;

function step(title: string): void {
  console.log(`\n${bold(`== ${title}`)}`);
}

async function run(
  label: string,
  fn: () => Promise<{ code: number; stdout: string; stderr: string }>,
): Promise<string> {
  console.log(dim(`$ ${label}`));
  const t0 = performance.now();
  const result = await fn();
  const seconds = ((performance.now() - t0) / 1000).toFixed(2);
  for (const line of result.stderr.split("\n")) {
    if (/^(INFO|WARN):/.test(line)) console.log(dim(`  ${line}`));
  }
  if (result.code !== 0) {
    console.log(`  FAILED (exit ${result.code}): ${result.stderr.trim().split("\n").pop()}`);
    throw new Error(`${label} failed`);
  }
  const out = result.stdout.trim();
  const shown = out.length > 300 ? out.slice(0, 300) + "…" : out;
  console.log(`  ok in ${seconds} s${shown ? `: ${shown.replace(/\n/g, "\n    ")}` : ""}`);
  return out;
}

async function main(): Promise<void> {
  step("Start a lab cluster: four hosts in namespaces, sshd on loopback addresses");
  await using world = await World.start();
  for (const host of world.lab.hosts.values()) console.log(`  ${host.name.padEnd(9)} ${host.address}`);
  console.log(`  onestor installed in frontend:/var/lib/one/remotes/{tm,datastore}/${world.tmName}`);

  // What oned knows: an image datastore, a system datastore with a replica (OneStor), hosts.
  world.oned.addDatastore(datastoreXml({ id: 1, name: "default", dsMad: world.dsName, tmMad: world.tmName }));
  world.oned.addDatastore(
    datastoreXml({
      id: 100,
      name: "system_replica_1",
      type: 1,
      tmMad: world.tmName,
      template: { REPLICA_HOST: "replica" },
    }),
  );
  for (const [id, name] of [[0, "frontend"], [1, "replica"], [2, "hv1"], [3, "hv2"]] as const) {
    world.oned.addHost(hostXml({ id, name }));
  }

  step("Register an image (datastore cp), as `oneimage create --path` makes oned do");
  await world.sh("frontend", "mkdir -p /var/tmp/demo && chown oneadmin: /var/tmp/demo");
  await makeImage(world, "frontend", "/var/tmp/demo/app.qcow2", {
    format: "qcow2",
    sizeMb: 64,
    patterns: [{ byte: 0x5a, offset: 0, length: 4 << 20 }],
  });
  const cpOut = await run(
    `datastore/${world.dsName}/cp 0  <<< base64(IMAGE PATH=/var/tmp/demo/app.qcow2)`,
    () =>
      world.ds(
        "cp",
        0,
        driverActionBase64({
          image: imageXml({ id: 0, path: "/var/tmp/demo/app.qcow2" }),
          datastore: datastoreXml({ id: 1 }),
        }),
      ),
  );
  const source = cpOut.split(" ")[0];
  await run(
    `datastore/${world.dsName}/monitor 1`,
    () => world.ds("monitor", 1, driverActionBase64({ datastore: datastoreXml({ id: 1 }) })),
  );
  await run(
    `datastore/${world.dsName}/mkfs 1  <<< base64(IMAGE SIZE=64 FORMAT=qcow2 FS=ext4)`,
    () =>
      world.ds(
        "mkfs",
        1,
        driverActionBase64({
          image: imageXml({ id: 1, size: 64, format: "qcow2", fs: "ext4" }),
          datastore: datastoreXml({ id: 1 }),
        }),
      ),
  );

  step("Deploy VM 0 on hv1: a cache miss fills the replica while the disk streams on to hv1");
  const disks = (id: number) => [
    imageDisk({ DISK_ID: 0, IMAGE_ID: 0, SOURCE: source, FORMAT: "qcow2", SIZE: 96, ORIGINAL_SIZE: 64 }),
    volatileDisk({ DISK_ID: 1, FS: "ext4", FORMAT: "raw", SIZE: 16 + id }),
  ];
  world.oned.addVm(vmXml({ id: 0, disks: disks(0), history: [{ hostname: "hv1", hid: 2, dsId: 100 }] }));
  world.oned.addVm(vmXml({ id: 1, disks: disks(1), history: [{ hostname: "hv2", hid: 3, dsId: 100 }] }));
  await run(
    `tm/${world.tmName}/clone frontend:${source} hv1:${DS_LOC}/100/0/disk.0 0 1`,
    () => world.tm("clone", [`frontend:${source}`, `hv1:${DS_LOC}/100/0/disk.0`, 0, 1]),
  );
  await run(
    `tm/${world.tmName}/mkimage 16 raw hv1:${DS_LOC}/100/0/disk.1 0 100`,
    () => world.tm("mkimage", [16, "raw", `hv1:${DS_LOC}/100/0/disk.1`, 0, 100]),
  );

  step("Deploy VM 1 on hv2: a cache hit, no image bytes leave the front-end");
  await run(
    `tm/${world.tmName}/clone frontend:${source} hv2:${DS_LOC}/100/1/disk.0 1 1`,
    () => world.tm("clone", [`frontend:${source}`, `hv2:${DS_LOC}/100/1/disk.0`, 1, 1]),
  );
  const cache = await world.lab.exec("frontend", [
    `/var/lib/one/remotes/tm/${world.tmName}/.onestor`,
    "cache",
    "ls",
    "--replica",
    "replica",
  ], { user: "oneadmin", env: world.env() });
  if (cache.code === 0) console.log(cache.stdout.replace(/^/gm, "  "));

  step("Snapshot VM 0's disk, then cold-migrate VM 0 from hv1 to hv2");
  await run(
    `tm/${world.tmName}/snap_create hv1:${DS_LOC}/100/0/disk.0 0 0 1`,
    () => world.tm("snap_create", [`hv1:${DS_LOC}/100/0/disk.0`, 0, 0, 1]),
  );
  world.oned.addVm(vmXml({
    id: 0,
    disks: disks(0),
    history: [{ hostname: "hv1", hid: 2, dsId: 100 }, { hostname: "hv2", hid: 3, dsId: 100 }],
  }));
  await run(
    `tm/${world.tmName}/mv hv1:${DS_LOC}/100/0 hv2:${DS_LOC}/100/0 0 100`,
    () => world.tm("mv", [`hv1:${DS_LOC}/100/0`, `hv2:${DS_LOC}/100/0`, 0, 100]),
  );
  const probe = await world.sh(
    "hv2",
    `sh ${world.lab.path("frontend", `/var/lib/one/remotes/tm/${world.tmName}/monitor_ds`)} ${DS_LOC}/100`,
  ).catch(() => "");
  for (const line of probe.trim().split("\n").filter((l) => l)) {
    const m = line.match(/ID = (\d+), MONITOR = "([^"]*)"/);
    if (m) console.log(`  monitor_ds on hv2: VM ${m[1]}: ${atob(m[2]).replace(/\n/g, " ").trim()}`);
  }

  step("The replica goes down: a deploy still succeeds, straight from the front-end");
  await world.lab.stopSshd("replica");
  world.oned.addVm(vmXml({ id: 2, disks: disks(2), history: [{ hostname: "hv1", hid: 2, dsId: 100 }] }));
  await run(
    `tm/${world.tmName}/clone frontend:${source} hv1:${DS_LOC}/100/2/disk.0 2 1`,
    () => world.tm("clone", [`frontend:${source}`, `hv1:${DS_LOC}/100/2/disk.0`, 2, 1]),
  );
  await world.lab.startSshd("replica");

  step("Terminate the VMs");
  await run(
    `tm/${world.tmName}/delete hv1:${DS_LOC}/100/2 2 100`,
    () => world.tm("delete", [`hv1:${DS_LOC}/100/2`, 2, 100]),
  );
  await run(
    `tm/${world.tmName}/delete hv2:${DS_LOC}/100/0 0 100`,
    () => world.tm("delete", [`hv2:${DS_LOC}/100/0`, 0, 100]),
  );
  await run(
    `tm/${world.tmName}/delete hv2:${DS_LOC}/100/1 1 100`,
    () => world.tm("delete", [`hv2:${DS_LOC}/100/1`, 1, 100]),
  );
  console.log(
    `\n${bold("Done.")} The lab is torn down now; \`deno task lab up\` keeps one running to explore.`,
  );
}

if (import.meta.main) await main();
