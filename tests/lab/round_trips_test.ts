/**
 * SSH round trips of the TM actions, counted where they land: each lab host's sshd logs one
 * `Starting session` line per command it runs (multiplexed or not), so a replica's own hop to a
 * hypervisor counts on the hypervisor. A count, not a timing: it fails when an action needs more
 * SSH commands than its bound.
 *
 * Bounds: a warm deploy through the replica cache at most 3 commands in all, a cold one at most 4;
 * delete, mkswap and mkimage at most 1 per host.
 */

import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import { datastoreXml, DS_LOC, hostXml, imageDisk, vmXml } from "../support/fixtures.ts";

const DS = "/var/lib/one/datastores";
const IMG = `${DS}/1/${"f".repeat(32)}`;
const HOSTS = ["frontend", "replica", "hv1", "hv2"];

labTest("SSH round trips: warm deploy ≤ 3, cold ≤ 4, delete/mkswap/mkimage ≤ 1 per host", async (t) => {
  await using world = await World.start({ accounting: true });
  world.oned.addDatastore(datastoreXml({ id: 1 }));
  world.oned.addDatastore(datastoreXml({ id: 100, template: { REPLICA_HOST: "replica" } }));
  world.oned.addDatastore(datastoreXml({ id: 101 }));
  world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
  world.oned.addHost(hostXml({ id: 2, name: "hv2" }));
  for (const host of HOSTS) await world.sh(host, `mkdir -p ${DS}/1 && chown -R oneadmin: ${DS}`);
  await world.sh(
    "frontend",
    `truncate -s 64M ${IMG} && head -c 8M /dev/urandom | dd of=${IMG} bs=1M seek=4 conv=notrunc status=none && ` +
      `chown oneadmin: ${IMG}`,
  );

  /** SSH commands each host served while `fn` ran. */
  const count = async (fn: () => Promise<void>): Promise<Record<string, number>> => {
    const before = await Promise.all(HOSTS.map((h) => world.lab.sessions(h)));
    await fn();
    const after = await Promise.all(HOSTS.map((h) => world.lab.sessions(h)));
    return Object.fromEntries(HOSTS.map((h, i) => [h, after[i] - before[i]]));
  };
  const total = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
  const vm = (id: number, host: string, sysDs: number, grow = false) =>
    world.oned.addVm(vmXml({
      id,
      disks: [imageDisk({ DISK_ID: 0, SOURCE: IMG, FORMAT: "raw", SIZE: grow ? 96 : 64, ORIGINAL_SIZE: 64 })],
      history: [{ hostname: host, hid: host === "hv1" ? 1 : 2, dsId: sysDs }],
    }));
  const clone = (id: number, host: string, sysDs: number) =>
    world.tm("clone", [`frontend:${IMG}`, `${host}:${DS_LOC}/${sysDs}/${id}/disk.0`, id, 1]);

  await t.step("cold deploy through the replica (miss, cut-through, growth): at most 4", async () => {
    vm(1, "hv1", 100, true);
    let out = "";
    const c = await count(async () => {
      const r = await clone(1, "hv1", 100);
      ok(r, "cold clone");
      out = r.stderr;
    });
    assert.match(out, /forwarded to hv1/, out);
    assert.ok(total(c) <= 4, `cold deploy: ${JSON.stringify(c)}`);
    // The disk arrived, grown to SIZE, with its marker.
    assert.equal((await world.sh("hv1", `stat -c %s ${DS}/100/1/disk.0`)).trim(), String(96 << 20));
    assert.equal(await world.sh("hv1", `cat ${DS}/100/.monitor`), `${world.tmName}\n`);
  });

  await t.step("warm deploy (cache hit): at most 3", async () => {
    vm(2, "hv2", 100);
    let out = "";
    const c = await count(async () => {
      const r = await clone(2, "hv2", 100);
      ok(r, "warm clone");
      out = r.stderr;
    });
    assert.match(out, /Cache hit/);
    assert.ok(total(c) <= 3, `warm deploy: ${JSON.stringify(c)}`);
    assert.equal(c.frontend, 0, "no image byte or command to the front-end");
  });

  await t.step("clone without a replica: 1 command on the host", async () => {
    vm(3, "hv1", 101, true);
    const c = await count(async () => void ok(await clone(3, "hv1", 101), "direct clone"));
    assert.deepEqual(c, { frontend: 0, replica: 0, hv1: 1, hv2: 0 });
  });

  await t.step("mkswap and mkimage: 1 command on the host", async () => {
    const swap = await count(async () =>
      void ok(await world.tm("mkswap", [16, `hv1:${DS_LOC}/100/1/disk.1`, 1, 100]), "mkswap")
    );
    assert.deepEqual(swap, { frontend: 0, replica: 0, hv1: 1, hv2: 0 });
    const image = await count(async () =>
      void ok(await world.tm("mkimage", [16, "raw", `hv1:${DS_LOC}/100/1/disk.2`, 1, 100]), "mkimage")
    );
    assert.deepEqual(image, { frontend: 0, replica: 0, hv1: 1, hv2: 0 });
  });

  await t.step("delete: at most 1 command per host", async () => {
    for (const target of [`hv1:${DS_LOC}/100/1/disk.1`, `hv1:${DS_LOC}/100/1`]) {
      const c = await count(async () => void ok(await world.tm("delete", [target, 1, 100]), "delete"));
      assert.ok(Object.values(c).every((n) => n <= 1), `delete ${target}: ${JSON.stringify(c)}`);
    }
  });
});
