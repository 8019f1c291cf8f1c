import assert from "node:assert/strict";
import { FakeOned } from "../support/fake_oned.ts";
import { datastoreXml, imageDisk, vmXml, volatileDisk } from "../support/fixtures.ts";
import { OneClient } from "../../core/one/xmlrpc.ts";
import { type ProtectedDisk, readInventory, runnable } from "../../core/recovery/inventory.ts";
import { diskStatus, formatStatus, STATUS_VERSION } from "../../core/recovery/status.ts";
import { newRecord, type RecoveryRecord } from "../../core/recovery/record.ts";
import { pool } from "../../core/recovery/scheduler.ts";
import type { DiskRunState } from "../../core/recovery/frontend_state.ts";
import { renderUnit, unitTemplate } from "../../core/install/recovery_unit.ts";
import { isProtected, isRecreate } from "../../core/recovery/hooks.ts";
import { VmView } from "../../core/one/objects.ts";

async function oned(): Promise<FakeOned> {
  const fake = await FakeOned.start();
  fake.addDatastore(datastoreXml({ id: 1 }));
  fake.addDatastore(datastoreXml({ id: 100, template: { REPLICA_HOST: "replica" } }));
  fake.addDatastore(datastoreXml({ id: 101 }));
  fake.addVm(vmXml({
    id: 7,
    disks: [
      imageDisk({ DISK_ID: 0, RECOVERY_SNAPSHOT_FREQ: 60 }),
      imageDisk({ DISK_ID: 1 }),
      volatileDisk({ DISK_ID: 2, RECOVERY_SNAPSHOT_FREQ: 60 }),
    ],
    history: [{ hostname: "hv1", dsId: 100 }],
  }));
  fake.addVm(
    vmXml({
      id: 8,
      disks: [imageDisk({ DISK_ID: 0, RECOVERY_SNAPSHOT_FREQ: 30 })],
      history: [{ dsId: 101 }],
    }),
  );
  fake.addVm(vmXml({ id: 9, state: 6, disks: [imageDisk({ DISK_ID: 0, RECOVERY_SNAPSHOT_FREQ: 30 })] }));
  fake.addVm(vmXml({
    id: 10,
    lcmState: 0,
    state: 8,
    disks: [imageDisk({ DISK_ID: 0, RECOVERY_SNAPSHOT_FREQ: 30 })],
    history: [{ hostname: "hv2", dsId: 100 }],
  }));
  return fake;
}

Deno.test("readInventory() walks the VM pool in two calls and says why a disk is not protected", async () => {
  await using fake = await oned();
  const client = new OneClient({ ...await fake.envFor(), endpoint: fake.endpoint, session: fake.session });
  const disks = await readInventory(client);
  assert.equal(fake.callCount("one.vmpool.infoextended"), 1);
  assert.equal(fake.callCount("one.datastorepool.info"), 1);
  assert.equal(fake.callCount("one.vm.info"), 0, "no call per VM");
  const summary = disks.map((d) => [d.vmId, d.diskId, d.replica, d.problem]);
  assert.deepEqual(summary, [
    [7, 0, "replica", null],
    [7, 2, "replica", "a volatile disk is not protected (a recreate makes it empty again)"],
    [8, 0, "", "system datastore 101 has no REPLICA_HOST"],
    [10, 0, "replica", null],
  ], "disk 7/1 has no FREQ; VM 9 is DONE");
  const d7 = disks[0];
  assert.equal(d7.vmDir, "/var/lib/one/datastores/100/7", "BASE_PATH's double slash is folded");
  assert.equal(d7.host, "hv1");
  assert.equal(d7.domain, "one-7");
  assert.equal(d7.freq, 60);
  assert.ok(runnable(d7));
  assert.ok(!runnable(disks[3]), "a powered-off VM takes no point");
});

Deno.test("one.vmpool.info (the short form) would not do: it drops RECOVERY_SNAPSHOT_FREQ", async () => {
  await using fake = await oned();
  const client = new OneClient({ endpoint: fake.endpoint, session: fake.session });
  const short = await client.call("one.vmpool.info", [-2, -1, -1, -1]);
  assert.equal(typeof short, "string");
  assert.doesNotMatch(short as string, /RECOVERY_SNAPSHOT_FREQ/);
  assert.match(short as string, /<DISK><DATASTORE>/);
  const bad = await client.call("one.vmpool.infoextended", [-2, -1]).catch((e) => e as Error);
  assert.ok(bad instanceof Error && /Type mismatch/.test(bad.message), "the signature is checked");
});

const disk: ProtectedDisk = {
  vmId: 7,
  vmName: "web",
  diskId: 0,
  freq: 60,
  host: "hv1",
  systemDsId: 100,
  replica: "replica",
  vmDir: "/d/100/7",
  domain: "one-7",
  state: 3,
  lcmState: 3,
  format: "qcow2",
  source: "/d/1/x",
  problem: null,
};

