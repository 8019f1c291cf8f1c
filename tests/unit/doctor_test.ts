import assert from "node:assert/strict";
import { exitCodeOf, finding, sortFindings, worst } from "../../core/doctor/finding.ts";
import { buildReport, plainLines, tableLines } from "../../core/doctor/render.ts";
import { buildPlan, type Inventory } from "../../core/doctor/plan.ts";
import { parseProbe, probeScript } from "../../core/doctor/probe.ts";
import { sshFailure } from "../../core/doctor/ssh_findings.ts";
import {
  chainFindings,
  clockFinding,
  shortVersion,
  tempFindings,
  toolFindings,
} from "../../core/doctor/host_findings.ts";
import { cacheFindings, folderStates } from "../../core/doctor/cache_findings.ts";
import { parsePoints, pointFindings } from "../../core/doctor/recovery_findings.ts";
import { configFindings } from "../../core/doctor/config_findings.ts";
import { DatastoreView, HostView } from "../../core/one/objects.ts";
import { parseXml } from "../../core/one/xml.ts";
import { datastoreXml, hostXml } from "../support/fixtures.ts";
import { runCommand } from "../../core/remote/process.ts";
import { metrics } from "../../core/metrics/metrics.ts";

metrics.setDir(null);

Deno.test("worst() and exitCodeOf(): 0 ok, 1 warn, 2 fail", () => {
  assert.equal(worst([]), "ok");
  const f = (status: "ok" | "warn" | "fail") => finding("ssh", "x", null, status);
  assert.equal(worst([f("ok"), f("warn")]), "warn");
  assert.equal(worst([f("fail"), f("warn")]), "fail");
  assert.deepEqual(["ok", "warn", "fail"].map((s) => exitCodeOf(s as "ok")), [0, 1, 2]);
});

Deno.test("buildReport() is the documented JSON; plain and table lines carry cause and fix", () => {
  const findings = sortFindings([
    finding("ssh", "front-end → hv1", null, "fail", "hv1 refuses the front-end's key", "ssh-copy-id ..."),
    finding("config", "settings", null, "ok", "every key known"),
    finding("temporary", "hv1:/x/.onestor-xfer-1", "hv1", "ok", "removed it", "", {
      age_seconds: 7200,
      fixed: "removed",
    }),
  ]);
  const report = buildReport(findings, new Date("2026-09-01T00:00:00Z"), 1.23456);
  assert.deepEqual(Object.keys(report), [
    "version",
    "generated_at",
    "duration_seconds",
    "status",
    "exit_code",
    "summary",
    "findings",
  ]);
  assert.equal(report.version, 1);
  assert.equal(report.status, "fail");
  assert.equal(report.exit_code, 2);
  assert.equal(report.duration_seconds, 1.235);
  assert.deepEqual(report.summary, { ok: 2, warn: 0, fail: 1 });
  assert.deepEqual(report.findings.map((f) => f.check), ["config", "ssh", "temporary"]);
  assert.deepEqual(Object.keys(report.findings[2]), [
    "check",
    "subject",
    "host",
    "status",
    "cause",
    "fix",
    "age_seconds",
    "fixed",
  ]);
  const plain = plainLines(report);
  assert.deepEqual(plain, [
    "ok   config settings: every key known",
    "FAIL ssh front-end → hv1: hv1 refuses the front-end's key",
    "     fix: ssh-copy-id ...",
    "ok   temporary hv1:/x/.onestor-xfer-1: removed it",
    "     fixed: removed",
    "1 failed, 0 warnings, 2 ok (1.2 s)",
  ]);
  const table = tableLines(report, true);
  assert.match(table[0], /^STATUS {2}CHECK +SUBJECT +CAUSE \/ FIX$/);
  assert.ok(table[2].startsWith("\x1b[1;31mFAIL\x1b[0m    ssh"), table[2]);
  assert.ok(table.some((l) => l.trim() === "fix: ssh-copy-id ..."));
  assert.ok(!tableLines(report, false).join("\n").includes("\x1b"));
});

