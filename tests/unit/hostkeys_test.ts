/**
 * Host keys stay verified: no part of the product turns StrictHostKeyChecking off or points
 * known_hosts at /dev/null, the configuration refuses options that would, and an unknown or a
 * changed host key gives one line that says which and how to fix it (the lab test
 * tests/lab/hostkeys_test.ts runs it against real sshd).
 */
import assert from "node:assert/strict";
import { disablesHostKeys, loadConfig } from "../../config/load.ts";
import { ConfigError } from "../../core/errors.ts";
import { classifySshFailure, describeSshFailure, hopScript, SshClient } from "../../core/remote/ssh.ts";
import { sh } from "../../core/remote/shell.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const DISABLING =
  /StrictHostKeyChecking\s*[= ]\s*(no|off|accept-new)|UserKnownHostsFile\s*[= ]\s*\/dev\/null/i;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...sources(path));
    else if (e.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

Deno.test("no product source turns host key checking off", () => {
  const files = [`${ROOT}main.ts`, ...["actions", "core", "config"].flatMap((d) => sources(`${ROOT}${d}`))];
  assert.ok(files.length > 50);
  for (const file of files) {
    const text = Deno.readTextFileSync(file);
    for (const [i, line] of text.split("\n").entries()) {
      // Comments may say what is never done; the patterns the configuration refuses are spelled in
      // regular expressions there.
      if (/^\s*(\*|\/\/|\/\*\*)/.test(line)) continue;
      if (file.endsWith("config/load.ts") && /stricthostkeychecking\[|userknownhostsfile\[/.test(line)) {
        continue;
      }
      assert.doesNotMatch(line, DISABLING, `${file}:${i + 1}`);
    }
  }
  const client = new SshClient({ options: ["-o", "Port=22"] });
  const argv = client.argv("hv1", sh`true`, ["-c", "aes128-gcm@openssh.com"]).join(" ");
  assert.doesNotMatch(argv, DISABLING);
  assert.match(argv, /BatchMode=yes/);
  assert.doesNotMatch(hopScript("hv2", sh`true`).text, DISABLING);
});

Deno.test("settings that would switch host key checking off are refused", async () => {
  for (
    const opts of [
      "-o StrictHostKeyChecking=no",
      "-oStrictHostKeyChecking=off",
      "-o 'UserKnownHostsFile /dev/null'",
      "-o stricthostkeychecking=accept-new",
    ]
  ) {
    assert.ok(disablesHostKeys(opts.replaceAll("'", "").split(" ")), opts);
  }
  assert.ok(
    !disablesHostKeys(["-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/etc/ssh/known"]),
  );
  const root = await Deno.makeTempDir({ prefix: "onestor_hostkeys_" });
  try {
    const conf = `${root}/var/lib/one/remotes/etc/onestor/onestor.conf`;
    const sshrc = `${root}/var/lib/one/remotes/etc/tm/ssh/sshrc`;
    await Deno.mkdir(conf.slice(0, conf.lastIndexOf("/")), { recursive: true });
    await Deno.mkdir(sshrc.slice(0, sshrc.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(conf, 'SSH_OPTS="-o StrictHostKeyChecking=no"\n');
    assert.throws(
      () => loadConfig({ root, env: {} }),
      (e: unknown) =>
        e instanceof ConfigError && /must not turn host key checking off .*known_hosts/.test(e.message),
    );
    await Deno.writeTextFile(conf, "\n");
    await Deno.writeTextFile(
      sshrc,
      'REPLICA_SSH_OPTS="-c aes128-gcm@openssh.com -o UserKnownHostsFile=/dev/null"\n',
    );
    assert.throws(() => loadConfig({ root, env: {}, warn: () => {} }), ConfigError);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("an unknown and a changed host key are told apart, each with its fix", () => {
  const unknown = "No ED25519 host key is known for hv1 and you have requested strict checking.\r\n" +
    "Host key verification failed.\r\n";
  const changed = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n" +
    "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n" +
    "Host key for hv1 has changed and you have requested strict checking.\r\nHost key verification failed.\r\n";
  for (
    const [stderr, pattern] of [
      [
        unknown,
        /^Host key of hv1 is not in known_hosts \(.*\): run ssh-keyscan -H hv1 >>~\/\.ssh\/known_hosts after checking its fingerprint/,
      ],
      [
        changed,
        /^Host key of hv1 does not match known_hosts \(it changed.*ssh-keygen -R hv1 and ssh-keyscan -H hv1/,
      ],
    ] as const
  ) {
    const kind = classifySshFailure(255, stderr, false);
    assert.equal(kind, "hostkey");
    const line = describeSshFailure("hv1", kind, { code: 255, stderr }, undefined, undefined);
    assert.match(line, pattern);
    assert.ok(!line.includes("\n"));
  }
});
