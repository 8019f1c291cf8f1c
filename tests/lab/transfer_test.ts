import assert from "node:assert/strict";
import { HostRunner } from "../../core/remote/runner.ts";
import { SshClient } from "../../core/remote/ssh.ts";
import { copyEntries, CopyError } from "../../core/transfer/copy.ts";
import { scratchConfinement, tmConfinement } from "../../core/remote/confine.ts";
import { Lab, labTest } from "../support/lab.ts";

const DS = "/var/lib/one/datastores";
const CONFINE = tmConfinement({ datastoreLocation: DS });

async function sh(lab: Lab, host: string, script: string): Promise<string> {
  const r = await lab.exec(host, ["bash", "-c", script]);
  if (r.code !== 0) throw new Error(`${host}: ${script}: ${r.stderr}`);
  return r.stdout.trim();
}

function usage(lab: Lab, host: string, path: string): { apparent: number; allocated: number } {
  const st = Deno.statSync(lab.path(host, path));
  return { apparent: st.size, allocated: (st.blocks ?? 0) * 512 };
}

labTest(
  "copyEntries() moves files between front-end and hosts, keeps holes, verifies and renames",
  async () => {
    await using lab = await Lab.start({ hosts: ["frontend", "hv1", "hv2"] });
    const ssh = new SshClient({ configFile: lab.sshConfig, controlDir: `/tmp/onestor-t-${Deno.pid}` });
    // The test process is not a lab host: "frontend" is reached over SSH like any host, and the
    // front-end role (host null) is played by a local folder of the machine.
    const runner = new HostRunner(ssh, ["local-test-process"]);
    const local = await Deno.makeTempDir();
    try {
      await sh(
        lab,
        "hv1",
        `mkdir -p ${DS}/1/img.snap && truncate -s 64M ${DS}/1/img && ` +
          `dd if=/dev/urandom of=${DS}/1/img bs=1M count=4 seek=20 conv=notrunc status=none && ` +
          `echo snap0 > ${DS}/1/img.snap/0 && ln -s img ${DS}/1/link`,
      );
      const sum = await sh(lab, "hv1", `md5sum < ${DS}/1/img`);

      // Host to host (runs on hv1), renamed, with the optional .snap folder.
      const r1 = await copyEntries(runner, {
        from: {
          host: "hv1",
          dir: `${DS}/1`,
          entries: [{ name: "img", as: "disk.0" }, { name: "img.snap", as: "disk.0.snap", optional: true }, {
            name: "absent",
            optional: true,
          }],
        },
        to: { host: "hv2", dir: `${DS}/0/5`, confine: CONFINE },
      });
      assert.ok(
        r1.streamBytes > 4 << 20 && r1.streamBytes < 8 << 20,
        `sparse stream (${r1.streamBytes} bytes)`,
      );
      assert.equal(await sh(lab, "hv2", `md5sum < ${DS}/0/5/disk.0`), sum);
      assert.equal(Deno.readTextFileSync(lab.path("hv2", `${DS}/0/5/disk.0.snap/0`)), "snap0\n");
      const sparse = usage(lab, "hv2", `${DS}/0/5/disk.0`);
      assert.equal(sparse.apparent, 64 << 20);
      assert.ok(sparse.allocated <= 8 << 20, `holes kept (${sparse.allocated} bytes allocated)`);
      assert.deepEqual([...Deno.readDirSync(lab.path("hv2", `${DS}/0/5`))].map((e) => e.name).sort(), [
        "disk.0",
        "disk.0.snap",
      ], "no temporary folder left");

      // Host to front-end (the front-end pulls), non-sparse: every zero is written.
      await copyEntries(runner, {
        from: { host: "hv2", dir: `${DS}/0/5`, entries: [{ name: "disk.0" }] },
        to: { host: null, dir: `${local}/fe`, confine: scratchConfinement(local) },
        sparse: false,
      });
      const full = Deno.statSync(`${local}/fe/disk.0`);
      assert.ok((full.blocks ?? 0) * 512 >= 64 << 20, "SPARSE=NO allocates the whole file");

      // Front-end to host, overwriting an existing file; a symlink is followed when asked.
      await copyEntries(runner, {
        from: { host: null, dir: `${local}/fe`, entries: [{ name: "disk.0", as: "disk.1" }] },
        to: { host: "hv1", dir: `${DS}/0/6`, confine: CONFINE },
      });
      await copyEntries(runner, {
        from: { host: "hv1", dir: `${DS}/1`, entries: [{ name: "link", as: "disk.1" }] },
        to: { host: "hv1", dir: `${DS}/0/6`, confine: CONFINE },
        dereference: true,
      });
      assert.equal(Deno.lstatSync(lab.path("hv1", `${DS}/0/6/disk.1`)).isFile, true);
      assert.equal(await sh(lab, "hv1", `md5sum < ${DS}/0/6/disk.1`), sum);

      // Wire compression (TRANSFER_COMPRESSION): the same bytes arrive, holes kept.
      for (const compression of ["gzip", "xz"] as const) {
        await copyEntries(runner, {
          from: { host: "hv1", dir: `${DS}/1`, entries: [{ name: "img", as: `disk.${compression}` }] },
          to: { host: "hv2", dir: `${DS}/0/7`, confine: CONFINE },
          compression,
        });
        assert.equal(await sh(lab, "hv2", `md5sum < ${DS}/0/7/disk.${compression}`), sum);
        assert.ok(usage(lab, "hv2", `${DS}/0/7/disk.${compression}`).allocated <= 8 << 20);
      }

      // A missing source fails with a clear message and touches nothing.
      const missing = await copyEntries(runner, {
        from: { host: "hv1", dir: `${DS}/1`, entries: [{ name: "nope" }] },
        to: { host: "hv2", dir: `${DS}/0/5`, confine: CONFINE },
      }).catch((e) => e);
      assert.ok(missing instanceof CopyError, String(missing));
      assert.match(missing.message, /Source \/var\/lib\/one\/datastores\/1\/nope does not exist/);

      // A full destination: the copy fails, the previous file stays, no temporary folder is left.
      await sh(
        lab,
        "hv2",
        `mkdir -p ${DS}/small && mount -t tmpfs -o size=2m tmpfs ${DS}/small && echo old > ${DS}/small/disk.0`,
      );
      const full2 = await copyEntries(runner, {
        from: { host: "hv1", dir: `${DS}/1`, entries: [{ name: "img", as: "disk.0" }] },
        to: { host: "hv2", dir: `${DS}/small`, confine: CONFINE },
      }).catch((e) => e);
      assert.ok(full2 instanceof CopyError, String(full2));
      assert.match(full2.message, /No space left on device|Wrote only|Cannot write/);
      assert.equal(await sh(lab, "hv2", `cat ${DS}/small/disk.0 && ls -A ${DS}/small | wc -l`), "old\n1");
      await sh(lab, "hv2", `umount ${DS}/small`);
    } finally {
      await ssh.closeMasters();
      await Deno.remove(local, { recursive: true });
    }
  },
);
