/**
 * Full disks and cut-off hosts, on real hosts.
 *
 * Full disks: small file systems (tmpfs, mounted in the host's own mount namespace) under a VM
 * folder of a hypervisor, under the front-end's image datastore and under the replica's cache
 * folder. A copy that does not fit fails with one line naming the host and the path, the
 * temporary files are gone and what was there before is intact; the replica cache evicts an unused
 * entry to make room, and copies straight from the front-end when the image cannot fit at all.
 *
 * Cut-off hosts: in the middle of a copy, a host's address becomes unreachable (its link drops:
 * packets of established connections vanish, new connections get "No route to host"), with and
 * without its sshd killed. Every action returns within its timeout with a line naming the host;
 * nothing is deleted on the other side; once the host is back the retry succeeds. A cut-off
 * replica makes deployments go straight from the front-end.
 */

import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { failureInfo, ok, World } from "../support/world.ts";
import { datastoreXml, DS_LOC, hostXml, imageDisk, vmXml } from "../support/fixtures.ts";
import { MAIN } from "../support/run_onestor.ts";
import { throttleOptions } from "../support/throttle.ts";
import { waitFor } from "../support/processes.ts";

const DS = "/var/lib/one/datastores";
const FE = "frontend";
const ONESTOR_CONF = "/var/lib/one/remotes/etc/onestor/onestor.conf";
const SSHRC = "/var/lib/one/remotes/etc/tm/ssh/sshrc";
const TRANSFER_TIMEOUT = 8;
const CONTROL_TIMEOUT = 5;

