import assert from "node:assert/strict";
import { RemoteError } from "../../core/errors.ts";
import { hopScript, SshClient } from "../../core/remote/ssh.ts";
import { sh } from "../../core/remote/shell.ts";
import { Lab, labTest } from "../support/lab.ts";

const HOSTILE = [
  "$(touch /tmp/onestor-pwned)",
  "`touch /tmp/onestor-pwned`",
  "x; touch /tmp/onestor-pwned",
  "a path with spaces",
  "new\nline",
  "quote ' and \" and \\",
  "--option-looking",
  "* ? [a]",
];

function client(lab: Lab, options: string[] = []): SshClient {
  return new SshClient({
    configFile: lab.sshConfig,
    controlDir: `${lab.dir}/ctl-${crypto.randomUUID().slice(0, 8)}`,
    connectTimeout: 5,
    options,
  });
}

function pwned(lab: Lab, host: string): boolean {
  try {
    Deno.statSync(lab.path(host, "/var/lib/one/../../../tmp/onestor-pwned"));
    return true;
  } catch {
    return false;
  }
}

labTest(
  "SSH layer: hostile values reach the remote host as the same literal string and run nothing",
  async () => {
    await using lab = await Lab.start({ hosts: ["frontend", "hv1", "hv2"] });
    try {
      Deno.removeSync("/tmp/onestor-pwned");
    } catch { /* absent */ }
    const ssh = client(lab);
    for (const value of HOSTILE) {
      assert.equal(
        await ssh.output("hv1", sh`printf '%s' ${value} | od -An -c | tr -s ' '`),
        await localOd(value),
      );
      // The same value as a file name in the host's datastore folder.
      const name = value.replaceAll("/", "_");
      await ssh.run("hv1", sh`cd /var/lib/one/datastores && touch -- ${name}`);
      const names = [...Deno.readDirSync(lab.path("hv1", "/var/lib/one/datastores"))].map((e) => e.name);
      assert.ok(names.includes(name), `file ${JSON.stringify(name)} created literally`);
    }
    // Host to host: hv1 runs a script on hv2 with the hostile values, quoted twice by construction.
    const out = await ssh.output(
      "hv1",
      hopScript("hv2", sh`for a in ${HOSTILE}; do printf '<%s>' "$a"; done`),
    );
    assert.equal(out, HOSTILE.map((v) => `<${v}>`).join(""));
    assert.equal(pwned(lab, "hv1") || pwned(lab, "hv2"), false);
    let local = true;
    try {
      Deno.statSync("/tmp/onestor-pwned");
    } catch {
      local = false;
    }
    assert.equal(local, false, "nothing ran");
    await ssh.closeMasters();
  },
);

async function localOd(value: string): Promise<string> {
  const cmd = new Deno.Command("sh", {
    args: ["-c", "od -An -c | tr -s ' '"],
    stdin: "piped",
    stdout: "piped",
  });
  const child = cmd.spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(value));
  await w.close();
  return new TextDecoder().decode((await child.output()).stdout).trim();
}

labTest(
  "SSH layer: a stopped sshd, a refused key, a changed host key and a timeout each name the host",
  async () => {
    await using lab = await Lab.start({ hosts: ["frontend", "hv1", "hv2"] });
    const ssh = client(lab);
    await ssh.ping("hv2");

    await lab.stopSshd("hv2");
    const started = performance.now();
    const down = await ssh.run("hv2", sh`true`, { timeoutMs: 20_000 }).catch((e) => e);
    assert.ok(down instanceof RemoteError, String(down));
    assert.equal(down.host, "hv2");
    assert.ok(down.kind === "unreachable", `${down.kind}: ${down.message}`);
    assert.match(down.message, /^Cannot reach host hv2 over SSH/);
    assert.ok(performance.now() - started < 20_000, "fails within its timeout");
    await lab.startSshd("hv2");
    await ssh.ping("hv2");

    const noKey = await client(lab, ["-o", "User=nobody"]).run("hv1", sh`true`).catch((e) => e);
    assert.ok(noKey instanceof RemoteError && noKey.kind === "auth", String(noKey));
    assert.match(noKey.message, /SSH authentication to host hv1 failed/);

    const wrongKnownHosts = `${lab.dir}/wrong_known_hosts`;
    const keygen = await new Deno.Command("ssh-keygen", {
      args: ["-q", "-t", "ed25519", "-N", "", "-f", `${lab.dir}/other_key`],
    }).output();
    assert.equal(keygen.code, 0);
    const otherPub = Deno.readTextFileSync(`${lab.dir}/other_key.pub`).split(" ").slice(0, 2).join(" ");
    Deno.writeTextFileSync(wrongKnownHosts, `hv1,${lab.host("hv1").address} ${otherPub}\n`);
    const badKey = await client(lab, ["-o", `UserKnownHostsFile=${wrongKnownHosts}`]).run("hv1", sh`true`)
      .catch((e) => e);
    assert.ok(badKey instanceof RemoteError && badKey.kind === "hostkey", String(badKey));
    assert.match(badKey.message, /Host key of hv1 does not match known_hosts/);

    const beforeSleep = performance.now();
    const slow = await ssh.run("hv1", sh`sleep 30`, { timeoutMs: 1500, what: "Sleep" }).catch((e) => e);
    assert.ok(
      performance.now() - beforeSleep < 10_000,
      "a timeout returns promptly despite the shared connection",
    );
    assert.ok(slow instanceof RemoteError && slow.kind === "timeout", String(slow));
    assert.match(
      slow.message,
      /^Sleep on host hv1 timed out after 2 s|^Sleep on host hv1 timed out after 1 s/,
    );

    const failed = await ssh.run("hv1", sh`echo "disk full" >&2; exit 3`, { what: "Copy" }).catch((e) => e);
    assert.ok(
      failed instanceof RemoteError && failed.kind === "command" && failed.status === 3,
      String(failed),
    );
    assert.match(failed.message, /^Copy on host hv1 failed \(exit 3\): disk full$/);
    await ssh.closeMasters();
  },
);

labTest("SSH layer: large stdout and stderr are drained together and connections are reused", async () => {
  await using lab = await Lab.start({ hosts: ["frontend", "hv1"] });
  const ssh = client(lab);
  const result = await ssh.run(
    "hv1",
    sh`head -c 3000000 /dev/zero | tr '\\0' e >&2; head -c 2000000 /dev/zero | tr '\\0' o`,
    { timeoutMs: 60_000, captureLimit: 4 << 20 },
  );
  assert.equal(result.stdout.length, 2_000_000);
  assert.equal(result.stderr.length, 3_000_000);
  const sockets = [...Deno.readDirSync(ssh.controlDir)];
  assert.equal(sockets.length, 1, "one master connection");
  for (let i = 0; i < 5; i++) await ssh.run("hv1", sh`true`);
  assert.equal([...Deno.readDirSync(ssh.controlDir)].length, 1, "reused, not multiplied");
  await ssh.closeMasters();
});
