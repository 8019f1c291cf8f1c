import assert from "node:assert/strict";
import { onestor } from "../support/run_onestor.ts";
import { withRoot } from "../support/config_root.ts";

Deno.test("onestor config shows each value with the file and line it came from", async () => {
  await withRoot(
    { "/var/lib/one/remotes/etc/tm/ssh/sshrc": "# cache\nREPLICA_MAX_SIZE_MB=2048\n" },
    async (root) => {
      const result = await onestor(["config"], { env: { ONESTOR_CONFIG_ROOT: root } });
      assert.equal(result.code, 0, result.stderr);
      assert.match(
        result.stdout,
        /REPLICA_MAX_SIZE_MB\s+2048\s+\[.*\/var\/lib\/one\/remotes\/etc\/tm\/ssh\/sshrc:2\]/,
      );
      assert.match(result.stdout, /REPLICA_MAX_USED_PERC\s+90\s+\[default\]/);
    },
  );
});

Deno.test("onestor config --check reports a misspelt key in a stock file and fails on one in onestor.conf", async () => {
  await withRoot({ "/var/lib/one/remotes/etc/tm/ssh/sshrc": "REPLICA_MAX_SIZEMB=10\n" }, async (root) => {
    const result = await onestor(["config", "--check"], { env: { ONESTOR_CONFIG_ROOT: root } });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /REPLICA_MAX_SIZEMB.*did you mean REPLICA_MAX_SIZE_MB/);
  });
  await withRoot(
    { "/var/lib/one/remotes/etc/onestor/onestor.conf": "REPLICA_FALLBAK=no\n" },
    async (root) => {
      const result = await onestor(["config", "--check"], { env: { ONESTOR_CONFIG_ROOT: root } });
      assert.equal(result.code, 255);
      assert.match(result.stderr, /Unknown key REPLICA_FALLBAK .*did you mean REPLICA_FALLBACK/);
    },
  );
});
