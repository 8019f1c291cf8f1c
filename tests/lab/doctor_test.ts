import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { World } from "../support/world.ts";
import { datastoreXml, hostXml } from "../support/fixtures.ts";

labTest(
  "onestor doctor checks the SSH mesh, including replica → hypervisors, and names what is broken",
  async () => {
    await using world = await World.start();
    world.oned.addDatastore(datastoreXml({ id: 1, dsMad: world.dsName, tmMad: world.tmName }));
    world.oned.addDatastore(
      datastoreXml({ id: 100, type: 1, tmMad: world.tmName, template: { REPLICA_HOST: "replica" } }),
    );
    for (const [id, name] of [[1, "replica"], [2, "hv1"], [3, "hv2"]] as const) {
      world.oned.addHost(hostXml({ id, name }));
    }
    await world.writeFile(
      "frontend",
      "/var/lib/one/remotes/etc/onestor/onestor.conf",
      "SSH_CONNECT_TIMEOUT=3\n",
    );
    const doctor = () =>
      world.lab.exec("frontend", [`/var/lib/one/remotes/tm/${world.tmName}/.onestor`, "doctor"], {
        user: "oneadmin",
        env: world.env(),
      });
    const healthy = await doctor();
    assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
    assert.match(healthy.stdout, /^ok {3}ssh front-end → hv1$/m);
    assert.match(healthy.stdout, /^ok {3}ssh replica → hv2 \(system datastore 100\)$/m);
    assert.match(healthy.stdout, /All checks passed/);

    // hv2's sshd down: both the front-end's and the replica's hop to it fail, each named.
    await world.lab.stopSshd("hv2");
    const broken = await doctor();
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, /^FAIL ssh front-end → hv2: Cannot reach host hv2 over SSH/m);
    assert.match(broken.stdout, /^FAIL ssh replica → hv2 \(system datastore 100\): /m);
    assert.match(broken.stdout, /^ok {3}ssh front-end → hv1$/m);
  },
);