function inventory(): Inventory {
  const ds = (xml: string) => new DatastoreView(parseXml(xml));
  const host = (xml: string) => new HostView(parseXml(xml));
  return {
    datastores: [
      ds(datastoreXml({ id: 1, tmMad: "onestor" })),
      ds(datastoreXml({ id: 100, type: 1, tmMad: "onestor", template: { REPLICA_HOST: "replica" } })),
      ds(
        datastoreXml({ id: 101, type: 1, tmMad: "onestor", clusters: [5], template: { REPLICA_HOST: "r5" } }),
      ),
      ds(datastoreXml({ id: 102, type: 1, tmMad: "ceph" })),
    ],
    hosts: [
      host(hostXml({ id: 1, name: "hv1" })),
      host(hostXml({ id: 2, name: "hv2", template: { REPLICA_STORAGE_IP: "127.0.9.2" } })),
      host(hostXml({ id: 3, name: "hv3", state: 4 })),
      host(hostXml({ id: 4, name: "hv5", clusterId: 5 })),
      host(hostXml({ id: 5, name: "fe" })),
    ],
  };
}

const settings = {
  tmNames: ["onestor"],
  extraTools: ["b2sum"],
  supportedFs: ["ext4", "xfs"],
  replicaSshOpts: ["-c", "aes128-gcm@openssh.com"],
  frontend: "fe",
  isFrontend: (n: string) => n === "fe",
};

Deno.test("buildPlan() derives roles, folders, tools and every pair that must talk", () => {
  const plan = buildPlan(inventory(), settings, { cluster: null, host: null });
  assert.equal(plan.dsLocation, "/var/lib/one/datastores");
  assert.deepEqual(plan.hosts.map((h) => h.name), ["hv1", "hv2", "hv5", "r5", "replica"]);
  assert.deepEqual(plan.replicas, ["r5", "replica"]);
  const hv1 = plan.hosts.find((h) => h.name === "hv1")!;
  assert.ok(hv1.hypervisor && !hv1.replica);
  assert.deepEqual(hv1.systemDirs.map((d) => d.id), [100]);
  assert.ok(hv1.tools.includes("qemu-img") && hv1.tools.includes("mkfs.xfs") && hv1.tools.includes("b2sum"));
  assert.deepEqual(hv1.probeScripts, ["/var/tmp/one/tm/onestor/monitor_ds"]);
  assert.deepEqual(hv1.hops.map((h) => `${h.address}:${h.level}`), ["hv2:fail", "fe:warn"]);
  const replica = plan.hosts.find((h) => h.name === "replica")!;
  assert.ok(replica.replica && !replica.tools.includes("qemu-img"));
  assert.deepEqual(replica.cacheDirs, ["/var/lib/one/datastores/1"]);
  // hv2 has a REPLICA_STORAGE_IP: the replica pushes there, with REPLICA_SSH_OPTS.
  assert.deepEqual(
    replica.hops.map((h) => `${h.target}@${h.address} ${h.options.join(" ")}`),
    ["hv1@hv1 -c aes128-gcm@openssh.com", "hv2@127.0.9.2 -c aes128-gcm@openssh.com", "fe@fe "],
  );
  const cluster = buildPlan(inventory(), settings, { cluster: 5, host: null });
  assert.deepEqual(cluster.hosts.map((h) => h.name), ["hv5", "r5"]);
  const one = buildPlan(inventory(), settings, { cluster: null, host: "hv2" });
  assert.deepEqual(one.hosts.map((h) => `${h.name}:${h.full}`), ["hv1:false", "hv2:true", "replica:false"]);
  assert.deepEqual(one.hosts.find((h) => h.name === "hv1")!.hops.map((h) => h.target), ["hv2"]);
});

