/**
 * Validation of every enumerated or numeric value onestor takes from oned (arguments, template
 * attributes, DS_DRIVER_ACTION_DATA), from templates users write, and from host names, before
 * anything runs. One module, one rule per kind of value, one error form:
 * `<ATTRIBUTE> must be <what is allowed> (got "<value>")`, an {@linkcode InputError} (exit 255).
 *
 * Values reach shell scripts only as quoted words, so these checks are not what keeps them from
 * running as code. They keep a wrong value from doing the wrong thing quietly: a FORMAT that is no
 * disk format would make a raw file and report success; a SIZE that is not a number would skip
 * the growth of a disk; a RECOVERY_SNAPSHOT_FREQ that is not a number would leave a disk without
 * the protection its owner asked for; a host name starting with `-` would read as an ssh option.
 *
 * @module
 */

import { InputError } from "./errors.ts";

/** Disk image formats qemu-img reads that a VM disk or an image may have. */
export const DISK_FORMATS = [
  "raw",
  "qcow2",
  "qcow",
  "qed",
  "vmdk",
  "vdi",
  "vhdx",
  "vpc",
  "luks",
  "parallels",
  "bochs",
  "cloop",
  "dmg",
] as const;

/** Formats onestor creates (datablocks, volatile disks, conversions through DRIVER). */
export const CREATED_FORMATS = ["raw", "qcow2"] as const;

/** DISK/TYPE values of OpenNebula (image disk types, and `fs`/`swap` for volatile disks). */
export const DISK_TYPES = [
  "FILE",
  "CDROM",
  "BLOCK",
  "RBD",
  "RBD_CDROM",
  "GLUSTER",
  "GLUSTER_CDROM",
  "SHEEPDOG",
  "SHEEPDOG_CDROM",
  "ISCSI",
  "NONE",
  "FS",
  "SWAP",
] as const;

/** IMAGE/TYPE numbers (Image::ImageType): OS, CDROM, DATABLOCK, KERNEL, RAMDISK, CONTEXT, BACKUP. */
export const IMAGE_TYPES = [0, 1, 2, 3, 4, 5, 6] as const;

/** DATASTORE/TYPE numbers: IMAGE_DS, SYSTEM_DS, FILE_DS, BACKUP_DS. */
export const DATASTORE_TYPES = [0, 1, 2, 3] as const;

/** Largest id oned gives an object (a signed 32-bit integer). */
export const MAX_ID = 2 ** 31 - 1;

/** Largest disk size accepted, in MiB (1 EiB): beyond it a number is a typo or an attack. */
export const MAX_SIZE_MB = 2 ** 40;

/** Longest RECOVERY_SNAPSHOT_FREQ accepted: one year, in seconds. */
export const MAX_FREQUENCY_SECONDS = 366 * 86400;

function shown(value: string): string {
  const text = value.length > 80 ? `${value.slice(0, 77)}...` : value;
  return JSON.stringify(text);
}

/** The error of every check: `<attr> must be <rule> (got "<value>")`. */
export function invalid(attr: string, rule: string, value: string): InputError {
  return new InputError(`${attr} must be ${rule} (got ${shown(value)})`);
}

/** One of `allowed` (compared without case when `ignoreCase`); returns the allowed spelling. */
export function choice<T extends string>(
  attr: string,
  value: string,
  allowed: readonly T[],
  options: { ignoreCase?: boolean } = {},
): T {
  const v = value.trim();
  const found = allowed.find((a) => options.ignoreCase ? a.toLowerCase() === v.toLowerCase() : a === v);
  if (found === undefined) throw invalid(attr, `one of ${allowed.join(", ")}`, value);
  return found;
}

/** A whole number within [min, max] (digits only, no sign unless min < 0). */
export function wholeNumber(
  attr: string,
  value: string | number,
  range: { min?: number; max?: number } = {},
): number {
  const text = String(value).trim();
  const min = range.min ?? 0;
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  const pattern = min < 0 ? /^-?[0-9]{1,16}$/ : /^[0-9]{1,16}$/;
  const n = pattern.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const rule = max === Number.MAX_SAFE_INTEGER
      ? `a whole number of at least ${min}`
      : `a whole number from ${min} to ${max}`;
    throw invalid(attr, rule, String(value));
  }
  return n;
}

/** Like {@linkcode wholeNumber}, but an empty value is null (an attribute that is not set). */
export function optionalWholeNumber(
  attr: string,
  value: string,
  range: { min?: number; max?: number } = {},
): number | null {
  return value.trim() === "" ? null : wholeNumber(attr, value, range);
}

/** An object id (VM, datastore, image, host): 0 to 2^31-1. */
export function objectId(attr: string, value: string | number): number {
  return wholeNumber(attr, value, { min: 0, max: MAX_ID });
}

