/**
 * Lays onestor into OpenNebula's remotes folder: a launcher per driver folder and a symlink per
 * action, a manifest of what was laid (so uninstall removes exactly that) and a backup of any
 * stock file it replaced (installing as `ssh` / `fs` replaces the stock drivers in place).
 *
 * @module
 */

import { DS_ACTIONS, HOST_SIDE_TM_ACTIONS, TM_ACTIONS } from "../../actions/registry.ts";
import { InputError } from "../errors.ts";
import { hostScriptFor } from "./host_scripts.ts";
import { VERSION } from "../version.ts";
import { frontendStateDir } from "../cache/state_dir.ts";

/** Where to install and under which driver names. */
export interface InstallOptions {
  /** OpenNebula remotes folder (normally /var/lib/one/remotes). */
  remotes: string;
  /** TM driver name (folder under remotes/tm). */
  tmName: string;
  /** Datastore driver name (folder under remotes/datastore). */
  dsName: string;
  /** Deno binary the launcher runs (default: the one running now). */
  denoPath?: string;
  /** main.ts of this checkout (default: the one the launcher names, else the one next to this module). */
  mainPath?: string;
  /** Folder of the bundle (default: `bundle` in the front-end state folder); null: no bundle. */
  bundleDir?: string | null;
}

/** What {@linkcode installDrivers} did. */
export interface InstallReport {
  version: string;
  tmDir: string;
  dsDir: string;
  tmActions: number;
  dsActions: number;
  backedUp: number;
  /** The bundle the launcher runs, or null (it runs main.ts). */
  bundle: string | null;
}

interface Manifest {
  version: string;
  laid: string[];
  backups: string[];
}

const LAUNCHER = ".onestor";
const MANIFEST = ".onestor-manifest.json";
const BACKUP_DIR = ".onestor-backup";
const NAME = /^[A-Za-z0-9_-]+$/;

function shQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

const RUN_FLAGS = "run --quiet --no-check --no-config --no-lock --cached-only --no-remote --allow-all";

/**
 * The launcher script: runs onestor with the Deno it was installed with, never the network. With a
 * bundle (one JavaScript entry and a chunk per action, built by `install`), Deno loads a few
 * ready JavaScript files instead of resolving and transpiling dozens of TypeScript modules: a
 * deployment's action starts ~20 ms of CPU sooner (docs/benchmarks.md). Without it (or once it is
 * removed), main.ts runs as is.
 */
export function launcherScript(
  denoPath: string,
  mainPath: string,
  bundleEntry: string | null = null,
  denoDir: string | null = null,
): string {
  const deno = shQuote(denoPath);
  return [
    "#!/bin/sh",
    "# onestor launcher, laid by 'onestor install'. oned runs the actions through symlinks to",
    "# this file; the name they are invoked by ($0) selects the action.",
    "ONESTOR_ARGV0=$0",
    `ONESTOR_MAIN=${shQuote(mainPath)}`,
    "DENO_NO_UPDATE_CHECK=1",
    "DENO_NO_PROMPT=1",
    "export ONESTOR_ARGV0 ONESTOR_MAIN DENO_NO_UPDATE_CHECK DENO_NO_PROMPT",
    ...(denoDir
      ? [
        "# Deno's own cache (parsed modules, compiled code) in a folder of onestor's that oned's user",
        "# can write, whatever HOME or DENO_DIR oned runs with: an action then starts from compiled code.",
        `DENO_DIR=${shQuote(denoDir)}`,
        "export DENO_DIR",
      ]
      : []),
    ...(bundleEntry
      ? [`[ -f ${shQuote(bundleEntry)} ] && exec ${deno} ${RUN_FLAGS} ${shQuote(bundleEntry)} "$@"`]
      : []),
    `exec ${deno} ${RUN_FLAGS} "$ONESTOR_MAIN" "$@"`,
    "",
  ].join("\n");
}

/**
 * The bundle's dynamic imports of its own chunks, made opaque to Deno's module graph. Deno reads,
 * parses and looks up the compiled code of every module a literal `import("./x.js")` names before
 * the entry runs, so an action that needs a tenth of the bundle paid for all of it (every action's
 * chunk was opened at start-up). Through `String(...)` the specifier is no longer a literal: Deno
 * loads a chunk when the action asks for it. Measured: `--version` from 101 to 20 files opened and
 * from 78 to 65 ms of CPU.
 */
export function deferChunkImports(js: string): string {
  return js.replace(/(?<![.\w$])import\(("\.\/[A-Za-z0-9_.-]+\.js")\)/g, "import(String($1))");
}

/**
 * Bundles main.ts into `dir` (an entry `main.js` and one chunk per lazily loaded action), replacing
 * what was there; returns the entry, or null when bundling is not possible here (the launcher then
 * runs main.ts). Built next to a temporary name, so a running action never sees half of it.
 */
