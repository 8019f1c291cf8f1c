/**
 * Confinement, end to end: every action that writes, moves or deletes is run through its installed
 * symlink with destinations outside DATASTORE_LOCATION (or the datastore's BASE_PATH), through
 * symlinks planted inside the datastores that lead out, and with `..`. Each must fail with one
 * clear line for oned (the host, the path, what it resolved to, the allowed folder and the setting),
 * and decoy files outside the datastores, on every host, must keep their content and mtime.
 *
 * The two holes this closes: `cpds` wrote its copy onto a file outside every datastore (exit 0), and
 * datastore `mkfs` accepted a FORMAT that is no disk format.
 */

import assert from "node:assert/strict";
import { encodeBase64Text } from "../../core/one/driver_action.ts";
import { labTest } from "../support/lab.ts";
import { failureInfo, ok, World } from "../support/world.ts";
import {
  datastoreXml,
  driverActionBase64,
  DS_LOC,
  imageDisk,
  imageSource,
  imageXml,
  persistentDisk,
  vmXml,
  volatileDisk,
} from "../support/fixtures.ts";
import { makeImage } from "../support/disk_checks.ts";

const DS = "/var/lib/one/datastores";
const DECOY = "/var/lib/one/decoy";
const HOSTS = ["frontend", "replica", "hv1", "hv2"];
const VM = 7;
const FE = "frontend";
const ONESTOR_CONF = "/var/lib/one/remotes/etc/onestor/onestor.conf";

/** Content hash and mtime of every file under the decoy folder of each host (read on the machine). */
async function decoys(world: World): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const host of HOSTS) {
    const root = world.lab.path(host, DECOY);
    const walk = async (dir: string) => {
      for await (const e of Deno.readDir(dir)) {
        const path = `${dir}/${e.name}`;
        if (e.isDirectory) {
          await walk(path);
          continue;
        }
        const st = await Deno.lstat(path);
        const data = await Deno.readFile(path);
        const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
        out[`${host}:${path.slice(root.length)}`] = `${
          [...sum].map((b) => b.toString(16).padStart(2, "0")).join("")
        } ${st.mtime?.getTime()}`;
      }
    };
    await walk(root);
  }
  return out;
}