/** A disk id (`DISK_ID`, the `<i>` of `disk.<i>`). */
export function diskId(value: string | number, attr = "Disk id"): number {
  return objectId(attr, value);
}

/** A snapshot id (TM snapshot argument, TARGET_SNAPSHOT). */
export function snapshotId(value: string | number, attr = "Snapshot id"): number {
  return objectId(attr, value);
}

/** A disk size in MiB: 1 to {@linkcode MAX_SIZE_MB}. */
export function sizeMb(value: string | number, attr = "SIZE"): number {
  return wholeNumber(`${attr} (MiB)`, value, { min: 1, max: MAX_SIZE_MB });
}

/** An optional size in MiB read from a template (null when not set). */
export function optionalSizeMb(value: string, attr: string): number | null {
  return value.trim() === "" ? null : sizeMb(value, attr);
}

/** RECOVERY_SNAPSHOT_FREQ: seconds between recovery snapshots, 1 s to a year; null when not set. */
export function frequencySeconds(value: string, attr = "RECOVERY_SNAPSHOT_FREQ"): number | null {
  return optionalWholeNumber(`${attr} (seconds)`, value, { min: 1, max: MAX_FREQUENCY_SECONDS });
}

/** A format of an existing disk or image (`DISK/FORMAT`, `IMAGE/FORMAT`); `""` when unknown. */
export function diskFormat(value: string, attr = "FORMAT"): string {
  if (value.trim() === "") return "";
  return choice(attr, value.toLowerCase(), DISK_FORMATS);
}

/** DRIVER of an image datastore: a disk format, or empty (keep what the image is). */
export function datastoreDriver(value: string, attr = "DRIVER"): string {
  return diskFormat(value, attr);
}

/** FORMAT of datastore mkfs: a format onestor creates, `swap`, or `save_as` (reserve a name); empty is raw. */
export function mkfsFormat(value: string): "raw" | "qcow2" | "swap" | "save_as" {
  if (value.trim() === "") return "raw";
  return choice("FORMAT", value, [...CREATED_FORMATS, "swap", "save_as"] as const, { ignoreCase: true });
}

/** The format argument of TM mkimage/mkswap: a format onestor creates, or `swap`. */
export function volatileFormat(value: string): "raw" | "qcow2" | "swap" {
  return choice("Volatile disk format", value, [...CREATED_FORMATS, "swap"] as const, { ignoreCase: true });
}

/** A file system name (FS) from SUPPORTED_FS. */
export function fsName(value: string, supported: readonly string[]): string {
  const fs = value;
  if (!/^[a-z0-9]+$/.test(fs) || !supported.includes(fs)) {
    // The stock driver's message, which administrators know.
    throw new InputError(`Unsupported file system type: ${fs}. Supported types are: ${supported.join(",")}`);
  }
  return fs;
}

/** DISK/TYPE (empty when not set). */
export function diskType(value: string, attr = "TYPE"): string {
  if (value.trim() === "") return "";
  return choice(attr, value.toUpperCase(), DISK_TYPES);
}

/** IMAGE/TYPE (null when not set). */
export function imageType(value: string, attr = "IMAGE/TYPE"): number | null {
  if (value.trim() === "") return null;
  return wholeNumber(attr, value, { min: 0, max: IMAGE_TYPES.length - 1 });
}

/** DATASTORE/TYPE (null when not set). */
export function datastoreType(value: string, attr = "DATASTORE/TYPE"): number | null {
  if (value.trim() === "") return null;
  return wholeNumber(attr, value, { min: 0, max: DATASTORE_TYPES.length - 1 });
}

/** A yes/no attribute (SPARSE, CONVERT, ...): true, false, or null when not set. */
export function yesNo(value: string, attr: string): boolean | null {
  const v = value.trim().toLowerCase();
  if (v === "") return null;
  if (v === "yes") return true;
  if (v === "no") return false;
  throw invalid(attr, "YES or NO", value);
}

const LABEL = "[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})";
const HOST_NAME = new RegExp(
  `^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,63}@)?(?:${LABEL}(?:\\.${LABEL})*\\.?|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)$`,
);

/**
 * A host name as ssh takes it: DNS labels (letters, digits, `-`, `_`), an IPv4 or IPv6 address,
 * optionally `user@` in front; never something ssh would read as an option (a leading `-`), and no
 * blanks, control characters or shell syntax. At most 253 characters.
 */
export function hostName(value: string, attr = "Host name"): string {
  if (value.length > 253 || !HOST_NAME.test(value) || value.startsWith("-")) {
    throw invalid(
      attr,
      "a host name (letters, digits, '.', '-', '_', or an IP address; not starting with '-')",
      value,
    );
  }
  return value;
}