labTest(
  "outages: full disks on the hypervisor, the front-end and the replica; hosts cut off mid-copy",
  async (t) => {
    await using world = await World.start();
    world.oned.addDatastore(datastoreXml({ id: 1 }));
    world.oned.addDatastore(datastoreXml({ id: 2 }));
    world.oned.addDatastore(datastoreXml({ id: 100 }));
    world.oned.addDatastore(datastoreXml({ id: 101, template: { REPLICA_HOST: "replica" } }));
    world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
    world.oned.addHost(hostXml({ id: 2, name: "hv2" }));
    for (const host of ["frontend", "replica", "hv1", "hv2"]) {
      await world.sh(host, `mkdir -p ${DS}/1 ${DS}/2 ${DS}/100 ${DS}/101 && chown -R oneadmin: ${DS}`);
    }
    const slow = await throttleOptions(world.lab.dir);
    const config = (onestor = "", sshrc = "") =>
      Promise.all([
        world.writeFile(
          FE,
          ONESTOR_CONF,
          `SSH_TRANSFER_TIMEOUT=${TRANSFER_TIMEOUT}\nSSH_CONTROL_TIMEOUT=${CONTROL_TIMEOUT}\nSSH_CONNECT_TIMEOUT=3\n` +
            `REPLICA_LEASE_SECONDS=5\n${onestor}\n`,
        ),
        world.writeFile(FE, SSHRC, `${sshrc}\n`),
      ]);
    await config();
    const hash = (n: number) => n.toString(16).padStart(32, "0");
    const sum = async (host: string, path: string) =>
      (await world.sh(host, `if [ -f ${path} ]; then b2sum <${path} | cut -c1-32; else echo absent; fi`))
        .trim();
    const image = async (n: number, mib: number) => {
      const path = `${DS}/1/${hash(n)}`;
      await world.sh(FE, `head -c ${mib}M /dev/urandom >${path}`, { user: "oneadmin" });
      return { path, sum: await sum(FE, path) };
    };
    const tmpfs = (host: string, dir: string, size: string) =>
      world.sh(
        host,
        `mkdir -p ${dir} && mount -t tmpfs -o size=${size},uid=9869,gid=9869,mode=0755 tmpfs ${dir}`,
      );
    const temporaries = async (host: string, dir: string) =>
      (await world.sh(
        host,
        `find ${dir} \\( -name '.onestor-xfer-*' -o -name '.onestor-fill-*' -o -name '*onestor-lease*' -o -name '*onestor-tmp*' -o -name '*onestor-part*' \\) -print 2>/dev/null || true`,
      )).trim();
    let nextVm = 100;
    const deployVm = (path: string, host: string, dsId: number, mib: number) => {
      const id = nextVm++;
      world.oned.addVm(vmXml({
        id,
        disks: [imageDisk({ DISK_ID: 0, SOURCE: path, FORMAT: "raw", SIZE: mib, ORIGINAL_SIZE: mib })],
        history: [{ hostname: host, hid: host === "hv1" ? 1 : 2, dsId }],
      }));
      return id;
    };
    const clone = (src: string, host: string, dsId: number, id: number) =>
      world.tm("clone", [
        `${FE}:${src.replace(DS, DS_LOC)}`,
        `${host}:${DS_LOC}/${dsId}/${id}/disk.0`,
        id,
        1,
      ]);
    const onestor = (args: string[]) =>
      world.lab.exec(FE, [Deno.execPath(), "run", "-A", "--no-check", "--quiet", MAIN, ...args], {
        user: "oneadmin",
        env: world.env(),
      });
    const counts = { fullDisks: 0, cutOffs: 0 };

    const big = await image(1, 24);

    await t.step(
      "a full hypervisor: one line naming host and path, no temporary file, the old disk intact",
      async () => {
        const id = deployVm(big.path, "hv1", 100, 24);
        const dir = `${DS}/100/${id}`;
        await tmpfs("hv1", dir, "12m");
        await world.sh("hv1", `echo old >${dir}/disk.0`, { user: "oneadmin" });
        const r = await clone(big.path, "hv1", 100, id);
        counts.fullDisks++;
        assert.notEqual(r.code, 0);
        const info = failureInfo(r.stderr);
        assert.equal(info.length, 1, JSON.stringify(info));
        assert.match(
          info[0],
          new RegExp(`hv1:${DS_LOC}/100/${id}/disk\\.0: no space left on hv1:${DS}/100/${id} \\(`),
        );
        assert.equal(await temporaries("hv1", dir), "");
        assert.equal(await world.sh("hv1", `cat ${dir}/disk.0`), "old\n");
        await world.sh("hv1", `umount ${dir}`);
      },
    );

    await t.step("a full image datastore on the front-end: cpds fails cleanly", async () => {
      await tmpfs(FE, `${DS}/2`, "8m");
      const id = deployVm(big.path, "hv1", 100, 24);
      const dir = `${DS}/100/${id}`;
      await world.sh("hv1", `mkdir -p ${dir} && head -c 16M /dev/urandom >${dir}/disk.0`, {
        user: "oneadmin",
      });
      const target = `${DS}/2/${hash(90)}`;
      const r = await world.tm("cpds", [
        `hv1:${DS_LOC}/100/${id}/disk.0`,
        target.replace(DS, DS_LOC),
        -1,
        id,
        2,
      ]);
      counts.fullDisks++;
      assert.notEqual(r.code, 0);
      const info = failureInfo(r.stderr);
      assert.equal(info.length, 1, JSON.stringify(info));
      assert.match(info[0], /to front-end:\S+: no space left on front-end:\/var\/lib\/one\/datastores\/2 \(/);
      assert.equal(await sum(FE, target), "absent");
      assert.equal(await temporaries(FE, `${DS}/2`), "");
      await world.sh(FE, `umount ${DS}/2`);
    });

    await t.step(
      "a full replica: an unused entry is evicted to make room; an image that cannot fit bypasses",
      async () => {
        await tmpfs("replica", `${DS}/1`, "40m");
        const old = await image(2, 16);
        ok(await onestor(["cache", "warm", "--replica", "replica", old.path]), "warm");
        const fits = await image(3, 24);
        const a = deployVm(fits.path, "hv2", 101, 24);
        const r1 = await clone(fits.path, "hv2", 101, a);
        ok(r1, "clone with eviction");
        counts.fullDisks++;
        assert.match(r1.stderr, new RegExp(`Evicted ${hash(2)}`));
        assert.equal(await sum("hv2", `${DS}/101/${a}/disk.0`), fits.sum);
        assert.equal(await sum("replica", fits.path), fits.sum, "cached");
        const huge = await image(4, 48);
        const b = deployVm(huge.path, "hv2", 101, 48);
        const r2 = await clone(huge.path, "hv2", 101, b);
        ok(r2, "clone that bypasses the cache");
        counts.fullDisks++;
        assert.match(r2.stderr, /No room in the cache of replica/);
        assert.equal(await sum("hv2", `${DS}/101/${b}/disk.0`), huge.sum);
        assert.equal(await sum("replica", huge.path), "absent");
        assert.equal(await temporaries("replica", `${DS}/1`), "");
        await world.sh("replica", `umount ${DS}/1`);
      },
    );

    /** Runs `action`, cuts `host` off once `started()` says the copy runs, checks the outcome. */
    const cutDuring = async (
      host: string,
      killSshd: boolean,
      action: () => Promise<{ code: number; stderr: string }>,
      started: () => Promise<boolean>,
    ) => {
      const t0 = performance.now();
      const running = action();
      let finished = false;
      running.then(() => finished = true);
      await waitFor(`the copy to ${host} to start`, async () => (finished || await started()) ? true : null);
      assert.ok(!finished, "the action was still running when the host was cut off");
      await world.lab.cutOff(host, { killSshd });
      counts.cutOffs++;
      try {
        const r = await running;
        const seconds = (performance.now() - t0) / 1000;
        assert.notEqual(r.code, 0, "the action fails");
        assert.ok(
          seconds < TRANSFER_TIMEOUT + 2 * CONTROL_TIMEOUT + 20,
          `returned within its timeout (${seconds} s)`,
        );
        const info = failureInfo(r.stderr);
        assert.equal(info.length, 1, JSON.stringify(info));
        assert.match(info[0], new RegExp(`\\b${host}\\b`), "the line names the host");
        return { info: info[0], seconds };
      } finally {
        await world.lab.reconnect(host);
      }
    };

    const growing = (host: string, dir: string) => async () =>
      (await world.lab.sh(host, `ls -A ${dir} 2>/dev/null | grep -q '^.onestor-xfer-'`)).code === 0;

    for (const killSshd of [false, true]) {
      await t.step(
        `clone to a hypervisor whose link drops mid-copy${
          killSshd ? " and whose sshd dies" : ""
        }: fails in time, retry works`,
        async () => {
          // A 4 MiB/s front-end link: 24 MiB take 6 s, long enough to be cut in the middle.
          await config(`SSH_OPTS="${slow(4 * 1048576)}"`);
          const id = deployVm(big.path, "hv2", 100, 24);
          const dir = `${DS}/100/${id}`;
          const { info, seconds } = await cutDuring(
            "hv2",
            killSshd,
            () => clone(big.path, "hv2", 100, id),
            growing("hv2", dir),
          );
          console.log(
            `cut-off hv2 (sshd ${killSshd ? "killed" : "alive"}): ${seconds.toFixed(1)} s, "${info}"`,
          );
          await config();
          assert.equal(await sum("hv2", `${dir}/disk.0`), "absent", "no half disk");
          ok(await clone(big.path, "hv2", 100, id), "retry once the host is back");
          assert.equal(await sum("hv2", `${dir}/disk.0`), big.sum);
        },
      );
    }

    await t.step(
      "mv to a hypervisor cut off mid-copy: the source is never deleted, the retry moves it",
      async () => {
        const id = deployVm(big.path, "hv1", 100, 24);
        const dir = `${DS}/100/${id}`;
        await world.sh("hv1", `mkdir -p ${dir} && head -c 24M /dev/urandom >${dir}/disk.0`, {
          user: "oneadmin",
        });
        const before = await sum("hv1", `${dir}/disk.0`);
        // The copy runs hv1 -> hv2 directly: slow that hop down with hv1's own ssh configuration.
        const sshConfig = "/var/lib/one/.ssh/config";
        await world.sh(
          "hv1",
          `cp -p ${sshConfig} ${sshConfig}.orig && { printf 'Host hv2\\n  ProxyCommand perl %s %%h %%p 8388608\\n' ` +
            `${world.lab.dir}/throttle.pl; cat ${sshConfig}.orig; } >${sshConfig}`,
        );
        try {
          await cutDuring(
            "hv2",
            true,
            () => world.tm("mv", [`hv1:${DS_LOC}/100/${id}`, `hv2:${DS_LOC}/100/${id}`, id, 100]),
            growing("hv2", `${DS}/100`),
          );
          assert.equal(await sum("hv1", `${dir}/disk.0`), before, "the source is intact");
          ok(await world.tm("mv", [`hv1:${DS_LOC}/100/${id}`, `hv2:${DS_LOC}/100/${id}`, id, 100]), "retry");
          assert.equal(await sum("hv2", `${dir}/disk.0`), before);
          assert.equal((await world.lab.sh("hv1", `test -e ${dir}`)).code, 1);
        } finally {
          await world.sh("hv1", `mv ${sshConfig}.orig ${sshConfig}`);
        }
      },
    );

    await t.step(
      "the replica cut off mid-fill: the deployment goes straight from the front-end",
      async () => {
        await config("", `REPLICA_SSH_FE_OPTS="${slow(2 * 1048576)}"`);
        const img = await image(5, 24);
        const id = deployVm(img.path, "hv1", 101, 24);
        const t0 = performance.now();
        const running = clone(img.path, "hv1", 101, id);
        await waitFor(
          "the fill to start",
          async () =>
            (await world.lab.sh("replica", `ls -A ${DS}/1 | grep -q '^.onestor-fill-'`)).code === 0
              ? true
              : null,
        );
        await world.lab.cutOff("replica", { killSshd: true });
        counts.cutOffs++;
        try {
          const r = await running;
          ok(r, "deployment with the replica cut off");
          assert.match(r.stderr, /Replica replica cannot serve .*copying straight from the front-end/);
          assert.ok((performance.now() - t0) / 1000 < 2 * TRANSFER_TIMEOUT + 30);
          assert.equal(await sum("hv1", `${DS}/101/${id}/disk.0`), img.sum);
        } finally {
          await world.lab.reconnect("replica");
          await config();
        }
      },
    );

    console.log(
      `outages: ${counts.fullDisks} full-disk copies and ${counts.cutOffs} hosts cut off mid-operation`,
    );
  },
);
