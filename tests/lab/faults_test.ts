/**
 * Fault injection on every copying path: the installed action runs as oned runs it and is killed
 * with SIGKILL at a seeded random moment, either the onestor process on the front-end (as when
 * oned's driver dies) or the tar on the other side of the stream (as when the remote end dies).
 * After every kill:
 * - the destination holds its previous state or the complete new one, never part of it (every
 *   file is compared by checksum);
 * - a cache entry that exists on the replica holds exactly the image (nothing unverified served);
 * - the retry, as `onevm recover --retry` re-runs the transfer, succeeds and gives the complete
 *   result; a lease of a killed filler is taken over and no lease is left afterwards.
 *
 * Paths: clone (direct), ln (with snapshots), clone in replica mode on a cache miss and on a hit,
 * mv between hypervisors, mvds and cpds into the image datastore, datastore cp, cache fill
 * (`onestor cache warm`), premigrate. CI runs a bounded subset (2 kills per path); `deno task soak`
 * runs 6 per path. The seed is printed; `ONESTOR_SEED=<n>` replays a run.
 */

import assert from "node:assert/strict";
import { encodeBase64Text } from "../../core/one/driver_action.ts";
import type { ExecResult } from "../support/lab.ts";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import {
  datastoreXml,
  driverActionBase64,
  DS_LOC,
  hostXml,
  imageDisk,
  imageXml,
  persistentDisk,
  vmXml,
} from "../support/fixtures.ts";
import { MAIN } from "../support/run_onestor.ts";
import { processesWith, waitFor } from "../support/processes.ts";
import { Seeded, seedOf, soaking } from "../support/seeded.ts";

const DS = "/var/lib/one/datastores";
const FE = "frontend";
const ONESTOR_CONF = "/var/lib/one/remotes/etc/onestor/onestor.conf";
const KILLS_PER_PATH = soaking() ? 6 : 2;

/** One run of a path: the action, the side killed as "remote", and the checks. */
interface Trial {
  /** Runs the action with `ONESTOR_TEST_ROLE=<role>` in its environment. */
  run(role: string): Promise<ExecResult>;
  /** Host whose tar is killed as the remote side of the stream, null when there is none. */
  remote: string | null;
  /** After an interrupted run: nothing half-written in place. */
  afterKill(): Promise<void>;
  /** After the retry: the complete result. */
  afterRetry(): Promise<void>;
}

/** A copying path: `make(i)` prepares trial `i` (0 is the clean run that times the path). */
interface Path {
  name: string;
  make(i: number): Promise<Trial>;
}

