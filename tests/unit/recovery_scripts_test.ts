/**
 * The replica-side scripts of recovery points and the offline hypervisor scripts, run locally on
 * real qemu-img files: chaining a received increment, merging, rebuilding a point in the disk's
 * format, checksum checks, bitmaps added and dropped, failpoints.
 */

import assert from "node:assert/strict";
import type { ShellScript } from "../../core/remote/shell.ts";
import {
  finalizeScript,
  makeBaseScript,
  mergeScript,
  rebuildScript,
  verifyChainScript,
} from "../../core/recovery/replica_scripts.ts";
import {
  dropBitmapsScript,
  parseJobOutput,
  protectDiskScript,
} from "../../core/recovery/hypervisor_scripts.ts";
import { failpoint } from "../../core/recovery/failpoint.ts";
import type { Guard } from "../../core/recovery/guard.ts";

const MiB = 1 << 20;

/** Scripts of the test may write only in its temporary folder. */
const G = (dir: string): Guard => ({ confine: { roots: [dir], setting: "the test folder" }, host: "test" });

async function run(script: ShellScript, env: Record<string, string> = {}) {
  const r = await new Deno.Command("bash", { args: ["-c", script.text], env }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

async function must(script: ShellScript): Promise<string> {
  const r = await run(script);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

async function sh(cmd: string): Promise<string> {
  const r = await new Deno.Command("sh", { args: ["-c", cmd] }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  return new TextDecoder().decode(r.stdout);
}

const value = (out: string, key: string) => out.match(new RegExp(`^ONESTOR_${key}=(.*)$`, "m"))?.[1] ?? "";

/** Pattern byte of each MiB of an image (any format), -1 when mixed. */
async function patterns(path: string, mib: number): Promise<number[]> {
  const tmp = await Deno.makeTempFile();
  try {
    await sh(`qemu-img convert -O raw '${path}' '${tmp}'`);
    const bytes = await Deno.readFile(tmp);
    return Array.from({ length: mib }, (_, i) => {
      const piece = bytes.subarray(i * MiB, (i + 1) * MiB);
      return piece.every((b) => b === piece[0]) ? piece[0] : -1;
    });
  } finally {
    await Deno.remove(tmp);
  }
}

Deno.test("replica scripts: point 0, increments chained, merged, rebuilt and checked", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Point 0: a raw cached image of 8 MiB (0x11 in MiB 0), the disk grown to 12 MiB.
    await sh(
      `cd ${dir} && truncate -s 8M base.new && qemu-io -f raw -c 'write -P 0x11 0 1M' base.new >/dev/null`,
    );
    const baseSum = (await sh(`b2sum < ${dir}/base.new`)).split(" ")[0];
    const base = await must(makeBaseScript(G(dir), dir, true, "raw", 12 * MiB, "b2sum"));
    assert.equal(value(base, "SUM"), (await sh(`b2sum < ${dir}/merged`)).split(" ")[0]);
    const inc = async (name: string, writes: string) => {
      // What a backup job leaves: a standalone qcow2 of the disk's size holding only the written clusters.
      await sh(
        `cd ${dir} && qemu-img create -q -f qcow2 ${name} 12M && qemu-io -f qcow2 ${writes} ${name} >/dev/null`,
      );
    };
    await inc("inc.1", "-c 'write -P 0x22 1M 1M' -c 'write -P 0x23 10M 1M'");
    const f1 = await must(
      finalizeScript(G(dir), {
        dir,
        file: "inc.1",
        parent: "merged",
        parentFormat: "qcow2",
        algorithm: "b2sum",
      }),
    );
    assert.equal(Number(value(f1, "DATA")), 2 * MiB, "the increment's own data, not its backing's");
    assert.equal(Number(value(f1, "VSIZE")), 12 * MiB);
    assert.equal(
      value(f1, "SUM"),
      (await sh(`b2sum < ${dir}/inc.1`)).split(" ")[0],
      "checksummed after chaining",
    );
    assert.deepEqual(await patterns(`${dir}/inc.1`, 12), [0x11, 0x22, 0, 0, 0, 0, 0, 0, 0, 0, 0x23, 0]);
    // A guest write of zeros over data is a zero in the next point, not the older data below.
    await inc("inc.2", "-c 'write -z 1M 1M' -c 'write -P 0x24 2M 1M'");
    await must(
      finalizeScript(G(dir), {
        dir,
        file: "inc.2",
        parent: "inc.1",
        parentFormat: "qcow2",
        algorithm: "b2sum",
      }),
    );
    const expected = [0x11, 0, 0x24, 0, 0, 0, 0, 0, 0, 0, 0x23, 0];
    assert.deepEqual(await patterns(`${dir}/inc.2`, 12), expected);

    // Merge inc.1 into merged; inc.2 re-chained reads the same.
    const merge = mergeScript(G(dir), dir, "inc.1", "merged", "inc.2", "qcow2", "b2sum");
    const m = await must(merge);
    await Deno.remove(`${dir}/inc.1`);
    assert.deepEqual(await patterns(`${dir}/inc.2`, 12), expected);
    assert.equal(value(m, "ABOVE_SUM"), (await sh(`b2sum < ${dir}/inc.2`)).split(" ")[0]);
    assert.equal(value(m, "SUM"), (await sh(`b2sum < ${dir}/merged`)).split(" ")[0]);
    assert.equal(
      (await sh(`b2sum < ${dir}/base`)).split(" ")[0],
      baseSum,
      "base (the cache's inode) is never written",
    );
    // Done again after a crash (inc.1 already gone): converges.
    await must(merge);
    assert.deepEqual(await patterns(`${dir}/inc.2`, 12), expected);

    const sums = async (names: string[]) =>
      await Promise.all(
        names.map(async (name) => ({ name, sum: (await sh(`b2sum < ${dir}/${name}`)).split(" ")[0] })),
      );
    const chain = await sums(["base", "merged", "inc.2"]);
    for (const format of ["raw", "qcow2"]) {
      const out = await must(
        rebuildScript(G(dir), {
          dir,
          chain,
          algorithm: "b2sum",
          outDir: ".restore-x",
          outName: "disk.0",
          format,
        }),
      );
      assert.equal(Number(value(out, "VSIZE")), 12 * MiB);
      const file = `${dir}/.restore-x/disk.0`;
      assert.equal(JSON.parse(await sh(`qemu-img info --output=json ${file}`)).format, format);
      assert.equal(
        JSON.parse(await sh(`qemu-img info --output=json ${file}`))["backing-filename"],
        undefined,
      );
      assert.deepEqual(await patterns(file, 12), expected);
    }
    await must(verifyChainScript(dir, chain, "b2sum"));
    // A flipped byte in a chain file: the point is refused before anything is rebuilt.
    await sh(`printf 'X' | dd of=${dir}/merged bs=1 seek=200000 conv=notrunc status=none`);
    const bad = await run(
      rebuildScript(G(dir), {
        dir,
        chain,
        algorithm: "b2sum",
        outDir: ".restore-y",
        outName: "disk.0",
        format: "raw",
      }),
    );
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Recovery files do not match their recorded checksums: merged: FAILED/);
    await assert.rejects(async () => await must(verifyChainScript(dir, chain, "b2sum")));
    assert.equal(await Deno.stat(`${dir}/.restore-y`).catch(() => null), null, "nothing half-made is left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("finalizeScript(G(dir), ) refuses a file that is not a consistent qcow2", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/inc.3`, "not an image");
    const r = await run(
      finalizeScript(G(dir), { dir, file: "inc.3", parent: null, parentFormat: "qcow2", algorithm: "b2sum" }),
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /is not a qcow2 image/);
    const missing = await run(
      finalizeScript(G(dir), { dir, file: "inc.4", parent: null, parentFormat: "qcow2", algorithm: "b2sum" }),
    );
    assert.match(missing.stderr, /The received file inc\.4 is missing/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("protectDiskScript(G(dir), ) adds the point's bitmap to a qcow2 v3 disk, explains why not otherwise", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await sh(
      `cd ${dir} && qemu-img create -q -f qcow2 disk.0 16M && qemu-img bitmap --add disk.0 onestor-rec-0-3 && ` +
        `qemu-img bitmap --add disk.0 one-9-1 && qemu-img create -q -f raw disk.1 16M && ` +
        `qemu-img create -q -f qcow2 -o compat=0.10 disk.2 16M`,
    );
    const line = 'DISK_RECOVERY_SNAPSHOT = [ ID=0, TIMESTAMP="5" ]';
    const out = await must(
      protectDiskScript(G(dir), {
        vmDir: dir,
        disk: `${dir}/disk.0`,
        diskId: 0,
        pointId: 7,
        statusLine: line,
      }),
    );
    assert.equal(value(out, "BITMAP"), "yes");
    assert.equal(value(out, "FORMAT"), "qcow2");
    assert.equal(Number(value(out, "VSIZE")), 16 * MiB);
    const names = [...(await sh(`qemu-img info --output=json ${dir}/disk.0`)).matchAll(/"name": "([^"]+)"/g)]
      .map((m) => m[1]);
    assert.deepEqual(
      names.sort(),
      ["one-9-1", "onestor-rec-0-7"],
      "its old recovery bitmap replaced, OpenNebula's kept",
    );
    assert.equal((await Deno.readTextFile(`${dir}/disk.0.recovery`)).trim(), line);
    const raw = await must(
      protectDiskScript(G(dir), {
        vmDir: dir,
        disk: `${dir}/disk.1`,
        diskId: 1,
        pointId: 0,
        statusLine: line,
      }),
    );
    assert.equal(value(raw, "BITMAP"), "a raw disk holds no bitmap");
    const v2 = await must(
      protectDiskScript(G(dir), {
        vmDir: dir,
        disk: `${dir}/disk.2`,
        diskId: 2,
        pointId: 0,
        statusLine: line,
      }),
    );
    assert.match(value(v2, "BITMAP"), /qcow2 v2/);
    await must(dropBitmapsScript(G(dir), `${dir}/disk.0`));
    const left = [...(await sh(`qemu-img info --output=json ${dir}/disk.0`)).matchAll(/"name": "([^"]+)"/g)]
      .map((m) => m[1]);
    assert.deepEqual(left, ["one-9-1"]);
    await must(dropBitmapsScript(G(dir), `${dir}/disk.1`));
    await must(dropBitmapsScript(G(dir), `${dir}/absent`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseJobOutput() reads the job's markers", () => {
  const r = parseJobOutput(
    "ONESTOR_MODE=incremental\nONESTOR_REASON=\nONESTOR_FORMAT=qcow2\nONESTOR_TARGET=vda\nONESTOR_TIME=17\n" +
      "ONESTOR_QUIESCED=no\nONESTOR_VSIZE=1024\nONESTOR_DATA=512\n",
  );
  assert.deepEqual(r, {
    time: 17,
    mode: "incremental",
    reason: "",
    quiesced: false,
    format: "qcow2",
    target: "vda",
    vsize: 1024,
    data: 512,
  });
  assert.equal(parseJobOutput("ONESTOR_MODE=full\n").quiesced, null);
});

Deno.test("failpoint() is a no-op unless ONESTOR_RECOVERY_FAILPOINT names its step", async () => {
  assert.equal((await run(failpoint("commit"))).code, 0);
  Deno.env.set("ONESTOR_RECOVERY_FAILPOINT", "merge,commit");
  try {
    const r = await run(failpoint("commit"));
    assert.equal(r.code, 97);
    assert.match(r.stderr, /Injected failure at the commit step/);
    assert.equal((await run(failpoint("cleanup"))).code, 0);
  } finally {
    Deno.env.delete("ONESTOR_RECOVERY_FAILPOINT");
  }
});

Deno.test("recovery scripts are confined: a disk linked out of the allowed folder is not touched", async () => {
  const dir = await Deno.makeTempDir();
  const outside = await Deno.makeTempDir();
  try {
    await sh(`qemu-img create -q -f qcow2 ${outside}/victim 16M && ln -s ${outside}/victim ${dir}/disk.0`);
    const before = await sh(`b2sum < ${outside}/victim`);
    const r = await run(protectDiskScript(G(dir), {
      vmDir: dir,
      disk: `${dir}/disk.0`,
      diskId: 0,
      pointId: 0,
      statusLine: "x",
    }));
    assert.equal(r.code, 86);
    assert.match(r.stderr, /ONESTOR_CONFINE_REFUSED/);
    assert.equal(await sh(`b2sum < ${outside}/victim`), before, "the file outside is unchanged");
    assert.throws(() => dropBitmapsScript(G(dir), `${outside}/victim`), /Refused to write/);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});
