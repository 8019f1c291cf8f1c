/**
 * Confinement (core/remote/confine.ts): the shell check run for real, with dash and bash, against
 * temporary folders holding symlinks that lead out, `..`, `//`, a root that is itself a symlink;
 * the early check; the copy primitive refusing a destination that leads out while leaving the
 * decoy outside untouched.
 */
import assert from "node:assert/strict";
import {
  confine,
  CONFINE_EXIT,
  type Confinement,
  ConfinementError,
  normalizePath,
  precheck,
  refusalIn,
  scratchConfinement,
} from "../../core/remote/confine.ts";
import { HostRunner } from "../../core/remote/runner.ts";
import { sh } from "../../core/remote/shell.ts";
import { SshClient } from "../../core/remote/ssh.ts";
import { copyEntries } from "../../core/transfer/copy.ts";
import { fakeSshRunner } from "../support/fake_ssh.ts";

/** root/ (allowed) with links that lead out, outside/ with a decoy, alias -> root. */
async function world() {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "onestor_confine_" }));
  const root = `${base}/root`;
  const outside = `${base}/outside`;
  await Deno.mkdir(`${root}/0/7`, { recursive: true });
  await Deno.mkdir(outside);
  await Deno.writeTextFile(`${outside}/decoy`, "precious\n");
  await Deno.symlink(outside, `${root}/0/7/out`);
  await Deno.symlink(`${outside}/new`, `${root}/0/7/dangling`);
  await Deno.symlink(`${root}/0/7/disk.0.snap/base.1`, `${root}/0/7/inside-link`);
  await Deno.symlink(root, `${base}/alias`);
  return {
    base,
    root,
    outside,
    async [Symbol.asyncDispose]() {
      await Deno.remove(base, { recursive: true });
    },
  };
}

/**
 * Runs `script` with `shell`, with a realpath ahead of the real one on PATH that counts its calls
 * (in `<base>/calls`, emptied first).
 */
