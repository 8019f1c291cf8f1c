/**
 * The fs datastore actions through their installed symlinks, as oned calls them (image id argument,
 * base64 DS_DRIVER_ACTION_DATA on stdin), as oneadmin on the lab's front-end: registration from
 * files, compressed files and an HTTP server of the test's own, datablocks of every SUPPORTED_FS,
 * persistent-image snapshots, hostile input, and BRIDGE_LIST through hv1.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { labTest } from "../support/lab.ts";
import { ok, World } from "../support/world.ts";
import {
  datastoreXml,
  driverActionBase64,
  DS_LOC,
  type ImageFixture,
  imageXml,
  statImageXml,
  type TemplateAttrs,
} from "../support/fixtures.ts";
import { assertPatterns, makeImage, type Pattern } from "../support/disk_checks.ts";
import { hostXml } from "../support/fixtures.ts";
import { startRangeServer } from "../support/range_server.ts";

const MiB = 1 << 20;
const FE = "frontend";
const BASE = `${DS_LOC}/1`;
const SOURCE_LINE = (format: string) =>
  new RegExp(`^${BASE.replaceAll("/", "\\/")}\\/[0-9a-f]{32} ${format}\\n$`);
const DATA: Pattern[] = [{ byte: 0x5a, offset: 0, length: MiB }, {
  byte: 0xa5,
  offset: 6 * MiB,
  length: MiB,
}];

function payload(image: ImageFixture, template: TemplateAttrs = {}, dsExtra: { type?: number } = {}): string {
  return driverActionBase64({
    image: imageXml({ id: 40, ...image }),
    datastore: datastoreXml({ id: 1, ...dsExtra, template }),
  });
}

async function files(world: World, host: string, dir: string): Promise<string[]> {
  const out = await world.sh(host, `ls -A ${dir} 2>/dev/null || true`);
  return out.split("\n").filter((l) => l !== "").sort();
}

async function usage(
  world: World,
  host: string,
  path: string,
): Promise<{ apparent: number; allocated: number }> {
  const [apparent, blocks] = (await world.sh(host, `stat -c '%s %b' ${path}`)).trim().split(" ").map(Number);
  return { apparent, allocated: blocks * 512 };
}

async function same(world: World, host: string, a: string, b: string): Promise<boolean> {
  return (await world.lab.sh(host, `qemu-img compare -q ${a} ${b}`)).code === 0;
}

labTest(
  "fs datastore actions register, size, make, snapshot and remove images as oned calls them",
  async (t) => {
    await using world = await World.start();
    const dir = `/var/tmp/onestor-ds-${crypto.randomUUID().slice(0, 8)}`;
    await world.sh(FE, `mkdir -p ${dir} && chown oneadmin: ${dir}`);
    const marker = `/tmp/onestor-pwned-${crypto.randomUUID().slice(0, 8)}`;
    try {
      await makeImage(world, FE, `${dir}/disk.qcow2`, { format: "qcow2", sizeMb: 16, patterns: DATA });
      await makeImage(world, FE, `${dir}/disk.raw`, { format: "raw", sizeMb: 16, patterns: DATA });
      await world.sh(FE, `gzip -c ${dir}/disk.raw > ${dir}/disk.raw.gz`, { user: "oneadmin" });

      await t.step("cp registers raw and qcow2 images, converting to DRIVER", async () => {
        let out = ok(await world.ds("cp", 40, payload({ path: `${dir}/disk.raw` })), "cp raw");
        assert.match(out, SOURCE_LINE("raw"));
        let source = out.split(" ")[0];
        assert.ok(await same(world, FE, source, `${dir}/disk.raw`));
        out = ok(await world.ds("cp", 41, payload({ path: `${dir}/disk.qcow2` })), "cp qcow2");
        assert.match(out, SOURCE_LINE("qcow2"));
        out = ok(
          await world.ds("cp", 42, payload({ path: `${dir}/disk.qcow2` }, { DRIVER: "raw" })),
          "cp convert",
        );
        assert.match(out, SOURCE_LINE("raw"));
        source = out.split(" ")[0];
        await assertPatterns(world, FE, source, DATA, "raw");
        // CONVERT=NO keeps the format.
        out = ok(
          await world.ds("cp", 43, payload({ path: `${dir}/disk.qcow2` }, { DRIVER: "raw", CONVERT: "NO" })),
        );
        assert.match(out, SOURCE_LINE("qcow2"));
        assert.deepEqual((await files(world, FE, BASE)).filter((f) => f.startsWith(".")), []);
      });

      await t.step("cp decompresses gzip and checks MD5/SHA1 over the compressed bytes", async () => {
        // /var/tmp is not private to lab hosts: the test reads the same file.
        const gz = await Deno.readFile(`${dir}/disk.raw.gz`);
        const md5 = createHash("md5").update(gz).digest("hex");
        const sha1 = createHash("sha1").update(gz).digest("hex");
        const out = ok(
          await world.ds(
            "cp",
            44,
            payload({ path: `${dir}/disk.raw.gz`, template: { MD5: md5, SHA1: sha1 } }),
          ),
          "cp gzip",
        );
        assert.match(out, SOURCE_LINE("raw"));
        assert.ok(await same(world, FE, out.split(" ")[0], `${dir}/disk.raw`));
        const before = await files(world, FE, BASE);
        const bad = await world.ds(
          "cp",
          45,
          payload({ path: `${dir}/disk.raw.gz`, template: { MD5: "0".repeat(32) } }),
        );
        assert.notEqual(bad.code, 0);
        assert.match(bad.stderr, /Hash does not match/);
        assert.equal(bad.stdout, "");
        assert.deepEqual(await files(world, FE, BASE), before, "a failed cp leaves nothing behind");
        // NO_DECOMPRESS keeps the gzip file as it is (qemu-img sees raw bytes of the .gz).
        const kept = ok(
          await world.ds("cp", 46, payload({ path: `${dir}/disk.raw.gz` }, { NO_DECOMPRESS: "YES" })),
        );
        const size = await usage(world, FE, kept.split(" ")[0]);
        assert.equal(size.apparent, gz.length);
      });

      await t.step(
        "cp reads another host's file (ssh://) and refuses more data than the datastore holds",
        async () => {
          await makeImage(world, "hv1", "/var/lib/one/export/img.qcow2", {
            format: "qcow2",
            sizeMb: 16,
            patterns: DATA,
          });
          const refused = await world.ds(
            "cp",
            51,
            payload({ path: "ssh://hv1:/var/lib/one/export/img.qcow2" }),
          );
          assert.match(refused.stderr, /Not allowed to copy image from ssh:\/\/hv1:/);
          const safe = { SAFE_DIRS: "/var/tmp /var/lib/one/export" };
          const out = ok(
            await world.ds("cp", 51, payload({ path: "ssh://hv1:/var/lib/one/export/img.qcow2" }, safe)),
          );
          assert.match(out, SOURCE_LINE("qcow2"));
          await assertPatterns(world, FE, out.split(" ")[0], DATA, "qcow2");
          // LIMIT_MB leaves 1 MiB (the fixture's datastore uses 51200 MiB): 2 MiB of data do not fit.
          const before = await files(world, FE, BASE);
          const full = await world.ds("cp", 52, payload({ path: `${dir}/disk.raw` }, { LIMIT_MB: 51201 }));
          assert.notEqual(full.code, 0);
          assert.match(
            full.stderr,
            /holds more than 1 MiB of data \(LIMIT_MB of the datastore leaves 1 MiB\)/,
          );
          assert.deepEqual(await files(world, FE, BASE), before);
        },
      );

      await t.step("cp shows a progress bar on a terminal, plain INFO lines when run by oned", async () => {
        const file = `${dir}/payload.b64`;
        await Deno.writeTextFile(file, payload({ path: `${dir}/disk.raw` }));
        const action = `/var/lib/one/remotes/datastore/${world.dsName}/cp`;
        // `script` gives the action a terminal as stderr; stdin still comes from the file.
        const tty = await world.lab.exec(FE, ["script", "-qec", `${action} 53 < ${file}`, "/dev/null"], {
          user: "oneadmin",
          env: world.env(),
        });
        assert.equal(tty.code, 0, tty.stderr);
        // The last redraw of the bar, up to the end of its line (log lines and the result follow).
        const bar = (tty.stdout.split("\r\x1b[2K").filter((l) =>
          l.trim() !== ""
        ).pop() ?? "").split(/\r?\n/)[0];
        assert.match(
          bar.trim(),
          /^\[#+\] 100% {2}16\.0\/16\.0 MiB {2}[0-9.]+ MiB\/s {2}.*Copying .*disk\.raw$/,
        );
        // Without a terminal: periodic INFO lines (every line here: a zero interval), no control characters.
        const plain = await world.ds("cp", 54, payload({ path: `${dir}/disk.raw` }), {
          env: { ONESTOR_PROGRESS_INTERVAL: "0" },
        });
        assert.equal(plain.code, 0, plain.stderr);
        assert.match(
          plain.stderr,
          /^INFO: cp: Copying .*disk\.raw: [0-9.]+ of 16\.0 MiB \(\d+%\), [0-9.]+ MiB\/s/m,
        );
        assert.ok(
          ![...plain.stderr].some((c) => c !== "\n" && (c.charCodeAt(0) < 32 || c.charCodeAt(0) === 127)),
          "no control characters for oned's logs",
        );
        const quiet = await world.ds("cp", 55, payload({ path: `${dir}/disk.raw` }));
        assert.doesNotMatch(quiet.stderr, /MiB \(\d+%\)/, "a short copy logs no progress line");
      });

      await t.step(
        "cp honours SPARSE: holes kept by default, every block allocated with SPARSE=NO",
        async () => {
          const sparse = ok(await world.ds("cp", 47, payload({ path: `${dir}/disk.raw` }))).split(" ")[0];
          const full =
            ok(await world.ds("cp", 48, payload({ path: `${dir}/disk.raw` }, { SPARSE: "NO" }))).split(
              " ",
            )[0];
          const s = await usage(world, FE, sparse);
          const f = await usage(world, FE, full);
          assert.equal(s.apparent, 16 * MiB);
          assert.equal(f.apparent, 16 * MiB);
          assert.ok(s.allocated <= 3 * MiB, `sparse copy allocates ${s.allocated}`);
          assert.ok(f.allocated >= 16 * MiB, `SPARSE=NO copy allocates ${f.allocated}`);
          assert.ok(await same(world, FE, sparse, full));
        },
      );

      await t.step(
        "cp and stat read an HTTP server, resuming a dropped download with a range request",
        async () => {
          const qcow2 = await Deno.readFile(`${dir}/disk.qcow2`);
          const raw = await Deno.readFile(`${dir}/disk.raw`);
          const server = startRangeServer({ "/disk.qcow2": qcow2, "/disk.raw": raw });
          try {
            server.drop();
            const res = await world.ds(
              "cp",
              49,
              payload({ path: server.url("/disk.raw") }, { DRIVER: "qcow2" }),
            );
            const out = ok(res, "cp http");
            assert.match(out, SOURCE_LINE("qcow2"));
            assert.ok(await same(world, FE, out.split(" ")[0], `${dir}/disk.raw`));
            assert.ok(server.requests.some((l) => l.dropped), "the server dropped the connection once");
            assert.ok(
              server.requests.some((l) => l.range !== null && /^bytes=[1-9]\d*-$/.test(l.range)),
              "resumed with Range",
            );
            assert.match(res.stderr, /interrupted at byte \d+/);
            // stat: virtual size of a qcow2 from its head, Content-Length of a raw image.
            assert.equal(ok(await world.ds("stat", 49, statPayload(server.url("/disk.qcow2")))), "16\n");
            assert.equal(ok(await world.ds("stat", 49, statPayload(server.url("/disk.raw")))), "16\n");
            const missing = await world.ds("stat", 49, statPayload(server.url("/nothing")));
            assert.notEqual(missing.code, 0);
            assert.match(missing.stderr, /HTTP 404/);
          } finally {
            await server.close();
          }
        },
      );

      await t.step("stat prints MiB rounded up for files, compressed files and directories", async () => {
        await world.sh(FE, `head -c 3000000 /dev/urandom > ${dir}/odd.bin && xz -k ${dir}/odd.bin`, {
          user: "oneadmin",
        });
        assert.equal(ok(await world.ds("stat", 50, statPayload(`${dir}/disk.qcow2`))), "16\n");
        assert.equal(ok(await world.ds("stat", 50, statPayload(`${dir}/disk.raw.gz`))), "16\n");
        assert.equal(ok(await world.ds("stat", 50, statPayload(`${dir}/odd.bin`))), "3\n");
        assert.equal(ok(await world.ds("stat", 50, statPayload(`${dir}/odd.bin.xz`))), "3\n");
        const missing = await world.ds("stat", 50, statPayload(`${dir}/missing`));
        assert.notEqual(missing.code, 0);
        assert.match(missing.stderr, /cannot access '.*missing' \(No such file or directory\)/);
      });

      await t.step(
        "mkfs builds a datablock for every SUPPORTED_FS in raw and qcow2, and honours SPARSE",
        async () => {
          for (const fs of ["ext2", "ext3", "ext4", "xfs"]) {
            for (const format of ["raw", "qcow2"]) {
              const size = fs === "xfs" ? 300 : 16;
              const out = ok(
                await world.ds("mkfs", 60, payload({ format, fs, size })),
                `mkfs ${fs} ${format}`,
              );
              assert.match(out, new RegExp(`^${BASE.replaceAll("/", "\\/")}\\/[0-9a-f]{32}\\n$`));
              const path = out.trim();
              const check = `/tmp/onestor-dbcheck-${crypto.randomUUID().slice(0, 8)}`;
              const seen = await world.sh(
                FE,
                `set -e; qemu-img info --output=json ${path} | grep -q '"format": "${format}"'
qemu-img convert -O raw ${path} ${check}; blkid -p -o value -s TYPE ${check}
${
                  fs === "xfs"
                    ? `xfs_db -r -c 'sb 0' -c 'p magicnum' ${check}`
                    : `dumpe2fs -h ${check} 2>/dev/null | grep -c 'Filesystem magic number'`
                }
rm -f ${check}`,
              );
              const [type, detail] = seen.trim().split("\n");
              assert.equal(type, fs, `${fs} ${format}`);
              assert.ok(fs === "xfs" ? /0x58465342/.test(detail) : detail === "1", detail);
            }
          }
          const sparse = ok(await world.ds("mkfs", 61, payload({ format: "raw", fs: "ext4", size: 32 })))
            .trim();
          const full = ok(
            await world.ds("mkfs", 62, payload({ format: "raw", fs: "ext4", size: 32 }, { SPARSE: "NO" })),
          )
            .trim();
          const s = await usage(world, FE, sparse);
          const f = await usage(world, FE, full);
          assert.equal(s.apparent, 32 * MiB);
          assert.ok(s.allocated < 8 * MiB, `sparse datablock allocates ${s.allocated}`);
          assert.ok(f.allocated >= 32 * MiB, `SPARSE=NO datablock allocates ${f.allocated}`);
          // save_as only reserves a name.
          const saveAs = ok(await world.ds("mkfs", 63, payload({ format: "save_as", size: 32 }))).trim();
          assert.match(saveAs, /\/[0-9a-f]{32}$/);
          assert.ok(!(await files(world, FE, BASE)).includes(saveAs.split("/").pop()!));
        },
      );

      await t.step(
        "hostile FS, PATH and SOURCE are refused without running anything or touching a file",
        async () => {
          await world.sh(FE, `ln -sfn /etc/one ${dir}/etc-link; ln -sfn /var/lib/one/.ssh ${dir}/ssh-link`, {
            user: "oneadmin",
          });
          const before = await files(world, FE, BASE);
          const cases: [string, string, RegExp][] = [
            [
              "mkfs",
              payload({ format: "raw", fs: `ext4;touch ${marker}`, size: 8 }),
              /Unsupported file system type/,
            ],
            [
              "mkfs",
              payload({ format: "raw", fs: `$(touch ${marker})`, size: 8 }),
              /Unsupported file system type/,
            ],
            [
              "mkfs",
              payload({ format: "raw", fs: "btrfs", size: 8 }),
              /Supported types are: ext2,ext3,ext4,xfs/,
            ],
            ["cp", payload({ path: `${dir}/$(touch ${marker})` }), /characters that are not allowed/],
            ["cp", payload({ path: `${dir}/x;touch ${marker}` }), /characters that are not allowed/],
            ["cp", payload({ path: `${dir}/disk.raw\ntouch ${marker}` }), /characters that are not allowed/],
            ["cp", payload({ path: `${dir}/../../etc/passwd` }), /\.\. component/],
            ["cp", payload({ path: `${dir}/etc-link/oned.conf` }), /Not allowed to copy image from/],
            ["cp", payload({ path: `${dir}/ssh-link/authorized_keys` }), /Not allowed to copy image from/],
            ["cp", payload({ path: "/etc/passwd" }), /Not allowed to copy image from \/etc\/passwd/],
            ["cp", payload({ path: `http://127.0.0.1:9/$(touch ${marker})` }), /percent-encoded/],
            ["stat", statPayload(`${dir}/etc-link/oned.conf`), /Not allowed/],
            [
              "rm",
              payload({ source: `${BASE}/../../../../etc/passwd` }),
              /Bad formed or unavailable Image source/,
            ],
            [
              "rm",
              payload({ source: `${BASE}/$(touch ${marker})` }),
              /Bad formed or unavailable Image source/,
            ],
            ["rm", payload({ source: "/etc/one/oned.conf" }), /Bad formed or unavailable Image source/],
            ["snap_revert", payload({ source: `${BASE}/abc`, targetSnapshot: undefined }), /TARGET_SNAPSHOT/],
          ];
          for (const [action, data, error] of cases) {
            const r = await world.ds(action, 70, data);
            assert.notEqual(r.code, 0, `${action} should fail`);
            assert.match(r.stderr, error);
            assert.equal(r.stdout, "");
          }
          const badSnap = await world.ds("snap_revert", 70, payloadWithSnapshot(`${BASE}/abc`, "1;id"));
          assert.match(badSnap.stderr, /TARGET_SNAPSHOT must be a snapshot id/);
          assert.equal((await world.lab.sh(FE, `test -e ${marker}`)).code, 1, "nothing ran");
          assert.equal((await world.lab.sh("hv1", `test -e ${marker}`)).code, 1, "nothing ran");
          assert.deepEqual(await files(world, FE, BASE), before, "no file touched");
        },
      );

      await t.step("clone copies an image, converting to DRIVER", async () => {
        const src = ok(await world.ds("cp", 80, payload({ path: `${dir}/disk.qcow2` }))).split(" ")[0];
        const out = ok(await world.ds("clone", 81, payload({ path: src, cloningId: 80 }, { DRIVER: "raw" })));
        assert.match(out, SOURCE_LINE("raw"));
        assert.ok(await same(world, FE, out.split(" ")[0], src));
        const plain = ok(await world.ds("clone", 82, payload({ path: src, cloningId: 80 })));
        assert.match(plain, new RegExp(`^${BASE.replaceAll("/", "\\/")}\\/[0-9a-f]{32}\\n$`));
      });

      await t.step(
        "snapshots of a persistent image: revert, delete and flatten, with derived data dropped",
        async () => {
          const source = ok(await world.ds("cp", 90, payload({ path: `${dir}/disk.qcow2` }))).split(" ")[0];
          const SNAP0: Pattern[] = [{ byte: 0x10, offset: 0, length: MiB }];
          const SNAP1: Pattern[] = [{ byte: 0x11, offset: 2 * MiB, length: MiB }];
          // The TM's snapshots: full copies of the disk in <SOURCE>.snap/<id>.
          await world.sh(
            FE,
            `set -e; mkdir -p ${source}.snap; cp ${source} ${source}.snap/0; cp ${source} ${source}.snap/1
qemu-io -f qcow2 -c 'write -P 0x10 0 1M' ${source}.snap/0 >/dev/null
qemu-io -f qcow2 -c 'write -P 0x11 2M 1M' ${source}.snap/1 >/dev/null
echo stale > ${source}.md5sum`,
            { user: "oneadmin" },
          );
          const snap = (id: number, format = "qcow2") =>
            payload({
              source,
              targetSnapshot: id,
              format,
              persistent: true,
              snapshots: [{ id: 0 }, { id: 1 }],
            });
          assert.equal(ok(await world.ds("snap_revert", 90, snap(0)), "snap_revert"), "");
          await assertPatterns(world, FE, source, SNAP0, "qcow2");
          assert.ok(await same(world, FE, source, `${source}.snap/0`));
          assert.equal(
            (await world.lab.sh(FE, `test -e ${source}.md5sum`)).code,
            1,
            "checksum side file dropped",
          );
          // Running it again converges.
          assert.equal(ok(await world.ds("snap_revert", 90, snap(0))), "");
          await world.sh(FE, `echo stale > ${source}.md5sum`, { user: "oneadmin" });
          assert.equal(ok(await world.ds("snap_flatten", 90, snap(1)), "snap_flatten"), "");
          await assertPatterns(world, FE, source, [...DATA, ...SNAP1], "qcow2");
          assert.equal((await world.lab.sh(FE, `test -e ${source}.snap`)).code, 1, "snapshots gone");
          assert.equal(
            (await world.lab.sh(FE, `test -e ${source}.md5sum`)).code,
            1,
            "no stale checksum after flatten",
          );
          const chain = await world.sh(
            FE,
            `qemu-img info --output=json --backing-chain ${source} | grep -c '"filename"'`,
          );
          assert.equal(chain.trim(), "1", "flattened image is standalone");
          assert.equal(ok(await world.ds("snap_flatten", 90, snap(1))), "", "a retried flatten converges");
          // snap_delete
          await world.sh(FE, `mkdir -p ${source}.snap && cp ${source} ${source}.snap/3`, {
            user: "oneadmin",
          });
          assert.equal(ok(await world.ds("snap_delete", 90, snap(3))), "");
          assert.deepEqual(await files(world, FE, `${source}.snap`), []);
          // With a qcow2 TM_MAD the highest snapshot is the active overlay: it is recreated on the target.
          await world.sh(
            FE,
            `set -e; mkdir -p ${source}.snap; qemu-img create -q -f qcow2 ${source}.snap/0 16M
qemu-io -f qcow2 -c 'write -P 0x30 0 1M' ${source}.snap/0 >/dev/null
qemu-img create -q -f qcow2 -b ${source}.snap/0 -F qcow2 ${source}.snap/1
qemu-io -f qcow2 -c 'write -P 0x31 0 1M' ${source}.snap/1 >/dev/null`,
            { user: "oneadmin" },
          );
          const qcow2Ds = driverActionBase64({
            image: imageXml({ id: 90, source, targetSnapshot: 0, format: "qcow2", persistent: true }),
            datastore: datastoreXml({ id: 1, tmMad: "qcow2" }),
          });
          assert.equal(ok(await world.ds("snap_revert", 90, qcow2Ds), "qcow2 snap_revert"), "");
          // qemu-io inside the host: the overlay names its backing file by its path there.
          await world.sh(
            FE,
            `qemu-io -r -f qcow2 -c 'read -P 0x30 0 1M' ${source}.snap/1 | grep -q 'read 1048576/'`,
          );
          assert.match(await world.sh(FE, `qemu-img info ${source}.snap/1`), /backing file: .*\.snap\/0/);
          await world.sh(FE, `rm -rf ${source}.snap`);
          // Reverting to a missing snapshot fails and leaves the image alone.
          const bad = await world.ds("snap_revert", 90, snap(7));
          assert.notEqual(bad.code, 0);
          assert.match(bad.stderr, /Snapshot 7 of .* does not exist/);
        },
      );

      await t.step("export, monitor and rm print the spec's formats", async () => {
        const source = ok(await world.ds("cp", 95, payload({ path: `${dir}/disk.raw` }))).split(" ")[0];
        const md5 = (await world.sh(FE, `md5sum ${source} | cut -d' ' -f1`)).trim();
        assert.equal(
          ok(await world.ds("export", 95, payload({ source, size: 16 }))),
          `<IMPORT_INFO><IMPORT_SOURCE><![CDATA[${source}]]></IMPORT_SOURCE> <MD5><![CDATA[${md5}]]></MD5> ` +
            "<SIZE><![CDATA[16]]></SIZE> <FORMAT><![CDATA[raw]]></FORMAT> <DISPOSE>NO</DISPOSE></IMPORT_INFO>\n",
        );
        const monitor = ok(
          await world.ds("monitor", 1, driverActionBase64({ datastore: datastoreXml({ id: 1 }) })),
        );
        assert.match(monitor, /^USED_MB=\d+\nFREE_MB=\d+\nTOTAL_MB=\d+\n$/);
        const df = (await world.sh(FE, `df -B1M -P ${BASE} | tail -n 1`)).trim().split(/\s+/);
        assert.match(monitor, new RegExp(`TOTAL_MB=${df[1]}\n`));
        await world.sh(FE, `mkdir -p ${source}.snap && touch ${source}.snap/0 ${source}.md5sum`, {
          user: "oneadmin",
        });
        assert.equal(ok(await world.ds("rm", 95, payload({ source }))), "");
        const name = source.split("/").pop()!;
        assert.deepEqual((await files(world, FE, BASE)).filter((f) => f.includes(name)), []);
        assert.equal(ok(await world.ds("rm", 95, payload({ source })), "rm twice"), "");
      });

      await t.step("BRIDGE_LIST: the work is done on hv1 over SSH, offline hosts skipped", async () => {
        world.oned.addHost(hostXml({ id: 1, name: "hv1" }));
        world.oned.addHost(hostXml({ id: 2, name: "hv2", state: 8 }));
        const bridge = { BRIDGE_LIST: "hv2 hv1" };
        const out = ok(
          await world.ds("cp", 100, payload({ path: `${dir}/disk.qcow2` }, { ...bridge, DRIVER: "raw" })),
        );
        assert.match(out, SOURCE_LINE("raw"));
        const source = out.split(" ")[0];
        assert.equal((await world.lab.sh(FE, `test -e ${source}`)).code, 1, "not on the front-end");
        await assertPatterns(world, "hv1", source, DATA, "raw");
        const made = ok(
          await world.ds("mkfs", 101, payload({ format: "qcow2", fs: "ext4", size: 16 }, bridge)),
        ).trim();
        assert.match(await world.sh("hv1", `qemu-img info ${made}`), /file format: qcow2/);
        const monitor = ok(
          await world.ds(
            "monitor",
            1,
            driverActionBase64({ datastore: datastoreXml({ id: 1, template: bridge }) }),
          ),
        );
        assert.match(monitor, /^USED_MB=\d+\nFREE_MB=\d+\nTOTAL_MB=\d+\n$/);
        const exported = ok(await world.ds("export", 100, payload({ source, size: 16 }, bridge)));
        assert.match(exported, new RegExp(`<IMPORT_SOURCE><!\\[CDATA\\[ssh://hv1:${source}\\]\\]>`));
        // clone from a datastore whose images live on hv1 (SOURCE_BRIDGE_LIST) into the front-end.
        const cloned = ok(
          await world.ds(
            "clone",
            103,
            driverActionBase64({
              image: imageXml({ id: 103, path: source, cloningId: 100 }),
              datastore: datastoreXml({ id: 1, template: { DRIVER: "qcow2" } }),
              extra: "<SOURCE_BRIDGE_LIST>hv1</SOURCE_BRIDGE_LIST>",
            }),
          ),
          "clone from a bridge",
        );
        assert.match(cloned, SOURCE_LINE("qcow2"));
        await assertPatterns(world, FE, cloned.split(" ")[0], DATA, "qcow2");
        assert.equal(ok(await world.ds("rm", 100, payload({ source }, bridge))), "");
        assert.equal((await world.lab.sh("hv1", `test -e ${source}`)).code, 1, "removed on hv1");
        world.oned.addHost(hostXml({ id: 1, name: "hv1", state: 4 }));
        const none = await world.ds("mkfs", 102, payload({ format: "raw", size: 4 }, bridge));
        assert.notEqual(none.code, 0);
        assert.match(none.stderr, /All hosts from 'BRIDGE_LIST' are offline, error or disabled/);
      });
    } finally {
      await world.sh(FE, `rm -rf ${dir} ${marker}`).catch(() => {});
    }
  },
);

function statPayload(path: string): string {
  return driverActionBase64({ image: statImageXml(path), datastore: datastoreXml({ id: 1 }) });
}

function payloadWithSnapshot(source: string, target: string): string {
  const xml = imageXml({ id: 70, source }).replace(
    /<TARGET_SNAPSHOT>[^<]*<\/TARGET_SNAPSHOT>/,
    `<TARGET_SNAPSHOT>${target}</TARGET_SNAPSHOT>`,
  );
  return driverActionBase64({ image: xml, datastore: datastoreXml({ id: 1 }) });
}
