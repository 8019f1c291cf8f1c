/**
 * The blockcopy script run against a scripted fake `virsh` (no libvirt needed): retries on a busy
 * disk, roll-back of our own job, leftovers of earlier tries, the domain's disk checked before
 * and after, hostile paths.
 */

import assert from "node:assert/strict";
import { blockCopyScript, blockCopyTmpPath, EXIT_SOURCE_CHANGED } from "../../core/hypervisor/blockcopy.ts";
import { parseBlockDevices } from "../../core/hypervisor/virsh.ts";

/**
 * A fake virsh driven by files in `dir`: `domblklist` prints `dir/blk`, `dumpxml` prints
 * `dir/xml`, `blockcopy` pops the next answer of `dir/answers` (`ok`, `busy`, `fail`, `pivot`:
 * succeed after changing the disk source) and creates its destination like libvirt does.
 */
const FAKE_VIRSH = `#!/bin/sh
d=$FAKE_DIR
echo "$*" >>"$d/calls"
while [ "$1" = -q ] || [ "$1" = -c ]; do [ "$1" = -c ] && shift; shift; done
cmd=$1; shift
case $cmd in
  domstate) [ -f "$d/absent" ] && { echo "error: failed to get domain '$1'" >&2; exit 1; }; echo running ;;
  domblklist) cat "$d/blk" ;;
  dumpxml) cat "$d/xml" 2>/dev/null ;;
  blockjob) echo "blockjob $*" >>"$d/jobs"; rm -f "$d/xml" ;;
  blockcopy)
    a=$(head -n 1 "$d/answers"); sed -i 1d "$d/answers"
    case $a in
      ok) printf 'copy-of-disk' >"$3" ;;
      busy) echo "error: block copy still active: disk '$2' already in active block job" >&2; exit 1 ;;
      persistent) echo "error: Requested operation is not valid: domain is not transient" >&2; exit 1 ;;
      pivot) printf 'copy' >"$3"; sed -i "s|/vm/disk.0|$3|" "$d/blk" ;;
      *) echo "error: internal error: job failed" >&2
         printf "<disk type='file'>\\n<mirror type='file' file='%s' job='copy'>\\n<target dev='vda'/>\\n</disk>\\n" "$3" >"$d/xml"
         exit 1 ;;
    esac ;;
  *) echo "unexpected $cmd" >&2; exit 9 ;;
esac
`;

async function setup(answers: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "fake_virsh_" });
  await Deno.mkdir(`${dir}/bin`);
  await Deno.writeTextFile(`${dir}/bin/virsh`, FAKE_VIRSH, { mode: 0o755 });
  await Deno.writeTextFile(`${dir}/bin/sleep`, '#!/bin/sh\necho sleep >>"$FAKE_DIR/calls"\n', {
    mode: 0o755,
  });
  await Deno.writeTextFile(`${dir}/answers`, answers.join("\n") + "\n");
  await Deno.mkdir(`${dir}/vm/disk.0.snap`, { recursive: true });
  await Deno.writeTextFile(`${dir}/vm/disk.0`, "disk");
  await Deno.writeTextFile(`${dir}/blk`, `file disk vda ${dir}/vm/disk.0\nfile cdrom hda ${dir}/vm/disk.2\n`);
  return dir;
}

async function runScript(dir: string, script: string) {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    env: { PATH: `${dir}/bin:/usr/bin:/bin`, FAKE_DIR: dir },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const calls = await Deno.readTextFile(`${dir}/calls`).catch(() => "");
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr), calls };
}

function request(dir: string, extra = {}) {
  return {
    uri: "qemu:///system",
    domain: "one-7",
    disk: `${dir}/vm/disk.0`,
    dest: `${dir}/vm/disk.0.snap/4`,
    delaySeconds: 0,
    token: "t0",
    ...extra,
  };
}

