/**
 * `onestor doctor` on a real lab (front-end, replica, hv1, hv2 with their own sshd), run through
 * the installed launcher as oneadmin: it passes on a healthy lab; for each injected fault it names
 * the exact problem and its fix; `--fix` removes the stale lease and the orphaned temporary folder
 * and nothing else (every file of every host listed, every disk checksummed, before and after).
 *
 * Faults are made the way they happen: a key removed from authorized_keys, a host whose sshd got a
 * new host key, qemu-img made unrunnable on hv2 only (a bind mount over the binary in hv2's mount
 * namespace: hosts share /usr with the machine), a filler killed with SIGKILL in the middle of a
 * fill, a copy folder left behind, bytes of a cached image rewritten with its size and mtime kept,
 * an overlay whose backing file is deleted, a misspelt key in sshrc, the replica's datastore
 * location on a small filesystem filled by something else.
 */

import assert from "node:assert/strict";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import { datastoreXml, DS_LOC, hostXml, imageDisk, vmXml } from "../support/fixtures.ts";
import { THROTTLE_PL } from "../support/throttle.ts";
import type { Report } from "../../core/doctor/render.ts";

const MiB = 1 << 20;
const DS = "/var/lib/one/datastores";
const IMG_DIR = `${DS}/1`;
const ONESTOR_CONF = "/var/lib/one/remotes/etc/onestor/onestor.conf";
const SSHRC = "/var/lib/one/remotes/etc/tm/ssh/sshrc";
const HOSTS = ["frontend", "replica", "hv1", "hv2"];
const hash = (n: number) => n.toString(16).padStart(32, "0");