function withPoint(time: number): RecoveryRecord {
  const r = newRecord({ vm: 7, disk: 0, format: "qcow2", size: 1, algorithm: "b2sum", source: "/i", now: 0 });
  return {
    ...r,
    points: [{
      id: 3,
      time,
      top: "inc.3",
      kind: "incremental",
      bytes: 2048,
      data: 1024,
      quiesced: false,
      checksum: "c",
    }],
  };
}

const noRun: DiskRunState = {
  vm: 7,
  disk: 0,
  last_attempt: null,
  last_success: null,
  last_error: null,
  last_warning: null,
  last_period: null,
};

Deno.test("diskStatus() states: ok, due, stale, failing, no-point, not-running, not-protected, unknown", () => {
  const now = 10_000;
  const state = (d: ProtectedDisk, r: RecoveryRecord | null, run = noRun, err: string | null = null) =>
    diskStatus(d, r, run, err, now).state;
  assert.equal(state(disk, withPoint(now - 10)), "ok");
  assert.equal(state(disk, withPoint(now - 60)), "due");
  assert.equal(state(disk, withPoint(now - 121)), "stale");
  assert.equal(state(disk, null), "no-point");
  assert.equal(
    state(disk, withPoint(now - 10), { ...noRun, last_error: { time: now - 5, message: "x" } }),
    "failing",
  );
  assert.equal(
    state(disk, withPoint(now - 10), { ...noRun, last_error: { time: now - 20, message: "x" } }),
    "ok",
  );
  assert.equal(state({ ...disk, lcmState: 0, state: 8 }, withPoint(now - 1000)), "not-running");
  assert.equal(state({ ...disk, problem: "p" }, null), "not-protected");
  assert.equal(state(disk, null, noRun, "down"), "unknown");
  const s = diskStatus(disk, withPoint(now - 10), noRun, null, now);
  assert.deepEqual(s.last_point, {
    id: 3,
    time: now - 10,
    age_seconds: 10,
    kind: "incremental",
    bytes: 2048,
    data: 1024,
    quiesced: false,
  });
  assert.equal(s.next_due, now + 50);
  const table = formatStatus({ version: STATUS_VERSION, generated_at: now, disks: [s] });
  assert.match(table, /^VM\s+DISK\s+HOST\s+REPLICA\s+FREQ\s+STATE/);
  assert.match(table, /7\s+0\s+hv1\s+replica\s+60s\s+ok\s+3 \(incremental\)\s+10s\s+2K\s+3/);
});

Deno.test("pool() runs every task with at most `limit` at once", async () => {
  let running = 0;
  let peak = 0;
  const results = await pool(
    2,
    Array.from({ length: 6 }, (_, i) => async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 10));
      running--;
      return i;
    }),
  );
  assert.deepEqual(results, [0, 1, 2, 3, 4, 5]);
  assert.equal(peak, 2);
});

Deno.test("renderUnit() fills the shipped systemd unit; odd values are refused", async () => {
  const text = renderUnit(await unitTemplate(), {
    launcher: "/var/lib/one/remotes/tm/onestor/.onestor",
    user: "oneadmin",
    group: "oneadmin",
    home: "/var/lib/one",
  });
  assert.match(text, /^ExecStart=\/var\/lib\/one\/remotes\/tm\/onestor\/\.onestor recovery daemon$/m);
  assert.match(text, /^User=oneadmin$/m);
  assert.doesNotMatch(text, /@[A-Z]+@/);
  assert.throws(() =>
    renderUnit("x", { launcher: "/a b", user: "oneadmin", group: "oneadmin", home: "/var/lib/one" })
  );
});

Deno.test("a disk is protected with FREQ on a replica datastore; a recreate is told by history ACTION 14", () => {
  assert.ok(isProtected({ recoveryFreq: 60 }, "replica"));
  assert.ok(!isProtected({ recoveryFreq: 60 }, ""));
  assert.ok(!isProtected({ recoveryFreq: null }, "replica"));
  const recreate = VmView.fromXml(
    vmXml({ lcmState: 1, history: [{ hostname: "hv1", action: 14 }, { hostname: "hv2" }] }),
  );
  assert.ok(isRecreate(recreate));
  const attach = VmView.fromXml(
    vmXml({ lcmState: 17, history: [{ hostname: "hv1", action: 14 }, { hostname: "hv2" }] }),
  );
  assert.ok(!isRecreate(attach), "a disk hot-attached after a recreate is a new disk");
  assert.ok(
    !isRecreate(VmView.fromXml(vmXml({ history: [{ hostname: "hv1", action: 27 }, { hostname: "hv2" }] }))),
  );
  assert.ok(!isRecreate(VmView.fromXml(vmXml({}))));
});
