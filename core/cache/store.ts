/**
 * The replica side of the cache: short shell scripts that read the cache records of an image
 * folder and change them. Every change is a transaction that runs under an flock on
 * `<folder>/.onestor.lock` *on the replica* (so processes on any number of front-ends agree) and
 * is conditional: it states the exact content it expects each record file to have (or that it is
 * absent), and applies its operations only when they all still match. The decisions themselves
 * (is this lease expired? can this entry be evicted?) are made in TypeScript from a read, and the
 * condition makes them safe against anything that changed in between: the caller reads again
 * and decides again.
 *
 * Record files are written to a temporary name and renamed, so readers that do not take the lock
 * (the cheap hit check) always see a whole record or none.
 *
 * @module
 */

import { confine, type Confinement, type ConfineTargets, replicaConfinement } from "../remote/confine.ts";
import type { HostRunner } from "../remote/runner.ts";
import { getConfig } from "../runtime.ts";
import { joinScripts, raw, sh, type ShellScript } from "../remote/shell.ts";
import {
  type CachedFile,
  entryName,
  FILL_PREFIX,
  leaseName,
  LOCK_NAME,
  LOG_NAME,
  parsePin,
  type Pin,
  PIN_INFIX,
} from "./entry.ts";

/** What the hit check reads about one image on the replica. */
export interface ImageState {
  /** Replica clock, epoch seconds. */
  now: number;
  /** Text of `<hash>.onestor.json`, null when absent. */
  entryText: string | null;
  /** Text of `<hash>.onestor-lease.json`, null when absent. */
  leaseText: string | null;
  /** mtime of the entry record (its last use), null when absent. */
  entryMtime: number | null;
  /** Pins (live or not) of the image, from its pin files. */
  pins: Pin[];
  /** The image file, its `.snap` folder and the files in it, as they are now. */
  files: CachedFile[];
}

/** A top-level name in a cache folder that is not a record (an image, a `.snap` folder, a fill folder). */
export interface FolderItem {
  name: string;
  /** Allocated bytes (du). */
  allocated: number;
  /** Modification time, epoch seconds. */
  mtime: number;
}

/** Everything in one cache folder on the replica, for eviction and `onestor cache ls`. */
export interface FolderState {
  /** The folder. */
  dir: string;
  now: number;
  /** Entry texts by image name. */
  entries: Map<string, string>;
  /** Lease texts by image name. */
  leases: Map<string, string>;
  /** Record mtimes (last use) by image name. */
  entryMtimes?: Map<string, number>;
  /** Pins (live or not) by image name. */
  pins?: Map<string, Pin[]>;
  /** Images, `.snap` folders, fill folders and anything else, with their sizes. */
  items: FolderItem[];
  /** Every file and folder except inside fill folders, as {@linkcode ImageState.files} lists them. */
  files: CachedFile[];
  /** The replica filesystem holding the folder, in bytes. */
  fs: { total: number; used: number; available: number };
}

/**
 * The cache folders on a replica: the folders under `dsLocation` (the parent of the image
 * datastore folders) marked `replica` in their `.monitor` file.
 */
export async function cacheFolders(
  runner: HostRunner,
  replica: string,
  dsLocation: string,
  options: StoreOptions = {},
): Promise<string[]> {
  const out = await runner.output(
    replica,
    sh`cd -- ${dsLocation} 2>/dev/null || exit 0
for d in */; do
  d=\${d%/}
  if [ "$(cat "$d/.monitor" 2>/dev/null)" = replica ]; then printf 'ONESTOR_DIR %s\n' "$d"; fi
done`,
    { what: `Error listing the cache folders in ${dsLocation}`, timeoutMs: options.timeoutMs },
  );
  const base = dsLocation.replace(/\/+$/, "");
  return markerLines(out, "ONESTOR_DIR").map((d) => `${base}/${d}`).sort();
}

/** One operation of a transaction; names are relative to the cache folder. */
export type StoreOp =
  | { op: "write"; name: string; text: string }
  | { op: "remove"; name: string }
  | { op: "move"; from: string; to: string }
  | { op: "removePins"; image: string }
  | { op: "log"; event: Record<string, unknown> };

