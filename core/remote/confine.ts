/**
 * Confinement: the one place that decides whether a path may be written, moved or deleted.
 *
 * A driver action writes where its arguments say (`clone … hv1:/var/lib/one/datastores/0/7/disk.0`),
 * so a wrong or hostile argument, or a symlink planted inside a datastore, could make it overwrite
 * or delete anything the driver's user may touch. Every script that writes, moves or deletes an
 * argument-derived path therefore starts with {@linkcode confine}: a shell function plus one call
 * per target, emitted at the top of the very script that then writes, so the check runs on the host
 * where the write happens, on that host's view of the path, right before the write.
 *
 * How a target is judged (on the host, by `realpath -m` from GNU coreutils):
 * - `write` (a file or folder created or replaced, the destination of a `mv`, a `mkdir -p`): the
 *   whole path is resolved, symlinks followed, so writing through a link that leads out is refused;
 * - `remove` (an `rm`, the source of a `mv`): the parent is resolved and the last component kept, so
 *   deleting a symlink that points outside is allowed (the link goes, its target stays) while
 *   reaching through a linked parent is not;
 * - the resolved path must be strictly inside one of the allowed roots, each resolved the same way
 *   on that host (a root may itself be a symlink, e.g. /var/lib/one/datastores -> /data). A root
 *   itself is never a target.
 *
 * A refusal prints a marker line on stderr and ends the script with exit code
 * {@linkcode CONFINE_EXIT}; {@linkcode HostRunner} turns that marker into a
 * {@linkcode ConfinementError}: one line naming the host, the path, what it resolved to, the
 * allowed roots and the setting that defines them. Before anything runs, {@linkcode confine} also
 * refuses a path whose normalised spelling is outside every root (an early, clear error for
 * `..` or a foreign prefix); the remote check on the resolved path is the authoritative one.
 *
 * Which roots apply (built by the functions below, from the configuration):
 * - TM actions on hypervisors and the front-end: DATASTORE_LOCATION ({@linkcode tmConfinement});
 * - on a replica: DATASTORE_LOCATION and REPLICA_RECOVERY_SNAPS_DIR ({@linkcode replicaConfinement});
 * - backups: DATASTORE_LOCATION and BACKUP_BASE_PATH ({@linkcode backupConfinement});
 * - datastore actions: the datastore's BASE_PATH, plus its STAGING_DIR on bridge hosts
 *   ({@linkcode datastoreConfinement}).
 * Scratch folders a script makes itself with `mktemp -d` (no argument controls their place) are not
 * argument-derived and need no check.
 *
 * @example
 * ```ts
 * const c = tmConfinement(config);
 * await runner.run(host, confined(c, host, { remove: [disk] }, sh`rm -rf -- ${disk}`));
 * ```
 *
 * @module
 */

import { OneStorError } from "../errors.ts";
import { raw, sh, type ShellScript } from "./shell.ts";

/** Exit code of a script that refused a target (distinct from the codes of the copy scripts). */
export const CONFINE_EXIT = 86;

/** Start of the stderr line a refusal prints; fields after it are tab-separated. */
export const CONFINE_MARKER = "ONESTOR_CONFINE_REFUSED";

/** Where a script may write, move or delete, and which setting says so. */
export interface Confinement {
  /** Absolute folders; a target must resolve strictly inside one of them. */
  readonly roots: readonly string[];
  /** The setting(s) that define the roots, named in a refusal (e.g. `DATASTORE_LOCATION in onestor.conf`). */
  readonly setting: string;
}

/** How a target is used: written (followed to the end) or removed (its parent followed). */
export type ConfineMode = "write" | "remove";

/** The targets of one script. */
export interface ConfineTargets {
  /** Paths created, replaced or moved onto. */
  write?: readonly string[];
  /** Paths deleted or moved away. */
  remove?: readonly string[];
}

