/**
 * Tests of the test lab itself (tests/support/lab.ts and scripts/lab.ts). Need root.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Lab, LAB_BASE, LAB_HOSTS, labTest, listLabs } from "../support/lab.ts";

const DENO = Deno.execPath();
const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Runs a command on the machine (outside every lab host). */
async function machine(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const o = await new Deno.Command(cmd, { args, env, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
}

interface RecordedState {
  subnet: string;
  hosts: { name: string; unshare: { pid: number }; init: { pid: number } }[];
}

async function recordedState(lab: Lab): Promise<RecordedState> {
  return JSON.parse(await Deno.readTextFile(`${lab.dir}/state.json`));
}

/** Every pid in the process tree under `pid`, itself included. */
function tree(pid: number): number[] {
  const out = [pid];
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      const kids = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim();
      for (const k of kids ? kids.split(/\s+/) : []) out.push(...tree(Number(k)));
    }
  } catch {
    // Exited.
  }
  return out;
}

/** Whether a pid runs (zombies count as gone: the machine's init may be slow to reap them). */
function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

function mountsMentioning(text: string): string[] {
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n").filter((l) => l.includes(text));
}

labTest("Lab.start() gives each host its own hostname, address and private dirs", async () => {
  await using lab = await Lab.start();
  assert.deepEqual([...lab.hosts.keys()], [...LAB_HOSTS]);
  const addresses = [...lab.hosts.values()].map((h) => h.address);
  assert.equal(new Set(addresses).size, LAB_HOSTS.length);
  for (const a of addresses) assert.match(a, /^127\.\d+\.\d+\.\d+$/);

  for (const name of LAB_HOSTS) {
    const r = await lab.exec(name, ["hostname"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), name);
    // /etc/hosts names every host of the lab.
    const hosts = await lab.exec(name, ["getent", "hosts", "hv2"]);
    assert.match(hosts.stdout, new RegExp(`^${lab.host("hv2").address.replaceAll(".", "\\.")}\\s+hv2`));
  }

  const w = await lab.sh(
    "hv1",
    "mkdir -p /var/lib/one/datastores/1 && echo hello > /var/lib/one/datastores/1/x",
  );
  assert.equal(w.code, 0, w.stderr);
  const other = await lab.exec("hv2", ["test", "-e", "/var/lib/one/datastores/1/x"]);
  assert.equal(other.code, 1, "hv2 must not see a file written in hv1");
  assert.equal(
    lab.path("hv1", "/var/lib/one/datastores/1/x"),
    `${lab.host("hv1").root}/var/lib/one/datastores/1/x`,
  );
  assert.equal(await Deno.readTextFile(lab.path("hv1", "/var/lib/one/datastores/1/x")), "hello\n");
  await assert.rejects(Deno.stat(lab.path("hv2", "/var/lib/one/datastores/1/x")), Deno.errors.NotFound);
  // Paths outside the private dirs are the machine's own.
  assert.equal(lab.path("hv1", "/usr/bin/../bin/env"), "/usr/bin/env");
  assert.throws(() => lab.path("hv1", "relative"), /absolute/);
  assert.throws(() => lab.host("nope"), /Unknown lab host nope/);

  // oneadmin owns its home, the datastores and the lock dir; root's home is clean.
  const own = await lab.exec("frontend", [
    "stat",
    "-c",
    "%U %n",
    "/var/lib/one",
    "/var/lib/one/datastores",
    "/var/lock/one",
    "/var/tmp/one",
    "/var/lib/one/.ssh/id_ed25519",
  ]);
  for (const line of own.stdout.trim().split("\n")) assert.match(line, /^oneadmin /);
  const home = await lab.exec("frontend", ["ls", "-A", "/root"]);
  assert.equal(home.stdout.trim(), ".ssh");
});