/** Outcome of {@linkcode transact}. */
export type TransactResult = "committed" | "conflict" | "busy";

/** Options of the store calls. */
export interface StoreOptions {
  /** Timeout of the remote command in milliseconds (0: none). */
  timeoutMs?: number;
  /** Where the scripts that change the folder may write (checked on the replica); none: unchecked. */
  confine?: Confinement;
}

/** The confinement prologue of a change in `dir` on `replica`, or nothing without a confinement. */
function guard(options: StoreOptions, replica: string, dir: string, targets: ConfineTargets): ShellScript {
  if (!options.confine) return sh`:`;
  const at = (names: readonly string[] | undefined) => (names ?? []).map((n) => `${dir}/${n}`);
  return confine(options.confine, replica, { write: at(targets.write), remove: at(targets.remove) });
}

function checkName(name: string): string {
  if (
    name === "" || name.startsWith("/") || name.split("/").some((p) => p === ".." || p === "" || p === ".")
  ) {
    throw new TypeError(`Bad cache file name ${name}`);
  }
  return name;
}

const b64decode = (text: string): string =>
  new TextDecoder().decode(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)));

/** Parses `stat -c '%F|%s|%Y|%b|%B|%n'` lines. */
export function parseStatLines(lines: readonly string[]): CachedFile[] {
  const out: CachedFile[] = [];
  for (const line of lines) {
    const [kind, size, mtime, blocks, unit, ...rest] = line.split("|");
    const name = rest.join("|");
    if (!name || size === undefined) continue;
    const type = kind.startsWith("regular")
      ? "f"
      : kind === "directory"
      ? "d"
      : kind === "symbolic link"
      ? "l"
      : null;
    if (type === null) continue;
    out.push({
      name,
      type,
      size: Number(size),
      mtime: Number(mtime),
      allocated: Number(blocks) * Number(unit),
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The shell lines that print `ONESTOR_STAT <stat line>` for `image`, `image.snap` and what it holds. */
export function statScript(image: string): ShellScript {
  return sh`for f in ${image} ${`${image}.snap`} ${`${image}.snap`}/* ${`${image}.snap`}/.[!.]*; do
  if [ -e "$f" ] || [ -L "$f" ]; then stat -c 'ONESTOR_STAT %F|%s|%Y|%b|%B|%n' -- "$f" || exit 75; fi
done`;
}

function markerLines(stdout: string, marker: string): string[] {
  const prefix = `${marker} `;
  return stdout.split("\n").filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));
}

function markerValue(stdout: string, key: string): string | undefined {
  return stdout.match(new RegExp(`^${key}=(\\S*)$`, "m"))?.[1];
}

/** Creates the cache folder on the replica and its `.monitor` marker (content `replica`, spec §4.3). */
export async function ensureCacheDir(
  runner: HostRunner,
  replica: string,
  dir: string,
  options: StoreOptions = {},
): Promise<void> {
  await runner.run(
    replica,
    sh`${guard(options, replica, dir, { write: [".monitor"] })}
mkdir -p -- ${dir} && cd -- ${dir} || exit 73
if [ "$(cat .monitor 2>/dev/null)" != replica ]; then
  printf 'replica\\n' >.monitor.tmp.$$ && mv -f .monitor.tmp.$$ .monitor || exit 73
fi`,
    { what: `Error creating the cache folder ${dir}`, timeoutMs: options.timeoutMs },
  );
}

/** Reads the records and files of one image (no lock: records are replaced by rename). */
export async function readImageState(
  runner: HostRunner,
  replica: string,
  dir: string,
  image: string,
  options: StoreOptions = {},
): Promise<ImageState> {
  checkName(image);
  const out = await runner.output(
    replica,
    sh`cd -- ${dir} 2>/dev/null || { echo ONESTOR_NODIR; exit 0; }
echo "ONESTOR_NOW=$(date +%s)"
for f in ${entryName(image)} ${leaseName(image)} ${raw(`${quoteGlob(image)}${PIN_INFIX}*`)}; do
  if [ -f "$f" ]; then printf 'ONESTOR_RECORD %s %s %s\\n' "$f" "$(stat -c %Y -- "$f")" "$(base64 -w0 <"$f")"; fi
done
${statScript(image)}`,
    { what: `Error reading the cache state of ${dir}/${image}`, timeoutMs: options.timeoutMs },
  );
  const records = parseRecordLines(markerLines(out, "ONESTOR_RECORD"));
  const entry = records.get(entryName(image));
  return {
    now: Number(markerValue(out, "ONESTOR_NOW") ?? Math.floor(Date.now() / 1000)),
    entryText: entry?.text ?? null,
    leaseText: records.get(leaseName(image))?.text ?? null,
    entryMtime: entry?.mtime ?? null,
    pins: [...records].filter(([name]) => name.startsWith(`${image}${PIN_INFIX}`))
      .map(([, r]) => parsePin(r.text)).filter((p): p is Pin => p !== null),
    files: parseStatLines(markerLines(out, "ONESTOR_STAT")),
  };
}

/** Parses `ONESTOR_RECORD <name> <mtime> <base64>` lines. */
export function parseRecordLines(lines: readonly string[]): Map<string, { mtime: number; text: string }> {
  return new Map(lines.map((l) => {
    const [name, mtime, data = ""] = l.split(" ");
    return [name, { mtime: Number(mtime), text: b64decode(data) }] as const;
  }));
}

/** A file name as a glob pattern (its metacharacters escaped), for names we made ourselves. */
function quoteGlob(name: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new TypeError(`Bad cache file name ${name}`);
  return name;
}

/** Reads every record and item of a cache folder. */
export async function readFolderState(
  runner: HostRunner,
  replica: string,
  dir: string,
  options: StoreOptions = {},
): Promise<FolderState> {
  const out = await runner.output(
    replica,
    sh`cd -- ${dir} 2>/dev/null || { echo ONESTOR_NODIR; exit 0; }
echo "ONESTOR_NOW=$(date +%s)"
df -B1 -P . | { read -r _; read -r _ total used avail _ && echo "ONESTOR_FS=$total,$used,$avail"; }
for f in * .onestor-fill-*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  case "$f" in
  *.tmp.*) ;;
  *.onestor.json | *.onestor-lease.json | *${raw(PIN_INFIX)}*)
    printf 'ONESTOR_RECORD %s %s %s\\n' "$f" "$(stat -c %Y -- "$f")" "$(base64 -w0 <"$f")" ;;
  *)
    printf 'ONESTOR_ITEM %s|%s|%s\\n' "$(du -sB1 -- "$f" | cut -f1)" "$(stat -c %Y -- "$f")" "$f"
    case "$f" in
    .onestor-fill-*) ;;
    *.snap) stat -c 'ONESTOR_STAT %F|%s|%Y|%b|%B|%n' -- "$f" "$f"/* "$f"/.[!.]* 2>/dev/null ;;
    *) stat -c 'ONESTOR_STAT %F|%s|%Y|%b|%B|%n' -- "$f" ;;
    esac
    ;;
  esac
done`,
    { what: `Error reading the cache folder ${dir}`, timeoutMs: options.timeoutMs },
  );
  return parseFolderOutput(dir, out);
}

/** Parses the output of the folder-state lines (readFolderState, and the scan of scripts.ts). */
export function parseFolderOutput(dir: string, out: string): FolderState {
  const entries = new Map<string, string>();
  const leases = new Map<string, string>();
  const entryMtimes = new Map<string, number>();
  const pins = new Map<string, Pin[]>();
  for (const [name, record] of parseRecordLines(markerLines(out, "ONESTOR_RECORD"))) {
    if (name.endsWith(".onestor.json")) {
      const image = name.slice(0, -".onestor.json".length);
      entries.set(image, record.text);
      entryMtimes.set(image, record.mtime);
    } else if (name.endsWith(".onestor-lease.json")) {
      leases.set(name.slice(0, -".onestor-lease.json".length), record.text);
    } else if (name.includes(PIN_INFIX)) {
      const image = name.slice(0, name.indexOf(PIN_INFIX));
      const pin = parsePin(record.text);
      if (pin) pins.set(image, [...(pins.get(image) ?? []), pin]);
    }
  }
  const items = markerLines(out, "ONESTOR_ITEM").map((line) => {
    const [allocated, mtime, ...rest] = line.split("|");
    return { name: rest.join("|"), allocated: Number(allocated), mtime: Number(mtime) };
  });
  const [total = 0, used = 0, available = 0] = (markerValue(out, "ONESTOR_FS") ?? "").split(",").map(Number);
  return {
    dir,
    now: Number(markerValue(out, "ONESTOR_NOW") ?? Math.floor(Date.now() / 1000)),
    entries,
    leases,
    entryMtimes,
    pins,
    items,
    files: parseStatLines(markerLines(out, "ONESTOR_STAT")),
    fs: { total, used, available },
  };
}

function opScript(op: StoreOp): ShellScript {
  switch (op.op) {
    case "write": {
      const name = checkName(op.name);
      return sh`printf '%s' ${op.text} >${name}.tmp.$$ && mv -f -- ${name}.tmp.$$ ${name} || exit 74`;
    }
    case "remove":
      return sh`rm -rf -- ${checkName(op.name)} || exit 74`;
    case "move": {
      const from = checkName(op.from);
      const to = checkName(op.to);
      // A file replaces its target atomically; a folder cannot replace one, so the old one goes first.
      return sh`if [ -e ${from} ] || [ -L ${from} ]; then
  if [ -d ${from} ] && [ ! -L ${from} ]; then rm -rf -- ${to} || exit 74; fi
  mv -f -- ${from} ${to} || exit 74
fi`;
    }
    case "removePins":
      return sh`rm -f -- ${raw(`${quoteGlob(op.image)}${PIN_INFIX}`)}* || exit 74`;
    case "log":
      return sh`printf '%s\\n' ${JSON.stringify(op.event)} >>${LOG_NAME} 2>/dev/null || true`;
  }
}

/** A conditional change of a cache folder (see {@linkcode transact}). */
export interface StoreChange {
  /** Files that must have exactly this text (null: be absent). */
  expect: Record<string, string | null>;
  /** Images that must have no live pin (a pin file whose `expires_at` is still ahead). */
  unpinned?: readonly string[];
  ops: readonly StoreOp[];
  lockWaitSeconds?: number;
}

/**
 * The checks and operations of a change, for a script that holds the folder's lock and sits in
 * the folder: when a check fails it runs `onConflict` (which must leave the script or the block).
 */
export function changeScript(change: StoreChange, onConflict: ShellScript): ShellScript {
  const checks = Object.entries(change.expect).map(([name, text]) => {
    checkName(name);
    if (text === null) return sh`if [ -e ${name} ] || [ -L ${name} ]; then ${onConflict}; fi`;
    const b64 = btoa(String.fromCharCode(...new TextEncoder().encode(text)));
    return sh`if [ ! -f ${name} ] || [ "$(base64 -w0 <${name})" != ${b64} ]; then ${onConflict}; fi`;
  });
  const pins = (change.unpinned ?? []).map((image) =>
    sh`for p in ${raw(`${quoteGlob(image)}${PIN_INFIX}`)}*; do
  [ -f "$p" ] || continue
  e=$(sed -n 's/.*"expires_at":\\([0-9]*\\)}$/\\1/p' "$p")
  if [ "\${e:-0}" -gt "$(date +%s)" ]; then ${onConflict}; fi
done`
  );
  // The log line is written first so that a later failing operation is still traced.
  const ordered = [...change.ops.filter((o) => o.op === "log"), ...change.ops.filter((o) => o.op !== "log")];
  return joinScripts([...checks, ...pins, ...ordered.map(opScript)]);
}

/**
 * Applies `ops` in the cache folder `dir` on the replica, under its lock, if every file named in
 * `expect` still has the given text (null: absent). Returns "conflict" when one does not, "busy"
 * when the lock could not be taken within `lockWaitSeconds`.
 */
export async function transact(
  runner: HostRunner,
  replica: string,
  dir: string,
  change: StoreChange,
  options: StoreOptions = {},
): Promise<TransactResult> {
  const written = [LOCK_NAME];
  const removed: string[] = [];
  for (const op of change.ops) {
    if (op.op === "write") written.push(op.name, `${op.name}.tmp.x`);
    else if (op.op === "remove") removed.push(op.name);
    else if (op.op === "move") removed.push(op.from), written.push(op.to);
    else if (op.op === "removePins") removed.push(`${op.image}${PIN_INFIX}x`);
    else written.push(LOG_NAME);
  }
  const out = await runner.output(
    replica,
    sh`${guard(options, replica, dir, { write: written, remove: removed })}
cd -- ${dir} || exit 73
exec 9>>${LOCK_NAME} || exit 73
flock -w ${change.lockWaitSeconds ?? 30} 9 || { echo ONESTOR_BUSY; exit 0; }
${changeScript(change, sh`echo ONESTOR_CONFLICT; exit 0`)}
echo ONESTOR_COMMITTED`,
    { what: `Error changing the cache records in ${dir}`, timeoutMs: options.timeoutMs },
  );
  if (/^ONESTOR_COMMITTED$/m.test(out)) return "committed";
  if (/^ONESTOR_BUSY$/m.test(out)) return "busy";
  return "conflict";
}

/** Whether a top-level name in a cache folder is a fill folder. */
export function isFillFolder(name: string): boolean {
  return name.startsWith(FILL_PREFIX);
}

/**
 * One cache folder on one replica, with the replica's clock: every read records the offset
 * between the replica's clock and this process's, so records can be stamped in replica time.
 */
export class ReplicaFolder {
  /** Runs the scripts. */
  readonly runner: HostRunner;
  /** Replica host name. */
  readonly replica: string;
  /** Absolute folder (same path as the image datastore on the front-end). */
  readonly dir: string;
  /** Timeout of each control command in milliseconds (0: none). */
  readonly timeoutMs: number;
  /** Where scripts on the replica may write (default: DATASTORE_LOCATION and REPLICA_RECOVERY_SNAPS_DIR). */
  readonly confine: Confinement;
  #offset = 0;

  constructor(runner: HostRunner, replica: string, dir: string, timeoutMs = 0, confine?: Confinement) {
    this.runner = runner;
    this.replica = replica;
    this.dir = dir;
    this.timeoutMs = timeoutMs;
    this.confine = confine ?? replicaConfinement(getConfig());
  }

  /** The replica's clock now (epoch seconds), estimated from the last read. */
  now(): number {
    return Math.floor(Date.now() / 1000 + this.#offset);
  }

  #sync(replicaNow: number): void {
    this.#offset = replicaNow - Date.now() / 1000;
  }

  /** Records the replica's clock as a script printed it. */
  observe(replicaNow: number): void {
    this.#sync(replicaNow);
  }

  /** Creates the folder and its `.monitor` marker. */
  ensure(): Promise<void> {
    return ensureCacheDir(this.runner, this.replica, this.dir, {
      timeoutMs: this.timeoutMs,
      confine: this.confine,
    });
  }

  /** Reads the records and files of one image. */
  async image(image: string): Promise<ImageState> {
    const state = await readImageState(this.runner, this.replica, this.dir, image, {
      timeoutMs: this.timeoutMs,
    });
    this.#sync(state.now);
    return state;
  }

  /** Reads the whole folder. */
  async folder(): Promise<FolderState> {
    const state = await readFolderState(this.runner, this.replica, this.dir, { timeoutMs: this.timeoutMs });
    this.#sync(state.now);
    return state;
  }

  /** A conditional change (see {@linkcode transact}). */
  transact(change: Parameters<typeof transact>[3]): Promise<TransactResult> {
    return transact(this.runner, this.replica, this.dir, change, {
      timeoutMs: this.timeoutMs,
      confine: this.confine,
    });
  }
}