/** A path resolved outside every allowed root; nothing was written. */
export class ConfinementError extends OneStorError {
  /** Host where the path was judged (`front-end` for this machine). */
  readonly host: string;
  /** The path as the action was asked to use it. */
  readonly path: string;
  /** What it resolved to (on the host; the normalised spelling for the early check). */
  readonly resolved: string;
  /** The allowed roots (resolved on the host when the host refused). */
  readonly roots: readonly string[];
  /** Whether the path was to be written or removed. */
  readonly mode: ConfineMode;
  constructor(details: {
    host: string;
    path: string;
    resolved: string;
    roots: readonly string[];
    setting: string;
    mode: ConfineMode;
    reason?: string;
  }) {
    const verb = details.mode === "remove" ? "delete" : "write";
    const where = details.reason ??
      `it resolves to ${details.resolved}, outside ${
        details.roots.length ? details.roots.join(" and ") : "every allowed folder"
      }`;
    super(
      `Refused to ${verb} ${details.host}:${details.path}: ${where} (allowed by ${details.setting}; ` +
        `change that setting if this path is meant to be used)`,
    );
    this.name = "ConfinementError";
    this.host = details.host;
    this.path = details.path;
    this.resolved = details.resolved;
    this.roots = details.roots;
    this.mode = details.mode;
  }
}

/**
 * Lexical normal form of an absolute path: runs of `/` collapsed, `.` dropped, `..` applied, no
 * trailing `/`. Symlinks are not looked at (that is the remote check's job).
 */
export function normalizePath(path: string): string {
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

/** Whether `path` (normalised) is strictly inside `root` (normalised). */
function strictlyInside(path: string, root: string): boolean {
  return root === "/" ? path !== "/" : path.startsWith(root + "/");
}

/**
 * The early check, on the front-end, of the spelling of a target: absolute, free of control
 * characters, and strictly inside a root once normalised. Throws a {@linkcode ConfinementError}.
 */
export function precheck(c: Confinement, host: string, path: string, mode: ConfineMode): void {
  const fail = (resolved: string, reason?: string) => {
    throw new ConfinementError({ host, path, resolved, roots: c.roots, setting: c.setting, mode, reason });
  };
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(path)) fail(path, "the path holds control characters");
  if (!path.startsWith("/")) fail(path, "it is not an absolute path");
  if (c.roots.length === 0) fail(normalizePath(path), "no folder is allowed for this operation");
  const normal = normalizePath(path);
  if (!c.roots.some((r) => strictlyInside(normal, normalizePath(r)))) fail(normal);
}

/**
 * The shell functions of a confinement for `host` (the label a refusal names):
 * - `onestor_confine MODE PATH` judges one path (for paths known only on the host, e.g. `$PWD/...`);
 * - `onestor_confine_judge MODE` judges `$_oc_p`, already resolved into `$_oc_r`, against the roots
 *   resolved into `$_oc_rr0`, `$_oc_rr1`...;
 * - `onestor_confine_refuse MODE` prints the refusal and ends the script.
 * A refusal exits the script with {@linkcode CONFINE_EXIT}; call them at the top level of the
 * script (in a subshell `exit` would only end the subshell).
 */
export function confineFunction(c: Confinement, host: string): ShellScript {
  const roots: readonly string[] = c.roots;
  // The roots are resolved once per script, at the first call, into one variable each: a script
  // checks several targets, and each command substitution is a fork that costs about 10 ms on a
  // busy host. The cache is keyed by the roots' spelling, so a script that defines the function
  // again for other roots resolves those.
  const resolveRoots =
    roots.map((r, i) =>
      sh`    _oc_rr${raw(String(i))}=$(realpath -m -- ${r} 2>/dev/null) || _oc_rr${raw(String(i))}=`.text
    ).join("\n") || "    :";
  const matchRoots = roots.map((_, i) => {
    const v = `_oc_rr${i}`;
    return `  if [ -n "$${v}" ]; then case $_oc_r in "\${${v}%/}"/?*) return 0 ;; esac; fi`;
  }).join("\n") || "  :";
  return sh`onestor_confine() {
  _oc_p=$2
  case $1:$_oc_p in
    *:/*) ;;
    *) _oc_r="(not an absolute path)"; onestor_confine_refuse "$1" ;;
  esac
  case $1:$_oc_p in
    remove:*/ | remove:*/. | remove:*/.. | write:*)
      _oc_r=$(realpath -m -- "$_oc_p" 2>&1) || _oc_r="(cannot resolve: $_oc_r)" ;;
    *) _oc_d=\${_oc_p%/*}
      if _oc_r=$(realpath -m -- "\${_oc_d:-/}" 2>&1); then _oc_r=\${_oc_r%/}/\${_oc_p##*/}
      else _oc_r="(cannot resolve: $_oc_r)"; fi ;;
  esac
  if [ "\${_oc_roots_of:-}" != ${rootsKey(roots)} ]; then
    _oc_roots_of=${rootsKey(roots)}
${raw(resolveRoots)}
  fi
  onestor_confine_judge "$1"
}
onestor_confine_judge() {
${raw(matchRoots)}
  onestor_confine_refuse "$1"
}
onestor_confine_refuse() {
  { printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s' ${CONFINE_MARKER} ${host} "$1" "$_oc_p" "$_oc_r" ${c.setting}
    for _oc_root in ${roots}; do
      printf '\\t%s' "$(realpath -m -- "$_oc_root" 2>/dev/null || printf '%s' "$_oc_root")"
    done
    echo; } >&2
  exit ${CONFINE_EXIT}
}`;
}

