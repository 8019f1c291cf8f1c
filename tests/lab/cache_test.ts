/**
 * The replica cache through the installed TM clone action, as oned runs it, on real hosts:
 * hit path (no byte read on the front-end), miss path (cut-through), 16 parallel deployments of
 * one image across hv1 and hv2 (one front-end -> replica transfer), a filler killed with SIGKILL
 * mid-copy (nothing partial served; a waiter takes the expired lease over), eviction under a
 * small REPLICA_MAX_SIZE_MB with a pinned entry kept, corrupted entries detected and filled
 * again, the replica's sshd stopped (straight from the front-end), invalidation (now and through
 * the journal) and `onestor cache`.
 *
 * Transfers front-end -> replica are counted from the replica's cache log: the replica-side end
 * of every fill stream appends a `fill-start` line when bytes start arriving. Slow links are made
 * with a throttling TCP proxy (perl) as the ssh ProxyCommand of REPLICA_SSH_FE_OPTS or
 * REPLICA_SSH_OPTS: a real slow hop, not a hook in onestor.
 */

import assert from "node:assert/strict";
import { THROTTLE_PL } from "../support/throttle.ts";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import {
  datastoreXml,
  driverActionBase64,
  DS_LOC,
  hostXml,
  imageDisk,
  imageXml,
  vmXml,
} from "../support/fixtures.ts";
import { MAIN } from "../support/run_onestor.ts";
import { processesWith, waitFor } from "../support/processes.ts";

const MiB = 1 << 20;
const DS = "/var/lib/one/datastores";
const IMG_DIR = `${DS}/1`;
const ONESTOR_CONF = "/var/lib/one/remotes/etc/onestor/onestor.conf";
const SSHRC = "/var/lib/one/remotes/etc/tm/ssh/sshrc";

/**
 * Relays a TCP connection, sending at most `rate` bytes per second towards the server. Idle time
 * earns no credit: a shared ssh master connection stays slow however long it waited.
 */

const hash = (n: number) => n.toString(16).padStart(32, "0");

