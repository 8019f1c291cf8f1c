/**
 * Recovery points on real libvirt + QEMU (TCG) hypervisors, a replica and a front-end, through the
 * installed actions and the installed launcher (`.onestor recovery ...`, as the systemd unit runs
 * it), with oned's argument forms. One VM (40) with a qcow2 image disk (0) and a persistent raw
 * disk (1), both with RECOVERY_SNAPSHOT_FREQ, lives through every step in order:
 *
 * 1. protection at deployment (bitmap, point 0 = hard link of the cache entry), then three periods
 *    taken by the daemon while the guest writes known patterns: bytes moved against bytes written;
 * 2. a failure injected at every step of a period (backup job refused, transfer cut, commit on the
 *    replica, clean-up on the hypervisor, replica down): the domain stays on its own disks and
 *    chain, nothing temporary stays, the next period succeeds and is an increment;
 * 3. OpenNebula's incremental backups and recovery points on the same disk, both restorable;
 * 4. live migration hv1 → hv2 → hv1: the next points follow on the new host, the earlier stay;
 * 5. hv1 killed (its whole namespace): `recover --recreate` as oned runs it (DELETE with history
 *    ACTION 14, then CLONE/LN on hv2): both disks equal their state at the last point; a protected
 *    disk without points fails unless REPLICA_RECOVERY_FALLBACK=image;
 * 6. hv2's private key removed: it still gets its points (the replica pulls);
 * 7. DELETE with another ACTION removes the points.
 */

import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import {
  base64Xml,
  datastoreXml,
  DS_LOC,
  hostXml,
  imageDisk,
  persistentDisk,
  vmXml,
} from "../support/fixtures.ts";
import { chunkPatterns, domainXml, LIBVIRT_DIRS, LibvirtLab } from "../support/libvirt_lab.ts";

const MiB = 1 << 20;
const VM = 40;
const DOMAIN = `one-${VM}`;
const DS = "/var/lib/one/datastores";
const VM_DIR = `${DS}/100/${VM}`;
const VM_DIR_ARG = `${DS_LOC}/100/${VM}`;
const IMG_A = `${DS}/1/${"a".repeat(32)}`;
const IMG_B = `${DS}/1/${"b".repeat(32)}`;
const SNAPS = `${DS}/replica_snaps`;
const ONESTOR_CONF = "/var/lib/one/remotes/etc/onestor/onestor.conf";
const SSHRC = "/var/lib/one/remotes/etc/tm/ssh/sshrc";
const LAUNCHER = "/var/lib/one/remotes/tm/onestor/.onestor";
const FREQ = 4;

interface Point {
  id: number;
  time: number;
  kind: string;
  bytes: number;
  data: number;
  top: string;
}
interface DiskRecord {
  points: Point[];
  head: number | null;
  files: Record<string, { backing: string | null }>;
  broken: string | null;
}

/** Closes the connection after `limit` bytes came from the server: a transfer cut mid-stream. */
const CUT_PL = `use strict; use IO::Socket::INET; use IO::Select;
my ($host, $port, $limit) = @ARGV; my $seen = 0;
my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp') or die "connect: $!";
binmode STDIN; binmode STDOUT; my $sel = IO::Select->new(\\*STDIN, $s);
while (my @ready = $sel->can_read) { for my $fh (@ready) {
  my $n = sysread($fh, my $buf, 16384); exit 0 unless $n;
  if ($fh == $s) { $seen += $n; exit 0 if $seen > $limit; syswrite(STDOUT, $buf) } else { syswrite($s, $buf) }
} }
`;

