import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import { datastoreXml, vmXml } from "../support/fixtures.ts";

labTest("installed TM symlinks run on the frontend as oneadmin, and monitor_ds reports disks", async () => {
  await using world = await World.start();
  // TM monitor through its symlink (system DS monitor: base64 data on stdin, nothing printed).
  const monitor = await world.tm("monitor", [100], { stdin: "PERTX0RSSVZFUl9BQ1RJT05fREFUQT4=" });
  assert.equal(ok(monitor, "monitor"), "");
  // monitor_ds is a plain shell script the hosts run; run it on hv1 the way the probe does.
  await world.sh(
    "hv1",
    "mkdir -p /var/lib/one/datastores/100/7/disk.0.snap && truncate -s 10M /var/lib/one/datastores/100/7/disk.0" +
      " && head -c 3145728 /dev/urandom > /var/lib/one/datastores/100/7/disk.0.snap/12",
  );
  const script = world.lab.path("frontend", `/var/lib/one/remotes/tm/${world.tmName}/monitor_ds`);
  const out = await world.sh("hv1", `sh ${script} /var/lib/one/datastores/100`);
  const match = out.match(/^VM = \[ ID = 7, MONITOR = "([A-Za-z0-9+/=]+)"\]$/m);
  assert.ok(match, out);
  const decoded = atob(match[1]);
  assert.match(
    decoded,
    /^\nDISK_SIZE = \[ ID=0, SIZE=0 \]\nSNAPSHOT_SIZE = \[ ID=12, DISK_ID=0, SIZE=3 \]\n$/,
  );
});

labTest("an action whose host's sshd is down fails within its timeout, naming the host", async () => {
  await using world = await World.start();
  world.oned.addDatastore(datastoreXml({ id: 0, type: 1, tmMad: world.tmName, dsMad: "-" }));
  world.oned.addVm(vmXml({ id: 7, history: [{ hostname: "hv2", hid: 3, dsId: 0 }] }));
  await world.writeFile(
    "frontend",
    "/var/lib/one/remotes/etc/onestor/onestor.conf",
    "SSH_CONNECT_TIMEOUT=5\nSSH_CONTROL_TIMEOUT=20\n",
  );
  await world.sh("hv2", "mkdir -p /var/lib/one/datastores/0/7 && touch /var/lib/one/datastores/0/7/disk.0", {
    user: "oneadmin",
  });
  await world.lab.stopSshd("hv2");
  const started = performance.now();
  const result = await world.tm("delete", ["hv2:/var/lib/one//datastores/0/7", 7, 0]);
  const elapsed = performance.now() - started;
  assert.notEqual(result.code, 0);
  const cause = result.stderr.split("\n").filter((l) => l !== "" && !/^(INFO|WARN|ERROR|DEBUG):/.test(l));
  assert.equal(cause.length, 1, result.stderr);
  assert.match(cause[0], /hv2/);
  assert.ok(elapsed < 20_000, `failed after ${elapsed} ms, within the 20 s control timeout`);
  // Nothing was deleted, and once sshd is back the same call succeeds.
  await world.lab.startSshd("hv2");
  assert.ok(Deno.statSync(world.lab.path("hv2", "/var/lib/one/datastores/0/7/disk.0")).isFile);
  ok(await world.tm("delete", ["hv2:/var/lib/one//datastores/0/7", 7, 0]), "delete");
  assert.throws(() => Deno.statSync(world.lab.path("hv2", "/var/lib/one/datastores/0/7")));
});

labTest(
  "LOG_LEVEL=debug logs every command an action runs, with its host, duration and exit code",
  async () => {
    await using world = await World.start();
    world.oned.addDatastore(datastoreXml({ id: 0, type: 1, tmMad: world.tmName, dsMad: "-" }));
    world.oned.addVm(vmXml({ id: 8, history: [{ hostname: "hv1", hid: 2, dsId: 0 }] }));
    await world.writeFile("frontend", "/var/lib/one/remotes/etc/onestor/onestor.conf", "LOG_LEVEL=debug\n");
    const result = await world.tm("delete", ["hv1:/var/lib/one//datastores/0/8", 8, 0]);
    ok(result, "delete");
    assert.match(
      result.stderr,
      /^DEBUG: delete: hv1: Deleting \/var\/lib\/one\/datastores\/0\/8 \(\d+ ms, exit 0\)$/m,
    );
    await world.writeFile("frontend", "/var/lib/one/remotes/etc/onestor/onestor.conf", "LOG_LEVEL=info\n");
    const quiet = await world.tm("delete", ["hv1:/var/lib/one//datastores/0/8", 8, 0]);
    assert.doesNotMatch(ok(quiet, "delete") + quiet.stderr, /DEBUG:/);
  },
);
