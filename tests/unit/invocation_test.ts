import assert from "node:assert/strict";
import { resolveInvocation } from "../../actions/invocation.ts";
import { findAction } from "../../actions/registry.ts";

Deno.test("resolveInvocation() reads family, driver and action from the invoked path", () => {
  assert.deepEqual(resolveInvocation("/var/lib/one/remotes/tm/onestor/clone"), {
    kind: "tm",
    driver: "onestor",
    action: "clone",
  });
  assert.deepEqual(resolveInvocation("/var/lib/one/remotes/datastore/fs/cp"), {
    kind: "ds",
    driver: "fs",
    action: "cp",
  });
  assert.deepEqual(resolveInvocation("./clone", "/var/lib/one/remotes/tm/ssh"), {
    kind: "tm",
    driver: "ssh",
    action: "clone",
  });
  assert.deepEqual(resolveInvocation("/usr/bin/onestor"), undefined);
});

Deno.test("findAction() falls back from oned's suffixed names to the base action", () => {
  assert.deepEqual(findAction("tm", "CLONE.ssh")?.name, "clone");
  assert.deepEqual(findAction("tm", "clone.replica")?.name, "clone.replica");
  assert.deepEqual(findAction("tm", "mv.qcow2")?.name, "mv");
  assert.deepEqual(findAction("ds", "cp")?.name, "cp");
  assert.deepEqual(findAction("ds", "nope"), undefined);
});
