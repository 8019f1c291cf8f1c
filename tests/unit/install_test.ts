import assert from "node:assert/strict";
import { DS_ACTIONS, TM_ACTIONS } from "../../actions/registry.ts";
import { runCommand } from "../../core/remote/process.ts";
import { installInto, onestor } from "../support/run_onestor.ts";
import { deferChunkImports } from "../../core/install/installer.ts";

function listDir(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("install lays a launcher and every action of the spec, and the symlinks reach their action", async () => {
  const remotes = await Deno.makeTempDir();
  try {
    const { tm, ds } = await installInto(remotes);
    for (const action of TM_ACTIONS) {
      const info = Deno.lstatSync(`${tm}/${action.name}`);
      if (action.name === "monitor_ds") assert.ok(info.isFile, "monitor_ds is a plain script for the hosts");
      else assert.equal(Deno.readLinkSync(`${tm}/${action.name}`), ".onestor");
    }
    for (const action of DS_ACTIONS) assert.equal(Deno.readLinkSync(`${ds}/${action.name}`), ".onestor");
    assert.ok((Deno.statSync(`${tm}/.onestor`).mode! & 0o111) !== 0, "launcher is executable");

    // The launcher runs the bundle install built (main.ts when there is none).
    const launcher = Deno.readTextFileSync(`${tm}/.onestor`);
    const entry = launcher.match(/\[ -f '([^']+)' \]/)?.[1];
    assert.ok(entry && Deno.statSync(entry).isFile, launcher);
    assert.match(launcher, /exec '[^']+' run .* "\$ONESTOR_MAIN" "\$@"/);
    // Deno loads the action's chunks when the action asks for them, not all of them at start-up.
    const bundleDir = entry!.slice(0, entry!.lastIndexOf("/"));
    const chunks = [...Deno.readDirSync(bundleDir)].filter((e) => e.name.endsWith(".js"));
    assert.ok(chunks.length > 10, "one chunk per action");
    const lazy = chunks.filter((e) =>
      /import\(String\("\.\/[^"]+\.js"\)\)/.test(Deno.readTextFileSync(`${bundleDir}/${e.name}`))
    );
    assert.ok(lazy.length > 0, "the entry loads action chunks lazily");
    for (const e of chunks) {
      assert.doesNotMatch(Deno.readTextFileSync(`${bundleDir}/${e.name}`), /\bimport\("\.\//, e.name);
    }

    // TM monitor through its symlink: reads stdin, prints nothing, exit 0.
    const monitor = await runCommand([`${tm}/monitor`, "100"], { stdin: "PERTX0RSSVZFUl9BQ1RJT05fREFUQT4=" });
    assert.equal(monitor.code, 0, monitor.stderr);
    assert.equal(monitor.stdout, "");

    // Wrong argument count: one clear line, non-zero exit.
    const bad = await runCommand([`${tm}/clone`, "only-one-arg"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Wrong number of arguments for tm action clone: got 1, expected 4/);

    // An unknown action name in a driver folder.
    Deno.symlinkSync(".onestor", `${tm}/frobnicate`);
    const unknown = await runCommand([`${tm}/frobnicate`]);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /Unknown TM action 'frobnicate'/);
    Deno.removeSync(`${tm}/frobnicate`);
  } finally {
    await Deno.remove(remotes, { recursive: true });
  }
});

Deno.test("install is idempotent and uninstall removes exactly what it laid, restoring stock files", async () => {
  const remotes = await Deno.makeTempDir();
  try {
    // A stock ssh driver with a file onestor replaces and one it does not know.
    Deno.mkdirSync(`${remotes}/tm/ssh`, { recursive: true });
    Deno.writeTextFileSync(`${remotes}/tm/ssh/clone`, "#!/bin/sh\necho stock clone\n");
    Deno.writeTextFileSync(`${remotes}/tm/ssh/ssh_utils.sh`, "# stock library\n");
    Deno.mkdirSync(`${remotes}/datastore/fs`, { recursive: true });
    Deno.writeTextFileSync(`${remotes}/datastore/fs/cp`, "#!/bin/sh\necho stock cp\n");
    const before = listDir(`${remotes}/tm/ssh`);

    await installInto(remotes, { tm: "ssh", ds: "fs" });
    const first = listDir(`${remotes}/tm/ssh`);
    await installInto(remotes, { tm: "ssh", ds: "fs" });
    assert.deepEqual(listDir(`${remotes}/tm/ssh`), first, "second install changes nothing");
    assert.equal(Deno.readLinkSync(`${remotes}/tm/ssh/clone`), ".onestor");
    assert.equal(
      Deno.readTextFileSync(`${remotes}/tm/ssh/.onestor-backup/clone`),
      "#!/bin/sh\necho stock clone\n",
    );

    const result = await onestor([
      "install",
      "--remotes",
      remotes,
      "--tm-name",
      "ssh",
      "--ds-name",
      "fs",
      "--uninstall",
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(listDir(`${remotes}/tm/ssh`), before);
    assert.equal(Deno.readTextFileSync(`${remotes}/tm/ssh/clone`), "#!/bin/sh\necho stock clone\n");
    assert.deepEqual(listDir(`${remotes}/datastore/fs`), ["cp"]);
    assert.equal(Deno.readTextFileSync(`${remotes}/datastore/fs/cp`), "#!/bin/sh\necho stock cp\n");
  } finally {
    await Deno.remove(remotes, { recursive: true });
  }
});

Deno.test("install prints the oned.conf lines and refuses a hostile driver name", async () => {
  const remotes = await Deno.makeTempDir();
  try {
    const ok = await onestor(["install", "--remotes", remotes]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      /TM_MAD = \[ EXECUTABLE = "one_tm", ARGUMENTS = "-t 15 -d [a-z0-9_,]*,onestor" \]/,
    );
    assert.match(
      ok.stdout,
      /TM_MAD_CONF = \[ NAME = "onestor", LN_TARGET = "SYSTEM", CLONE_TARGET = "SYSTEM"/,
    );
    assert.match(ok.stdout, /DS_MAD_CONF = \[ NAME = "onestor"/);
    const bad = await onestor(["install", "--remotes", remotes, "--tm-name", "x;rm -rf /"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Invalid driver name/);
  } finally {
    await Deno.remove(remotes, { recursive: true });
  }
});

Deno.test("onestor answers --help, --version and refuses unknown commands", async () => {
  const help = await onestor(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /onestor tm <action>/);
  const version = await onestor(["--version"]);
  assert.match(version.stdout, /^onestor \d+\.\d+\.\d+/);
  const unknown = await onestor(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /Unknown command 'frobnicate'/);
  const tmUnknown = await onestor(["tm", "nope"]);
  assert.notEqual(tmUnknown.code, 0);
  assert.match(tmUnknown.stderr, /Unknown TM action 'nope'/);
});

Deno.test("the launcher itself takes subcommands", async () => {
  const remotes = await Deno.makeTempDir();
  try {
    const { tm } = await installInto(remotes);
    const version = await runCommand([`${tm}/.onestor`, "--version"]);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^onestor \d+\.\d+\.\d+/);
  } finally {
    await Deno.remove(remotes, { recursive: true });
  }
});

Deno.test("install --recovery-unit lays the systemd unit of the recovery daemon; uninstall removes it", async () => {
  const remotes = await Deno.makeTempDir();
  const units = await Deno.makeTempDir();
  try {
    const r = await onestor(["install", "--remotes", remotes, "--recovery-unit", "--unit-dir", units]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /systemctl daemon-reload && systemctl enable --now onestor-recovery\.service/);
    const unit = Deno.readTextFileSync(`${units}/onestor-recovery.service`);
    assert.match(unit, new RegExp(`^ExecStart=${remotes}/tm/onestor/\\.onestor recovery daemon$`, "m"));
    assert.match(unit, /^User=oneadmin$/m);
    // The launcher it names takes the recovery subcommand.
    const help = await runCommand([`${remotes}/tm/onestor/.onestor`, "recovery", "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /onestor recovery run/);
    const u = await onestor([
      "install",
      "--remotes",
      remotes,
      "--uninstall",
      "--recovery-unit",
      "--unit-dir",
      units,
    ]);
    assert.equal(u.code, 0, u.stderr);
    assert.deepEqual(listDir(units), []);
  } finally {
    await Deno.remove(remotes, { recursive: true });
    await Deno.remove(units, { recursive: true });
  }
});

Deno.test("deferChunkImports hides only the bundle's own chunk specifiers from Deno's module graph", () => {
  assert.equal(
    deferChunkImports('const a = () => import("./clone-AB12.js"); import("./chunk-X_Y.js").then(f);'),
    'const a = () => import(String("./clone-AB12.js")); import(String("./chunk-X_Y.js")).then(f);',
  );
  // Anything else is left as it is: remote or bare specifiers, expressions, a method named import.
  for (const text of ['import("node:fs")', 'import("../x.js")', "import(name)", 'x.import("./a.js")']) {
    assert.equal(deferChunkImports(text), text);
  }
});