labTest(
  "replica cache: hit, miss, single flight, dead filler, eviction, corruption, fallback, invalidation, admin",
  async (t) => {
    await using world = await World.start();
    const throttle = `${world.lab.dir}/throttle.pl`;
    await Deno.writeTextFile(throttle, THROTTLE_PL);
    const slow = (bytesPerSecond: number) => `-o 'ProxyCommand=perl ${throttle} %h %p ${bytesPerSecond}'`;

    world.oned.addDatastore(datastoreXml({ id: 1 }));
    world.oned.addDatastore(datastoreXml({ id: 100, template: { REPLICA_HOST: "replica" } }));
    world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
    world.oned.addHost(hostXml({ id: 2, name: "hv2" }));
    for (const host of ["frontend", "replica", "hv1", "hv2"]) {
      await world.sh(host, `mkdir -p ${IMG_DIR} ${DS}/100 && chown -R oneadmin: ${DS}`);
    }

    const config = async (settings: { onestor?: string; sshrc?: string; leaseSeconds?: number } = {}) => {
      await world.writeFile(
        "frontend",
        ONESTOR_CONF,
        `REPLICA_LEASE_SECONDS=${settings.leaseSeconds ?? 5}\n${settings.onestor ?? ""}\n`,
      );
      await world.writeFile("frontend", SSHRC, `${settings.sshrc ?? ""}\n`);
    };
    await config();

    /** An image on the front-end: `mib` apparent, `dataMib` of random data at 1 MiB, optional snapshot. */
    const makeImage = async (n: number, mib: number, dataMib: number, snapshot = false): Promise<string> => {
      const path = `${IMG_DIR}/${hash(n)}`;
      await world.sh(
        "frontend",
        `truncate -s ${mib}M ${path} && head -c ${
          dataMib * MiB
        } /dev/urandom | dd of=${path} bs=1M seek=1 conv=notrunc status=none` +
          (snapshot ? ` && mkdir ${path}.snap && head -c 65536 /dev/urandom >${path}.snap/0` : "") +
          ` && chown -R oneadmin: ${path}*`,
      );
      return path;
    };
    const sumOf = async (host: string, path: string) =>
      (await world.sh(host, `b2sum < ${path}`)).split(" ")[0];
    const diskPath = (vm: number, disk = 0) => `${DS}/100/${vm}/disk.${disk}`;
    const vms = new Set<number>();
    const register = (vm: number, host: string, path: string, disk: Record<string, string> = {}) => {
      if (vms.has(vm)) return;
      vms.add(vm);
      world.oned.addVm(vmXml({
        id: vm,
        disks: [imageDisk({ DISK_ID: 0, IMAGE_ID: vm, SOURCE: path, SIZE: 64, ORIGINAL_SIZE: 64, ...disk })],
        history: [{ hostname: host, hid: host === "hv1" ? 1 : 2, dsId: 100 }],
      }));
    };
    // oned writes the default DATASTORE_LOCATION with a double slash.
    const cloneArgs = (
      fe: string,
      vm: number,
      host: string,
      path: string,
    ) => [`${fe}:${path.replace(DS, DS_LOC)}`, `${host}:${DS_LOC}/100/${vm}/disk.0`, String(vm), "1"];
    const clone = (
      vm: number,
      host: string,
      path: string,
      env: Record<string, string> = {},
      disk: Record<string, string> = {},
    ) => {
      register(vm, host, path, disk);
      return world.tm("clone", cloneArgs("frontend", vm, host, path), { env });
    };
    const cacheLog = async () =>
      (await world.sh("replica", `cat ${IMG_DIR}/.onestor-cache.log 2>/dev/null || true`)).split("\n").filter(
        (l) => l,
      )
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const fills = async (n: number) =>
      (await cacheLog()).filter((e) => e.event === "fill-start" && e.image === hash(n)).length;
    const onReplica = async (name: string) =>
      (await world.lab.sh("replica", `test -e ${IMG_DIR}/${name}`)).code === 0;
    const entryOf = async (n: number) =>
      JSON.parse(await world.sh("replica", `cat ${IMG_DIR}/${hash(n)}.onestor.json`));
    /** The pin files of an entry (one per deployment copying from it). */
    const pinsOf = async (n: number) =>
      (await world.sh("replica", `cd ${IMG_DIR} && ls -A | grep -F ${hash(n)}.onestor-pin. || true`)).split(
        "\n",
      )
        .filter((l) => l);
    const onestor = (args: string[]) =>
      world.lab.exec("frontend", [Deno.execPath(), "run", "-A", "--no-check", "--quiet", MAIN, ...args], {
        user: "oneadmin",
        env: world.env(),
      });
    const leftovers = async () =>
      (await world.sh(
        "replica",
        `cd ${IMG_DIR} && ls -A | grep -E 'onestor-fill|onestor-lease|\\.tmp\\.' || true`,
      )).trim();

    const A = await makeImage(1, 24, 6, true);
    const sumA = await sumOf("frontend", A);
    const sumA0 = await sumOf("frontend", `${A}.snap/0`);

    await t.step("miss: one stream written to the replica and forwarded to the hypervisor", async () => {
      const miss = await clone(1, "hv1", A);
      ok(miss, "clone (miss)");
      assert.match(miss.stderr, /forwarded to hv1/);
      assert.equal(await fills(1), 1);
      assert.equal(await sumOf("hv1", diskPath(1)), sumA);
      assert.equal(await sumOf("hv1", `${diskPath(1)}.snap/0`), sumA0);
      const entry = await entryOf(1);
      assert.equal(entry.source.path, A);
      assert.deepEqual(Object.keys(entry.source.sums).sort(), [hash(1), `${hash(1)}.snap/0`]);
      assert.equal(await world.sh("replica", `cat ${IMG_DIR}/.monitor`), "replica\n");
      assert.equal(await leftovers(), "");
    });

    await t.step("hit: no byte of the image is read on the front-end", async () => {
      // Unreadable for oneadmin: a hit only stats the image and takes its checksum from the sidecar.
      await world.sh("frontend", `chmod 000 ${A} ${A}.snap/0`);
      try {
        const hit = await clone(2, "hv2", A);
        ok(hit, "clone (hit)");
        assert.match(hit.stderr, /Cache hit/);
      } finally {
        await world.sh("frontend", `chmod 644 ${A} ${A}.snap/0`);
      }
      assert.equal(await fills(1), 1);
      assert.equal(await sumOf("hv2", diskPath(2)), sumA);
      assert.equal(await sumOf("hv2", `${diskPath(2)}.snap/0`), sumA0);
      assert.deepEqual(await pinsOf(1), []);
    });

    const B = await makeImage(2, 24, 8);
    const sumB = await sumOf("frontend", B);

    await t.step("single flight: 16 parallel deployments, 8 to hv1 and 8 to hv2, one transfer", async () => {
      // A slow front-end link (1 MiB/s, 8 s of fill) so that the deployments really overlap the fill.
      // The default lease (30 s): on a loaded machine, 16 deployments sharing 2 cores can take more
      // than 5 s from taking the lease to starting the fill, and another process then takes the
      // expired lease over (what a lease is for when its filler died), a second transfer.
      await config({ sshrc: `REPLICA_SSH_FE_OPTS="${slow(MiB)}"`, leaseSeconds: 30 });
      const ids = Array.from({ length: 16 }, (_, i) => 100 + i);
      const results = await Promise.all(ids.map((vm, i) => clone(vm, i % 2 === 0 ? "hv1" : "hv2", B)));
      results.forEach((r, i) => ok(r, `clone ${ids[i]}`));
      assert.equal(await fills(2), 1, "exactly one front-end -> replica transfer");
      assert.equal(results.filter((r) => /Filling the cache of replica/.test(r.stderr)).length, 1);
      assert.equal(results.filter((r) => /Cache hit/.test(r.stderr)).length, 15);
      // The others followed the fill as the image arrived (its spool), or waited for its end.
      const followed = results.filter((r) =>
        /Followed the fill of frontend:\d+:\w+ on replica/.test(r.stderr)
      );
      assert.ok(followed.length > 0, "some deployments followed the fill");

      for (const [i, vm] of ids.entries()) {
        assert.equal(await sumOf(i % 2 === 0 ? "hv1" : "hv2", diskPath(vm)), sumB);
      }
      assert.deepEqual(await pinsOf(2), []);
      assert.equal(await leftovers(), "");
    });

    const C = await makeImage(3, 24, 12);
    const sumC = await sumOf("frontend", C);

    await t.step(
      "a filler killed mid-copy: nothing partial is served, a waiter takes over after the lease expires",
      async () => {
        // 12 MiB at 2 MiB/s: about 6 s of fill; leases of 5 s.
        await config({ sshrc: `REPLICA_SSH_FE_OPTS="${slow(2 * MiB)}"` });
        const filler = clone(200, "hv1", C, { ONESTOR_TEST_ROLE: "filler-200" });
        const fillerPid = await waitFor("the filler to start streaming", async () => {
          const growing = await world.sh(
            "replica",
            `du -sB1 ${IMG_DIR}/.onestor-fill-${hash(3)}-* 2>/dev/null | cut -f1`,
          );
          if (!(Number(growing.split("\n")[0]) > MiB)) return null;
          return processesWith("ONESTOR_TEST_ROLE=filler-200", "deno")[0] ?? null;
        });
        const waiter = clone(201, "hv2", C, { ONESTOR_TEST_ROLE: "waiter-201" });
        // Let the waiter start and see the filler's live lease, then kill the filler.
        await waitFor(
          "the waiter to start",
          () =>
            Promise.resolve(processesWith("ONESTOR_TEST_ROLE=waiter-201", "deno").length > 0 ? true : null),
        );
        await new Promise((r) => setTimeout(r, 1500));
        Deno.kill(fillerPid, "SIGKILL");
        const killed = await filler;
        assert.equal(killed.code, 137);
        // The stream of the dead process stops with it (no orphan copy going on).
        await waitFor(
          "the dead filler's pipeline to end",
          () => Promise.resolve(processesWith("ONESTOR_TEST_ROLE=filler-200").length === 0 ? true : null),
        ).catch((e) => {
          const left = processesWith("ONESTOR_TEST_ROLE=filler-200").map((p) =>
            `${p}: ${Deno.readTextFileSync(`/proc/${p}/cmdline`).replaceAll("\0", " ").slice(0, 300)}`
          );
          throw new Error(`${e.message}: ${left.join("\n")}`);
        });
        // Whatever its pipeline left, no entry exists until a complete, verified copy is promoted.
        assert.equal(await onReplica(`${hash(3)}.onestor.json`), false);
        const result = await waiter;
        ok(result, "waiter");
        assert.match(result.stderr, /Waiting for frontend:\d+:\w+ to fill/);
        assert.match(result.stderr, /expired \d+ s ago: taking it over/);
        // A waiter that followed the dead filler's stream got no disk from it (no trailer).
        assert.doesNotMatch(result.stderr, /Followed the fill/);
        assert.equal(await sumOf("hv2", diskPath(201)), sumC);
        assert.equal(await fills(3), 2, "the dead filler's stream and the waiter's");
        const log = await cacheLog();
        assert.equal(log.filter((e) => e.event === "promote" && e.image === hash(3)).length, 1);
        assert.equal(log.filter((e) => e.event === "lease-takeover" && e.image === hash(3)).length, 1);
        assert.equal((await entryOf(3)).filled_by.startsWith("frontend:"), true);
        assert.equal(await leftovers(), "");
        // The killed deployment's disk never appeared (its forwarded copy was never committed).
        assert.equal((await world.lab.sh("hv1", `test -e ${diskPath(200)}`)).code, 1);
      },
    );

    const D = await makeImage(4, 24, 8);
    const sumD = await sumOf("frontend", D);

    await t.step(
      "eviction: least recently used first, a pinned entry kept, no room means no caching",
      async () => {
        // A deployment of A copies from the cache through a slow replica -> hypervisor link: A stays pinned.
        await config({ sshrc: `REPLICA_SSH_OPTS="${slow(MiB / 2)}"` });
        const pinned = clone(300, "hv1", A);
        await waitFor("A to be pinned", async () => ((await pinsOf(1)).length > 0 ? true : null));
        // Cache: A 7 MiB (pinned, least recently used), B 8 MiB, C 12 MiB. D needs 8 MiB under 24 MiB.
        await config({ sshrc: "REPLICA_MAX_SIZE_MB=24" });
        const d = await clone(301, "hv2", D);
        ok(d, "clone D");
        assert.match(d.stderr, /Evicted 0+2 \(entry/);
        assert.match(d.stderr, /Evicted 0+3 \(entry/);
        assert.equal(await onReplica(`${hash(1)}.onestor.json`), true, "pinned A kept");
        assert.equal(await onReplica(hash(1)), true);
        for (const n of [2, 3]) {
          assert.equal(await onReplica(`${hash(n)}.onestor.json`), false, `${n} evicted`);
          assert.equal(await onReplica(hash(n)), false, `${n} evicted`);
        }
        assert.equal(await onReplica(`${hash(4)}.onestor.json`), true);
        const evicted = (await cacheLog()).filter((e) => e.event === "evict").map((e) => e.image);
        assert.deepEqual(evicted.sort(), [hash(2), hash(3)]);
        ok(await pinned, "pinned deployment of A");
        assert.equal(await sumOf("hv1", diskPath(300)), sumA);
        assert.equal(await sumOf("hv2", diskPath(301)), sumD);
        assert.deepEqual(await pinsOf(1), []);

        // An image larger than the whole cache: deployed straight from the front-end, not cached.
        const E = await makeImage(5, 40, 26);
        const big = await clone(302, "hv1", E);
        ok(big, "clone E");
        assert.match(
          big.stderr,
          /No room in the cache of replica .*larger than REPLICA_MAX_SIZE_MB.*without caching/,
        );
        assert.equal(await sumOf("hv1", diskPath(302)), await sumOf("frontend", E));
        assert.equal(await onReplica(`${hash(5)}.onestor.json`), false);
        assert.equal(await fills(5), 0);
      },
    );

    await t.step(
      "corruption: a truncated entry is filled again; a rewritten one is caught by verify and on use",
      async () => {
        await config();
        const cached = `${IMG_DIR}/${hash(4)}`;
        await world.sh("replica", `truncate -s 3M ${cached}`);
        const truncated = await clone(400, "hv1", D);
        ok(truncated, "clone after truncation");
        assert.match(truncated.stderr, /is not used: its files changed on the replica/);
        assert.equal(await fills(4), 2);
        assert.equal(await sumOf("hv1", diskPath(400)), sumD);
        // Same size and mtime, other bytes: only a content check sees it. (Sixteen bytes of text
        // over random data: one byte could already have the value written.)
        const flip = `m=$(stat -c %Y ${cached}) && printf onestor-corrupt! | ` +
          `dd of=${cached} bs=1 seek=${2 * MiB} conv=notrunc status=none && touch -d @$m ${cached}`;
        await world.sh("replica", flip);
        const verify = await onestor(["cache", "verify", "--replica", "replica"]);
        assert.equal(verify.code, 1, verify.stderr);
        assert.match(verify.stdout, new RegExp(`${hash(4)}: BAD \\(content checksum mismatch.*removed`));
        assert.match(verify.stdout, new RegExp(`${hash(1)}: ok`));
        assert.equal(await onReplica(`${hash(4)}.onestor.json`), false);
        ok(await clone(401, "hv2", D), "clone after verify");
        assert.equal(await fills(4), 3);
        assert.equal(await sumOf("hv2", diskPath(401)), sumD);
        // With REPLICA_CACHE_VERIFY=checksum the deployment itself re-reads the entry.
        await world.sh("replica", flip);
        await config({ onestor: "REPLICA_CACHE_VERIFY=checksum" });
        const checked = await clone(402, "hv1", D);
        ok(checked, "clone with checksum verification");
        assert.match(checked.stderr, /content checksum mismatch/);
        assert.equal(await fills(4), 4);
        assert.equal(await sumOf("hv1", diskPath(402)), sumD);
      },
    );

    await t.step(
      "fallback: the replica's sshd stopped, deployments go straight from the front-end",
      async () => {
        await config();
        await world.lab.stopSshd("replica");
        try {
          const direct = await clone(500, "hv2", A);
          ok(direct, "clone with the replica down");
          assert.match(
            direct.stderr,
            /Replica replica cannot serve .*Cannot reach host replica.*copying straight from the front-end/,
          );
          assert.equal(await sumOf("hv2", diskPath(500)), sumA);
          await config({ onestor: "REPLICA_FALLBACK=no" });
          const refused = await clone(501, "hv2", A);
          assert.notEqual(refused.code, 0);
          assert.match(refused.stderr, /Cannot reach host replica/);
          // Deleting an image while the replica is down: the invalidation waits in the journal.
          await config();
          ok(
            await world.ds(
              "rm",
              4,
              driverActionBase64({ image: imageXml({ id: 4, source: D.replace(DS, DS_LOC) }) }),
            ),
            "ds rm",
          );
          const journal = await world.sh("frontend", "cat /var/lib/one/onestor/invalidations/replica/*.json");
          assert.match(journal, new RegExp(`"source":"${D}"`));
          assert.equal(await onReplica(`${hash(4)}.onestor.json`), true);
        } finally {
          await world.lab.startSshd("replica");
        }
        // The next contact with the replica applies it.
        const next = await clone(502, "hv1", A);
        ok(next, "clone after the replica is back");
        assert.match(next.stderr, /Applied 1 pending cache invalidation/);
        assert.equal(await onReplica(`${hash(4)}.onestor.json`), false);
        assert.equal(await onReplica(hash(4)), false);
        assert.equal(
          (await world.sh("frontend", "ls /var/lib/one/onestor/invalidations/replica")).trim(),
          "",
        );
      },
    );

    await t.step("onestor cache ls, warm, evict, verify", async () => {
      const F = await makeImage(6, 16, 4);
      const warm = await onestor(["cache", "warm", "--cluster", "0", F]);
      assert.equal(warm.code, 0, warm.stderr);
      assert.match(warm.stderr, new RegExp(`replica: ${F}: filled`));
      const again = await onestor(["cache", "warm", "--replica", "replica", F]);
      assert.match(again.stderr, new RegExp(`replica: ${F}: cached`));
      assert.equal(await fills(6), 1);
      const ls = await onestor(["cache", "ls"]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /^REPLICA\s+IMAGE\s+SIZE\s+ON DISK\s+LAST USE\s+PINS\s+STATE$/m);
      assert.match(
        ls.stdout,
        new RegExp(`replica\\s+${F}\\s+16\\.0 MiB\\s+4\\.0 MiB\\s+\\d+s ago\\s+-\\s+ready`),
      );
      const json = JSON.parse((await onestor(["cache", "ls", "--json"])).stdout) as {
        image: string;
        state: string;
      }[];
      assert.deepEqual(json.map((r) => r.image).sort(), [A, F]);
      assert.ok(json.every((r) => r.state === "ready"));
      const evict = await onestor(["cache", "evict", F]);
      assert.equal(evict.code, 0, evict.stderr);
      assert.match(evict.stdout, new RegExp(`${F}: evicted`));
      assert.equal(await onReplica(hash(6)), false);
      const usage = await onestor(["cache", "evict"]);
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /exactly one of: IMAGE\.\.\., --all, --trim/);
      // Deleting an image with the replica up removes its cached copy at once.
      ok(
        await world.ds(
          "rm",
          1,
          driverActionBase64({ image: imageXml({ id: 1, source: A.replace(DS, DS_LOC) }) }),
        ),
        "rm",
      );
      assert.equal(await onReplica(`${hash(1)}.onestor.json`), false);
      assert.equal(await onReplica(`${hash(1)}.snap`), false);
      const verify = await onestor(["cache", "verify"]);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    });

    const G = await makeImage(7, 24, 6);
    const sumG = await sumOf("frontend", G);

    await t.step(
      "REPLICA_STORAGE_IP: the hypervisor's (replica pushes there), else the replica's (hypervisor pulls)",
      async () => {
        const hv1 = world.lab.host("hv1").address;
        const replica = world.lab.host("replica").address;
        world.oned.addHost(hostXml({ id: 1, name: "hv1", template: { REPLICA_STORAGE_IP: hv1 } }));
        world.oned.addHost(hostXml({ id: 3, name: "replica", template: { REPLICA_STORAGE_IP: replica } }));
        try {
          const push = await clone(600, "hv1", G);
          ok(push, "clone to hv1");
          assert.match(
            push.stderr,
            new RegExp(`REPLICA_STORAGE_IP of hv1 is ${hv1}: replica replica pushes the disk there`),
          );
          assert.match(push.stderr, /forwarded to hv1/);
          assert.equal(await sumOf("hv1", diskPath(600)), sumG);
          const pull = await clone(601, "hv2", G);
          ok(pull, "clone to hv2");
          assert.match(
            pull.stderr,
            new RegExp(`REPLICA_STORAGE_IP of replica replica is ${replica}: hv2 pulls the disk`),
          );
          assert.equal(await sumOf("hv2", diskPath(601)), sumG);
          // SPARSE=NO: the copy from the cache writes every block.
          const full = await clone(602, "hv2", G, {}, { SPARSE: "NO" });
          ok(full, "clone SPARSE=NO");
          assert.equal(await sumOf("hv2", diskPath(602)), sumG);
          const [blocks, unit, size] = (await world.sh("hv2", `stat -c '%b %B %s' ${diskPath(602)}`)).trim()
            .split(" ")
            .map(Number);
          assert.ok(blocks * unit >= size, `${blocks * unit} bytes allocated for ${size}`);
          // A miss with a hypervisor that pulls: the cut-through goes through the fill's named pipe.
          const P = await makeImage(9, 24, 6);
          const pulledMiss = await clone(603, "hv2", P);
          ok(pulledMiss, "clone to hv2, a miss, pulled");
          assert.match(pulledMiss.stderr, /hv2 pulls the disk/);
          assert.match(pulledMiss.stderr, /forwarded to hv2/);
          assert.equal(await sumOf("hv2", diskPath(603)), await sumOf("frontend", P));
          assert.equal(await fills(9), 1);
          // A miss of a SPARSE=NO disk: cut-through too, every block allocated at the hypervisor.
          const Q = await makeImage(10, 24, 6);
          const denseMiss = await clone(604, "hv1", Q, {}, { SPARSE: "NO" });
          ok(denseMiss, "clone SPARSE=NO, a miss");
          assert.match(denseMiss.stderr, /forwarded to hv1/);
          assert.equal(await sumOf("hv1", diskPath(604)), await sumOf("frontend", Q));
          const dense = (await world.sh("hv1", `stat -c '%b %B %s' ${diskPath(604)}`)).trim().split(" ").map(
            Number,
          );
          assert.ok(
            dense[0] * dense[1] >= dense[2],
            `${dense[0] * dense[1]} bytes allocated for ${dense[2]}`,
          );
          assert.equal(await leftovers(), "");
        } finally {
          world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
          world.oned.remove("host", 3);
        }
      },
    );

    const H = await makeImage(8, 24, 8);
    const sumH = await sumOf("frontend", H);

    await t.step(
      "two front-ends (hv2 plays the second one, same image datastore): one transfer",
      async () => {
        // Same bytes and mtime at the same path, as a shared image datastore gives both front-ends.
        await world.sh("hv2", `mkdir -p ${IMG_DIR} && chown oneadmin: ${IMG_DIR}`);
        const copy = await new Deno.Command("cp", {
          args: ["-p", world.lab.path("frontend", H), world.lab.path("hv2", H)],
        }).output();
        assert.ok(copy.success);
        const fast = `REPLICA_SSH_FE_OPTS="${slow(2 * MiB)}"`;
        await config({ sshrc: fast });
        await world.writeFile("hv2", SSHRC, `${fast}\n`);
        const fromFe2 = (vm: number, host: string) => {
          register(vm, host, H);
          return world.lab.exec("hv2", [
            Deno.execPath(),
            "run",
            "-A",
            "--no-check",
            "--quiet",
            MAIN,
            "tm",
            "clone",
            ...cloneArgs("hv2", vm, host, H),
          ], { user: "oneadmin", env: world.env() });
        };
        const runs = await Promise.all([
          ...[700, 701, 702, 703].map((vm, i) => clone(vm, i % 2 ? "hv2" : "hv1", H)),
          ...[704, 705, 706, 707].map((vm, i) => fromFe2(vm, i % 2 ? "hv2" : "hv1")),
        ]);
        runs.forEach((r, i) => ok(r, `clone ${700 + i}`));
        assert.equal(await fills(8), 1, "one front-end -> replica transfer for both front-ends");
        assert.equal(runs.filter((r) => /Filling the cache of replica/.test(r.stderr)).length, 1);
        for (const [i, vm] of [700, 701, 702, 703, 704, 705, 706, 707].entries()) {
          assert.equal(await sumOf(i % 2 ? "hv2" : "hv1", diskPath(vm)), sumH);
        }
        assert.equal(await leftovers(), "");
      },
    );
  },
);
