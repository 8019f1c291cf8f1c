/**
 * Load: 32 concurrent deployments of 4 images over both hypervisors through the replica cache,
 * issued by two front-ends (16 each, the same image datastore content, as HA front-ends sharing
 * it), while 8 cold migrations move other VMs between the hypervisors and an eviction removes an
 * unused cached image. Afterwards every disk equals its image, each image crossed the front-end
 * link once, the cache index is consistent (`onestor cache verify`), and no lease, fill folder or
 * temporary file is left on any host.
 */

import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import { datastoreXml, DS_LOC, hostXml, imageDisk, vmXml } from "../support/fixtures.ts";
import { MAIN } from "../support/run_onestor.ts";

const DS = "/var/lib/one/datastores";
const HOSTS = ["frontend", "frontend2", "replica", "hv1", "hv2"];
const ONESTOR_CONF = "/var/lib/one/remotes/etc/onestor/onestor.conf";

labTest("load: 32 deployments from two front-ends, 8 migrations and an eviction at once", async () => {
  const started = performance.now();
  await using world = await World.start({ hosts: HOSTS });
  await world.installOn("frontend2");
  world.oned.addDatastore(datastoreXml({ id: 1 }));
  world.oned.addDatastore(datastoreXml({ id: 100 }));
  world.oned.addDatastore(datastoreXml({ id: 101, template: { REPLICA_HOST: "replica" } }));
  world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
  world.oned.addHost(hostXml({ id: 2, name: "hv2" }));
  for (const host of HOSTS) {
    await world.sh(host, `mkdir -p ${DS}/1 ${DS}/100 ${DS}/101 && chown -R oneadmin: ${DS}`);
  }
  for (const fe of ["frontend", "frontend2"]) {
    await world.writeFile(fe, ONESTOR_CONF, "");
  }

  const hash = (n: number) => n.toString(16).padStart(32, "0");
  const sum = async (host: string, path: string) =>
    (await world.sh(host, `b2sum <${path} | cut -c1-32`)).trim();
  // Five images, the same bytes and mtime on both front-ends (a shared image datastore).
  const images = [1, 2, 3, 4, 5].map((n) => `${DS}/1/${hash(n)}`);
  for (const image of images) {
    await world.sh("frontend", `head -c 8M /dev/urandom >${image} && truncate -s 24M ${image}`, {
      user: "oneadmin",
    });
    const copy = await new Deno.Command("cp", {
      args: ["-p", world.lab.path("frontend", image), world.lab.path("frontend2", image)],
    }).output();
    assert.ok(copy.success);
  }
  await world.sh("frontend2", `chown -R oneadmin: ${DS}`);
  const sums = await Promise.all(images.map((i) => sum("frontend", i)));
  const onestor = (fe: string, args: string[]) =>
    world.lab.exec(fe, [Deno.execPath(), "run", "-A", "--no-check", "--quiet", MAIN, ...args], {
      user: "oneadmin",
      env: world.env(),
      timeoutMs: 600_000,
    });
  // The fifth image is cached but used by nobody: the eviction's target.
  ok(await onestor("frontend", ["cache", "warm", "--replica", "replica", images[4]]), "warm image 5");

  // Eight VMs already on hv1 (system datastore 100), to be migrated to hv2.
  const migrating = Array.from({ length: 8 }, (_, i) => 3000 + i);
  const migratedSums: string[] = [];
  for (const id of migrating) {
    world.oned.addVm(vmXml({
      id,
      disks: [imageDisk({ DISK_ID: 0, SOURCE: images[0], FORMAT: "raw", SIZE: 16, ORIGINAL_SIZE: 16 })],
      history: [{ hostname: "hv2", hid: 2, dsId: 100 }],
    }));
    await world.sh("hv1", `mkdir -p ${DS}/100/${id} && head -c 12M /dev/urandom >${DS}/100/${id}/disk.0`, {
      user: "oneadmin",
    });
    migratedSums.push(await sum("hv1", `${DS}/100/${id}/disk.0`));
  }

  const deploys = Array.from({ length: 32 }, (_, i) => ({
    id: 2000 + i,
    image: i % 4,
    host: i % 2 === 0 ? "hv1" : "hv2",
    fe: i % 4 < 2 ? "frontend" : "frontend2",
  }));
  for (const d of deploys) {
    world.oned.addVm(vmXml({
      id: d.id,
      disks: [imageDisk({ DISK_ID: 0, SOURCE: images[d.image], FORMAT: "raw", SIZE: 24, ORIGINAL_SIZE: 24 })],
      history: [{ hostname: d.host, hid: d.host === "hv1" ? 1 : 2, dsId: 101 }],
    }));
  }

  const t0 = performance.now();
  const [deployed, migrated, evicted] = await Promise.all([
    Promise.all(deploys.map((d) =>
      world.tm("clone", [
        `${d.fe}:${images[d.image].replace(DS, DS_LOC)}`,
        `${d.host}:${DS_LOC}/101/${d.id}/disk.0`,
        d.id,
        1,
      ], { frontend: d.fe, timeoutMs: 600_000 })
    )),
    Promise.all(
      migrating.map((id) =>
        world.tm("mv", [`hv1:${DS_LOC}/100/${id}`, `hv2:${DS_LOC}/100/${id}`, id, 100], {
          timeoutMs: 600_000,
        })
      ),
    ),
    onestor("frontend2", ["cache", "evict", "--replica", "replica", images[4]]),
  ]);
  const seconds = (performance.now() - t0) / 1000;
  deployed.forEach((r, i) => ok(r, `deploy ${deploys[i].id}`));
  migrated.forEach((r, i) => ok(r, `migration of ${migrating[i]}`));
  ok(evicted, "eviction");

  for (const d of deploys) {
    assert.equal(await sum(d.host, `${DS}/101/${d.id}/disk.0`), sums[d.image], `disk of VM ${d.id}`);
  }
  for (const [k, id] of migrating.entries()) {
    assert.equal(await sum("hv2", `${DS}/100/${id}/disk.0`), migratedSums[k], `migrated VM ${id}`);
    assert.equal((await world.lab.sh("hv1", `test -e ${DS}/100/${id}`)).code, 1, `VM ${id} left hv1`);
  }
  // One front-end -> replica transfer per image, whichever front-end made it.
  const log = (await world.sh("replica", `cat ${DS}/1/.onestor-cache.log`)).trim().split("\n").map((l) =>
    JSON.parse(l) as { event: string; image?: string; [k: string]: unknown }
  );
  const fills = images.slice(0, 4).map((image) => {
    const name = image.slice(image.lastIndexOf("/") + 1);
    return log.filter((e) => e.event === "fill-start" && e.image === name).length;
  });
  if (fills.some((f) => f !== 1)) console.log(log.map((e) => JSON.stringify(e)).join("\n"));
  assert.deepEqual(fills, [1, 1, 1, 1], "one fill per image");
  for (const [n, image] of images.slice(0, 4).entries()) {
    assert.equal(await sum("replica", image), sums[n], `cache entry of image ${n + 1}`);
  }
  assert.equal((await world.lab.sh("replica", `test -e ${images[4]}`)).code, 1, "image 5 evicted");
  ok(await onestor("frontend", ["cache", "verify", "--replica", "replica"]), "cache verify");
  for (const host of HOSTS) {
    const left = await world.sh(
      host,
      `find ${DS} \\( -name '.onestor-xfer-*' -o -name '.onestor-fill-*' -o -name '*onestor-lease*' -o -name '*.tmp.*' -o -name '*.onestor-tmp' -o -name '.onestor-mv-*' \\) -print`,
    );
    assert.equal(left.trim(), "", `nothing temporary left on ${host}`);
  }
  console.log(
    `load: 32 deployments of 4 images (16 per front-end) over hv1 and hv2, 8 cold migrations and 1 eviction ` +
      `at once in ${
        seconds.toFixed(1)
      } s; 1 fill per image, every disk equal to its image, cache verified; ` +
      `${Math.round((performance.now() - started) / 1000)} s with setup`,
  );
});
