/**
 * Image file names and the checks every path from oned or a user passes before it is used: image
 * naming as upstream (spec §7.1), the datastore's BASE_PATH, an image's SOURCE inside it, and the
 * syntax of local image paths.
 *
 * Paths reach shell scripts only as quoted words, so these checks are not what keeps them from
 * running as code; they refuse what no legitimate image path looks like (control characters,
 * shell syntax, `..`) before anything runs, so a hostile value never reaches a command at all.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { InputError, OneStorError } from "../errors.ts";

/** Characters a path may hold: those a shell word needs no quoting for (oned splits on blanks anyway). */
const PATH_CHARS = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** `<md5 hex of "<unix seconds>:<image id>\n">`, the name upstream gives a new image. */
export function imageHash(imageId: number | string, nowSeconds = Math.floor(Date.now() / 1000)): string {
  return createHash("md5").update(`${nowSeconds}:${imageId}\n`).digest("hex");
}

/** A new image path `<BASE_PATH>/<hash>` (spec §7.1). */
export function newImagePath(basePath: string, imageId: number | string, nowSeconds?: number): string {
  return `${basePath}/${imageHash(imageId, nowSeconds)}`;
}

/** Collapses repeated slashes and drops a trailing one (oned writes `/var/lib/one//datastores`). */
export function normalizePath(path: string): string {
  const collapsed = path.replace(/\/{2,}/g, "/");
  return collapsed.length > 1 ? collapsed.replace(/\/$/, "") : collapsed;
}

/**
 * Checks the syntax of an absolute path: allowed characters only, no `.` or `..` component.
 * Returns it with repeated slashes collapsed.
 *
 * @throws {InputError} naming `what` and the path.
 */
export function checkPathSyntax(path: string, what: string): string {
  if (path === "") throw new InputError(`${what} is empty`);
  if (!PATH_CHARS.test(path)) {
    throw new InputError(
      `${what} ${
        JSON.stringify(path)
      } holds characters that are not allowed (only letters, digits and _@%+=:,./- are)`,
    );
  }
  if (!path.startsWith("/")) throw new InputError(`${what} ${path} is not an absolute path`);
  const normalized = normalizePath(path);
  if (normalized.split("/").some((part) => part === "." || part === "..")) {
    throw new InputError(`${what} ${path} holds a . or .. component`);
  }
  return normalized;
}

/**
 * The datastore's BASE_PATH, checked (absolute, plain characters). It is returned as oned wrote it
 * (only trailing slashes dropped): image names are `<BASE_PATH>/<hash>` exactly as upstream's.
 */
export function checkBasePath(basePath: string): string {
  const path = checkPathSyntax(basePath, "Datastore BASE_PATH");
  if (path === "/") throw new InputError("Datastore BASE_PATH cannot be /");
  return basePath.replace(/\/+$/, "");
}

/**
 * An image SOURCE that must be a file directly inside BASE_PATH (rm, snapshots): anything else is
 * refused with upstream's message and exit code 1, before anything runs.
 */
export function checkImageSource(source: string, basePath: string): string {
  const bad = () => new OneStorError(`Bad formed or unavailable Image source: ${source}`, { exitCode: 1 });
  let path: string;
  let base: string;
  try {
    path = checkPathSyntax(source, "Image source");
    base = checkBasePath(basePath);
  } catch {
    throw bad();
  }
  const slash = path.lastIndexOf("/");
  const name = path.slice(slash + 1);
  if (
    source.endsWith("/") || path.slice(0, slash) !== normalizePath(base) || name === "" ||
    name.startsWith(".")
  ) {
    throw bad();
  }
  return source;
}

/** The temporary name a file is built under before it is renamed to `path` (same folder, hidden). */
export function tempNameFor(path: string, tag = "onestor-tmp"): string {
  const slash = path.lastIndexOf("/");
  return `${path.slice(0, slash)}/.${path.slice(slash + 1)}.${tag}`;
}