/** The key under which a script caches the resolved roots (their spelling). */
function rootsKey(roots: readonly string[]): string {
  return `roots:${JSON.stringify(roots)}`;
}

/** What `realpath` resolves for a target, and what is appended to the result (see the module doc). */
function resolveInput(mode: ConfineMode, path: string): { input: string; last: string | null } {
  if (mode === "write" || /\/(\.\.?)?$/.test(path)) return { input: path, last: null };
  const slash = path.lastIndexOf("/");
  return { input: path.slice(0, slash) || "/", last: path.slice(slash + 1) };
}

/**
 * The confinement prologue of a script: {@linkcode confineFunction} and the judgement of every
 * target. Each target is prechecked here first ({@linkcode precheck}), so a path that is outside by
 * its spelling fails before anything runs.
 *
 * On the host, the roots and all targets are resolved by one `realpath` (one process, where one
 * per path and root cost a deployment a dozen forks of ~5-10 ms each on a busy host). Its lines are
 * taken only when it resolved every path and printed exactly one line per path (followed by a
 * sentinel); otherwise, e.g. when a resolved path holds a newline, each target is judged on its
 * own by `onestor_confine`, which also names what could not be resolved.
 */
export function confine(c: Confinement, host: string | null, targets: ConfineTargets): ShellScript {
  const label = host ?? "front-end";
  const checks: { mode: ConfineMode; path: string }[] = [];
  for (const [mode, paths] of [["write", targets.write], ["remove", targets.remove]] as const) {
    for (const path of paths ?? []) {
      precheck(c, label, path, mode);
      checks.push({ mode, path });
    }
  }
  const functions = confineFunction(c, label);
  if (checks.length === 0) return functions;
  const slow = checks.map(({ mode, path }) => sh`onestor_confine ${mode} ${path}`.text).join("\n");
  // Roots from the configuration are not prechecked: one with a control character takes the slow way.
  // deno-lint-ignore no-control-regex
  if (c.roots.some((r) => /[\x00-\x1f\x7f]/.test(r))) return sh`${functions}\n${raw(slow)}`;
  const inputs = [...c.roots, ...checks.map(({ mode, path }) => resolveInput(mode, path).input)];
  const pops = inputs.map((_, i) => `  _oc_x${i}=\${_oc_b%%"$_oc_nl"*}; _oc_b=\${_oc_b#*"$_oc_nl"}`).join(
    "\n",
  );
  const setRoots = c.roots.map((_, i) => `  _oc_rr${i}=$_oc_x${i}`).join("\n");
  const judge = checks.map(({ mode, path }, k) => {
    const { last } = resolveInput(mode, path);
    const x = `$_oc_x${c.roots.length + k}`;
    const resolved = last === null
      ? raw(`"${x}"`)
      : sh`"\${_oc_x${raw(String(c.roots.length + k))}%/}"/${last}`;
    return sh`  _oc_p=${path}; _oc_r=${resolved}; onestor_confine_judge ${mode}`.text;
  }).join("\n");
  return sh`${functions}
_oc_nl='
'
if _oc_b=$(realpath -m -- ${inputs} 2>/dev/null && echo .); then
${raw(pops)}
fi
if [ "$_oc_b" = . ]; then
  _oc_roots_of=${rootsKey(c.roots)}
${raw(setRoots)}
${raw(judge)}
else
${raw(slow)}
fi`;
}

