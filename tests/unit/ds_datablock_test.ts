import assert from "node:assert/strict";
import { loadConfig } from "../../config/load.ts";
import { InputError } from "../../core/errors.ts";
import { checkFs, datablockScript } from "../../core/image/datablock.ts";
import { runCommand } from "../../core/remote/process.ts";

function configWith(
  datastoreConf = "",
  tmrc = "",
): { config: ReturnType<typeof loadConfig>; cleanup: () => void } {
  const root = Deno.makeTempDirSync({ prefix: "onestor_dbcfg_" });
  const write = (path: string, text: string) => {
    Deno.mkdirSync(root + path.slice(0, path.lastIndexOf("/")), { recursive: true });
    Deno.writeTextFileSync(root + path, text);
  };
  write("/var/lib/one/remotes/etc/datastore/datastore.conf", datastoreConf);
  write("/etc/one/tmrc", tmrc);
  const config = loadConfig({ root, env: { ONESTOR_CONFIG_ROOT: root }, warn: () => {} });
  return { config, cleanup: () => Deno.removeSync(root, { recursive: true }) };
}

async function sh(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runCommand(["sh", "-c", script]);
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

function usage(path: string): { apparent: number; allocated: number } {
  const st = Deno.statSync(path);
  return { apparent: st.size, allocated: (st.blocks ?? 0) * 512 };
}

const HOSTILE_FS = [
  "ext4;touch /tmp/onestor-pwned",
  "$(touch /tmp/onestor-pwned)",
  "EXT4",
  "ext4 ",
  "ext 4",
  "",
  "../xfs",
];

Deno.test("checkFs() accepts SUPPORTED_FS members and refuses anything else with the list", () => {
  const { config, cleanup } = configWith();
  try {
    for (const fs of ["ext2", "ext3", "ext4", "xfs"]) checkFs(fs, config);
    for (const fs of ["vfat", "btrfs", ...HOSTILE_FS]) {
      assert.throws(() => checkFs(fs, config), (e: unknown) => {
        assert.ok(e instanceof InputError);
        assert.equal(
          e.message,
          `Unsupported file system type: ${fs}. Supported types are: ext2,ext3,ext4,xfs`,
        );
        return true;
      });
    }
  } finally {
    cleanup();
  }
});

Deno.test("checkFs() follows SUPPORTED_FS from datastore.conf", () => {
  const { config, cleanup } = configWith('SUPPORTED_FS="ext4, vfat"\n');
  try {
    checkFs("vfat", config);
    assert.throws(() => checkFs("xfs", config), /Supported types are: ext4,vfat$/);
  } finally {
    cleanup();
  }
});

Deno.test("datablockScript() refuses hostile FS, bad sizes and paths before building anything", () => {
  const { config, cleanup } = configWith();
  try {
    for (const fs of HOSTILE_FS.filter((f) => f !== "")) {
      assert.throws(
        () => datablockScript({ path: "/tmp/x", sizeMb: 8, format: "raw", fs, sparse: true }, config),
        InputError,
      );
    }
    assert.throws(
      () => datablockScript({ path: "/tmp/x", sizeMb: 0, format: "raw", sparse: true }, config),
      /positive/,
    );
    assert.throws(
      () => datablockScript({ path: "/tmp/x", sizeMb: 1.5, format: "raw", sparse: true }, config),
      /whole/,
    );
    assert.throws(
      () => datablockScript({ path: "rel/x", sizeMb: 1, format: "raw", sparse: true }, config),
      /absolute/,
    );
    assert.throws(
      () => datablockScript({ path: "/tmp/x", sizeMb: 64, format: "raw", fs: "xfs", sparse: true }, config),
      /A xfs file system needs at least 300 MiB, the datablock has 64 MiB/,
    );
  } finally {
    cleanup();
  }
});

Deno.test("datablockScript() builds every SUPPORTED_FS in raw and qcow2, recognised by blkid", async () => {
  const { config, cleanup } = configWith();
  const dir = Deno.makeTempDirSync({ prefix: "onestor_db_" });
  try {
    for (const fs of ["ext2", "ext3", "ext4", "xfs"]) {
      for (const format of ["raw", "qcow2"]) {
        const path = `${dir}/${fs}-${format}`;
        const sizeMb = fs === "xfs" ? 300 : 16;
        const r = await sh(datablockScript({ path, sizeMb, format, fs, sparse: true }, config).text);
        assert.equal(r.code, 0, r.stderr);
        const info = JSON.parse((await sh(`qemu-img info --output=json ${path}`)).stdout);
        assert.equal(info.format, format);
        assert.equal(info["virtual-size"], sizeMb * 1048576);
        const rawPath = format === "qcow2" ? `${path}.check` : path;
        if (format === "qcow2") {
          assert.equal((await sh(`qemu-img convert -O raw ${path} ${rawPath}`)).code, 0);
        }
        assert.equal((await sh(`blkid -p -o value -s TYPE ${rawPath}`)).stdout.trim(), fs);
        assert.ok(usage(path).allocated < usage(path).apparent || format === "qcow2", `${path} is sparse`);
      }
    }
    // Nothing but the images (and the checks' conversions) is left behind.
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("."));
    assert.deepEqual(names, []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
    cleanup();
  }
});

Deno.test("datablockScript() allocates every block with sparse false, raw and qcow2", async () => {
  const { config, cleanup } = configWith();
  const dir = Deno.makeTempDirSync({ prefix: "onestor_db_" });
  try {
    for (
      const [format, fs] of [["raw", undefined], ["raw", "ext4"], ["qcow2", undefined], ["qcow2", "ext4"]]
    ) {
      const sparsePath = `${dir}/s-${format}-${fs}`;
      const fullPath = `${dir}/f-${format}-${fs}`;
      for (const [path, sparse] of [[sparsePath, true], [fullPath, false]] as const) {
        const r = await sh(datablockScript({ path, sizeMb: 32, format: format!, fs, sparse }, config).text);
        assert.equal(r.code, 0, r.stderr);
      }
      const s = usage(sparsePath);
      const f = usage(fullPath);
      assert.ok(s.allocated < 8 * 1048576, `${sparsePath} allocated ${s.allocated}`);
      assert.ok(f.allocated >= 32 * 1048576, `${fullPath} allocated ${f.allocated}`);
      assert.equal((await sh(`qemu-img compare -q ${sparsePath} ${fullPath}`)).code, fs ? 1 : 0);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
    cleanup();
  }
});

Deno.test("datablockScript() applies FS_OPTS_<FS> as words and QCOW2_OPTIONS, never through a shell", async () => {
  const marker = `/tmp/onestor-pwned-${crypto.randomUUID()}`;
  const { config, cleanup } = configWith(
    `FS_OPTS_ext4="-L 'my label' -E lazy_itable_init=1"\nFS_OPTS_ext2="-L \\$(touch ${marker})"\n`,
    'QCOW2_OPTIONS="-o compat=0.10"\n',
  );
  const dir = Deno.makeTempDirSync({ prefix: "onestor_db_" });
  try {
    let r = await sh(
      datablockScript({ path: `${dir}/a`, sizeMb: 8, format: "raw", fs: "ext4", sparse: true }, config).text,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await sh(`blkid -o value -s LABEL ${dir}/a`)).stdout.trim(), "my label");
    r = await sh(
      datablockScript({ path: `${dir}/b`, sizeMb: 8, format: "qcow2", sparse: true }, config).text,
    );
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse((await sh(`qemu-img info --output=json ${dir}/b`)).stdout);
    assert.equal(info["format-specific"].data.compat, "0.10");
    // The label is the literal text; mkfs refuses it as too long, and nothing ran.
    r = await sh(
      datablockScript({ path: `${dir}/c`, sizeMb: 8, format: "raw", fs: "ext2", sparse: true }, config).text,
    );
    assert.ok(!(await exists(marker)), "FS_OPTS was run by a shell");
  } finally {
    Deno.removeSync(dir, { recursive: true });
    cleanup();
  }
});

Deno.test("datablockScript() leaves nothing behind when mkfs fails, and keeps an existing target", async () => {
  const { config, cleanup } = configWith('FS_OPTS_ext4="--no-such-option"\n');
  const dir = Deno.makeTempDirSync({ prefix: "onestor_db_" });
  try {
    Deno.writeTextFileSync(`${dir}/disk.0`, "old");
    for (const format of ["raw", "qcow2"]) {
      const r = await sh(
        datablockScript({ path: `${dir}/disk.0`, sizeMb: 8, format, fs: "ext4", sparse: true }, config).text,
      );
      assert.notEqual(r.code, 0);
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["disk.0"]);
      assert.equal(Deno.readTextFileSync(`${dir}/disk.0`), "old");
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
    cleanup();
  }
});

Deno.test("datablockScript() makes swap with mkswap and a blank image for other formats", async () => {
  const { config, cleanup } = configWith();
  const dir = Deno.makeTempDirSync({ prefix: "onestor_db_" });
  try {
    let r = await sh(
      datablockScript({ path: `${dir}/swap`, sizeMb: 8, format: "swap", sparse: true }, config).text,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await sh(`blkid -p -o value -s TYPE ${dir}/swap`)).stdout.trim(), "swap");
    assert.equal((await sh(`blkid -o value -s LABEL ${dir}/swap`)).stdout.trim(), "swap");
    r = await sh(
      datablockScript({ path: `${dir}/other`, sizeMb: 4, format: "vmdk", sparse: true }, config).text,
    );
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse((await sh(`qemu-img info --output=json ${dir}/other`)).stdout);
    assert.equal(info.format, "raw");
    assert.equal(info["virtual-size"], 4 * 1048576);
  } finally {
    Deno.removeSync(dir, { recursive: true });
    cleanup();
  }
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}
