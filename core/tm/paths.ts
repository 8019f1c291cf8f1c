/**
 * The locations TM actions work on, parsed from oned's `host:path` arguments and checked before
 * anything runs: a disk (`<DS_LOC>/<sys_ds>/<vm>/disk.<i>`, `kernel`, `initrd`) or a VM folder
 * (`<DS_LOC>/<sys_ds>/<vm>`). The checks refuse paths that would make a delete or a move touch
 * something else than a VM's files (`/`, relative paths, `..`).
 *
 * @module
 */

import { InputError } from "../errors.ts";
import { hostName, objectId } from "../validate.ts";
import { basenameOf, dirnameOf, diskIdOf, fixDirSlashes, isDisk, parseLocation } from "../one/location.ts";

/** A file of a VM folder on a host (a disk, its snapshots folder, a kernel). */
export interface VmFile {
  /** Host as oned named it (the front-end's own name is run locally). */
  host: string;
  /** Normalised absolute path. */
  path: string;
  /** The VM folder holding it. */
  vmDir: string;
  /** The system datastore folder holding the VM folder (where `.monitor` lives). */
  dsDir: string;
  /** File name (`disk.0`, `kernel`). */
  name: string;
  /** Disk id from the name (`disk.3` → 3), null for `kernel`, `initrd`. */
  diskId: number | null;
}

/** A VM folder on a host. */
export interface VmDir {
  /** Host as oned named it. */
  host: string;
  /** Normalised absolute path of the VM folder. */
  path: string;
  /** Its parent, the system datastore folder. */
  dsDir: string;
  /** Folder name (normally the VM id). */
  name: string;
}

/** Refuses a path that is not absolute, holds `..` or `.` components, or is too short to be a VM's. */
export function checkVmPath(path: string, minDepth: number, what: string): string {
  const fixed = fixDirSlashes(path);
  if (!fixed.startsWith("/")) throw new InputError(`${what} must be an absolute path, got '${path}'`);
  const parts = fixed.split("/").slice(1);
  if (parts.some((p) => p === ".." || p === ".")) {
    throw new InputError(`${what} must not contain '.' or '..' components, got '${path}'`);
  }
  if (parts.length < minDepth) {
    throw new InputError(`${what} '${path}' is too short to be inside a datastore folder`);
  }
  return fixed;
}

function requireHost(arg: string, what: string): string {
  const location = parseLocation(arg);
  if (!location.hasHost || location.host === "") {
    throw new InputError(`${what} must be HOST:PATH, got '${arg}'`);
  }
  return hostName(location.host, `Host of ${what.toLowerCase()}`);
}

/** Parses a `host:<vm_dir>/<file>` argument (clone, ln, mkimage, snapshots, resize destinations). */
export function parseVmFile(arg: string, what = "Disk location"): VmFile {
  const host = requireHost(arg, what);
  const path = checkVmPath(parseLocation(arg).path, 4, what);
  const vmDir = dirnameOf(path);
  return {
    host,
    path,
    vmDir,
    dsDir: dirnameOf(vmDir),
    name: basenameOf(path),
    diskId: diskIdOf(path),
  };
}

/** Parses a `host:<vm_dir>` argument (mv and delete of the VM folder, context's parent). */
export function parseVmDir(arg: string, what = "VM folder location"): VmDir {
  const host = requireHost(arg, what);
  const path = checkVmPath(parseLocation(arg).path, 3, what);
  return { host, path, dsDir: dirnameOf(path), name: basenameOf(path) };
}

/** Upstream's `is_disk` on a location argument: whether it names a `disk.<n>` (not a VM folder). */
export function isDiskLocation(arg: string): boolean {
  return isDisk(parseLocation(arg).path);
}

/** Path of the snapshots folder of a disk: `<disk>.snap`. */
export function snapDirOf(diskPath: string): string {
  return `${diskPath}.snap`;
}

/** Parses an id argument (VM id, datastore id): a non-negative integer. */
export function parseId(text: string, what: string): number {
  return objectId(what, text);
}