Deno.test("blockCopyScript() retries a busy disk and renames the finished copy into place", async () => {
  const dir = await setup(["busy", "busy", "ok"]);
  try {
    const r = await runScript(dir, blockCopyScript(request(dir)).text);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await Deno.readTextFile(`${dir}/vm/disk.0.snap/4`), "copy-of-disk");
    assert.equal((r.calls.match(/blockcopy one-7 vda/g) ?? []).length, 3);
    assert.equal((r.calls.match(/^sleep$/gm) ?? []).length, 2);
    assert.match(
      r.calls,
      /blockcopy one-7 vda \S+\/vm\/disk\.0\.snap\/\.onestor-blockcopy-disk\.0-t0 --wait --finish/,
    );
    assert.deepEqual([...Deno.readDirSync(`${dir}/vm/disk.0.snap`)].map((e) => e.name), ["4"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("blockCopyScript() gives up after the tries and touches no job it did not start", async () => {
  const dir = await setup(["busy", "busy", "busy"]);
  try {
    const r = await runScript(dir, blockCopyScript(request(dir)).text);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /blockcopy of .*disk\.0 \(domain one-7, disk vda\) failed: .*active block job/);
    assert.doesNotMatch(r.calls, /blockjob/);
    assert.deepEqual([...Deno.readDirSync(`${dir}/vm/disk.0.snap`)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("blockCopyScript() aborts its own failed job without pivot and removes the partial copy", async () => {
  const dir = await setup(["fail"]);
  try {
    const r = await runScript(dir, blockCopyScript(request(dir, { tries: 1 })).text);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /job failed/);
    assert.equal(await Deno.readTextFile(`${dir}/jobs`), "blockjob one-7 vda --abort\n");
    assert.deepEqual([...Deno.readDirSync(`${dir}/vm/disk.0.snap`)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("blockCopyScript() aborts a copy job of an earlier try (our temporary name) first", async () => {
  const dir = await setup(["ok"]);
  try {
    const stale = `${dir}/vm/disk.0.snap/.onestor-blockcopy-disk.0-old`;
    await Deno.writeTextFile(stale, "stale");
    await Deno.writeTextFile(
      `${dir}/xml`,
      `<disk type='file'>\n<mirror type='file' file='${stale}' job='copy'>\n<target dev='vda'/>\n</disk>\n`,
    );
    const r = await runScript(dir, blockCopyScript(request(dir)).text);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await Deno.readTextFile(`${dir}/jobs`), "blockjob one-7 vda --abort\n");
    assert.deepEqual([...Deno.readDirSync(`${dir}/vm/disk.0.snap`)].map((e) => e.name), ["4"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("blockCopyScript() copies a persistent domain's disk with a transient job", async () => {
  const dir = await setup(["persistent", "ok"]);
  try {
    const r = await runScript(dir, blockCopyScript(request(dir)).text);
    assert.equal(r.code, 0, r.stderr);
    const copies = r.calls.split("\n").filter((l) => l.includes("blockcopy"));
    assert.equal(copies.length, 2);
    assert.doesNotMatch(copies[0], /--transient-job/);
    assert.match(copies[1], /--wait --finish --transient-job/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("blockCopyScript() fails loudly when the domain's disk source changed", async () => {
  const dir = await setup(["pivot"]);
  try {
    const r = await runScript(dir, blockCopyScript(request(dir)).text);
    assert.equal(r.code, EXIT_SOURCE_CHANGED);
    assert.match(r.stderr, /Domain one-7 disk vda now uses .* instead of .*disk\.0/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("blockCopyScript() finds the disk through a symlink and reports a missing disk or domain", async () => {
  const dir = await setup(["ok"]);
  try {
    await Deno.mkdir(`${dir}/vm/disk.3.snap`);
    await Deno.writeTextFile(`${dir}/vm/disk.3.snap/base.1`, "overlay");
    await Deno.symlink("disk.3.snap/base.1", `${dir}/vm/disk.3`);
    await Deno.writeTextFile(`${dir}/blk`, `file disk vdd ${dir}/vm/disk.3.snap/base.1\n`, { append: true });
    const viaLink = await runScript(
      dir,
      blockCopyScript(request(dir, { disk: `${dir}/vm/disk.3`, dest: `${dir}/vm/disk.3.snap/0` })).text,
    );
    assert.equal(viaLink.code, 0, viaLink.stderr);
    assert.match(viaLink.calls, /blockcopy one-7 vdd /);

    const missing = await runScript(
      dir,
      blockCopyScript(request(dir, { disk: `${dir}/vm/disk.9`, dest: `${dir}/vm/disk.9.snap/0` })).text,
    );
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /Disk .*disk\.9 is not attached to domain one-7/);

    await Deno.writeTextFile(`${dir}/absent`, "");
    const absent = await runScript(dir, blockCopyScript(request(dir)).text);
    assert.equal(absent.code, 1);
    assert.match(absent.stderr, /Domain one-7 does not exist on this host/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("blockCopyScript() quotes hostile domain names and paths", () => {
  const script = blockCopyScript({
    uri: "qemu:///system",
    domain: "one-7; rm -rf /",
    disk: "/vm/$(reboot)/disk.0",
    dest: "/vm/$(reboot)/disk.0.snap/1",
    token: "t",
  }).text;
  assert.ok(script.includes("dom='one-7; rm -rf /'"));
  assert.ok(script.includes("disk='/vm/$(reboot)/disk.0'"));
  assert.throws(() => blockCopyScript({ ...request("x"), disk: "relative/disk.0" }), /absolute/);
});

Deno.test("blockCopyTmpPath() names the copy after the disk, next to the destination", () => {
  assert.equal(
    blockCopyTmpPath("/d/7/disk.0.snap/3", "/d/7/disk.0", "ab"),
    "/d/7/disk.0.snap/.onestor-blockcopy-disk.0-ab",
  );
});

Deno.test("parseBlockDevices() reads domblklist --details with and without its header", () => {
  const text = ` Type   Device   Target   Source
------------------------------------------------
 file   disk     vda      /var/lib/one//datastores/100/7/disk.0
 file   cdrom    hda      -
 network disk    vdb      pool/image
`;
  assert.deepEqual(parseBlockDevices(text), [
    { type: "file", device: "disk", target: "vda", source: "/var/lib/one//datastores/100/7/disk.0" },
    { type: "file", device: "cdrom", target: "hda", source: "-" },
    { type: "network", device: "disk", target: "vdb", source: "pool/image" },
  ]);
});