labTest(
  "recovery points: periods, failures, backups, migration, recreate after a host dies, no key",
  async (t) => {
    await using world = await World.start({ extraDirs: [...LIBVIRT_DIRS] });
    const hv = await LibvirtLab.start(world.lab, ["hv1", "hv2"]);
    world.oned.addDatastore(datastoreXml({ id: 1 }));
    world.oned.addDatastore(datastoreXml({ id: 100, template: { REPLICA_HOST: "replica" } }));
    world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
    world.oned.addHost(hostXml({ id: 2, name: "hv2" }));
    world.oned.addHost(hostXml({ id: 3, name: "replica" }));
    for (const host of ["frontend", "replica", "hv1", "hv2"]) {
      await world.sh(host, `mkdir -p ${DS}/1 ${DS}/100 && chown -R oneadmin: ${DS}`);
    }
    const config = async (onestor = "", sshrc = "") => {
      await world.writeFile(
        "frontend",
        ONESTOR_CONF,
        `REPLICA_RECOVERY_KEEP=3\nREPLICA_LEASE_SECONDS=6\n${onestor}\n`,
      );
      await world.writeFile("frontend", SSHRC, `${sshrc}\n`);
    };
    await config();
    // The images: a qcow2 OS image (0x11 in its first 4 MiB) and a persistent raw datablock (0x21).
    await world.sh(
      "frontend",
      `qemu-img create -q -f qcow2 ${IMG_A} 64M && qemu-io -f qcow2 -c 'write -P 0x11 0 4M' ${IMG_A} >/dev/null && ` +
        `truncate -s 64M ${IMG_B} && qemu-io -f raw -c 'write -P 0x21 0 4M' ${IMG_B} >/dev/null`,
      { user: "oneadmin" },
    );

    const history = (...h: { host: string; action?: number }[]) =>
      h.map((x) => ({ hostname: x.host, hid: x.host === "hv1" ? 1 : 2, dsId: 100, action: x.action ?? 0 }));
    const vm = (
      id: number,
      hist: ReturnType<typeof history>,
      extra: { lcmState?: number; freq?: number } = {},
    ) =>
      vmXml({
        id,
        deployId: `one-${id}`,
        lcmState: extra.lcmState ?? 3,
        disks: [
          imageDisk({
            DISK_ID: 0,
            IMAGE_ID: 1,
            SOURCE: IMG_A.replace(DS, DS_LOC),
            FORMAT: "qcow2",
            SIZE: 64,
            ORIGINAL_SIZE: 64,
            RECOVERY_SNAPSHOT_FREQ: extra.freq ?? FREQ,
          }),
          persistentDisk({
            DISK_ID: 1,
            IMAGE_ID: 2,
            SOURCE: IMG_B.replace(DS, DS_LOC),
            FORMAT: "raw",
            DRIVER: "raw",
            SIZE: 64,
            ORIGINAL_SIZE: 64,
            RECOVERY_SNAPSHOT_FREQ: extra.freq ?? FREQ,
          }),
        ],
        context: null,
        history: hist,
      });
    const recovery = (args: string[], env: Record<string, string> = {}) =>
      world.lab.exec("frontend", [LAUNCHER, "recovery", ...args], {
        user: "oneadmin",
        env: world.env(env),
        timeoutMs: 300_000,
      });
    const record = async (disk: number): Promise<DiskRecord> =>
      JSON.parse(await world.sh("replica", `cat ${SNAPS}/${VM}/disk.${disk}.recovery/record.json`));
    const domainXmlOn = () =>
      domainXml({
        vmId: VM,
        disks: [
          { path: `${VM_DIR_ARG}/disk.0`, target: "vda", format: "qcow2" },
          { path: `${VM_DIR_ARG}/disk.1`, target: "vdb", format: "raw" },
        ],
      });
    /** The guest-visible content of the disk as MiB patterns (first 32 MiB). */
    const patterns = async (host: string, path: string) =>
      chunkPatterns(await hv.readImage(host, path), MiB, 32);
    /** The content of a recovery point, read through its chain on the replica. */
    const pointPatterns = async (disk: number, top: string) =>
      await patterns("replica", `${SNAPS}/${VM}/disk.${disk}.recovery/${top}`);
    /** What the guest wrote so far, per MiB of each disk (index = MiB). */
    const expected: number[][] = [
      [0x11, 0x11, 0x11, 0x11, ...new Array(28).fill(0)],
      [0x21, 0x21, 0x21, 0x21, ...new Array(28).fill(0)],
    ];
    const write = async (host: string, disk: number, pattern: number, mib: number, count: number) => {
      await hv.guestWrite(host, DOMAIN, disk === 0 ? "vda" : "vdb", pattern, mib * MiB, count * MiB);
      for (let i = 0; i < count; i++) expected[disk][mib + i] = pattern;
      return count * MiB;
    };
    /** The domain runs on `host` on its own disks, with no job and nothing temporary beside them. */
    const domainIntact = async (host: string) => {
      assert.equal(await hv.domState(host, DOMAIN), "running");
      assert.deepEqual((await hv.blockDevices(host, DOMAIN)).map((d) => d.source), [
        `${VM_DIR_ARG}/disk.0`,
        `${VM_DIR_ARG}/disk.1`,
      ]);
      assert.match((await hv.virsh(host, ["domjobinfo", DOMAIN])).stdout, /Job type:\s+None/);
      const leftovers = (await world.sh(host, `ls -A ${VM_DIR} | grep onestor || true`)).trim();
      assert.equal(leftovers, "", `nothing temporary in the VM folder on ${host}`);
      const checkpoints = (await hv.mustVirsh(host, ["checkpoint-list", DOMAIN, "--name"])).split("\n")
        .filter((c) => c.startsWith("onestor-rec-"));
      assert.deepEqual(checkpoints, [], "no recovery checkpoint metadata between periods");
    };
    /** The DISK_RECOVERY_SNAPSHOT lines of VM 40 in the output of the installed monitor_ds on `host`. */
    const monitorLines = async (host: string) => {
      const script = await Deno.readTextFile(
        world.lab.path("frontend", "/var/lib/one/remotes/tm/onestor/monitor_ds"),
      );
      await world.writeFile(host, "/var/tmp/one/tm/onestor/monitor_ds", script);
      const out = await world.sh(host, `sh /var/tmp/one/tm/onestor/monitor_ds ${DS}/100`, {
        user: "oneadmin",
      });
      const line = out.split("\n").find((l) => l.startsWith(`VM = [ ID = ${VM},`));
      assert.ok(line, `monitor_ds reports VM ${VM}: ${out}`);
      return atob(line.match(/MONITOR = "([^"]+)"/)![1]).split("\n").filter((l) =>
        l.startsWith("DISK_RECOVERY")
      );
    };
    const period = async (env: Record<string, string> = {}) => {
      const r = await recovery(["run", "--vm", String(VM), "--force", "--json"], env);
      return { code: r.code, stderr: r.stderr, report: JSON.parse(r.stdout || "{}") };
    };

    await t.step(
      "deployment starts the protection: a bitmap in the disk, point 0 = the cached image",
      async () => {
        world.oned.addVm(vm(VM, history({ host: "hv1" })));
        ok(
          await world.tm("clone", [
            `frontend:${IMG_A.replace(DS, DS_LOC)}`,
            `hv1:${VM_DIR_ARG}/disk.0`,
            VM,
            1,
          ]),
          "clone",
        );
        ok(
          await world.tm("ln", [`frontend:${IMG_B.replace(DS, DS_LOC)}`, `hv1:${VM_DIR_ARG}/disk.1`, VM, 1]),
          "ln",
        );
        const info = await world.sh("hv1", `qemu-img info --output=json ${VM_DIR}/disk.0`);
        assert.match(info, /"name": "onestor-rec-0-0"/);
        const r0 = await record(0);
        assert.deepEqual(r0.points.map((p) => [p.id, p.kind]), [[0, "base"]]);
        assert.equal(r0.head, 0);
        // base is the cache entry's inode: no byte was copied for point 0.
        const inodes = await world.sh(
          "replica",
          `stat -c %i ${IMG_A} ${SNAPS}/${VM}/disk.0.recovery/base`,
        );
        const [cached, base] = inodes.trim().split("\n");
        assert.equal(base, cached, "point 0 is a hard link of the cache entry");
        const r1 = await record(1);
        assert.equal(r1.head, null, "a raw disk has no bitmap: its points are full copies");
        assert.equal(
          (await world.sh("hv1", `cat ${VM_DIR}/disk.0.recovery`)).trim(),
          `DISK_RECOVERY_SNAPSHOT = [ ID=0, TIMESTAMP="${r0.points[0].time}" ]`,
        );
        // OpenNebula's probe runs the host-side monitor_ds laid by install (onehost sync copies it):
        // the lines reach the VM's MONITOR payload, as upstream's probe's did.
        assert.deepEqual(await monitorLines("hv1"), [
          `DISK_RECOVERY_SNAPSHOT = [ ID=0, TIMESTAMP="${r0.points[0].time}" ]`,
          `DISK_RECOVERY_SNAPSHOT = [ ID=1, TIMESTAMP="${r1.points[0].time}" ]`,
        ]);
        await hv.create("hv1", domainXmlOn());
      },
    );

    const periods: {
      disk: number;
      guest: number;
      moved: number;
      data: number;
      kind: string;
      seconds: number;
    }[] = [];
    await t.step(
      "three periods by the daemon while the guest writes: each moves about what was written",
      async () => {
        // The daemon as the systemd unit runs it: the installed launcher, as oneadmin; stopped by SIGTERM.
        const pidFile = "/var/tmp/one/recovery-daemon.pid";
        const daemon = world.lab.exec("frontend", [
          "sh",
          "-c",
          `"$0" recovery daemon & echo $! >${pidFile}; wait $!`,
          LAUNCHER,
        ], { user: "oneadmin", env: world.env(), timeoutMs: 600_000 });
        try {
          const writes = [[0x31, 8, 2], [0x32, 12, 3], [0x33, 8, 1]];
          let last = (await record(0)).points.at(-1)!.id;
          for (const [pattern, mib, count] of writes) {
            const guest = await write("hv1", 0, pattern, mib, count);
            await write("hv1", 1, pattern, mib, 1);
            // Wait for the daemon's next point of disk 0 (FREQ seconds after the last).
            const deadline = Date.now() + 60_000;
            let r = await record(0);
            while (r.points.at(-1)!.id === last) {
              assert.ok(Date.now() < deadline, "the daemon took no point within 60 s");
              await new Promise((res) => setTimeout(res, 500));
              r = await record(0);
            }
            const p = r.points.at(-1)!;
            last = p.id;
            periods.push({ disk: 0, guest, moved: p.bytes, data: p.data, kind: p.kind, seconds: 0 });
            assert.equal(p.kind, "incremental");
            assert.equal(p.data, guest, "the increment holds exactly the clusters the guest wrote");
            assert.ok(
              p.bytes >= guest && p.bytes < guest + 512 * 1024,
              `moved ${p.bytes} for ${guest} written`,
            );
          }
        } finally {
          await world.sh("frontend", `kill -TERM "$(cat ${pidFile})"`);
          const log = (await daemon).stderr;
          if (Deno.env.get("RECOVERY_DEBUG")) {
            console.log(
              log,
              JSON.stringify(await record(0)),
              JSON.stringify(await record(1)),
            );
          }
          assert.match(log, /Recovery daemon started/);
          assert.match(log, /Recovery daemon stopped/);
        }
        // Disk 1 (raw) got full points; each holds the whole written content.
        const r1 = await record(1);
        assert.ok(r1.points.length >= 2);
        assert.ok(r1.points.slice(1).every((p) => p.kind === "full"));
        // KEEP=3: at most three points; the chain of the oldest is base <- merged <- inc.
        const r0 = await record(0);
        assert.ok(r0.points.length <= 3);
        assert.deepEqual(await pointPatterns(0, r0.points.at(-1)!.top), expected[0]);
        await domainIntact("hv1");
      },
    );

    /** A point of disk 0 taken now: done, incremental, its content what the guest wrote. */
    const incrementalPoint = async (host: string, written: number, env: Record<string, string> = {}) => {
      const run = await period(env);
      assert.equal(run.code, 0, run.stderr);
      const done = run.report.outcomes.find((o: { diskId: number }) => o.diskId === 0);
      assert.equal(done.status, "done", done.error);
      assert.equal(done.point.kind, "incremental", "the chain goes on: an increment, not a full copy");
      assert.equal(done.point.data, written);
      assert.deepEqual(await pointPatterns(0, done.point.top), expected[0]);
      const raw = run.report.outcomes.find((o: { diskId: number }) => o.diskId === 1);
      assert.equal(raw.status, "done", raw.error);
      assert.deepEqual(await pointPatterns(1, raw.point.top), expected[1]);
      await domainIntact(host);
      return done.point as Point;
    };
    /** A period that must fail and leave the domain as it was. */
    const failedPeriod = async (host: string, match: RegExp, env: Record<string, string> = {}) => {
      const before = await record(0);
      const run = await period(env);
      assert.equal(run.code, 1, "a failed period exits 1");
      const failed = run.report.outcomes.find((o: { diskId: number }) => o.diskId === 0);
      assert.equal(failed.status, "failed");
      assert.match(failed.error, match);
      const after = await record(0);
      assert.deepEqual(after.points.map((p) => p.id), before.points.map((p) => p.id), "no point was added");
      assert.equal(after.head, before.head, "the chain still ends at the same point");
      assert.match(
        await world.sh(host, `cat ${VM_DIR}/disk.0.recovery`),
        /^DISK_RECOVERY_SNAPSHOT = \[ ID=0, TIMESTAMP="[0-9]+", MSG="ERROR .+" \]$/m,
        "the failure shows in the VM's monitoring line",
      );
    };

    await t.step(
      "a failure at every step of a period leaves the domain on its own chain; the next one works",
      async () => {
        // Backup job refused: another backup job (a pull-mode one, as a backup tool would run) holds the domain.
        await world.sh("hv1", "mkdir -p /var/tmp/one/pull && chown oneadmin: /var/tmp/one/pull");
        await world.writeFile(
          "hv1",
          "/var/tmp/one/pull/backup.xml",
          "<domainbackup mode='pull'><server transport='unix' socket='/var/tmp/one/pull/nbd.sock'/><disks>" +
            "<disk name='vda' backup='yes' type='file'><scratch file='/var/tmp/one/pull/scratch'/></disk>" +
            "<disk name='vdb' backup='no'/></disks></domainbackup>",
        );
        await world.sh("hv1", "qemu-img create -q -f qcow2 /var/tmp/one/pull/scratch 64M", {
          user: "oneadmin",
        });
        await hv.mustVirsh("hv1", [
          "backup-begin",
          DOMAIN,
          "/var/tmp/one/pull/backup.xml",
          "--reuse-external",
        ]);
        let written = await write("hv1", 0, 0x41, 16, 1);
        await write("hv1", 1, 0x41, 16, 1);
        try {
          await failedPeriod("hv1", /runs another job \(Backup, e\.g\. a backup\)/);
        } finally {
          await hv.mustVirsh("hv1", ["domjobabort", DOMAIN]);
        }
        await domainIntact("hv1");

        // Transfer cut mid-stream: the replica's pull connection dies after 200 kB.
        const cut = `${world.lab.dir}/cut.pl`;
        await Deno.writeTextFile(cut, CUT_PL);
        await config("", `REPLICA_SSH_OPTS="-o 'ProxyCommand=perl ${cut} %h %p 200000'"`);
        await failedPeriod("hv1", /Error copying recovery point/);
        await config();
        await domainIntact("hv1");

        // Commit on the replica fails after the file arrived.
        await failedPeriod("hv1", /Injected failure at the commit step/, {
          ONESTOR_RECOVERY_FAILPOINT: "commit",
        });
        await domainIntact("hv1");

        // The replica is down.
        await world.lab.stopSshd("replica");
        try {
          await failedPeriod("hv1", /Replica replica cannot be used/);
          assert.match(
            (await monitorLines("hv1"))[0],
            /^DISK_RECOVERY_SNAPSHOT = \[ ID=0, TIMESTAMP="[0-9]+", MSG="ERROR Replica replica cannot be used: .*" \]$/,
          );
          const status = JSON.parse((await recovery(["status", "--json"])).stdout);
          const d0 = status.disks.find((d: { vm: number; disk: number }) => d.vm === VM && d.disk === 0);
          assert.equal(d0.state, "unknown");
          assert.match(d0.replica_error, /replica/);
        } finally {
          await world.lab.startSshd("replica");
        }
        await domainIntact("hv1");
        const failing = JSON.parse((await recovery(["status", "--json"])).stdout);
        assert.equal(failing.disks.find((d: { disk: number }) => d.disk === 0).state, "failing");

        // Each failed period kept the head: the next one is an increment with everything written since.
        await incrementalPoint("hv1", written);

        // The clean-up on the hypervisor fails after the commit: the point counts, the next period finishes it.
        written = await write("hv1", 0, 0x42, 17, 1);
        const warned = await period({ ONESTOR_RECOVERY_FAILPOINT: "cleanup" });
        assert.equal(warned.code, 0, warned.stderr);
        const w = warned.report.outcomes.find((o: { diskId: number }) => o.diskId === 0);
        assert.equal(w.status, "done");
        assert.match(w.warning, /clean-up on hv1 is left for the next period/);
        assert.deepEqual(await pointPatterns(0, w.point.top), expected[0]);
        written = await write("hv1", 0, 0x43, 18, 1);
        await incrementalPoint("hv1", written);
        const strays = (await world.sh("replica", `ls -A ${SNAPS}/${VM}/disk.0.recovery`)).trim().split("\n");
        const r0 = await record(0);
        assert.deepEqual(
          strays.sort(),
          [".onestor.lock", "record.json", ...Object.keys(r0.files)].sort(),
          "only the record and the files of the kept points remain on the replica",
        );
        const ok0 = JSON.parse((await recovery(["status", "--json"])).stdout);
        assert.ok(
          ["ok", "due", "stale"].includes(ok0.disks.find((d: { disk: number }) => d.disk === 0).state),
        );
      },
    );

    await t.step(
      "OpenNebula's incremental backups and recovery points on the same disk: both restore",
      async () => {
        const BACKUP_DIR = `${VM_DIR}/backup`;
        const backupVm = (last: number) =>
          vm(VM, history({ host: "hv1" }), { lcmState: 69 }).replace(
            "<BACKUP_CONFIG></BACKUP_CONFIG>",
            `<BACKUP_CONFIG><MODE><![CDATA[INCREMENT]]></MODE><LAST_INCREMENT_ID><![CDATA[${last}]]></LAST_INCREMENT_ID></BACKUP_CONFIG>`,
          );
        const args = [`hv1:${VM_DIR_ARG}`, "0", DOMAIN, "-", VM, 100];
        const store = `/var/tmp/one/backups`;
        await world.sh("hv1", `mkdir -p ${store} && chown oneadmin: ${store}`);
        const backup = async (last: number) => {
          ok(
            await world.tm("prebackup_live", args.map(String), { stdin: backupVm(last) }),
            `backup ${last + 1}`,
          );
          await world.sh("hv1", `cp ${BACKUP_DIR}/disk.0.${last + 1} ${store}/`, { user: "oneadmin" });
          ok(
            await world.tm("postbackup_live", args.map(String), { stdin: backupVm(last) }),
            "postbackup_live",
          );
          return [...expected[0]];
        };
        const full = await backup(-1);
        let written = await write("hv1", 0, 0x51, 20, 1);
        await incrementalPoint("hv1", written);
        await write("hv1", 0, 0x52, 21, 1);
        const inc1 = await backup(0);
        written = 2 * MiB; // 0x52 (before the backup) and 0x53 (after) since the last point
        await write("hv1", 0, 0x53, 22, 1);
        await incrementalPoint("hv1", written);
        // The backup chain: the increment holds what changed since backup 0 (both sides of the recovery
        // point between them), and full + increment give the disk as it was at backup 1.
        const map = JSON.parse(await world.sh("hv1", `qemu-img map --output=json ${store}/disk.0.1`)) as {
          start: number;
          length: number;
          data: boolean;
        }[];
        assert.deepEqual(map.filter((e) => e.data).map((e) => [e.start / MiB, e.length / MiB]), [[20, 2]]);
        await world.sh(
          "hv1",
          `qemu-img rebase -u -b ${store}/disk.0.0 -F qcow2 ${store}/disk.0.1`,
          { user: "oneadmin" },
        );
        assert.deepEqual(await patterns("hv1", `${store}/disk.0.0`), full);
        assert.deepEqual(await patterns("hv1", `${store}/disk.0.1`), inc1);
        const checkpoints = (await hv.mustVirsh("hv1", ["checkpoint-list", DOMAIN, "--name"])).trim().split(
          "\n",
        );
        assert.deepEqual(checkpoints.sort(), ["one-40-0", "one-40-1"], "OpenNebula's chain is intact");
      },
    );

    const migrate = async (from: string, to: string) => {
      const stdin = base64Xml(vm(VM, history({ host: from }, { host: to })));
      const margs = [from, to, VM_DIR_ARG, VM, 100].map(String);
      ok(await world.tm("premigrate", margs, { stdin }), "premigrate");
      const migrated = await hv.migrate(DOMAIN, from, to);
      assert.equal(migrated.code, 0, migrated.stderr);
      world.oned.addVm(vm(VM, history({ host: from }, { host: to })));
      const post = await world.tm("postmigrate", margs, { stdin });
      ok(post, "postmigrate");
      assert.match(post.stderr, /Disk 0: the recovery bitmap came along; the next point is an increment/);
      // Back to a single history record on the new host for the rest (oned keeps them all; the
      // periods only read the last).
      world.oned.addVm(vm(VM, history({ host: to })));
    };

    await t.step("live migration hv1 -> hv2 -> hv1: the next points follow, the earlier stay", async () => {
      const before = (await record(0)).points.at(-1)!;
      let written = await write("hv1", 0, 0x61, 23, 1);
      await migrate("hv1", "hv2");
      assert.match(await world.sh("hv2", `cat ${VM_DIR}/disk.0.recovery`), /TIMESTAMP="[0-9]+"/);
      const p2 = await incrementalPoint("hv2", written);
      const r = await record(0);
      assert.ok(r.points.some((p) => p.id === before.id), "the point taken on hv1 is kept");
      written = await write("hv2", 0, 0x62, 24, 1);
      await migrate("hv2", "hv1");
      await incrementalPoint("hv1", written);
      assert.ok((await record(0)).points.some((p) => p.id === p2.id), "the point taken on hv2 is kept");
    });

    let lastPoint: Point;
    const atLastPoint: number[][] = [];
    await t.step(
      "hv1 dies; recover --recreate on hv2 rebuilds both disks as they were at the last point",
      async () => {
        const written = await write("hv1", 0, 0x71, 25, 1);
        await write("hv1", 1, 0x71, 25, 1);
        lastPoint = await incrementalPoint("hv1", written);
        atLastPoint.push([...expected[0]], [...expected[1]]);
        // Written after the last point: lost with the host.
        await write("hv1", 0, 0x72, 26, 1);
        await write("hv1", 1, 0x72, 26, 1);
        await world.lab.killHost("hv1");

        // oned: history ACTION 14, the cleanup's DELETE lines against the dead host (no_fail), then a
        // new history record on hv2 and the prolog's CLONE/LN.
        world.oned.addVm(vm(VM, history({ host: "hv1", action: 14 })));
        for (
          const [target, ds] of [[`hv1:${VM_DIR_ARG}/disk.0`, 1], [`hv1:${VM_DIR_ARG}/disk.1`, 1], [
            `hv1:${VM_DIR_ARG}`,
            100,
          ]]
        ) {
          const r = await world.tm("delete", [String(target), String(VM), String(ds)]);
          assert.notEqual(r.code, 0, "the dead host cannot be cleaned");
          assert.match(r.stderr, /Cannot reach host hv1|hv1/);
        }
        assert.deepEqual((await record(0)).points.at(-1)!.id, lastPoint.id, "ACTION 14 keeps the points");
        world.oned.addVm(vm(VM, history({ host: "hv1", action: 14 }, { host: "hv2" }), { lcmState: 1 }));
        const started = performance.now();
        const c0 = await world.tm("clone", [
          `frontend:${IMG_A.replace(DS, DS_LOC)}`,
          `hv2:${VM_DIR_ARG}/disk.0`,
          VM,
          1,
        ]);
        ok(c0, "clone on hv2");
        const l1 = await world.tm("ln", [
          `frontend:${IMG_B.replace(DS, DS_LOC)}`,
          `hv2:${VM_DIR_ARG}/disk.1`,
          VM,
          1,
        ]);
        ok(l1, "ln on hv2");
        const seconds = (performance.now() - started) / 1000;
        console.log(`recreate of two 64 MiB disks from their points: ${seconds.toFixed(1)} s`);
        assert.match(c0.stderr, new RegExp(`rebuilt from recovery point ${lastPoint.id}`));
        assert.deepEqual(
          await patterns("hv2", `${VM_DIR}/disk.0`),
          atLastPoint[0],
          "qcow2 disk at the last point",
        );
        assert.deepEqual(
          await patterns("hv2", `${VM_DIR}/disk.1`),
          atLastPoint[1],
          "raw disk at the last point",
        );
        assert.equal(
          (await world.sh("hv2", `stat -c %F ${VM_DIR}/disk.0 ${VM_DIR}/disk.1`)).trim(),
          "regular file\nregular file",
          "real files, no links",
        );
        const f0 = JSON.parse(await world.sh("hv2", `qemu-img info --output=json ${VM_DIR}/disk.0`));
        const f1 = JSON.parse(await world.sh("hv2", `qemu-img info --output=json ${VM_DIR}/disk.1`));
        assert.equal(f0.format, "qcow2");
        assert.equal(f1.format, "raw", "the raw disk comes back raw");
        assert.match(JSON.stringify(f0), new RegExp(`"name":"onestor-rec-0-${lastPoint.id}"`));
        assert.equal((await record(0)).head, lastPoint.id);

        // The recreated VM runs on hv2 and its chain goes on from the restored point.
        world.oned.addVm(vm(VM, history({ host: "hv2" })));
        expected[0] = [...atLastPoint[0]];
        expected[1] = [...atLastPoint[1]];
        await hv.create("hv2", domainXmlOn());
        const w = await write("hv2", 0, 0x73, 27, 1);
        await incrementalPoint("hv2", w);
      },
    );

    await t.step(
      "a protected disk without a usable point fails the recreate, unless REPLICA_RECOVERY_FALLBACK=image",
      async () => {
        const other = 41;
        world.oned.addVm(
          vm(other, history({ host: "hv1", action: 14 }, { host: "hv2" }), { lcmState: 1 }),
        );
        const args = [`frontend:${IMG_A.replace(DS, DS_LOC)}`, `hv2:${DS_LOC}/100/${other}/disk.0`, other, 1]
          .map(String);
        const refused = await world.tm("clone", args);
        assert.notEqual(refused.code, 0);
        assert.match(
          refused.stderr.trim().split("\n").pop()!,
          /VM 41 disk 0 is protected by recovery points but replica replica holds no recovery point of it; the disk was not deployed/,
        );
        await config("REPLICA_RECOVERY_FALLBACK=image");
        const fallback = await world.tm("clone", args);
        ok(fallback, "clone with the fallback");
        assert.match(fallback.stderr, /deploying its image instead \(REPLICA_RECOVERY_FALLBACK=image\)/);
        assert.equal((await patterns("hv2", `${DS}/100/${other}/disk.0`))[0], 0x11);
        await config();
        // Terminated: a DELETE with another ACTION removes its points.
        world.oned.addVm(vm(other, history({ host: "hv2", action: 27 })));
        ok(
          await world.tm("delete", [`hv2:${DS_LOC}/100/${other}/disk.0`, other, 1].map(String)),
          "delete disk",
        );
        ok(
          await world.tm("delete", [`hv2:${DS_LOC}/100/${other}`, other, 100].map(String)),
          "delete VM folder",
        );
        assert.equal(
          (await world.sh("replica", `test -e ${SNAPS}/${other} && echo yes || echo no`)).trim(),
          "no",
        );
        world.oned.remove("vm", other);
      },
    );

    await t.step("a chosen older point: restore --point N, then a recreate rebuilds that one", async () => {
      const r = await record(0);
      const older = r.points.at(-2)!;
      const chose = await recovery(["restore", String(VM), "--point", String(older.id), "--disk", "0"]);
      ok(chose, "restore --point");
      assert.match(chose.stdout, new RegExp(`a recreate rebuilds the disk from point ${older.id}`));
      const status = JSON.parse((await recovery(["status", "--vm", String(VM), "--json"])).stdout);
      assert.equal(status.disks.find((d: { disk: number }) => d.disk === 0).restore_point, older.id);
      const olderContent = await pointPatterns(0, older.top);
      // Recreate on the same (healthy) host: the cleanup cancels the domain and deletes its files.
      await hv.destroy("hv2", DOMAIN);
      world.oned.addVm(vm(VM, history({ host: "hv2", action: 14 })));
      ok(await world.tm("delete", [`hv2:${VM_DIR_ARG}`, VM, 100].map(String)), "delete (ACTION 14)");
      world.oned.addVm(vm(VM, history({ host: "hv2", action: 14 }, { host: "hv2" }), { lcmState: 1 }));
      ok(
        await world.tm("clone", [`frontend:${IMG_A.replace(DS, DS_LOC)}`, `hv2:${VM_DIR_ARG}/disk.0`, VM, 1]),
        "clone",
      );
      ok(
        await world.tm("ln", [`frontend:${IMG_B.replace(DS, DS_LOC)}`, `hv2:${VM_DIR_ARG}/disk.1`, VM, 1]),
        "ln",
      );
      assert.deepEqual(await patterns("hv2", `${VM_DIR}/disk.0`), olderContent);
      expected[0] = [...olderContent];
      expected[1] = await patterns("hv2", `${VM_DIR}/disk.1`);
      world.oned.addVm(vm(VM, history({ host: "hv2" })));
      await hv.create("hv2", domainXmlOn());
      const w = await write("hv2", 0, 0x81, 28, 1);
      const p = await incrementalPoint("hv2", w);
      const after = await record(0);
      assert.ok(
        after.points.every((x) => x.id <= older.id || x.id === p.id),
        "the points after the chosen one are dropped",
      );
      assert.equal(after.files[p.top].backing, older.top, "the new point continues the chosen one");
    });

    await t.step("a hypervisor without any private key still gets its points", async () => {
      await world.sh("hv2", "rm -f /var/lib/one/.ssh/id_ed25519 /root/.ssh/id_ed25519");
      const reach = await world.lab.exec("hv2", [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "replica",
        "true",
      ], {
        user: "oneadmin",
      });
      assert.notEqual(reach.code, 0, "hv2 cannot reach the replica (no key)");
      const w = await write("hv2", 0, 0x91, 29, 1);
      await incrementalPoint("hv2", w);
    });

    await t.step(
      "DELETE with another ACTION removes the points; the status lists what is protected",
      async () => {
        const status = JSON.parse((await recovery(["status", "--json"])).stdout);
        assert.equal(status.version, 1);
        const d0 = status.disks.find((d: { vm: number; disk: number }) => d.vm === VM && d.disk === 0);
        // FREQ is 4 s: on a busy machine the point may already be due, even stale, again.
        assert.ok(["ok", "due", "stale"].includes(d0.state), d0.state);
        assert.equal(d0.last_error, null);
        assert.equal(d0.freq_seconds, FREQ);
        assert.ok(d0.last_point.age_seconds >= 0 && d0.last_point.kind === "incremental");
        const table = await recovery(["status"]);
        assert.match(table.stdout, /VM\s+DISK\s+HOST/);
        await hv.destroy("hv2", DOMAIN);
        world.oned.addVm(vm(VM, history({ host: "hv2", action: 27 })));
        ok(await world.tm("delete", [`hv2:${VM_DIR_ARG}/disk.0`, VM, 1].map(String)), "delete disk 0");
        assert.equal(
          (await world.sh("replica", `test -e ${SNAPS}/${VM}/disk.0.recovery && echo yes || echo no`)).trim(),
          "no",
        );
        ok(await world.tm("delete", [`hv2:${VM_DIR_ARG}`, VM, 100].map(String)), "delete VM folder");
        assert.equal(
          (await world.sh("replica", `test -e ${SNAPS}/${VM} && echo yes || echo no`)).trim(),
          "no",
        );
      },
    );
  },
);
