/**
 * Metrics on a real lab, through the installed driver as oned runs it: after a scripted sequence
 * (a cache miss, two hits, a fallback with the replica's sshd stopped, an eviction) every counter
 * `onestor metrics` exports equals the expected value exactly, bytes included; promtool accepts
 * the output; `--textfile` writes it atomically; the image datastore's monitor adds the cache's
 * hit ratio and size.
 */

import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import { datastoreXml, driverActionBase64, DS_LOC, hostXml, imageDisk, vmXml } from "../support/fixtures.ts";
import { MAIN } from "../support/run_onestor.ts";
import { runCommand } from "../../core/remote/process.ts";

const MiB = 1 << 20;
const DS = "/var/lib/one/datastores";
const IMG_DIR = `${DS}/1`;
const SSHRC = "/var/lib/one/remotes/etc/tm/ssh/sshrc";
const IMAGE = "000000000000000000000000000000a1";

/** Parses the samples of a Prometheus text exposition: `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

labTest(
  "metrics: a miss, two hits, a fallback and an eviction counted exactly; promtool accepts them",
  async (t) => {
    await using world = await World.start();
    world.oned.addDatastore(datastoreXml({ id: 1, dsMad: world.dsName }));
    world.oned.addDatastore(datastoreXml({ id: 100, template: { REPLICA_HOST: "replica" } }));
    world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
    world.oned.addHost(hostXml({ id: 2, name: "hv2" }));
    for (const host of ["frontend", "replica", "hv1", "hv2"]) {
      await world.sh(host, `mkdir -p ${IMG_DIR} ${DS}/100 && chown -R oneadmin: ${DS}`);
    }
    const image = `${IMG_DIR}/${IMAGE}`;
    await world.sh(
      "frontend",
      `truncate -s 16M ${image} && head -c ${
        4 * MiB
      } /dev/urandom | dd of=${image} bs=1M seek=1 conv=notrunc status=none && chown oneadmin: ${image}`,
    );
    const clone = (vm: number, host: string) => {
      world.oned.addVm(vmXml({
        id: vm,
        disks: [imageDisk({ DISK_ID: 0, IMAGE_ID: 1, SOURCE: image, SIZE: 16, ORIGINAL_SIZE: 16 })],
        history: [{ hostname: host, hid: host === "hv1" ? 1 : 2, dsId: 100 }],
      }));
      return world.tm("clone", [
        `frontend:${image.replace(DS, DS_LOC)}`,
        `${host}:${DS_LOC}/100/${vm}/disk.0`,
        vm,
        1,
      ]);
    };
    const onestor = (args: string[]) =>
      world.lab.exec("frontend", [Deno.execPath(), "run", "-A", "--no-check", "--quiet", MAIN, ...args], {
        user: "oneadmin",
        env: world.env(),
      });
    const monitor = async () =>
      ok(
        await world.ds(
          "monitor",
          1,
          driverActionBase64({ datastore: datastoreXml({ id: 1, dsMad: world.dsName }) }),
        ),
        "ds monitor",
      );

    // The tar stream of the image, as every copy of it sends it (same flags as the copy primitive).
    const totals = await world.sh(
      "frontend",
      `cd ${IMG_DIR} && tar -b 128 -cSf - --totals -- ${IMAGE} 2>&1 >/dev/null | sed -n 's/^Total bytes written: \\([0-9]*\\).*/\\1/p'`,
      { user: "oneadmin" },
    );
    const stream = Number(totals.trim());
    assert.ok(stream > 4 * MiB && stream < 5 * MiB, `tar stream of ${stream} bytes`);

    let evictedBytes = 0;
    await t.step("the scripted sequence", async () => {
      const miss = await clone(1, "hv1");
      ok(miss, "miss");
      assert.match(miss.stderr, /Filling the cache of replica/);
      for (const [vm, host] of [[2, "hv2"], [3, "hv1"]] as const) {
        const hit = await clone(vm, host);
        ok(hit, `hit ${vm}`);
        assert.match(hit.stderr, /Cache hit/);
      }
      // Seen by `onestor cache ls`: the monitor reports the cache's size.
      assert.equal((await onestor(["cache", "ls"])).code, 0);
      evictedBytes = Number((await world.sh("replica", `du -sB1 ${image} | cut -f1`)).trim());
      const withCache = await monitor();
      assert.match(withCache, /^USED_MB=\d+\nFREE_MB=\d+\nTOTAL_MB=\d+\n/);
      assert.match(withCache, /^REPLICA_CACHE_HIT_RATIO=0\.67$/m);
      assert.match(withCache, new RegExp(`^REPLICA_CACHE_SIZE_MB=${Math.ceil(evictedBytes / MiB)}$`, "m"));
      await world.lab.stopSshd("replica");
      try {
        const fallback = await clone(4, "hv2");
        ok(fallback, "fallback");
        assert.match(fallback.stderr, /copying straight from the front-end/);
      } finally {
        await world.lab.startSshd("replica");
      }
      await world.writeFile("frontend", SSHRC, "REPLICA_MAX_SIZE_MB=1\n");
      const trim = await onestor(["cache", "evict", "--trim", "--replica", "replica"]);
      assert.equal(trim.code, 0, trim.stdout + trim.stderr);
      assert.match(trim.stdout, /replica: evicted 1 /);
      await world.writeFile("frontend", SSHRC, "");
    });

    await t.step("every counter equals the expected value exactly", async () => {
      const run = await onestor(["metrics"]);
      assert.equal(run.code, 0, run.stderr);
      const all = samples(run.stdout);
      const counters = new Map([...all].filter(([k]) => k.split("{")[0].endsWith("_total")));
      const expected = new Map<string, number>([
        ['onestor_actions_total{action="clone",kind="tm",result="success"}', 4],
        ['onestor_actions_total{action="monitor",kind="ds",result="success"}', 1],
        ['onestor_cache_hits_total{datastore="1",replica="replica"}', 2],
        ['onestor_cache_misses_total{datastore="1",replica="replica"}', 1],
        ['onestor_cache_fills_total{replica="replica",result="promoted"}', 1],
        ['onestor_cache_fallbacks_total{reason="unreachable",replica="replica"}', 1],
        ['onestor_cache_evictions_total{kind="entry",replica="replica"}', 1],
        ['onestor_cache_evicted_bytes_total{replica="replica"}', evictedBytes],
        // The miss streams once to the replica and on to hv1; each hit copies from the replica; the
        // fallback copies straight from the front-end.
        ['onestor_transfer_bytes_total{hop="frontend_to_replica",host="replica"}', stream],
        ['onestor_transfer_bytes_total{hop="replica_to_host",host="hv1"}', 2 * stream],
        ['onestor_transfer_bytes_total{hop="replica_to_host",host="hv2"}', stream],
        ['onestor_transfer_bytes_total{hop="frontend_to_host",host="hv2"}', stream],
      ]);
      assert.deepEqual(Object.fromEntries(counters), Object.fromEntries(expected));
      assert.equal(all.get('onestor_transfer_duration_seconds_count{hop="replica_to_host"}'), 3);
      assert.equal(all.get('onestor_transfer_duration_seconds_count{hop="frontend_to_replica"}'), 1);
      assert.equal(all.get('onestor_action_duration_seconds_count{action="clone"}'), 4);
      assert.equal(all.get('onestor_cache_lock_wait_seconds_count{replica="replica"}'), undefined);
      console.log(
        `metrics of the sequence:\n${[...counters].map(([k, v]) => `  ${k} ${v}`).join("\n")}`,
      );
      // The store: one line per event, on the front-end.
      const lines = (await world.sh("frontend", "cat /var/lib/one/onestor/metrics/*.jsonl")).trim().split(
        "\n",
      );
      assert.ok(lines.every((l) => JSON.parse(l).m), "every line is one whole event");
    });

    await t.step("promtool accepts the output; --textfile writes it atomically", async () => {
      const dir = `${world.lab.dir}/textfile`;
      await Deno.mkdir(dir);
      await Deno.chmod(dir, 0o777);
      const run = await onestor(["metrics", "--textfile", dir]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, "");
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["onestor.prom"]);
      const text = await Deno.readTextFile(`${dir}/onestor.prom`);
      assert.equal(samples(text).get('onestor_cache_hits_total{datastore="1",replica="replica"}'), 2);
      const which = await runCommand(["sh", "-c", "command -v promtool"]);
      if (which.code !== 0) {
        if (Deno.env.get("ONESTOR_LAB") === "require") {
          throw new Error("promtool is missing (bash scripts/setup.sh)");
        }
        console.log("promtool check skipped: promtool is not installed (bash scripts/setup.sh as root)");
        return;
      }
      const check = await runCommand(["promtool", "check", "metrics"], { stdin: text });
      assert.equal(check.code, 0, check.stdout + check.stderr);
      assert.equal((check.stdout + check.stderr).trim(), "", "promtool has nothing to say");
    });

    await t.step("the monitor's size follows what onestor cache ls saw after the eviction", async () => {
      assert.equal((await onestor(["cache", "ls"])).code, 0);
      const after = await monitor();
      assert.match(after, /^REPLICA_CACHE_HIT_RATIO=0\.67$/m);
      assert.match(after, /^REPLICA_CACHE_SIZE_MB=0$/m);
    });
  },
);
