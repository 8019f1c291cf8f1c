import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";

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
