/**
 * SSH_CIPHERS: the cipher preference every ssh command and every host-to-host hop carries, the
 * administrator's own Ciphers option winning, `default` leaving the choice to OpenSSH, and names
 * checked. The argv is also handed to the real ssh client (`ssh -G`, which parses the options and
 * prints the configuration it would use without connecting) to prove OpenSSH reads the list.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../../core/errors.ts";
import { ciphersSetting, DEFAULT_CIPHERS, hopScript, SshClient } from "../../core/remote/ssh.ts";
import { sh } from "../../core/remote/shell.ts";
import { loadConfig } from "../../config/load.ts";
import { withRoot } from "../support/config_root.ts";

function ciphersOf(argv: readonly string[]): string[] {
  return argv.flatMap((a, i) => argv[i - 1] === "-o" && a.startsWith("Ciphers=") ? [a.slice(8)] : []);
}

Deno.test("every ssh command offers AES-GCM first by default, after the administrator's options", () => {
  const argv = new SshClient({ options: ["-o", "Port=2222"] }).argv("hv1", sh`true`, [
    "-o",
    "Compression=no",
  ]);
  assert.deepEqual(ciphersOf(argv), [DEFAULT_CIPHERS.join(",")]);
  assert.equal(DEFAULT_CIPHERS[0], "aes128-gcm@openssh.com");
  // OpenSSH keeps the first value of an option: ours come after SSH_OPTS and the hop's options.
  assert.ok(argv.indexOf("Port=2222") < argv.indexOf(`Ciphers=${DEFAULT_CIPHERS.join(",")}`));
  assert.ok(argv.indexOf("Compression=no") < argv.indexOf(`Ciphers=${DEFAULT_CIPHERS.join(",")}`));
});

Deno.test("an empty cipher list adds nothing; host-to-host hops carry the list too", () => {
  assert.deepEqual(ciphersOf(new SshClient({ ciphers: [] }).argv("hv1", sh`true`)), []);
  const hop = hopScript("hv2", sh`true`, { ciphers: ["aes256-gcm@openssh.com"] }).text;
  assert.match(hop, /-o Ciphers=aes256-gcm@openssh\.com /);
  assert.doesNotMatch(hopScript("hv2", sh`true`, { ciphers: [] }).text, /Ciphers/);
});

Deno.test("SSH_CIPHERS: the default list, `default` for OpenSSH's choice, bad names refused", async () => {
  await withRoot({}, (root) => {
    assert.deepEqual(ciphersSetting(loadConfig({ root, env: {} }).sshCiphers), [...DEFAULT_CIPHERS]);
  });
  await withRoot({ "/var/lib/one/remotes/etc/onestor/onestor.conf": "SSH_CIPHERS=default\n" }, (root) => {
    assert.deepEqual(ciphersSetting(loadConfig({ root, env: {} }).sshCiphers), []);
  });
  assert.deepEqual(ciphersSetting(["default"]), []);
  assert.deepEqual(ciphersSetting(["aes256-ctr", "chacha20-poly1305@openssh.com"]), [
    "aes256-ctr",
    "chacha20-poly1305@openssh.com",
  ]);
  assert.throws(() => ciphersSetting(["aes128-ctr", "-oProxyCommand=x"]), ConfigError);
  assert.throws(
    () => ciphersSetting(["aes128-ctr;id"]),
    /SSH_CIPHERS: 'aes128-ctr;id' is no OpenSSH cipher name/,
  );
});

Deno.test("OpenSSH accepts the argv and prefers the first cipher (ssh -G, no connection)", async () => {
  const client = new SshClient({ controlPersist: 0 });
  const argv = client.argv("hv1.invalid", sh`true`).filter((a) => a !== "-T" && a !== "-x");
  const at = argv.indexOf("--");
  const cmd = new Deno.Command("ssh", { args: ["-G", ...argv.slice(1, at), "hv1.invalid"], stdout: "piped" });
  const out = await cmd.output().catch(() => null);
  if (out === null) {
    console.log("skipped: no ssh client on this machine");
    return;
  }
  assert.equal(out.code, 0);
  const line = new TextDecoder().decode(out.stdout).split("\n").find((l) => l.startsWith("ciphers "));
  assert.equal(line, `ciphers ${DEFAULT_CIPHERS.join(",")}`);
});