Deno.test("probeScript() runs locally and parseProbe() reads every fact", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const loc = `${dir}/ds`;
    const sys = `${loc}/100`;
    const cache = `${loc}/1`;
    await Deno.mkdir(`${sys}/7/.onestor-xfer-aa`, { recursive: true });
    await Deno.mkdir(cache, { recursive: true });
    await Deno.writeTextFile(`${sys}/.monitor`, "onestor\n");
    await Deno.writeTextFile(`${cache}/.monitor`, "replica\n");
    await Deno.writeTextFile(`${cache}/aaaa`, "data");
    await Deno.writeTextFile(`${cache}/aaaa.onestor.json`, '{"x":1}');
    const q = await runCommand([
      "sh",
      "-c",
      `command -v qemu-img >/dev/null && cd ${sys}/7 && qemu-img create -q -f qcow2 -b /nonexistent/base -F qcow2 disk.0 1M`,
    ]);
    const plan = {
      name: "h",
      hypervisor: true,
      replica: true,
      full: true,
      tools: ["sh", "no-such-tool-here"],
      systemDirs: [{ id: 100, dir: sys, tm: "onestor" }],
      cacheDirs: [cache],
      probeScripts: [`${dir}/missing_script`],
      hops: [],
    };
    const script = probeScript(plan, loc, 5);
    const run = await runCommand(["sh", "-c", script.text]);
    const facts = parseProbe(run.stdout, run.stderr, [cache]);
    assert.ok(facts.clock !== null && Math.abs(facts.clock - Date.now() / 1000) < 60);
    assert.ok(facts.tools.get("sh")!.path.startsWith("/"));
    assert.equal(facts.tools.get("no-such-tool-here")!.path, "");
    assert.deepEqual(facts.dirs.get(sys), { exists: true, writable: true, vms: 1, marker: "onestor" });
    assert.equal(facts.scripts.get(`${dir}/missing_script`), false);
    assert.ok(facts.df && facts.df.total > 0);
    assert.equal(facts.caches.length, 1);
    assert.equal(facts.caches[0].marker, "replica");
    assert.equal(facts.caches[0].records.get("aaaa.onestor.json"), '{"x":1}');
    assert.deepEqual(facts.caches[0].items.map((i) => i.name), ["aaaa"]);
    assert.deepEqual(facts.temps.map((t) => t.path), [`${sys}/7/.onestor-xfer-aa`]);
    if (q.code === 0) {
      assert.equal(facts.chains.length, 1);
      assert.notEqual(facts.chains[0].code, 0);
      const [f] = chainFindings("h", facts);
      assert.equal(f.status, "fail");
      assert.equal(
        f.cause,
        `${sys}/7/disk.0 cannot be opened: its backing file /nonexistent/base is missing`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sshFailure() names the cause and the command that fixes it", () => {
  const ctx = { user: "oneadmin", publicKey: "/var/lib/one/.ssh/id_ed25519.pub" };
  const pair = { from: null, to: "hv1", address: "hv1", why: "every action", level: "fail" as const };
  const auth = sshFailure(pair, { code: 255, stderr: "oneadmin@hv1: Permission denied (publickey)." }, ctx);
  assert.equal(
    auth.cause,
    "hv1 refuses the front-end's key (oneadmin@hv1: Permission denied (publickey).), needed for every action",
  );
  assert.match(
    auth.fix,
    /^on the front-end as oneadmin: ssh-copy-id -i \/var\/lib\/one\/\.ssh\/id_ed25519\.pub oneadmin@hv1/,
  );
  const changed = sshFailure({ ...pair, from: "hv2" }, {
    code: 255,
    stderr:
      "@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@\nHost key verification failed.",
  }, ctx);
  assert.match(changed.cause, /^the host key of hv1 \(hv1\) changed since hv2 recorded it/);
  assert.match(
    changed.fix,
    /^if hv1 was reinstalled or its key replaced, on hv2 as oneadmin: ssh-keygen -R hv1 && ssh-keyscan -H hv1/,
  );
  const unknown = sshFailure(pair, {
    code: 255,
    stderr:
      "No ED25519 host key is known for hv1 and you have requested strict checking.\nHost key verification failed.",
  }, ctx);
  assert.match(unknown.cause, /does not know the host key of hv1/);
  assert.match(unknown.fix, /ssh-keyscan -H hv1 >>~\/\.ssh\/known_hosts, after checking the fingerprint/);
  const down = sshFailure(
    pair,
    { code: 255, stderr: "ssh: connect to host hv1 port 22: Connection refused" },
    ctx,
  );
  assert.equal(
    down.cause,
    "the front-end cannot reach hv1 (hv1) over SSH: connect to host hv1 port 22: Connection refused",
  );
  assert.equal(down.status, "fail");
  assert.equal(
    sshFailure({ ...pair, level: "warn" }, { code: 255, stderr: "Connection refused" }, ctx).status,
    "warn",
  );
});

Deno.test("host findings: missing programs with their package, versions, clock skew", () => {
  const facts = parseProbe(
    "ONESTOR_TOOL qemu-img|/usr/bin/qemu-img|qemu-img version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u18)\n" +
      "ONESTOR_TOOL mkfs.xfs||\nONESTOR_TOOL flock||\n",
    "",
    [],
  );
  const out = toolFindings("hv2", ["qemu-img", "mkfs.xfs", "flock"], facts);
  assert.deepEqual(out.map((f) => `${f.status} ${f.subject} ${f.fix}`), [
    "warn hv2: mkfs.xfs install xfsprogs on hv2 (apt-get install xfsprogs)",
    "fail hv2: flock install util-linux on hv2 (apt-get install util-linux)",
    "ok hv2: programs ",
  ]);
  assert.equal(out[2].cause, "qemu-img 7.2.15");
  assert.equal(shortVersion("virsh", "9.0.0"), "virsh 9.0.0");
  assert.equal(clockFinding("r", 0.3).status, "ok");
  assert.equal(clockFinding("r", -5).status, "warn");
  assert.match(clockFinding("r", 45).cause, /^clock of r is \+45\.0 s from the front-end/);
  assert.equal(clockFinding("r", 45).status, "fail");
});

Deno.test("tempFindings(): old and unused is garbage, open or recent is left alone", () => {
  const facts = parseProbe(
    "ONESTOR_TEMP 1000|4096|/d/100/7/.onestor-xfer-old\nONESTOR_TEMP 9900|0|/d/100/7/.onestor-xfer-new\n" +
      "ONESTOR_TEMP 1000|0|/d/100/8/.onestor-xfer-busy\nONESTOR_OPEN /d/100/8/.onestor-xfer-busy/disk.0\n",
    "",
    [],
  );
  const out = tempFindings("hv1", facts, 10_000, 600);
  assert.deepEqual(out.map((f) => `${f.status} ${f.age_seconds} ${f.garbage?.name ?? "-"}`), [
    "warn 9000 .onestor-xfer-old",
    "ok 100 -",
    "ok 9000 -",
  ]);
  assert.match(out[0].cause, /untouched for 2 h, open by no process/);
  assert.match(out[2].cause, /^in use by a running copy/);
});

Deno.test("cacheFindings(): full replica, record without files, stale lease of a dead filler", () => {
  const now = 10_000;
  const lease = JSON.stringify({
    version: 1,
    owner: "fe:42:ab",
    frontend: "fe",
    pid: 42,
    source: "/d/1/bbbb",
    fill: ".onestor-fill-bbbb-fe-42-ab",
    reserve: 1,
    acquired_at: 100,
    expires_at: now - 50,
  });
  const entry = JSON.stringify({
    version: 2,
    source: {
      path: "/d/1/aaaa",
      size: 4,
      mtime_ms: 1,
      algorithm: "xxh128",
      checksum: "c",
      sums: { aaaa: "s" },
    },
    files: [{ name: "aaaa", type: "f", size: 4, mtime: 5, allocated: 4096 }],
    size: 4,
    allocated: 4096,
    created_at: 1,
    filled_by: "x",
    files_fp: "f",
  });
  const b64 = (t: string) => btoa(t);
  const facts = parseProbe(
    `ONESTOR_CACHE 1|replica|/d/1\nONESTOR_CFS 1|1000000|990000|10000\n` +
      `ONESTOR_CREC 1|aaaa.onestor.json|${b64(entry)}\nONESTOR_CREC 1|bbbb.onestor-lease.json|${
        b64(lease)
      }\n` +
      `ONESTOR_CITEM 1|8192|${now - 3000}|.onestor-fill-bbbb-fe-42-ab\n`,
    "",
    ["/d/1"],
  );
  const out = cacheFindings(folderStates(facts, now), {
    replica: "replica",
    limits: { maxBytes: null, maxUsedPercent: 90 },
    thresholdSeconds: 600,
    holder: (fe, pid) => fe === "fe" && pid === 42 ? "dead" : "unknown",
    command: "onestor",
  }, null);
  const by = (check: string) => out.filter((f) => f.check === check && f.status !== "ok");
  assert.match(
    by("replica-space")[0].cause,
    /^the cache of replica is full: .* filesystem 99% used \(REPLICA_MAX_USED_PERC=90\)/,
  );
  assert.equal(by("cache-record")[0].garbage?.kind, "record");
  const stale = by("lease")[0];
  assert.equal(
    stale.cause,
    "stale lease: its filler fe:42:ab (filling /d/1/bbbb) is no longer running; expired 50 s ago",
  );
  assert.deepEqual(stale.garbage, {
    kind: "lease",
    host: "replica",
    dir: "/d/1",
    name: "bbbb.onestor-lease.json",
    text: lease,
    fill: ".onestor-fill-bbbb-fe-42-ab",
  });
  assert.equal(by("temporary").length, 0, "the lease's fill folder goes with the lease");
});

Deno.test("configFindings() names an unknown key with the key it meant, and its line", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${root}/var/lib/one/remotes/etc/tm/ssh`, { recursive: true });
    await Deno.writeTextFile(`${root}/var/lib/one/remotes/etc/tm/ssh/sshrc`, "# x\nREPLICA_MAX_SIZE_M=10\n");
    const { findings, config } = configFindings({ root });
    assert.ok(config);
    assert.equal(findings.length, 1);
    assert.equal(findings[0].subject, `${root}/var/lib/one/remotes/etc/tm/ssh/sshrc:2: REPLICA_MAX_SIZE_M`);
    assert.equal(findings[0].status, "warn");
    assert.equal(findings[0].fix, "rename it to REPLICA_MAX_SIZE_MB");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("recovery points: age against the frequency", () => {
  const points = parsePoints(JSON.stringify([
    { vm_id: 1, disk_id: 0, freq: 3600, last_at: 10_000 - 1800 },
    { vm: 2, disk: 1, freq_seconds: 60, last: 10_000 - 200 },
    { vm: 3, disk: 0, freq: 60, last: null },
  ]));
  const out = pointFindings(points, 10_000, "onestor");
  assert.deepEqual(out.map((f) => f.status), ["ok", "warn", "fail"]);
});

Deno.test("recovery points: read from onestor recovery status --json", () => {
  const disk = (vm: number, state: string, time: number | null) => ({
    vm,
    disk: 0,
    freq_seconds: 60,
    state,
    last_point: time === null ? null : { id: 1, time, age_seconds: 10_000 - time, kind: "incremental" },
  });
  const points = parsePoints(JSON.stringify({
    version: 1,
    generated_at: 10_000,
    disks: [
      disk(1, "ok", 9_990),
      disk(2, "stale", 9_000),
      disk(3, "no-point", null),
      disk(4, "not-protected", null),
      disk(5, "not-running", 1),
    ],
  }));
  assert.deepEqual(points.map((p) => [p.vm, p.last]), [[1, 9_990], [2, 9_000], [3, null]]);
  assert.deepEqual(pointFindings(points, 10_000, "onestor").map((f) => f.status), ["ok", "fail", "fail"]);
});