labTest("faults: SIGKILL of the front-end process or the remote side on every copying path", async (t) => {
  const rng = new Seeded(seedOf(20260911));
  const started = performance.now();
  await using world = await World.start();
  world.oned.addDatastore(datastoreXml({ id: 1 }));
  world.oned.addDatastore(datastoreXml({ id: 100 }));
  world.oned.addDatastore(datastoreXml({ id: 101, template: { REPLICA_HOST: "replica" } }));
  world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
  world.oned.addHost(hostXml({ id: 2, name: "hv2" }));
  for (const host of ["frontend", "replica", "hv1", "hv2"]) {
    await world.sh(
      host,
      `mkdir -p ${DS}/1 ${DS}/100 ${DS}/101 /var/tmp/one && chown -R oneadmin: ${DS} /var/tmp/one`,
    );
  }
  await world.writeFile(FE, ONESTOR_CONF, "REPLICA_LEASE_SECONDS=5\nLIBVIRT_URI=test:///default\n");

  const sum = async (host: string, path: string): Promise<string> => {
    const r = await world.lab.sh(
      host,
      `if [ -f ${path} ]; then b2sum <${path} | cut -c1-32; else echo absent; fi`,
    );
    return r.stdout.trim();
  };
  const random = (host: string, path: string, mib: number) =>
    world.sh(host, `mkdir -p "$(dirname ${path})" && head -c ${mib}M /dev/urandom >${path}`, {
      user: "oneadmin",
    });
  const hash = (n: number) => n.toString(16).padStart(32, "0");
  const oneOf = (what: string, value: string, allowed: string[]) =>
    assert.ok(allowed.includes(value), `${what} is ${value}, expected one of ${allowed.join(", ")}`);
  const onestor = (args: string[], role: string) =>
    world.lab.exec(FE, [Deno.execPath(), "run", "-A", "--no-check", "--quiet", MAIN, ...args], {
      user: "oneadmin",
      env: world.env({ ONESTOR_TEST_ROLE: role }),
    });
  let nextVm = 1000;
  const vm = (disks: ReturnType<typeof imageDisk>[], host: string, dsId: number) => {
    const id = nextVm++;
    world.oned.addVm(vmXml({ id, disks, history: [{ hostname: host, hid: host === "hv1" ? 1 : 2, dsId }] }));
    return id;
  };
  /** Checks a cache entry on the replica, if there is one, holds exactly the image. */
  const entryValid = async (image: string, expected: string): Promise<boolean> => {
    const name = image.slice(image.lastIndexOf("/") + 1);
    if ((await world.lab.sh("replica", `test -f ${DS}/1/${name}.onestor.json`)).code !== 0) return false;
    assert.equal(
      await sum("replica", `${DS}/1/${name}`),
      expected,
      `the cache entry of ${name} is the image`,
    );
    return true;
  };
  const noLease = async (image: string) => {
    const name = image.slice(image.lastIndexOf("/") + 1);
    assert.equal(
      (await world.lab.sh("replica", `test -e ${DS}/1/${name}.onestor-lease.json`)).code,
      1,
      "lease left",
    );
  };

  // ---- the paths -------------------------------------------------------------------------------
  const S = `${DS}/1/${hash(1)}`;
  await random(FE, S, 48);
  const sumS = await sum(FE, S);
  const P = `${DS}/1/${hash(2)}`;
  await random(FE, P, 32);
  await random(FE, `${P}.snap/0`, 8);
  const [sumP, sumP0] = [await sum(FE, P), await sum(FE, `${P}.snap/0`)];
  const cached = `${DS}/1/${hash(3)}`;
  await random(FE, cached, 32);
  const sumCached = await sum(FE, cached);
  const src = (path: string) => `${FE}:${path.replace(DS, DS_LOC)}`;

  const directClone: Path = {
    name: "clone",
    make() {
      const id = vm(
        [imageDisk({ DISK_ID: 0, SOURCE: S, FORMAT: "raw", SIZE: 48, ORIGINAL_SIZE: 48 })],
        "hv1",
        100,
      );
      const disk = `${DS}/100/${id}/disk.0`;
      return Promise.resolve({
        run: (role: string) =>
          world.tm("clone", [src(S), `hv1:${DS_LOC}/100/${id}/disk.0`, id, 1], {
            env: { ONESTOR_TEST_ROLE: role },
          }),
        remote: "hv1",
        afterKill: async () => oneOf("disk.0", await sum("hv1", disk), ["absent", sumS]),
        afterRetry: async () => assert.equal(await sum("hv1", disk), sumS),
      });
    },
  };

  const ln: Path = {
    name: "ln",
    make() {
      const id = vm(
        [persistentDisk({ DISK_ID: 1, SOURCE: P, FORMAT: "raw", SIZE: 32, ORIGINAL_SIZE: 32 })],
        "hv2",
        100,
      );
      const disk = `${DS}/100/${id}/disk.1`;
      return Promise.resolve({
        run: (role: string) =>
          world.tm("ln", [src(P), `hv2:${DS_LOC}/100/${id}/disk.1`, id, 1], {
            env: { ONESTOR_TEST_ROLE: role },
          }),
        remote: "hv2",
        afterKill: async () => {
          oneOf("disk.1", await sum("hv2", disk), ["absent", sumP]);
          oneOf("disk.1.snap/0", await sum("hv2", `${disk}.snap/0`), ["absent", sumP0]);
        },
        afterRetry: async () => {
          assert.equal(await sum("hv2", disk), sumP);
          assert.equal(await sum("hv2", `${disk}.snap/0`), sumP0);
        },
      });
    },
  };

  let nextImage = 100;
  const cloneMiss: Path = {
    name: "clone miss (replica)",
    async make() {
      const image = `${DS}/1/${hash(nextImage++)}`;
      await random(FE, image, 32);
      const expected = await sum(FE, image);
      const id = vm(
        [imageDisk({ DISK_ID: 0, SOURCE: image, FORMAT: "raw", SIZE: 32, ORIGINAL_SIZE: 32 })],
        "hv2",
        101,
      );
      const disk = `${DS}/101/${id}/disk.0`;
      return {
        run: (role: string) =>
          world.tm("clone", [src(image), `hv2:${DS_LOC}/101/${id}/disk.0`, id, 1], {
            env: { ONESTOR_TEST_ROLE: role },
          }),
        remote: "replica",
        afterKill: async () => {
          oneOf("disk.0", await sum("hv2", disk), ["absent", expected]);
          await entryValid(image, expected);
        },
        afterRetry: async () => {
          assert.equal(await sum("hv2", disk), expected);
          assert.ok(await entryValid(image, expected), "the retry cached the image");
          await noLease(image);
        },
      };
    },
  };

  const cloneHit: Path = {
    name: "clone hit (replica)",
    make() {
      const id = vm(
        [imageDisk({ DISK_ID: 0, SOURCE: cached, FORMAT: "raw", SIZE: 32, ORIGINAL_SIZE: 32 })],
        "hv1",
        101,
      );
      const disk = `${DS}/101/${id}/disk.0`;
      return Promise.resolve({
        run: (role: string) =>
          world.tm("clone", [src(cached), `hv1:${DS_LOC}/101/${id}/disk.0`, id, 1], {
            env: { ONESTOR_TEST_ROLE: role },
          }),
        remote: "hv1",
        afterKill: async () => {
          oneOf("disk.0", await sum("hv1", disk), ["absent", sumCached]);
          await entryValid(cached, sumCached);
        },
        afterRetry: async () => {
          assert.equal(await sum("hv1", disk), sumCached);
          assert.ok(await entryValid(cached, sumCached));
          await noLease(cached);
        },
      });
    },
  };

  const mvVm = vm(
    [imageDisk({ DISK_ID: 0, SOURCE: S, FORMAT: "raw", SIZE: 32, ORIGINAL_SIZE: 32 })],
    "hv1",
    100,
  );
  const mvDir = `${DS}/100/${mvVm}`;
  await random("hv1", `${mvDir}/disk.0`, 32);
  await random("hv1", `${mvDir}/disk.0.snap/0`, 4);
  const sumMv = await sum("hv1", `${mvDir}/disk.0`);
  let mvAt = "hv1";
  const mv: Path = {
    name: "mv",
    make() {
      const from = mvAt;
      const to = from === "hv1" ? "hv2" : "hv1";
      return Promise.resolve({
        run: (role: string) =>
          world.tm("mv", [`${from}:${DS_LOC}/100/${mvVm}`, `${to}:${DS_LOC}/100/${mvVm}`, mvVm, 100], {
            env: { ONESTOR_TEST_ROLE: role },
          }),
        remote: to,
        afterKill: async () => {
          const [a, b] = [await sum(from, `${mvDir}/disk.0`), await sum(to, `${mvDir}/disk.0`)];
          oneOf(`destination disk.0 on ${to}`, b, ["absent", sumMv]);
          assert.ok(a === sumMv || b === sumMv, `one complete copy remains (source ${a}, destination ${b})`);
        },
        afterRetry: async () => {
          assert.equal(await sum(to, `${mvDir}/disk.0`), sumMv);
          assert.equal(
            (await world.lab.sh(from, `test -e ${mvDir}`)).code,
            1,
            "the source went after the verified copy",
          );
          mvAt = to;
        },
      });
    },
  };

  const saveVm = vm(
    [
      imageDisk({ DISK_ID: 0, SOURCE: S, FORMAT: "raw", SIZE: 32, ORIGINAL_SIZE: 32 }),
      persistentDisk({ DISK_ID: 1, SOURCE: P, FORMAT: "raw", SIZE: 32, ORIGINAL_SIZE: 32 }),
    ],
    "hv1",
    100,
  );
  const saveDir = `${DS}/100/${saveVm}`;
  const mvdsTarget = `${DS}/1/${hash(4)}`;
  await random(FE, mvdsTarget, 32);
  const mvds: Path = {
    name: "mvds",
    async make() {
      await random("hv1", `${saveDir}/disk.1`, 32);
      const [before, after] = [await sum(FE, mvdsTarget), await sum("hv1", `${saveDir}/disk.1`)];
      return {
        run: (role: string) =>
          world.tm(
            "mvds",
            [`hv1:${DS_LOC}/100/${saveVm}/disk.1`, mvdsTarget.replace(DS, DS_LOC), saveVm, 1],
            { env: { ONESTOR_TEST_ROLE: role } },
          ),
        remote: "hv1",
        afterKill: async () => oneOf("the image", await sum(FE, mvdsTarget), [before, after]),
        afterRetry: async () => assert.equal(await sum(FE, mvdsTarget), after),
      };
    },
  };

  const cpds: Path = {
    name: "cpds",
    async make(i) {
      await random("hv1", `${saveDir}/disk.0`, 32);
      const expected = await sum("hv1", `${saveDir}/disk.0`);
      const target = `${DS}/1/${hash(500 + i)}`;
      return {
        run: (role: string) =>
          world.tm(
            "cpds",
            [`hv1:${DS_LOC}/100/${saveVm}/disk.0`, target.replace(DS, DS_LOC), -1, saveVm, 1],
            { env: { ONESTOR_TEST_ROLE: role } },
          ),
        remote: "hv1",
        afterKill: async () => oneOf("the new image", await sum(FE, target), ["absent", expected]),
        afterRetry: async () => assert.equal(await sum(FE, target), expected),
      };
    },
  };

  const importSrc = "/var/tmp/one/import.img";
  await random(FE, importSrc, 48);
  const sumImport = await sum(FE, importSrc);
  const images = async () => (await world.sh(FE, `ls ${DS}/1`)).trim().split("\n").filter((n) => n !== "");
  const dsCp: Path = {
    name: "ds cp",
    async make(i) {
      const known = new Set(await images());
      const payload = driverActionBase64({
        image: imageXml({ id: 700 + i, path: importSrc }),
        datastore: datastoreXml({ id: 1 }),
      });
      let source = "";
      return {
        run: async (role: string) => {
          const r = await world.ds("cp", 700 + i, payload, { env: { ONESTOR_TEST_ROLE: role } });
          source = r.stdout.trim().split(" ")[0];
          return r;
        },
        remote: null,
        afterKill: async () => {
          // A new image appears only complete, under its final name.
          for (const name of await images()) {
            if (!known.has(name)) {
              assert.equal(await sum(FE, `${DS}/1/${name}`), sumImport, `${name} is whole`);
            }
          }
        },
        afterRetry: async () => assert.equal(await sum(FE, source.replace(DS_LOC, DS)), sumImport),
      };
    },
  };

  const warm: Path = {
    name: "cache fill",
    async make() {
      const image = `${DS}/1/${hash(nextImage++)}`;
      await random(FE, image, 32);
      const expected = await sum(FE, image);
      return {
        run: (role: string) => onestor(["cache", "warm", "--replica", "replica", image], role),
        remote: "replica",
        afterKill: async () => void await entryValid(image, expected),
        afterRetry: async () => {
          assert.ok(await entryValid(image, expected));
          await noLease(image);
        },
      };
    },
  };

  const premigrate: Path = {
    name: "premigrate",
    async make() {
      const xml = vmXml({
        id: nextVm,
        disks: [imageDisk({ DISK_ID: 0, SOURCE: S, FORMAT: "raw", SIZE: 16, ORIGINAL_SIZE: 16 })],
        history: [{ hostname: "hv1", hid: 1, dsId: 100 }],
      });
      const id = nextVm++;
      world.oned.addVm(xml);
      const dir = `${DS}/100/${id}`;
      await random("hv1", `${dir}/disk.0`, 16);
      await random("hv1", `${dir}/disk.0.snap/0`, 24);
      await random("hv1", `${dir}/disk.0.snap/1`, 8);
      const files = ["disk.0.snap/0", "disk.0.snap/1"];
      const expected = await Promise.all(files.map((f) => sum("hv1", `${dir}/${f}`)));
      const source = await sum("hv1", `${dir}/disk.0`);
      return {
        run: (role: string) =>
          world.tm("premigrate", ["hv1", "hv2", `${DS_LOC}/100/${id}`, id, 100], {
            stdin: encodeBase64Text(xml),
            env: { ONESTOR_TEST_ROLE: role },
          }),
        remote: "hv2",
        afterKill: async () => {
          assert.equal(await sum("hv1", `${dir}/disk.0`), source, "the source is never touched");
          for (const [k, f] of files.entries()) {
            oneOf(f, await sum("hv2", `${dir}/${f}`), ["absent", expected[k]]);
          }
        },
        afterRetry: async () => {
          for (const [k, f] of files.entries()) assert.equal(await sum("hv2", `${dir}/${f}`), expected[k]);
        },
      };
    },
  };

  // The entry the hit path uses.
  ok(await onestor(["cache", "warm", "--replica", "replica", cached], "warm-hit"), "warm the hit image");

  const paths = [directClone, ln, cloneMiss, cloneHit, mv, mvds, cpds, dsCp, warm, premigrate];
  const counts = { frontend: 0, remote: 0, missed: 0 };
  const perPath: string[] = [];
  let role = 0;

  for (const path of paths) {
    await t.step(`${path.name}: ${KILLS_PER_PATH} kills, each followed by a retry`, async () => {
      // The clean run times the path: kills land anywhere in that span.
      const clean = await path.make(0);
      const t0 = performance.now();
      ok(await clean.run(`clean-${role++}`), `${path.name} (clean run)`);
      const span = performance.now() - t0;
      await clean.afterRetry();
      let kills = 0;
      // Small paths finish in a fraction of a second, so some runs end before their kill: allow more tries.
      for (let i = 1; kills < KILLS_PER_PATH && i <= KILLS_PER_PATH * 6; i++) {
        const trial = await path.make(i);
        const marker = `fault-${role++}`;
        const side = trial.remote === null || rng.next() < 0.5 ? "frontend" : "remote";
        const running = trial.run(marker);
        let hit = false;
        if (side === "frontend") {
          await new Promise((r) => setTimeout(r, rng.int(Math.round(span * 0.1), Math.round(span * 0.9))));
          for (const pid of processesWith(`ONESTOR_TEST_ROLE=${marker}`, "deno")) {
            try {
              Deno.kill(pid, "SIGKILL");
              hit = true;
            } catch {
              // It ended meanwhile.
            }
          }
        } else {
          // The remote side: the tar of this stream on the other host, once it runs.
          let finished = false;
          running.then(() => finished = true);
          const found = await waitFor(`tar on ${trial.remote}`, async () => {
            if (finished) return false;
            const r = await world.lab.sh(
              trial.remote!,
              'for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = tar ] && echo ${d#/proc/}; done',
            );
            return r.stdout.trim() !== "" ? r.stdout.trim().split("\n") : null;
          });
          if (found) {
            await new Promise((r) => setTimeout(r, rng.int(0, 60)));
            const r = await world.lab.sh(trial.remote!, `kill -KILL ${found.join(" ")} 2>/dev/null; true`);
            hit = r.code === 0;
          }
        }
        const result = await running;
        // A run that ended before the kill landed proves nothing about the kill: not counted.
        if (
          !hit || (side === "frontend" && result.code !== 137) || (side === "remote" && result.code === 0)
        ) {
          counts.missed++;
          await trial.afterRetry().catch(async () => {
            ok(await trial.run(`${marker}-retry`), `${path.name}: retry`);
            await trial.afterRetry();
          });
          continue;
        }
        kills++;
        counts[side]++;
        await trial.afterKill();
        // oned re-runs the same transfer: it must succeed and give the whole result.
        const retry = await trial.run(`${marker}-retry`);
        ok(retry, `${path.name}: retry after a kill of the ${side} at trial ${i}`);
        await trial.afterRetry();
      }
      assert.equal(kills, KILLS_PER_PATH, `${path.name}: kills landed`);
      perPath.push(`${path.name} ${kills}`);
    });
  }

  await t.step("the cache is consistent after all that", async () => {
    const verify = await onestor(["cache", "verify", "--replica", "replica"], "final-verify");
    ok(verify, "onestor cache verify");
    const leases = await world.sh("replica", `ls -A ${DS}/1 | grep -c 'onestor-lease' || true`);
    assert.equal(leases.trim(), "0", "no lease left");
  });

  // Temporary folders of killed copies stay hidden next to their destination until the VM folder
  // goes or `onestor doctor --fix` removes them; counted, never served.
  let leftovers = 0;
  for (const host of ["frontend", "replica", "hv1", "hv2"]) {
    const found = await world.sh(
      host,
      `find ${DS} -name '.onestor-xfer-*' -o -name '.onestor-fill-*' -o -name '.*.onestor-part' | wc -l`,
    );
    leftovers += Number(found.trim());
  }
  const kills = counts.frontend + counts.remote;
  console.log(
    `faults: seed ${rng.seed}, ${kills} SIGKILLs (front-end process ${counts.frontend}, remote side ${counts.remote}; ` +
      `${counts.missed} runs ended before their kill and were not counted) over ${paths.length} paths ` +
      `[${perPath.join(", ")}], every one followed by a successful retry; ${leftovers} hidden temporary ` +
      `folders of killed copies left for cleanup, ` +
      `${Math.round((performance.now() - started) / 1000)} s`,
  );
});