async function runCountingRealpath(
  shell: string,
  base: string,
  script: string,
): Promise<{ code: number; stdout: string; stderr: string; realpaths: number }> {
  const bin = `${base}/bin`;
  await Deno.mkdir(bin, { recursive: true });
  const real =
    (await new Deno.Command("sh", { args: ["-c", "command -v realpath"], stdout: "piped" }).output())
      .stdout;
  await Deno.writeTextFile(
    `${bin}/realpath`,
    `#!/bin/sh\necho x >>${base}/calls\nexec ${new TextDecoder().decode(real).trim()} "$@"\n`,
    { mode: 0o755 },
  );
  await Deno.remove(`${base}/calls`).catch(() => {});
  const out = await new Deno.Command(shell, {
    args: ["-c", script],
    env: { PATH: `${bin}:${Deno.env.get("PATH")}` },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const calls = await Deno.readTextFile(`${base}/calls`).catch(() => "");
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    realpaths: calls.split("\n").filter(Boolean).length,
  };
}

async function judge(
  shell: string,
  c: Confinement,
  mode: "write" | "remove",
  path: string,
): Promise<{ code: number; stderr: string; stdout: string }> {
  // The function itself, without the early check, so that the host's judgement is what is tested.
  const script = sh`${confine(c, "hv-test", {})}
onestor_confine ${mode} ${path}
echo PASSED`;
  const out = await new Deno.Command(shell, { args: ["-c", script.text], stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

for (const shell of ["sh", "bash"]) {
  Deno.test(`onestor_confine (${shell}) allows paths that resolve strictly inside a root`, async () => {
    await using w = await world();
    const c = scratchConfinement(w.root);
    for (
      const [mode, path] of [
        ["write", `${w.root}/0/7/disk.0`],
        ["write", `${w.root}//0///7/disk.1`],
        ["write", `${w.root}/0/7/../7/disk.2`],
        ["write", `${w.root}/0/7/inside-link`], // a link that stays inside
        ["write", `${w.root}/0/7/new folder/$(touch ${w.outside}/pwned)`],
        ["remove", `${w.root}/0/7/out`], // the link itself goes, its target stays
        ["remove", `${w.root}/0/7/dangling`],
        ["remove", `${w.root}/0/7`],
        ["write", `${w.base}/alias/0/7/disk.3`], // spelled through a link to the root
      ] as const
    ) {
      const r = await judge(shell, c, mode, path);
      assert.equal(r.code, 0, `${mode} ${path}: ${r.stderr}`);
      assert.equal(r.stdout, "PASSED\n");
    }
    assert.equal(await Deno.lstat(`${w.outside}/pwned`).catch(() => null), null, "nothing was run");
  });

  Deno.test(`onestor_confine (${shell}) refuses what resolves outside, with the marker and exit ${CONFINE_EXIT}`, async () => {
    await using w = await world();
    const c = scratchConfinement(w.root);
    for (
      const [mode, path, resolved] of [
        ["write", `${w.root}/0/7/out/decoy`, `${w.outside}/decoy`],
        ["write", `${w.root}/0/7/out`, w.outside], // writing onto the link follows it
        ["write", `${w.root}/0/7/dangling`, `${w.outside}/new`],
        ["remove", `${w.root}/0/7/out/decoy`, `${w.outside}/decoy`], // through a linked parent
        ["write", `${w.root}/0/7/../../../outside/decoy`, `${w.outside}/decoy`],
        ["remove", `${w.root}/0/..`, w.root], // the root itself
        ["write", w.root, w.root],
        ["remove", `${w.root}/`, w.root],
        ["remove", "/", "/"],
        ["write", `${w.root}-sibling/x`, `${w.root}-sibling/x`], // a prefix is not a parent
        ["write", "relative/path", "(not an absolute path)"],
      ] as const
    ) {
      const r = await judge(shell, c, mode, path);
      assert.equal(r.code, CONFINE_EXIT, `${mode} ${path} must be refused: ${r.stdout}`);
      assert.equal(r.stdout, "", "the script stopped at the refusal");
      const refusal = refusalIn(r.stderr);
      assert.ok(refusal instanceof ConfinementError, r.stderr);
      assert.equal(refusal.host, "hv-test");
      assert.equal(refusal.path, path);
      assert.equal(refusal.resolved, resolved);
      assert.equal(refusal.mode, mode);
      assert.deepEqual(refusal.roots, [w.root]);
      assert.match(refusal.message, new RegExp(`^Refused to (write|delete) hv-test:`));
      assert.match(refusal.message, /a scratch folder of this action/);
    }
    assert.equal(await Deno.readTextFile(`${w.outside}/decoy`), "precious\n");
  });

  Deno.test(`onestor_confine (${shell}): a root that is a symlink is resolved on the host`, async () => {
    await using w = await world();
    const c = scratchConfinement(`${w.base}/alias/`);
    assert.equal((await judge(shell, c, "write", `${w.root}/0/7/disk.0`)).code, 0);
    assert.equal((await judge(shell, c, "write", `${w.base}/alias/0/7/disk.0`)).code, 0);
    const r = await judge(shell, c, "write", `${w.base}/alias/0/7/out/decoy`);
    assert.equal(r.code, CONFINE_EXIT);
    assert.deepEqual(refusalIn(r.stderr)?.roots, [w.root], "the refusal names the resolved root");
  });

  Deno.test(`onestor_confine (${shell}) resolves the roots once per script, and again for other roots`, async () => {
    await using w = await world();
    const inRoot = scratchConfinement(w.root);
    const inOutside = scratchConfinement(w.outside);
    const script = sh`${confine(inRoot, "hv-test", {})}
onestor_confine write ${`${w.root}/0/7/disk.0`}
onestor_confine write ${`${w.root}/0/7/disk.1`}
onestor_confine remove ${`${w.root}/0/7/disk.2`}
${confine(inOutside, "hv-test", {})}
onestor_confine write ${`${w.outside}/decoy`}
onestor_confine write ${`${w.root}/0/7/disk.3`}
echo NOT-REACHED`;
    const out = await runCountingRealpath(shell, w.base, script.text);
    assert.equal(
      out.code,
      CONFINE_EXIT,
      "disk.3 is judged by the second set of roots, not the first one's cache",
    );
    assert.equal(out.stdout, "");
    assert.deepEqual(refusalIn(out.stderr)?.roots, [w.outside]);
    // 5 targets (the decoy is inside the second root; disk.3 no longer is) and 2 root sets, plus the
    // refusal, which resolves its roots again to name them.
    assert.equal(out.realpaths, 5 + 2 + 1);
  });
}

/** Runs the prologue confine() emits for `targets`, counting its realpath calls. */
function judgeTargets(
  shell: string,
  w: { base: string },
  c: Confinement,
  targets: { write?: string[]; remove?: string[] },
): Promise<{ code: number; stderr: string; stdout: string; realpaths: number }> {
  return runCountingRealpath(
    shell,
    w.base,
    sh`${confine(c, "hv-test", targets)}
echo PASSED`.text,
  );
}

for (const shell of ["sh", "bash"]) {
  Deno.test(`confine() (${shell}) judges all targets and roots of a script with one realpath`, async () => {
    await using w = await world();
    const c = scratchConfinement(w.root);
    const ok = await judgeTargets(shell, w, c, {
      write: [`${w.root}/0/7/disk.0`, `${w.root}/0/7/inside-link`, `${w.root}/0/7/new folder/$(id)`],
      remove: [`${w.root}/0/7/out`, `${w.root}/0/7/dangling`, `${w.root}/0/7`],
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "PASSED\n");
    assert.equal(ok.realpaths, 1, "one realpath for 6 targets and the root");
    // Each refusal, alone and after allowed targets, names the right path and what it resolved to.
    for (
      const [mode, path, resolved] of [
        ["write", `${w.root}/0/7/out/decoy`, `${w.outside}/decoy`],
        ["write", `${w.root}/0/7/out`, w.outside],
        ["write", `${w.root}/0/7/dangling`, `${w.outside}/new`],
        ["remove", `${w.root}/0/7/out/decoy`, `${w.outside}/decoy`],
        ["remove", `${w.root}/0/7/out/`, w.outside],
      ] as const
    ) {
      const before = mode === "write" ? [`${w.root}/0/7/disk.0`] : [];
      const r = await judgeTargets(shell, w, c, { [mode]: [...before, path] });
      assert.equal(r.code, CONFINE_EXIT, `${mode} ${path} must be refused: ${r.stdout}`);
      assert.equal(r.stdout, "");
      const refusal = refusalIn(r.stderr);
      assert.ok(refusal, r.stderr);
      assert.equal(refusal.path, path);
      assert.equal(refusal.resolved, resolved);
      assert.equal(refusal.mode, mode);
      assert.deepEqual(refusal.roots, [w.root]);
    }
    assert.equal(await Deno.readTextFile(`${w.outside}/decoy`), "precious\n");
  });

  Deno.test(`confine() (${shell}) judges each target on its own when a resolved path holds a newline`, async () => {
    await using w = await world();
    // A link inside the root to a folder (inside the root too) whose name ends with a newline: its
    // resolution spans two lines, so the lines of the one realpath no longer match the targets.
    await Deno.mkdir(`${w.root}/nl\n`);
    await Deno.symlink(`${w.root}/nl\n`, `${w.root}/0/7/lnk`);
    const c = scratchConfinement(w.root);
    const ok = await judgeTargets(shell, w, c, { write: [`${w.root}/0/7/lnk/f`, `${w.root}/0/7/disk.0`] });
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(ok.realpaths > 1, "fell back to one realpath per path");
    const bad = await judgeTargets(shell, w, c, {
      write: [`${w.root}/0/7/lnk/f`, `${w.root}/0/7/out/decoy`],
    });
    assert.equal(bad.code, CONFINE_EXIT);
    assert.equal(refusalIn(bad.stderr)?.path, `${w.root}/0/7/out/decoy`);
    assert.equal(refusalIn(bad.stderr)?.resolved, `${w.outside}/decoy`);
  });
}

Deno.test("precheck() and confine() refuse by spelling before anything runs", () => {
  const c: Confinement = { roots: ["/var/lib/one//datastores/"], setting: "DATASTORE_LOCATION" };
  assert.doesNotThrow(() => precheck(c, "hv1", "/var/lib/one/datastores//0/7/disk.0", "write"));
  for (
    const path of [
      "/var/lib/one/datastores/0/../../../../etc/passwd",
      "/var/lib/one/datastores",
      "/var/lib/one/datastoresX/0",
      "var/lib/one/datastores/0",
      "/var/lib/one/datastores/0/disk\n0",
      "/etc/passwd",
    ]
  ) {
    assert.throws(() => precheck(c, "hv1", path, "write"), ConfinementError, path);
    assert.throws(() => confine(c, "hv1", { remove: [path] }), ConfinementError, path);
  }
  const e = (() => {
    try {
      confine(c, null, { write: ["/var/lib/one/datastores/0/../../../../../etc/passwd"] });
    } catch (error) {
      return error as ConfinementError;
    }
  })()!;
  assert.equal(
    e.message,
    "Refused to write front-end:/var/lib/one/datastores/0/../../../../../etc/passwd: it resolves to /etc/passwd, " +
      "outside /var/lib/one//datastores/ (allowed by DATASTORE_LOCATION; change that setting if this path " +
      "is meant to be used)",
  );
  assert.throws(() => precheck({ roots: [], setting: "x" }, "h", "/a/b", "write"), /no folder is allowed/);
});

Deno.test("normalizePath() collapses slashes and applies . and .. lexically", () => {
  assert.equal(normalizePath("/a//b/./c/"), "/a/b/c");
  assert.equal(normalizePath("/a/b/../../.."), "/");
  assert.equal(normalizePath("//"), "/");
});

Deno.test("HostRunner turns a refusal into a ConfinementError, also with check: false", async () => {
  await using w = await world();
  const runner = new HostRunner(new SshClient({ controlPersist: 0 }), []);
  const c = scratchConfinement(w.root);
  // The early check passes (the spelling is inside); the host resolves the link and refuses.
  const script = sh`${confine(c, null, { write: [`${w.root}/0/7/out/decoy`] })}
echo overwritten >${`${w.root}/0/7/out/decoy`}`;
  for (const check of [true, false]) {
    await assert.rejects(runner.run(null, script, { check }), (error: unknown) => {
      assert.ok(error instanceof ConfinementError, String(error));
      assert.equal(error.host, "front-end");
      assert.equal(error.resolved, `${w.outside}/decoy`);
      return true;
    });
  }
  assert.equal(await Deno.readTextFile(`${w.outside}/decoy`), "precious\n");
});

Deno.test("copyEntries() refuses a destination that leads out through a symlink; nothing outside changes", async () => {
  await using w = await world();
  const { runner } = await fakeSshRunner(w.base);
  await Deno.mkdir(`${w.root}/1`);
  await Deno.writeTextFile(`${w.root}/1/img`, "image bytes\n");
  const c = scratchConfinement(w.root);
  const before = await Deno.stat(`${w.outside}/decoy`);
  // Into a folder that is a link to outside, onto an entry that is a link to outside, and as a name
  // that climbs out: the first two pass the early check and are refused on the "host".
  for (
    const [dir, as] of [
      [`${w.root}/0/7/out`, "decoy"],
      [`${w.root}/0/7`, "out"],
      [`${w.root}/0/7`, "dangling"],
    ]
  ) {
    await assert.rejects(
      copyEntries(runner, {
        from: { host: null, dir: `${w.root}/1`, entries: [{ name: "img", as }] },
        to: { host: "dst-test", dir, confine: c },
      }),
      (error: unknown) => error instanceof ConfinementError && error.host === "dst-test",
      `${dir}/${as}`,
    );
  }
  await assert.rejects(
    copyEntries(runner, {
      from: { host: null, dir: `${w.root}/1`, entries: [{ name: "img", as: "x" }] },
      to: { host: "dst-test", dir: `${w.root}/0/7/../../../outside`, confine: c },
    }),
    ConfinementError,
  );
  const after = await Deno.stat(`${w.outside}/decoy`);
  assert.equal(await Deno.readTextFile(`${w.outside}/decoy`), "precious\n");
  assert.equal(after.mtime?.getTime(), before.mtime?.getTime());
  assert.deepEqual([...Deno.readDirSync(w.outside)].map((e) => e.name), ["decoy"]);
  // And a copy inside goes through.
  await copyEntries(runner, {
    from: { host: null, dir: `${w.root}/1`, entries: [{ name: "img", as: "disk.0" }] },
    to: { host: "dst-test", dir: `${w.root}/0/7`, confine: c },
  });
  assert.equal(await Deno.readTextFile(`${w.root}/0/7/disk.0`), "image bytes\n");
});