labTest(
  "confinement: every writing action refuses destinations outside, through symlinks, with ..",
  async (t) => {
    await using world = await World.start();
    world.oned.addDatastore(datastoreXml({ id: 1 }));
    world.oned.addDatastore(datastoreXml({ id: 100 }));
    world.oned.addDatastore(datastoreXml({ id: 101, template: { REPLICA_HOST: "replica" } }));
    const vm = vmXml({
      id: VM,
      disks: [
        imageDisk({ DISK_ID: 0, IMAGE_ID: 0, FORMAT: "raw", SIZE: 8, ORIGINAL_SIZE: 8 }),
        persistentDisk({ DISK_ID: 1, IMAGE_ID: 1, FORMAT: "raw", SIZE: 8, ORIGINAL_SIZE: 8 }),
        volatileDisk({ DISK_ID: 2, SIZE: 8 }),
        imageDisk({ DISK_ID: 9, IMAGE_ID: 0, FORMAT: "raw", SIZE: 8, ORIGINAL_SIZE: 8 }),
      ],
      history: [{ hostname: "hv1", dsId: 100 }],
    });
    world.oned.addVm(vm);
    // premigrate asks libvirt whether the domain runs at the destination: libvirt's test driver
    // answers without a daemon (the domain is unknown there).
    await world.writeFile(FE, ONESTOR_CONF, "LIBVIRT_URI=test:///default\n");
    const src0 = imageSource(0);
    await makeImage(world, FE, src0, { format: "raw", sizeMb: 8 });
    const vmDir = `${DS}/100/${VM}`;
    for (const host of HOSTS) {
      await world.sh(
        host,
        `mkdir -p ${DECOY}/sub ${DS}/1 ${vmDir} && echo precious >${DECOY}/file && echo deep >${DECOY}/sub/file
ln -sfn ${DECOY} ${DS}/100/evil && ln -sfn ${DECOY} ${DS}/1/evildir && ln -sfn ${DECOY}/file ${DS}/1/evilimg
ln -sfn ${DECOY}/file ${vmDir}/disk.9
chown -R oneadmin: /var/lib/one`,
      );
    }
    await world.sh(
      "hv1",
      `qemu-img create -q -f raw ${vmDir}/disk.0 8M && cp ${vmDir}/disk.0 ${vmDir}/disk.1`,
      {
        user: "oneadmin",
      },
    );
    await world.sh(
      FE,
      `mkdir -p ${DS}/1/evilimg.snap && qemu-img create -q -f raw ${DS}/1/evilimg.snap/0 1M`,
      {
        user: "oneadmin",
      },
    );
    await world.sh(
      FE,
      `echo 'ONEGATE=x' >/var/lib/one/context.sh && chown oneadmin: /var/lib/one/context.sh`,
    );
    const before = await decoys(world);
    assert.equal(Object.keys(before).length, 8);
    let tried = 0;

    /**
     * Runs the action and expects a refusal: a non-zero exit, exactly one line of failure info for
     * oned that matches `line`, and every decoy as it was.
     */
    const refuses = async (
      what: string,
      run: () => Promise<{ code: number; stderr: string }>,
      line: RegExp,
    ) => {
      tried++;
      const r = await run();
      assert.notEqual(r.code, 0, `${what}: must fail`);
      const info = failureInfo(r.stderr);
      assert.equal(info.length, 1, `${what}: one line for oned, got ${JSON.stringify(info)}`);
      assert.match(info[0], line, `${what}: ${info[0]}`);
      assert.deepEqual(await decoys(world), before, `${what}: nothing outside changed`);
    };
    const outside = (host: string, path: string) =>
      new RegExp(
        `^Refused to (write|delete) ${host}:${path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: ` +
          `it resolves to /var/lib/one/decoy\\S*, outside /var/lib/one/datastores ` +
          `\\(allowed by DATASTORE_LOCATION \\(onestor\\.conf, default from oned\\.conf\\)`,
      );
    const byName = (host: string, root = "/var/lib/one/datastores") =>
      new RegExp(
        `^Refused to (write|delete) ${host}:\\S+: it resolves to /var/lib/one/decoy\\S*, outside ${root} \\(allowed by `,
      );
    const dots = /must not contain '\.' or '\.\.' components/;
    const tm = (action: string, ...args: (string | number)[]) => () => world.tm(action, args);

    await t.step(
      "clone, ln, mkimage, mkswap, context into a folder that leads out, outside, or with ..",
      async () => {
        for (const action of ["clone", "ln"]) {
          await refuses(
            `${action} into ${DECOY}`,
            tm(action, `${FE}:${src0}`, `hv1:${DECOY}/7/disk.0`, VM, 1),
            byName("hv1"),
          );
          await refuses(
            `${action} through a symlinked VM folder`,
            tm(action, `${FE}:${src0}`, `hv1:${DS_LOC}/100/evil/disk.0`, VM, 1),
            byName("hv1"),
          );
          await refuses(
            `${action} with ..`,
            tm(action, `${FE}:${src0}`, `hv1:${DS}/100/7/../../../decoy/disk.0`, VM, 1),
            dots,
          );
        }
        await refuses(
          "mkimage through a link",
          tm("mkimage", 8, "raw", `hv1:${DS}/100/evil/disk.2`, VM, 100),
          byName("hv1"),
        );
        await refuses("mkswap outside", tm("mkswap", 8, `hv1:${DECOY}/7/disk.3`, VM, 100), byName("hv1"));
        await refuses(
          "context through a link",
          tm("context", "/var/lib/one/context.sh", `hv1:${DS}/100/evil/disk.4`, VM, 100),
          byName("hv1"),
        );
      },
    );

    await t.step("resize, snapshots and delete of a disk that is a link leading out", async () => {
      await refuses(
        "resize",
        tm("resize", `hv1:${vmDir}/disk.9`, 32, VM, 1),
        outside("hv1", `${vmDir}/disk.9`),
      );
      await refuses("snap_revert", tm("snap_revert", `hv1:${vmDir}/disk.9`, 0, VM, 1), byName("hv1"));
      await refuses(
        "snap_create in a linked folder",
        tm("snap_create", `hv1:${DS}/100/evil/disk.0`, 0, VM, 1),
        byName("hv1"),
      );
      await refuses(
        "snap_delete in a linked folder",
        tm("snap_delete", `hv1:${DS}/100/evil/disk.0`, 0, VM, 1),
        byName("hv1"),
      );
      await refuses(
        "delete through a linked folder",
        tm("delete", `hv1:${DS}/100/evil/disk.0`, VM, 1),
        byName("hv1"),
      );
      // Deleting the link itself is allowed: the link goes, what it points to stays.
      tried++;
      ok(await world.tm("delete", [`hv1:${vmDir}/disk.9`, VM, 1]), "delete of a link");
      assert.deepEqual(await decoys(world), before);
      assert.equal(await world.lab.sh("hv1", `test -L ${vmDir}/disk.9`).then((r) => r.code), 1);
    });

    await t.step("mv, mvds and cpds (the hole: a copy onto a file outside every datastore)", async () => {
      await refuses("mv to outside", tm("mv", `hv1:${vmDir}`, `hv2:${DECOY}/7`, VM, 100), byName("hv2"));
      await refuses("mv onto a link", tm("mv", `hv1:${vmDir}`, `hv2:${DS}/100/evil`, VM, 100), byName("hv2"));
      await refuses(
        "mvds onto a file outside",
        tm("mvds", `hv1:${vmDir}/disk.1`, `${DECOY}/file`, VM, 1),
        byName("front-end"),
      );
      await refuses(
        "mvds onto a link",
        tm("mvds", `hv1:${vmDir}/disk.1`, `${DS}/1/evilimg`, VM, 1),
        byName("front-end"),
      );
      await refuses(
        "cpds onto a file outside",
        tm("cpds", `hv1:${vmDir}/disk.0`, `${DECOY}/file`, -1, VM, 1),
        byName("front-end"),
      );
      await refuses(
        "cpds into a linked folder",
        tm("cpds", `hv1:${vmDir}/disk.0`, `${DS}/1/evildir/file`, -1, VM, 1),
        byName("front-end"),
      );
      await refuses(
        "cpds with ..",
        tm("cpds", `hv1:${vmDir}/disk.0`, `${DS}/1/../../decoy/file`, -1, VM, 1),
        dots,
      );
      // The VM folder is where it was: nothing moved.
      assert.equal((await world.lab.sh("hv1", `test -f ${vmDir}/disk.0`)).code, 0);
    });

    await t.step("premigrate into a folder that leads out", async () => {
      await refuses(
        "premigrate",
        () =>
          world.tm("premigrate", ["hv1", "hv2", `${DS}/100/evil`, VM, 100], { stdin: encodeBase64Text(vm) }),
        byName("hv2"),
      );
    });

    await t.step(
      "datastore actions: BASE_PATH bounds them; mkfs refuses a FORMAT that is no disk format",
      async () => {
        const image = (extra: Parameters<typeof imageXml>[0]) =>
          driverActionBase64({ image: imageXml({ id: 5, ...extra }), datastore: datastoreXml({ id: 1 }) });
        for (const format of ["raw; touch /tmp/onestor-pwned", "vmdk", "raw\nqcow2"]) {
          tried++;
          const r = await world.ds("mkfs", 5, image({ format, size: 8 }));
          assert.notEqual(r.code, 0, `mkfs FORMAT ${JSON.stringify(format)}`);
          assert.match(
            failureInfo(r.stderr).join("\n"),
            /^FORMAT must be one of raw, qcow2, swap, save_as \(got /,
          );
          assert.equal(r.stdout, "", "no SOURCE printed");
        }
        assert.deepEqual(
          (await world.sh(FE, `ls -A ${DS}/1`)).trim().split("\n").sort(),
          [`${src0.slice(src0.lastIndexOf("/") + 1)}`, "evildir", "evilimg", "evilimg.snap"].sort(),
          "mkfs made no file",
        );
        await refuses(
          "ds snap_revert of an image that is a link out",
          () => world.ds("snap_revert", 5, image({ source: `${DS_LOC}/1/evilimg`, targetSnapshot: 0 })),
          byName("front-end", `${DS}/1`),
        );
        await refuses(
          "ds snap_flatten of an image that is a link out",
          () =>
            world.ds(
              "snap_flatten",
              5,
              image({ source: `${DS_LOC}/1/evilimg`, targetSnapshot: 0, format: "raw" }),
            ),
          byName("front-end", `${DS}/1`),
        );
        // rm of an image that is a link removes the link, never what it points to.
        tried++;
        ok(await world.ds("rm", 5, image({ source: `${DS_LOC}/1/evilimg` })), "rm of a link");
        assert.deepEqual(await decoys(world), before);
      },
    );

    console.log(
      `confinement: ${tried} hostile destinations tried, every one refused or harmless, decoys intact`,
    );
  },
);
