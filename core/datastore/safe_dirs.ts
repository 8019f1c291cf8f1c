/**
 * SAFE_DIRS and RESTRICTED_DIRS: which local files a user may register as images (spec §7.2).
 *
 * As upstream: a path inside a SAFE_DIRS entry is allowed; otherwise a path inside a
 * RESTRICTED_DIRS entry (always including OpenNebula's var and etc directories and oneadmin's home)
 * is refused; anything else is allowed. Unlike upstream (regex prefixes on `readlink -f`), paths are
 * compared after resolving every symlink, on whole path components: `/var/tmp` does not cover
 * `/var/tmpfoo`, and a symlink inside a safe dir that points elsewhere is judged where it points.
 *
 * @module
 */

import { InputError } from "../errors.ts";
import { logWarn } from "../one/log.ts";
import { checkPathSyntax, normalizePath } from "./paths.ts";

/** The directories that decide whether a path may be read. */
export interface DirPolicy {
  /** Always allowed (checked first). */
  safeDirs: string[];
  /** Refused unless inside a safe dir. */
  restrictedDirs: string[];
}

/** Where OpenNebula keeps its state and configuration, as upstream's `set_up_datastore` decides. */
export function defaultRestrictedDirs(env: { ONE_LOCATION?: string; HOME?: string }): string[] {
  const dirs = env.ONE_LOCATION
    ? [`${env.ONE_LOCATION}/var/`, `${env.ONE_LOCATION}/etc/`]
    : ["/var/lib/one/", "/etc/one/"];
  if (env.HOME) dirs.push(`${env.HOME}/`);
  return dirs;
}

function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => w !== "");
}

/** The policy from a datastore's RESTRICTED_DIRS and SAFE_DIRS (space-separated) plus the defaults. */
export function dirPolicy(
  template: { restrictedDirs: string; safeDirs: string },
  env: { ONE_LOCATION?: string; HOME?: string } = {
    ONE_LOCATION: Deno.env.get("ONE_LOCATION"),
    HOME: Deno.env.get("HOME"),
  },
): DirPolicy {
  const keep = (list: string[], what: string) =>
    list.filter((dir) => {
      if (dir.startsWith("/")) return true;
      logWarn(`Ignoring ${what} entry ${dir}: not an absolute path`);
      return false;
    });
  return {
    safeDirs: keep(words(template.safeDirs), "SAFE_DIRS"),
    restrictedDirs: keep(
      [...defaultRestrictedDirs(env), ...words(template.restrictedDirs)],
      "RESTRICTED_DIRS",
    ),
  };
}

/** True when `path` is `dir` or below it, on path-component boundaries (both absolute). */
export function isWithin(path: string, dir: string): boolean {
  const d = normalizePath(dir);
  const p = normalizePath(path);
  if (d === "/") return true;
  return p === d || p.startsWith(d + "/");
}

function resolveDir(dir: string): string {
  try {
    return Deno.realPathSync(dir);
  } catch {
    return normalizePath(dir);
  }
}

/** Whether a resolved path is allowed by the policy (dirs are resolved too, when they exist). */
export function isAllowed(resolvedPath: string, policy: DirPolicy): boolean {
  if (policy.safeDirs.some((dir) => isWithin(resolvedPath, resolveDir(dir)))) return true;
  return !policy.restrictedDirs.some((dir) => isWithin(resolvedPath, resolveDir(dir)));
}

/** The refusal message of upstream, for a path the policy does not allow. */
export function notAllowedError(path: string): InputError {
  return new InputError(`Not allowed to copy image from ${path}, check RESTRICTED_DIRS in your datastore`);
}

/** The path with its longest existing leading part resolved (symlinks followed), the rest appended. */
export function resolveExisting(path: string): string {
  const parts = path.split("/").filter((p) => p !== "");
  for (let i = parts.length; i > 0; i--) {
    try {
      const head = Deno.realPathSync("/" + parts.slice(0, i).join("/"));
      return normalizePath([head, ...parts.slice(i)].join("/"));
    } catch {
      // Shorter prefix next.
    }
  }
  return path;
}

/**
 * Checks a local image path and returns the real path to read: syntax first (no shell syntax, no
 * `..`), then every symlink resolved and the result judged by the policy. Nothing is opened.
 *
 * @throws {InputError} for a hostile or restricted path, or one that does not exist.
 */
export function resolveAllowedPath(path: string, policy: DirPolicy): string {
  const checked = checkPathSyntax(path, "Image path");
  let real: string;
  try {
    real = Deno.realPathSync(checked);
  } catch (error) {
    // Refuse a restricted path before saying whether it exists: judge where its existing part leads.
    if (!isAllowed(resolveExisting(checked), policy)) throw notAllowedError(path);
    const reason = error instanceof Deno.errors.NotFound
      ? "No such file or directory"
      : error instanceof Deno.errors.PermissionDenied
      ? "Permission denied"
      : (error as Error).message;
    throw new InputError(`cannot access '${path}' (${reason})`);
  }
  if (!isAllowed(real, policy)) throw notAllowedError(path);
  return real;
}
