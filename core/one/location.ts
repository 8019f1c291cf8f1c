/**
 * Location arguments (`host:path`) as oned passes them to TM actions, parsed exactly like
 * upstream's `arg_host`, `arg_path` and `fix_dir_slashes` (tm_common.sh, scripts_common.sh), plus
 * the path helpers the actions derive from them (disk id, VM directory, datastore directory).
 *
 * oned may emit a double slash (`fe:/var/lib/one//datastores/1/abc`): paths are normalised,
 * never rejected.
 *
 * @module
 */

/** A parsed `host:path` argument. */
export interface Location {
  /** Text before the first `:`; `""` when the argument has no `:` (unlike {@linkcode argHost}). */
  host: string;
  /** Text after the first `:` (the whole argument when there is none), slashes fixed. */
  path: string;
  /** Whether the argument had a `host:` part. */
  hasHost: boolean;
}

/**
 * Text before the first `:`. Like upstream, an argument without `:` is returned whole (callers
 * compared `DST_HOST == DST_PATH` to detect "no host part"; prefer {@linkcode parseLocation}).
 */
export function argHost(arg: string): string {
  const colon = arg.indexOf(":");
  return colon < 0 ? arg : arg.slice(0, colon);
}

/**
 * Text after the first `:` (the whole argument when there is none), passed through
 * {@linkcode fixDirSlashes} unless `noFix` is set (upstream's `arg_path ARG NOFIX`).
 */
export function argPath(arg: string, options: { noFix?: boolean } = {}): string {
  const colon = arg.indexOf(":");
  const path = colon < 0 ? arg : arg.slice(colon + 1);
  return options.noFix ? path : fixDirSlashes(path);
}

/**
 * Upstream's `dirname "$1/file" | sed 's:/+:/:g'`: drops trailing slashes and collapses runs of
 * slashes. An empty path or one made only of slashes becomes `/`, as dirname makes it.
 */
export function fixDirSlashes(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  if (trimmed === "") return "/";
  return trimmed.replace(/\/+/g, "/");
}

/** Parses a `host:path` argument into host, normalised path and whether a host was given. */
export function parseLocation(arg: string): Location {
  const hasHost = arg.includes(":");
  return { host: hasHost ? argHost(arg) : "", path: argPath(arg), hasHost };
}

/** Formats a location back into the `host:path` form (just the path when there is no host). */
export function formatLocation(location: Location): string {
  return location.hasHost ? `${location.host}:${location.path}` : location.path;
}

/** Upstream's `is_disk`: whether the path contains `/disk.<digits>`. */
export function isDisk(path: string): boolean {
  return /\/disk\.[0-9]/.test(path);
}

/**
 * The disk id of a VM disk path, computed like upstream's `basename $PATH | cut -d. -f2`
 * (`…/disk.3` → 3, `…/disk.3.snap` → 3). `null` when that field is not a number (`kernel`,
 * `initrd`, `disk`): upstream then looks up `DISK[DISK_ID=kernel]` and gets empty values.
 */
export function diskIdOf(path: string): number | null {
  const field = diskIdField(path);
  return /^[0-9]+$/.test(field) ? Number(field) : null;
}

/** The raw `basename | cut -d. -f2` field (the whole basename when it holds no `.`). */
export function diskIdField(path: string): string {
  const base = basenameOf(path);
  const parts = base.split(".");
  // cut prints lines without the delimiter unchanged.
  return parts.length < 2 ? base : parts[1];
}

/** POSIX `basename` (no suffix removal): the last component, trailing slashes ignored. */
export function basenameOf(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  if (trimmed === "") return path === "" ? "" : "/";
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** POSIX `dirname`, with runs of slashes collapsed: `/a//b/c/` → `/a/b`, `c` → `.`, `/c` → `/`. */
export function dirnameOf(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  if (trimmed === "") return path.startsWith("/") ? "/" : ".";
  const slash = trimmed.lastIndexOf("/");
  if (slash < 0) return ".";
  const dir = trimmed.slice(0, slash).replace(/\/+$/, "");
  return dir === "" ? "/" : dir.replace(/\/+/g, "/");
}

/** The VM directory holding a disk: `<DS_LOC>/<sys_ds>/<vm>/disk.0` → `<DS_LOC>/<sys_ds>/<vm>`. */
export function vmDirOf(diskPath: string): string {
  return dirnameOf(fixDirSlashes(diskPath));
}

/** The datastore directory holding a VM directory: `<DS_LOC>/<sys_ds>/<vm>` → `<DS_LOC>/<sys_ds>`. */
export function dsDirOf(vmDir: string): string {
  return dirnameOf(fixDirSlashes(vmDir));
}

/**
 * The datastore id a directory stands for, from its last component (`<DS_LOC>/100` → 100), or
 * `null` when that is not a number.
 */
export function dsIdOfDir(dsDir: string): number | null {
  const base = basenameOf(fixDirSlashes(dsDir));
  return /^[0-9]+$/.test(base) ? Number(base) : null;
}
