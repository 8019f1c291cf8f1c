/**
 * Host keys through an installed action, as oned runs it: when the front-end does not know a
 * hypervisor's host key, or knows another one, the action fails with one line that says which and
 * how to fix it, nothing on the host is touched, and `onestor doctor` names the same fix. Nothing
 * is accepted on trust: once the right key is recorded, the action works.
 */

import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { failureInfo, ok, World } from "../support/world.ts";
import { datastoreXml, DS_LOC, hostXml } from "../support/fixtures.ts";
import { MAIN } from "../support/run_onestor.ts";

const KNOWN = "/var/lib/one/.ssh/known_hosts";
const DS = "/var/lib/one/datastores";

labTest("host keys: unknown and changed keys refused with their fix, never accepted on trust", async () => {
  await using world = await World.start({ hosts: ["frontend", "hv1"] });
  world.oned.addDatastore(datastoreXml({ id: 100 }));
  world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
  await world.sh("hv1", `mkdir -p ${DS}/100/7 && echo keep >${DS}/100/7/disk.0 && chown -R oneadmin: ${DS}`);
  const original = await Deno.readTextFile(world.lab.path("frontend", KNOWN));
  const hv1Line = original.split("\n").find((l) => l.startsWith("hv1,"))!;
  const remove = () => world.tm("delete", [`hv1:${DS_LOC}/100/7/disk.0`, 7, 100]);

  // Unknown: hv1's line removed from oneadmin's known_hosts on the front-end.
  await Deno.writeTextFile(world.lab.path("frontend", KNOWN), original.replace(`${hv1Line}\n`, ""));
  const unknown = await remove();
  assert.notEqual(unknown.code, 0);
  const line1 = failureInfo(unknown.stderr);
  assert.equal(line1.length, 1, JSON.stringify(line1));
  assert.match(
    line1[0],
    /Host key of hv1 is not in known_hosts .*ssh-keyscan -H hv1 >>~\/\.ssh\/known_hosts/,
  );
  const doctor = await world.lab.exec(
    "frontend",
    [Deno.execPath(), "run", "-A", "--no-check", "--quiet", MAIN, "doctor", "--host", "hv1"],
    { user: "oneadmin", env: world.env() },
  );
  assert.notEqual(doctor.code, 0);
  assert.match(doctor.stdout, /ssh-keyscan -H hv1/);
  assert.equal(await world.sh("hv1", `cat ${DS}/100/7/disk.0`), "keep\n", "nothing touched");
  // The action did not record the key on its own.
  assert.doesNotMatch(await Deno.readTextFile(world.lab.path("frontend", KNOWN)), /^hv1,/m);

  // Changed: another key recorded for hv1.
  const keygen = await new Deno.Command("ssh-keygen", {
    args: ["-q", "-t", "ed25519", "-N", "", "-f", `${world.lab.dir}/impostor`],
  }).output();
  assert.ok(keygen.success);
  const impostor = (await Deno.readTextFile(`${world.lab.dir}/impostor.pub`)).split(" ").slice(0, 2).join(
    " ",
  );
  await Deno.writeTextFile(
    world.lab.path("frontend", KNOWN),
    `${hv1Line.split(" ")[0]} ${impostor}\n${original.replace(`${hv1Line}\n`, "")}`,
  );
  const changed = await remove();
  assert.notEqual(changed.code, 0);
  const line2 = failureInfo(changed.stderr);
  assert.equal(line2.length, 1, JSON.stringify(line2));
  assert.match(line2[0], /Host key of hv1 does not match known_hosts .*ssh-keygen -R hv1/);
  assert.equal(await world.sh("hv1", `cat ${DS}/100/7/disk.0`), "keep\n", "nothing touched");

  // The right key recorded: the action works.
  await Deno.writeTextFile(world.lab.path("frontend", KNOWN), original);
  ok(await remove(), "delete with the right key");
  assert.equal((await world.lab.sh("hv1", `test -e ${DS}/100/7/disk.0`)).code, 1);
  console.log("host keys: 2 refusals (unknown, changed), each with its fix; accepted only once recorded");
});