export async function buildBundle(denoPath: string, mainPath: string, dir: string): Promise<string | null> {
  const tmp = `${dir}.tmp-${Deno.pid}`;
  try {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    const out = await new Deno.Command(denoPath, {
      args: [
        "bundle",
        "--quiet",
        "--no-config",
        "--no-lock",
        "--platform",
        "deno",
        "--code-splitting",
        "--outdir",
        tmp,
        mainPath,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { DENO_NO_UPDATE_CHECK: "1" },
    }).output();
    if (!out.success || !exists(`${tmp}/main.js`)) throw new Error(new TextDecoder().decode(out.stderr));
    for (const entry of Deno.readDirSync(tmp)) {
      if (!entry.isFile || !entry.name.endsWith(".js")) continue;
      const file = `${tmp}/${entry.name}`;
      const text = Deno.readTextFileSync(file);
      const lazy = deferChunkImports(text);
      if (lazy !== text) Deno.writeTextFileSync(file, lazy);
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, dir);
    return `${dir}/main.js`;
  } catch {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    return null;
  }
}

/**
 * The Deno cache the launcher gives actions run from the bundle (next to it), made here so that
 * the installing user (oned's) owns it, or null when it cannot be made. The bundle imports nothing
 * from outside itself, so the folder only ever holds what Deno derives from it. With the cache
 * readable only (a DENO_DIR owned by another user), every action parsed the whole bundle again and
 * compiled its code from scratch: about 0.1 s of CPU per action here (docs/benchmarks.md).
 */
function actionDenoDir(bundleDir: string): string | null {
  const dir = `${bundleDir.replace(/\/+$/, "")}-deno-cache`;
  try {
    // Emptied on every install: what it held was derived from the bundle this install replaced.
    Deno.removeSync(dir, { recursive: true });
  } catch { /* absent */ }
  try {
    Deno.mkdirSync(dir, { recursive: true });
    return dir;
  } catch {
    return null;
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function readManifest(dir: string): Manifest {
  try {
    return JSON.parse(Deno.readTextFileSync(`${dir}/${MANIFEST}`)) as Manifest;
  } catch {
    return { version: VERSION, laid: [], backups: [] };
  }
}

function isOurs(path: string): boolean {
  try {
    if (Deno.lstatSync(path).isSymlink) return Deno.readLinkSync(path) === LAUNCHER;
    return Deno.readTextFileSync(path).includes("laid by 'onestor install'");
  } catch {
    return false;
  }
}

function layDriver(
  dir: string,
  entries: { name: string; content?: string }[],
  launcher: string,
): { count: number; backedUp: number } {
  Deno.mkdirSync(dir, { recursive: true });
  const manifest = readManifest(dir);
  const laid = new Set(manifest.laid);
  const backups = new Set(manifest.backups);
  const write = (name: string, text: string) => {
    const tmp = `${dir}/.${name}.tmp-${Deno.pid}`;
    Deno.writeTextFileSync(tmp, text, { mode: 0o755 });
    Deno.chmodSync(tmp, 0o755);
    Deno.renameSync(tmp, `${dir}/${name}`);
    laid.add(name);
  };
  write(LAUNCHER, launcher);
  let backedUp = 0;
  for (const entry of entries) {
    const path = `${dir}/${entry.name}`;
    if (exists(path) && !isOurs(path) && !laid.has(entry.name)) {
      Deno.mkdirSync(`${dir}/${BACKUP_DIR}`, { recursive: true });
      Deno.renameSync(path, `${dir}/${BACKUP_DIR}/${entry.name}`);
      backups.add(entry.name);
      backedUp++;
    }
    if (entry.content !== undefined) {
      if (exists(path) && Deno.lstatSync(path).isSymlink) Deno.removeSync(path);
      write(entry.name, entry.content);
      continue;
    }
    if (exists(path)) {
      if (Deno.lstatSync(path).isSymlink && Deno.readLinkSync(path) === LAUNCHER) {
        laid.add(entry.name);
        continue;
      }
      Deno.removeSync(path);
    }
    Deno.symlinkSync(LAUNCHER, path);
    laid.add(entry.name);
  }
  const next: Manifest = { version: VERSION, laid: [...laid].sort(), backups: [...backups].sort() };
  Deno.writeTextFileSync(`${dir}/${MANIFEST}`, JSON.stringify(next, null, 2) + "\n");
  return { count: entries.length, backedUp };
}

function checkNames(options: InstallOptions): void {
  for (const name of [options.tmName, options.dsName]) {
    if (!NAME.test(name)) {
      throw new InputError(`Invalid driver name '${name}': use letters, digits, '-' and '_' only`);
    }
  }
}

/** Installs (or refreshes: it is idempotent) both drivers. */
export async function installDrivers(options: InstallOptions): Promise<InstallReport> {
  checkNames(options);
  const denoPath = options.denoPath ?? Deno.execPath();
  // Run from a bundle, this module's own URL is the bundle's: the launcher names the checkout.
  const mainPath = options.mainPath ?? Deno.env.get("ONESTOR_MAIN") ??
    new URL("../../main.ts", import.meta.url).pathname;
  const bundleDir = options.bundleDir === undefined ? `${frontendStateDir()}/bundle` : options.bundleDir;
  const entry = bundleDir === null ? null : await buildBundle(denoPath, mainPath, bundleDir);
  const denoDir = entry ? actionDenoDir(bundleDir!) : null;
  const launcher = launcherScript(denoPath, mainPath, entry, denoDir);
  const tmDir = `${options.remotes}/tm/${options.tmName}`;
  const dsDir = `${options.remotes}/datastore/${options.dsName}`;
  const tmEntries = TM_ACTIONS.map((a) => ({
    name: a.name,
    content: HOST_SIDE_TM_ACTIONS.includes(a.name) ? hostScriptFor(a.name, options.tmName) : undefined,
  }));
  const tm = layDriver(tmDir, tmEntries, launcher);
  const ds = layDriver(dsDir, DS_ACTIONS.map((a) => ({ name: a.name })), launcher);
  return {
    version: VERSION,
    tmDir,
    dsDir,
    tmActions: tm.count,
    dsActions: ds.count,
    backedUp: tm.backedUp + ds.backedUp,
    bundle: entry,
  };
}

function removeDriver(dir: string): number {
  const manifest = readManifest(dir);
  let removed = 0;
  for (const name of manifest.laid) {
    const path = `${dir}/${name}`;
    if (!exists(path)) continue;
    Deno.removeSync(path);
    removed++;
  }
  for (const name of manifest.backups) {
    const backup = `${dir}/${BACKUP_DIR}/${name}`;
    if (exists(backup) && !exists(`${dir}/${name}`)) Deno.renameSync(backup, `${dir}/${name}`);
  }
  for (const leftover of [`${dir}/${BACKUP_DIR}`, `${dir}/${MANIFEST}`, dir]) {
    try {
      Deno.removeSync(leftover); // only succeeds when empty (or the manifest file)
    } catch {
      // Not empty: it holds files that are not ours.
    }
  }
  return removed;
}

/** Removes exactly what {@linkcode installDrivers} laid and puts back the stock files it replaced. */
export function uninstallDrivers(options: InstallOptions): Promise<number> {
  checkNames(options);
  return Promise.resolve(
    removeDriver(`${options.remotes}/tm/${options.tmName}`) +
      removeDriver(`${options.remotes}/datastore/${options.dsName}`),
  );
}

const STOCK_TM = "dummy,lvm,shared,fs_lvm,fs_lvm_ssh,qcow2,ssh,local,ceph,dev,iscsi_libvirt,netapp,purefa";
const STOCK_DS = "dummy,fs,lvm,ceph,dev,iscsi_libvirt,restic,rsync,netapp,purefa,virtiofs,interactive";
const STOCK_DS_SYSTEM = "dummy,lvm,shared,ssh,local,ceph,fs_lvm,fs_lvm_ssh,qcow2,netapp,purefa";

function addTo(list: string, name: string): string {
  return list.split(",").includes(name) ? list : `${list},${name}`;
}

/** The oned.conf lines that enable the installed drivers (spec §1.2, §1.5, §9.1). */
export function onedConfLines(options: Pick<InstallOptions, "tmName" | "dsName">): string {
  const lines = [
    "# Add to /etc/one/oned.conf (then restart oned):",
    `TM_MAD = [ EXECUTABLE = "one_tm", ARGUMENTS = "-t 15 -d ${addTo(STOCK_TM, options.tmName)}" ]`,
    `DATASTORE_MAD = [ EXECUTABLE = "one_datastore", ARGUMENTS = "-t 15 -d ${
      addTo(STOCK_DS, options.dsName)
    } -s ${addTo(STOCK_DS_SYSTEM, options.tmName)}" ]`,
  ];
  if (options.tmName !== "ssh") {
    lines.push(
      `TM_MAD_CONF = [ NAME = "${options.tmName}", LN_TARGET = "SYSTEM", CLONE_TARGET = "SYSTEM", SHARED = "NO",`,
      `  ALLOW_ORPHANS = "YES", DS_MIGRATE = "YES", DS_LIVE_MIGRATE = "YES", DS_MIGRATE_SNAP = "YES" ]`,
    );
  } else {
    lines.push("# TM_MAD_CONF for ssh is already in the stock oned.conf.");
  }
  if (options.dsName !== "fs") {
    lines.push(
      `DS_MAD_CONF = [ NAME = "${options.dsName}", REQUIRED_ATTRS = "", PERSISTENT_ONLY = "NO",`,
      `  MARKETPLACE_ACTIONS = "export" ]`,
    );
  } else {
    lines.push("# DS_MAD_CONF for fs is already in the stock oned.conf.");
  }
  lines.push(
    "# Then run 'onehost sync --force' so the hosts get the host-side scripts (monitor_ds).",
  );
  return lines.join("\n");
}