labTest(
  "onestor doctor: healthy lab, every injected fault named with its fix, --fix removes only garbage",
  async (t) => {
    await using world = await World.start();
    const tm = world.tmName;
    world.oned.addDatastore(datastoreXml({ id: 1, dsMad: world.dsName, tmMad: tm }));
    world.oned.addDatastore(
      datastoreXml({ id: 100, type: 1, tmMad: tm, template: { REPLICA_HOST: "replica" } }),
    );
    world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
    world.oned.addHost(hostXml({ id: 2, name: "hv2" }));
    for (const host of HOSTS) {
      await world.sh(
        host,
        `mkdir -p ${IMG_DIR} ${DS}/100 && chown -R oneadmin: ${DS}`,
      );
    }
    // What `onehost sync` lays on the hypervisors: the host-side monitor_ds script.
    const monitorDs = await Deno.readTextFile(
      world.lab.path("frontend", `/var/lib/one/remotes/tm/${tm}/monitor_ds`),
    );
    for (const host of ["hv1", "hv2"]) {
      await world.writeFile(host, `/var/tmp/one/tm/${tm}/monitor_ds`, monitorDs);
      await world.sh(host, `chmod 755 /var/tmp/one/tm/${tm}/monitor_ds && chown -R oneadmin: /var/tmp/one`);
    }
    const config = async (onestor = "", sshrc = "") => {
      await world.writeFile(
        "frontend",
        ONESTOR_CONF,
        `REPLICA_LEASE_SECONDS=5\nSSH_CONNECT_TIMEOUT=5\n${onestor}`,
      );
      await world.writeFile("frontend", SSHRC, sshrc);
    };
    await config();

    const doctor = (args: string[] = [], env: Record<string, string> = {}) =>
      world.lab.exec("frontend", [`/var/lib/one/remotes/tm/${tm}/.onestor`, "doctor", ...args], {
        user: "oneadmin",
        env: world.env(env),
      });
    const report = async (args: string[] = []): Promise<Report & { raw: string; code: number }> => {
      const r = await doctor(["--json", ...args]);
      assert.ok(r.code >= 0 && r.code <= 2, `doctor exit ${r.code}: ${r.stderr}`);
      return { ...JSON.parse(r.stdout), raw: r.stdout, code: r.code };
    };
    const problems = (rep: Report) => rep.findings.filter((f) => f.status !== "ok");
    const show = (rep: Report) =>
      problems(rep).map((f) => `${f.status} ${f.check} ${f.subject}: ${f.cause} | fix: ${f.fix}`).join("\n");
    /** The one non-ok finding of `check` whose subject matches, asserted present. */
    const problem = (rep: Report, check: string, subject: RegExp) => {
      const found = problems(rep).filter((f) => f.check === check && subject.test(f.subject));
      assert.equal(found.length, 1, `one ${check} problem on ${subject}, got:\n${show(rep)}`);
      return found[0];
    };

    // A VM through the replica cache (an entry on the replica, its disk on hv1) and a qcow2 overlay
    // with a backing file on hv2: the healthy lab has something in every place the doctor looks.
    const image = `${IMG_DIR}/${hash(1)}`;
    await world.sh(
      "frontend",
      `truncate -s 16M ${image} && head -c ${
        4 * MiB
      } /dev/urandom | dd of=${image} bs=1M seek=1 conv=notrunc status=none && chown oneadmin: ${image}`,
    );
    const clone = (vm: number, host: string, path: string, env: Record<string, string> = {}) => {
      world.oned.addVm(vmXml({
        id: vm,
        disks: [imageDisk({ DISK_ID: 0, IMAGE_ID: vm, SOURCE: path, SIZE: 16, ORIGINAL_SIZE: 16 })],
        history: [{ hostname: host, hid: host === "hv1" ? 1 : 2, dsId: 100 }],
      }));
      return world.tm(
        "clone",
        [`frontend:${path.replace(DS, DS_LOC)}`, `${host}:${DS_LOC}/100/${vm}/disk.0`, vm, 1],
        { env },
      );
    };
    ok(await clone(7, "hv1", image), "clone of VM 7");
    await world.sh(
      "hv2",
      `mkdir -p ${DS}/100/9 && cd ${DS}/100/9 && qemu-img create -q -f qcow2 base.qcow2 16M && ` +
        `qemu-img create -q -f qcow2 -b ${DS}/100/9/base.qcow2 -F qcow2 disk.0 && printf '${tm}\\n' >${DS}/100/.monitor && ` +
        `chown -R oneadmin: ${DS}/100`,
    );

    await t.step(
      "a healthy lab passes, in one round trip per host, with versions and every hop",
      async () => {
        const healthy = await report();
        assert.equal(healthy.code, 0, show(healthy));
        assert.equal(healthy.status, "ok");
        assert.equal(healthy.exit_code, 0);
        assert.equal(healthy.version, 1);
        console.log(`healthy lab doctor: ${healthy.duration_seconds} s, ${healthy.findings.length} findings`);
        const subjects = healthy.findings.map((f) => `${f.check} ${f.subject}`);
        for (
          const s of [
            "ssh front-end → hv1",
            "ssh front-end → hv2",
            "ssh front-end → replica",
            "ssh replica → hv1",
            "ssh replica → hv2",
            "ssh hv1 → hv2",
            "ssh hv2 → hv1",
            "ssh hv1 → frontend",
            "ssh replica → frontend",
          ]
        ) {
          assert.ok(subjects.includes(s), `${s} checked:\n${subjects.join("\n")}`);
        }
        const programs = healthy.findings.find((f) => f.subject === "hv2: programs")!;
        assert.match(programs.cause, /qemu-img \d+\.\d+/);
        assert.match(programs.cause, /virsh \d+\.\d+/);
        assert.match(programs.cause, /flock \d+\.\d+/);
        assert.match(programs.cause, /b2sum \d+\.\d+/);
        assert.match(programs.cause, /mkfs\.xfs \d+\.\d+/);
        assert.ok(healthy.findings.some((f) => f.check === "backing-chain" && f.subject === "hv2: VM disks"));
        assert.ok(healthy.findings.some((f) => f.check === "replica-space" && f.status === "ok"));
        assert.ok(healthy.findings.some((f) => f.check === "clock" && f.subject === "replica"));
        // Piped: plain lines; the summary last.
        const plain = await doctor();
        assert.equal(plain.code, 0);
        assert.match(plain.stdout, /^ok {3}ssh front-end → hv1: every action$/m);
        assert.match(plain.stdout, /^0 failed, 0 warnings, \d+ ok \([0-9.]+ s\)$/m);
        assert.ok(!plain.stdout.includes("\x1b"), "no escape sequences when piped");
        // On a terminal: a table with colour, none with NO_COLOR.
        const launcher = `/var/lib/one/remotes/tm/${tm}/.onestor doctor`;
        const tty = await world.lab.exec("frontend", ["script", "-qec", launcher, "/dev/null"], {
          user: "oneadmin",
          env: world.env(),
        });
        assert.match(tty.stdout, /STATUS {2}CHECK/);
        assert.ok(tty.stdout.includes("\x1b[32mok"), "colour on a terminal");
        const mono = await world.lab.exec("frontend", ["script", "-qec", launcher, "/dev/null"], {
          user: "oneadmin",
          env: world.env({ NO_COLOR: "1" }),
        });
        assert.match(mono.stdout, /STATUS {2}CHECK/);
        assert.ok(!mono.stdout.includes("\x1b["), "NO_COLOR honoured");
        // --host: that host, and the hops of the others to it (no local checks of the others).
        const one = await report(["--host", "hv1"]);
        assert.equal(one.code, 0, show(one));
        const hostSubjects = one.findings.map((f) => f.subject);
        assert.ok(
          hostSubjects.includes("front-end → hv1") && hostSubjects.includes("hv2 → hv1"),
          hostSubjects.join("\n"),
        );
        assert.ok(
          !hostSubjects.some((s) =>
            s.startsWith("hv2: ") || s.startsWith("replica: ") || s === "hv2 → frontend"
          ),
          hostSubjects.join("\n"),
        );
      },
    );

    await t.step("a host without the key: every hop into hv1 refused, ssh-copy-id named", async () => {
      const keys = world.lab.path("hv1", "/var/lib/one/.ssh/authorized_keys");
      const saved = await Deno.readTextFile(keys);
      await Deno.writeTextFile(keys, "");
      try {
        const rep = await report();
        assert.equal(rep.code, 2);
        const fe = problem(rep, "ssh", /^front-end → hv1$/);
        assert.equal(fe.status, "fail");
        assert.match(fe.cause, /^hv1 refuses the front-end's key \(.*Permission denied.*\)/);
        assert.match(fe.fix, /ssh-copy-id -i \/var\/lib\/one\/\.ssh\/id_ed25519\.pub oneadmin@hv1/);
        const fromReplica = problem(rep, "ssh", /^replica → hv1$/);
        assert.match(fromReplica.cause, /^hv1 refuses replica's key/);
        assert.match(fromReplica.fix, /authorized_keys on hv1/);
        problem(rep, "ssh", /^hv2 → hv1$/);
        assert.equal(
          problems(rep).filter((f) => f.check === "ssh" && !f.subject.endsWith("hv1")).length,
          0,
          show(rep),
        );
      } finally {
        await Deno.writeTextFile(keys, saved);
      }
    });

    await t.step("a host key that changed: refused by every client, ssh-keygen -R named", async () => {
      const config = `${world.lab.dir}/hosts/hv2/sshd_config`;
      const saved = await Deno.readTextFile(config);
      const newKey = `${world.lab.dir}/hosts/hv2/new_host_key`;
      const keygen = await new Deno.Command("ssh-keygen", {
        args: ["-q", "-t", "ed25519", "-N", "", "-f", newKey],
      })
        .output();
      assert.ok(keygen.success);
      await Deno.writeTextFile(config, saved.replace(/^HostKey .*$/m, `HostKey ${newKey}`));
      await world.lab.stopSshd("hv2");
      await world.lab.startSshd("hv2");
      try {
        const rep = await report();
        assert.equal(rep.code, 2);
        const fe = problem(rep, "ssh", /^front-end → hv2$/);
        assert.match(
          fe.cause,
          /^the host key of hv2 \(hv2\) changed since the front-end recorded it in known_hosts/,
        );
        assert.match(fe.fix, /ssh-keygen -R hv2 && ssh-keyscan -H hv2 >>~\/\.ssh\/known_hosts/);
        assert.match(fe.fix, /after comparing the fingerprint/);
        assert.match(problem(rep, "ssh", /^hv1 → hv2$/).cause, /host key of hv2/);
        assert.match(problem(rep, "ssh", /^replica → hv2$/).cause, /host key of hv2/);
      } finally {
        await Deno.writeTextFile(config, saved);
        await world.lab.stopSshd("hv2");
        await world.lab.startSshd("hv2");
      }
    });

    await t.step("qemu-img missing on hv2 only: named with its package", async () => {
      await world.sh("hv2", "mount --bind /dev/null /usr/bin/qemu-img");
      try {
        const rep = await report();
        assert.equal(rep.code, 2);
        const f = problem(rep, "host-tools", /^hv2: qemu-img$/);
        assert.equal(f.status, "fail");
        assert.match(f.cause, /^qemu-img is not found on hv2/);
        assert.equal(f.fix, "install qemu-utils on hv2 (apt-get install qemu-utils)");
        assert.equal(problems(rep).length, 1, show(rep));
      } finally {
        await world.sh("hv2", "umount /usr/bin/qemu-img");
      }
    });

    await t.step("a misspelt key: named with the key it meant", async () => {
      await config("", "REPLICA_MAX_USED_PERCENT=80\n");
      const rep = await report();
      assert.equal(rep.code, 1, show(rep));
      const f = problem(rep, "config", /sshrc:1: REPLICA_MAX_USED_PERCENT$/);
      assert.equal(f.status, "warn");
      assert.match(f.cause, /^unknown key REPLICA_MAX_USED_PERCENT: onestor ignores it/);
      assert.equal(f.fix, "rename it to REPLICA_MAX_USED_PERC");
      // In onestor's own file the same mistake stops every action: a failure.
      await config("SSH_CONECT_TIMEOUT=3\n");
      const own = await report();
      assert.equal(own.code, 2);
      const g = problem(own, "config", /onestor\.conf:3: SSH_CONECT_TIMEOUT$/);
      assert.equal(g.fix, "rename it to SSH_CONNECT_TIMEOUT");
      await config();
    });

    await t.step("a broken backing chain: the missing backing file named", async () => {
      await world.sh(
        "hv1",
        `mkdir -p ${DS}/100/8 && cd ${DS}/100/8 && qemu-img create -q -f qcow2 base.qcow2 16M && ` +
          `qemu-img create -q -f qcow2 -b ${DS}/100/8/base.qcow2 -F qcow2 disk.0 && rm base.qcow2 && chown -R oneadmin: .`,
      );
      const rep = await report();
      assert.equal(rep.code, 2);
      const f = problem(rep, "backing-chain", /^hv1: VM 8 disk\.0$/);
      assert.equal(
        f.cause,
        `${DS}/100/8/disk.0 cannot be opened: its backing file ${DS}/100/8/base.qcow2 is missing`,
      );
      assert.match(f.fix, new RegExp(`^put ${DS}/100/8/base\\.qcow2 back on hv1`));
      await world.sh("hv1", `rm -rf ${DS}/100/8`);
    });

    // Left in place for the --fix step: a killed filler's lease, an old copy folder, a young one.
    const slowImage = `${IMG_DIR}/${hash(2)}`;
    const leaseFile = `${IMG_DIR}/${hash(2)}.onestor-lease.json`;
    const orphan = `${DS}/100/7/.onestor-xfer-0123456789ab`;
    const young = `${DS}/100/7/.onestor-xfer-ba9876543210`;

    await t.step("a stale lease of a killed filler: its age, its dead holder, --fix named", async () => {
      await world.sh(
        "frontend",
        `truncate -s 24M ${slowImage} && head -c ${
          12 * MiB
        } /dev/urandom | dd of=${slowImage} bs=1M seek=1 conv=notrunc status=none && chown oneadmin: ${slowImage}`,
      );
      const throttle = `${world.lab.dir}/throttle.pl`;
      await Deno.writeTextFile(throttle, THROTTLE_PL);
      await config("", `REPLICA_SSH_FE_OPTS="-o 'ProxyCommand=perl ${throttle} %h %p ${2 * MiB}'"\n`);
      const filler = clone(20, "hv2", slowImage, { ONESTOR_TEST_ROLE: "doctor-filler" });
      const pid = await waitFor("the filler to stream", async () => {
        const du = await world.sh(
          "replica",
          `du -sB1 ${IMG_DIR}/.onestor-fill-${hash(2)}-* 2>/dev/null | cut -f1`,
        );
        if (!(Number(du.split("\n")[0]) > MiB)) return null;
        return processesWith("ONESTOR_TEST_ROLE=doctor-filler", "deno")[0] ?? null;
      });
      Deno.kill(pid, "SIGKILL");
      assert.equal((await filler).code, 137);
      await config();
      // REPLICA_LEASE_SECONDS=5: wait until it has expired.
      await new Promise((r) => setTimeout(r, 6500));
      const rep = await report();
      assert.equal(rep.code, 1, show(rep));
      const f = problem(rep, "lease", new RegExp(`${hash(2)}\\.onestor-lease\\.json$`));
      assert.equal(f.subject, `replica:${leaseFile}`);
      assert.match(
        f.cause,
        new RegExp(
          `^stale lease: its filler frontend:\\d+:\\w+ \\(filling ${slowImage}\\) is no longer running; expired \\d+ s ago$`,
        ),
      );
      assert.ok((f.age_seconds ?? 0) >= 1);
      assert.equal(
        f.fix,
        "onestor doctor --fix removes it and its fill folder (the next deployment of the image would take it over)",
      );
    });

    await t.step("an orphaned temporary folder: its age; a recent one left alone", async () => {
      await world.sh(
        "hv1",
        `mkdir -p ${orphan} ${young} && head -c 65536 /dev/urandom >${orphan}/disk.0 && ` +
          `touch -d '2 hours ago' ${orphan}/disk.0 ${orphan} && chown -R oneadmin: ${orphan} ${young}`,
      );
      const rep = await report();
      assert.equal(rep.code, 1, show(rep));
      const f = problem(rep, "temporary", new RegExp(`^hv1:${orphan}$`));
      assert.match(
        f.cause,
        /^orphaned temporary file of an interrupted copy: untouched for 2 h, open by no process/,
      );
      assert.ok((f.age_seconds ?? 0) >= 7200);
      assert.equal(f.fix, "onestor doctor --fix removes it");
      const recent = rep.findings.find((x) => x.subject === `hv1:${young}`)!;
      assert.equal(recent.status, "ok");
      assert.match(recent.cause, /^recent \(\d+ s old/);
    });

    const cached = `${IMG_DIR}/${hash(1)}`;
    await t.step("a corrupted cache entry: only --deep sees it, the exact command named", async () => {
      const flip = `m=$(stat -c %Y ${cached}) && printf onestor-corrupt! | ` +
        `dd of=${cached} bs=1 seek=${2 * MiB} conv=notrunc status=none && touch -d @$m ${cached}`;
      await world.sh("replica", flip);
      const shallow = await report();
      assert.ok(!problems(shallow).some((f) => f.check.startsWith("cache")), show(shallow));
      const deep = await report(["--deep"]);
      assert.equal(deep.code, 2);
      const f = problem(deep, "cache-content", new RegExp(`${hash(1)}$`));
      assert.match(
        f.cause,
        new RegExp(`^the cached copy of ${image} is corrupt \\(content checksum mismatch`),
      );
      assert.match(f.fix, new RegExp(`cache verify --replica replica ${cached} \\(removes it`));
    });

    await t.step(
      "--fix removes the stale lease and the orphan, nothing else; every disk unchanged",
      async () => {
        const before = await inventory(world);
        const fixed = await doctor(["--fix", "--deep"]);
        // The corrupt entry (seen with --deep) is no garbage: reported, left for the administrator.
        assert.equal(fixed.code, 2, fixed.stdout);
        assert.match(fixed.stdout, /^FAIL cache-content /m);
        assert.match(
          fixed.stdout,
          new RegExp(`fixed: removed the lease and its fill folder \\.onestor-fill-${hash(2)}-`),
        );
        assert.match(fixed.stdout, /fixed: removed$/m);
        const after = await inventory(world);
        const removed = [...before.files.keys()].filter((p) => !after.files.has(p)).sort();
        const added = [...after.files.keys()].filter((p) => !before.files.has(p));
        assert.deepEqual(added, [], "nothing created");
        // Exactly the lease, the dead filler's fill folder (and what it held) and the orphan folder.
        assert.ok(removed.includes(`replica:${leaseFile}`), removed.join("\n"));
        assert.ok(
          removed.includes(`hv1:${orphan}`) && removed.includes(`hv1:${orphan}/disk.0`),
          removed.join("\n"),
        );
        const others = removed.filter((p) =>
          p !== `replica:${leaseFile}` && !p.startsWith(`hv1:${orphan}`) &&
          !p.startsWith(`replica:${IMG_DIR}/.onestor-fill-${hash(2)}-`)
        );
        assert.deepEqual(others, []);
        assert.ok(after.files.has(`hv1:${young}`), "the recent temporary folder is kept");
        // Every disk and image, byte for byte (the corrupt cached copy included: it is no garbage).
        for (const [path, sum] of before.sums) {
          if (removed.includes(path)) continue;
          assert.equal(after.sums.get(path), sum, `${path} unchanged`);
        }
        assert.ok(before.sums.size >= 5, [...before.sums.keys()].join("\n"));
        const again = await report();
        assert.ok(!problems(again).some((f) => f.check === "lease" || f.check === "temporary"), show(again));
      },
    );

    await t.step("a full replica: nothing more can be cached, what to do named", async () => {
      await world.sh(
        "replica",
        `mount -t tmpfs -o size=48m tmpfs ${DS} && mkdir -p ${IMG_DIR} && printf 'replica\\n' >${IMG_DIR}/.monitor && ` +
          `head -c ${46 * MiB} /dev/zero >${DS}/other-data && chown -R oneadmin: ${DS}`,
      );
      try {
        const rep = await report();
        assert.equal(rep.code, 2);
        const f = problem(rep, "replica-space", /^replica$/);
        assert.match(
          f.cause,
          /^the cache of replica is full: 0\.0 MiB cached in 0 entries, filesystem 9\d% used \(REPLICA_MAX_USED_PERC=90\); nothing more can be cached/,
        );
        assert.match(
          f.fix,
          /^free space on replica's filesystem outside the cache, grow it, or raise REPLICA_MAX_USED_PERC/,
        );
      } finally {
        await world.sh("replica", `umount ${DS}`);
      }
    });
  },
);

/** Every file and folder under the datastore location of every host, and the b2sum of each regular file. */
async function inventory(world: World): Promise<{ files: Set<string>; sums: Map<string, string> }> {
  const files = new Set<string>();
  const sums = new Map<string, string>();
  for (const host of HOSTS) {
    const out = await world.sh(
      host,
      `cd / && find ${DS} -mindepth 1 ! -name .onestor-cache.log ! -name .onestor.lock -printf '%y %p\\n' | sort && ` +
        `find ${DS} -type f ! -name '.onestor*' -exec b2sum {} + | sed 's/^/SUM /'`,
    );
    for (const line of out.split("\n")) {
      if (line.startsWith("SUM ")) {
        const [sum, path] = line.slice(4).split(/\s+/);
        sums.set(`${host}:${path}`, sum);
      } else if (line) files.add(`${host}:${line.slice(2)}`);
    }
  }
  return { files, sums };
}

/** Polls `check` until it returns a value (not null), for at most 60 s. */
async function waitFor<T>(what: string, check: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const value = await check();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Machine pids of processes whose environment holds `marker` and whose command name is `comm`. */
function processesWith(marker: string, comm: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (!Deno.readTextFileSync(`/proc/${e.name}/environ`).split("\0").includes(marker)) continue;
      if (Deno.readTextFileSync(`/proc/${e.name}/comm`).trim() !== comm) continue;
      pids.push(Number(e.name));
    } catch {
      // Gone, or not ours to read.
    }
  }
  return pids;
}