/** `script` preceded by the confinement prologue of its targets (see {@linkcode confine}). */
export function confined(
  c: Confinement,
  host: string | null,
  targets: ConfineTargets,
  script: ShellScript,
): ShellScript {
  return sh`${confine(c, host, targets)}
${script}`;
}

/**
 * The refusal reported in a script's output, as a {@linkcode ConfinementError}, or null. The
 * marker may be anywhere in a line (relays prefix the lines of the hops they forward).
 */
export function refusalIn(text: string): ConfinementError | null {
  const at = text.indexOf(`${CONFINE_MARKER}\t`);
  if (at < 0) return null;
  const line = text.slice(at + CONFINE_MARKER.length + 1).split("\n")[0];
  const [host, mode, path, resolved, setting, ...roots] = line.split("\t");
  return new ConfinementError({
    host: host ?? "?",
    path: path ?? "?",
    resolved: resolved ?? "?",
    roots: roots.filter((r) => r !== ""),
    setting: setting ?? "the allowed folders",
    mode: mode === "remove" ? "remove" : "write",
  });
}

/** Where DATASTORE_LOCATION comes from, for refusals. */
const DS_LOCATION_SETTING = "DATASTORE_LOCATION (onestor.conf, default from oned.conf)";

/** The settings the standard confinements read. */
export interface ConfinementSettings {
  /** DATASTORE_LOCATION (null: the default). */
  readonly datastoreLocation: string | null;
  /** REPLICA_RECOVERY_SNAPS_DIR. */
  readonly replicaRecoverySnapsDir: string;
  /** BACKUP_BASE_PATH (null: backups stay in the VM folder). */
  readonly backupBasePath: string | null;
}

/** Default DATASTORE_LOCATION when the configuration gives none (oned's own default). */
export const DEFAULT_DATASTORE_LOCATION = "/var/lib/one/datastores";

/** TM actions on hypervisors and the front-end: inside DATASTORE_LOCATION. */
export function tmConfinement(s: Pick<ConfinementSettings, "datastoreLocation">): Confinement {
  return { roots: [s.datastoreLocation ?? DEFAULT_DATASTORE_LOCATION], setting: DS_LOCATION_SETTING };
}

/** On a replica: DATASTORE_LOCATION (the image cache) and REPLICA_RECOVERY_SNAPS_DIR. */
export function replicaConfinement(s: ConfinementSettings): Confinement {
  return {
    roots: uniqueRoots([s.datastoreLocation ?? DEFAULT_DATASTORE_LOCATION, s.replicaRecoverySnapsDir]),
    setting: `${DS_LOCATION_SETTING} or REPLICA_RECOVERY_SNAPS_DIR (sshrc)`,
  };
}

/** Backups: DATASTORE_LOCATION (the VM folder) and BACKUP_BASE_PATH when set. */
export function backupConfinement(s: ConfinementSettings): Confinement {
  const ds = s.datastoreLocation ?? DEFAULT_DATASTORE_LOCATION;
  return s.backupBasePath
    ? {
      roots: uniqueRoots([ds, s.backupBasePath]),
      setting: `${DS_LOCATION_SETTING} or BACKUP_BASE_PATH (datastore.conf)`,
    }
    : tmConfinement(s);
}

/** Datastore actions: the datastore's BASE_PATH, and its STAGING_DIR on bridge hosts. */
export function datastoreConfinement(
  dsId: number | string,
  basePath: string,
  stagingDir?: string,
): Confinement {
  return stagingDir
    ? {
      roots: uniqueRoots([basePath, stagingDir]),
      setting: `BASE_PATH or STAGING_DIR of datastore ${dsId}`,
    }
    : { roots: [basePath], setting: `BASE_PATH of datastore ${dsId}` };
}

/** A folder the caller made for itself (a front-end scratch folder): only inside it. */
export function scratchConfinement(dir: string): Confinement {
  return { roots: [dir], setting: "a scratch folder of this action" };
}

function uniqueRoots(roots: readonly string[]): string[] {
  return [...new Set(roots.map(normalizePath))];
}