labTest("hosts reach each other and themselves over ssh by name, as root and as oneadmin", async () => {
  await using lab = await Lab.start();
  const from = await Promise.all(
    LAB_HOSTS.flatMap((to) =>
      (["root", "oneadmin"] as const).map(async (user) => {
        const r = await lab.exec("frontend", ["ssh", to, "echo $(hostname) $(id -un)"], { user });
        assert.equal(r.code, 0, `frontend -> ${to} as ${user}: ${r.stderr}`);
        return r.stdout.trim();
      })
    ),
  );
  assert.deepEqual(from, LAB_HOSTS.flatMap((h) => [`${h} root`, `${h} oneadmin`]));
  const back = await lab.exec("hv2", ["ssh", "frontend", "hostname"], { user: "oneadmin" });
  assert.equal(back.stdout, "frontend\n", back.stderr);
  const hop = await lab.exec("frontend", ["ssh", "hv1", "ssh", "hv2", "hostname"], { user: "oneadmin" });
  assert.equal(hop.stdout, "hv2\n", hop.stderr);

  // From outside the namespaces, with the lab's ssh_config.
  const outside = await machine("ssh", ["-F", lab.sshConfig, "hv2", "hostname"]);
  assert.equal(outside.code, 0, outside.stderr);
  assert.equal(outside.stdout, "hv2\n");
  const asOneadmin = await machine("ssh", ["-F", lab.sshConfig, "oneadmin@replica", "id -un; pwd"]);
  assert.equal(asOneadmin.stdout, "oneadmin\n/var/lib/one\n", asOneadmin.stderr);
});

labTest("exec() runs with a clean environment, stdin, cwd, user and timeout", async () => {
  await using lab = await Lab.start({ hosts: ["frontend"] });
  const env = await lab.exec("frontend", ["env"], { env: { ONE_LOCATION: "/x" } });
  const vars = Object.fromEntries(env.stdout.trim().split("\n").map((l) => l.split(/=(.*)/s).slice(0, 2)));
  assert.equal(vars.HOME, "/root");
  assert.equal(vars.LANG, "C");
  assert.equal(vars.ONE_LOCATION, "/x");
  assert.ok(vars.DENO_DIR, "DENO_DIR is passed through");
  assert.equal(vars.PWD, "/root");
  // Nothing of this process's environment leaks in (sh itself adds PWD and OLDPWD).
  const allowed = ["DENO_DIR", "HOME", "LANG", "LOGNAME", "OLDPWD", "ONE_LOCATION", "PATH", "PWD", "USER"];
  assert.deepEqual(Object.keys(vars).filter((k) => !allowed.includes(k)), []);

  const who = await lab.exec("frontend", ["sh", "-c", "id -un; echo $HOME; pwd"], {
    user: "oneadmin",
    cwd: "/tmp",
  });
  assert.equal(who.stdout, "oneadmin\n/var/lib/one\n/tmp\n");
  // The cwd is resolved inside the host: /var/lib/one is the host's, not the machine's.
  await Deno.writeTextFile(lab.path("frontend", "/var/lib/one/marker"), "");
  const ls = await lab.exec("frontend", ["ls"], { cwd: "/var/lib/one" });
  assert.match(ls.stdout, /^marker$/m);

  const cat = await lab.exec("frontend", ["sh", "-c", "cat; echo err >&2; exit 3"], { stdin: "in\n" });
  assert.deepEqual(cat, { code: 3, stdout: "in\n", stderr: "err\n" });
  const bytes = await lab.exec("frontend", ["wc", "-c"], { stdin: new Uint8Array(1 << 20) });
  assert.equal(bytes.stdout.trim(), `${1 << 20}`);
  // Large output on both streams at once must not dead-lock.
  const big = await lab.sh("frontend", "head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2");
  assert.equal(big.stdout.length + big.stderr.length, 6_000_000);

  const missing = await lab.exec("frontend", ["no-such-command"]);
  assert.equal(missing.code, 127);

  const start = Date.now();
  const slow = await lab.sh("frontend", "sleep 30 & sleep 30", { timeoutMs: 300 });
  assert.equal(slow.code, 124);
  assert.match(slow.stderr, /timed out after 300 ms/);
  assert.ok(Date.now() - start < 5000);
  const left = await lab.exec("frontend", ["pgrep", "-x", "sleep"]);
  assert.equal(left.stdout, "", "the timeout kills the whole command");
  // A daemon that escaped the command's process tree but holds its stdout does not hang exec.
  const held = await lab.sh("frontend", "setsid sleep 30 & echo started", { timeoutMs: 500 });
  assert.equal(held.code, 124);
  assert.equal(held.stdout, "started\n");
});

labTest("stopSshd() takes a host off the network, startSshd() brings it back", async () => {
  await using lab = await Lab.start();
  const daemon = await lab.sh("hv2", "sleep 1000 >/dev/null 2>&1 & echo $!");
  const ssh = (host: string) =>
    machine("ssh", ["-F", lab.sshConfig, "-o", "ConnectTimeout=3", host, "hostname"]);
  assert.equal((await ssh("hv2")).stdout, "hv2\n");

  await lab.stopSshd("hv2");
  const start = Date.now();
  const down = await ssh("hv2");
  assert.notEqual(down.code, 0);
  assert.match(down.stderr, /Connection refused/);
  assert.ok(Date.now() - start < 2000, "a down host fails fast");
  const fromFrontend = await lab.exec("frontend", ["ssh", "hv2", "true"]);
  assert.notEqual(fromFrontend.code, 0);
  assert.equal((await ssh("hv1")).stdout, "hv1\n", "other hosts stay up");

  // The host keeps its namespace, files and processes.
  const alive = await lab.exec("hv2", ["kill", "-0", daemon.stdout.trim()]);
  assert.equal(alive.code, 0);
  assert.equal((await lab.exec("hv2", ["hostname"])).stdout, "hv2\n");

  await lab.stopSshd("hv2"); // idempotent
  await lab.startSshd("hv2");
  assert.equal((await ssh("hv2")).stdout, "hv2\n");
  await lab.startSshd("hv2"); // idempotent
  assert.equal((await lab.exec("frontend", ["ssh", "hv2", "hostname"])).stdout, "hv2\n");
});

labTest("stop() leaves no process, mount, route or file behind", async () => {
  await assert.rejects(Lab.start({ extraDirs: ["/etc"] }), /Invalid extra dir: \/etc/);
  const lab = await Lab.start({ extraDirs: ["/etc/libvirt", "/run/libvirt/"] });
  // Something running in a host, as a reparented daemon.
  await lab.sh("hv1", "setsid sleep 1000 >/dev/null 2>&1 < /dev/null &");
  const state = await recordedState(lab);
  const pids = state.hosts.flatMap((h) => [h.unshare.pid, ...tree(h.init.pid)]);
  assert.ok(pids.length >= LAB_HOSTS.length * 3, `pids: ${pids}`);
  // Only these are sure to run: sshd children of the readiness probes may be on their way out.
  assert.ok(state.hosts.every((h) => running(h.unshare.pid) && running(h.init.pid)));
  // extraDirs are private too.
  await lab.sh("hv1", "echo x > /etc/libvirt/qemu.conf");
  assert.equal((await lab.exec("hv2", ["test", "-e", "/etc/libvirt/qemu.conf"])).code, 1);
  assert.equal(await Deno.readTextFile(lab.path("hv1", "/etc/libvirt/qemu.conf")), "x\n");

  const t = performance.now();
  await lab.stop();
  console.log(`stop took ${Math.round(performance.now() - t)} ms`);
  await lab.stop(); // idempotent
  assert.deepEqual(pids.filter(running), []);
  assert.deepEqual(mountsMentioning(lab.dir), []);
  await assert.rejects(Deno.stat(lab.dir), Deno.errors.NotFound);
  const routes = await machine("ip", ["route", "show", "table", "local"]);
  assert.doesNotMatch(routes.stdout, new RegExp(`127\\.${state.subnet.replace(".", "\\.")}\\.0/24`));
  assert.ok(!(await listLabs()).some((l) => l.name === lab.name));
  await assert.rejects(lab.exec("hv1", ["true"]), /is stopped/);
});

labTest("a second lab started while the first runs gets different addresses", async () => {
  await using a = await Lab.start();
  await using b = await Lab.start({ hosts: ["frontend", "hv1"] });
  assert.notEqual(a.dir, b.dir);
  const subnet = (l: Lab) => [...l.hosts.values()].map((h) => h.address.split(".").slice(0, 3).join("."));
  assert.equal(new Set([...subnet(a), ...subnet(b)]).size, 2);
  assert.equal((await machine("ssh", ["-F", a.sshConfig, "hv1", "hostname"])).stdout, "hv1\n");
  assert.equal((await machine("ssh", ["-F", b.sshConfig, "hv1", "hostname"])).stdout, "hv1\n");
  // Each lab's hv1 has its own datastores.
  await Deno.writeTextFile(a.path("hv1", "/var/lib/one/datastores/only-a"), "");
  assert.equal((await b.exec("hv1", ["test", "-e", "/var/lib/one/datastores/only-a"])).code, 1);
  assert.equal((await a.exec("hv1", ["test", "-e", "/var/lib/one/datastores/only-a"])).code, 0);
});

labTest("Deno inside a host runs from the machine's cache as oneadmin", async () => {
  await using lab = await Lab.start({ hosts: ["frontend"] });
  const r = await lab.exec(
    "frontend",
    [DENO, "eval", "console.log(Deno.env.get('USER'), Deno.cwd())"],
    { user: "oneadmin" },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "oneadmin /var/lib/one\n");
});

labTest("a lab dies with the process that started it and the next start removes its dir", async () => {
  const script = `
    import { Lab } from ${JSON.stringify(`${REPO}/tests/support/lab.ts`)};
    const lab = await Lab.start({ hosts: ["frontend", "hv1"] });
    console.log(lab.dir);
    await new Promise(() => {});`;
  const child = new Deno.Command(DENO, {
    args: ["eval", "--no-check", script],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let dir = "";
  while (!dir.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    dir += value;
  }
  dir = dir.trim();
  assert.ok(dir.startsWith(`${LAB_BASE}/`), `child printed ${dir}`);
  const state = JSON.parse(await Deno.readTextFile(`${dir}/state.json`)) as RecordedState;
  const pids = state.hosts.flatMap((h) => [h.unshare.pid, ...tree(h.init.pid)]);
  child.kill("SIGKILL");
  await child.status;
  await reader.cancel();
  for (let i = 0; i < 200 && pids.some(running); i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(pids.filter(running), [], "host processes die with their owner");
  // (Another test process starting a lab meanwhile may already have collected it: both are fine.)
  await using next = await Lab.start({ hosts: ["frontend"] });
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
  assert.equal((await next.exec("frontend", ["hostname"])).stdout, "frontend\n");
});

labTest("scripts/lab.ts up, status, exec and down drive a persistent lab", async () => {
  const name = `cli-${Deno.pid}`;
  const cli = (...args: string[]) =>
    machine(DENO, ["run", "-A", "--no-check", `${REPO}/scripts/lab.ts`, ...args]);
  try {
    const up = await cli("up", "--name", name, "--hosts", "frontend,hv1");
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /hv1\s+127\.\d+\.\d+\.3\s/);
    // The lab outlives the command that started it.
    const status = await cli("status");
    assert.match(status.stdout, new RegExp(`${name} \\(persistent`));
    assert.match(status.stdout, /hv1 +127\S+ +up/);
    const ex = await cli(
      "exec",
      "hv1",
      "--name",
      name,
      "--user",
      "oneadmin",
      "--",
      "sh",
      "-c",
      "ssh frontend hostname; exit 4",
    );
    assert.equal(ex.code, 4, ex.stderr);
    assert.equal(ex.stdout, "frontend\n");
    const down = await cli("down", "--name", name);
    assert.equal(down.code, 0, down.stderr);
    await assert.rejects(Deno.stat(`${LAB_BASE}/${name}`), Deno.errors.NotFound);
    assert.equal((await cli("bogus")).code, 2);
  } finally {
    await cli("down", "--name", name);
  }
});

labTest(
  "scripts/lab.ts down --all kills every lab of its base, also one whose registry is lost",
  async () => {
    // A base of its own: down --all must not touch the labs of tests running next to this one.
    const base = `/tmp/onestor-labs-test-${Deno.pid}`;
    const env = { ONESTOR_LAB_BASE: base };
    const cli = (...args: string[]) =>
      machine(DENO, ["run", "-A", "--no-check", `${REPO}/scripts/lab.ts`, ...args], env);
    try {
      assert.equal((await cli("up", "--name", "one", "--hosts", "frontend")).code, 0);
      const up = await cli("up", "--name", "two", "--hosts", "frontend,hv1");
      assert.equal(up.code, 0, up.stderr);
      const pids = [];
      for (const name of ["one", "two"]) {
        const state = JSON.parse(await Deno.readTextFile(`${base}/${name}/state.json`)) as RecordedState;
        assert.ok(state.hosts.every((h) => running(h.unshare.pid) && running(h.init.pid)));
        pids.push(...state.hosts.flatMap((h) => [h.unshare.pid, ...tree(h.init.pid)]));
      }
      await Deno.remove(`${base}/two/state.json`); // as if a crash lost it
      const down = await cli("down", "--all");
      assert.equal(down.code, 0, down.stderr);
      assert.deepEqual(pids.filter(running), []);
      await assert.rejects(Deno.stat(base), Deno.errors.NotFound);
      assert.deepEqual(mountsMentioning(base), []);
    } finally {
      await cli("down", "--all");
    }
  },
);
