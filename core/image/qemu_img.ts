/**
 * qemu-img, as script builders (so the same command runs on the front-end or on any host through
 * a {@linkcode HostRunner}) plus small helpers that run them and parse the JSON answers.
 *
 * Every path handed to qemu-img must be absolute: a relative name holding a `:` (`json:{...}`,
 * `nbd:...`) would be taken by qemu as a protocol instead of a file.
 *
 * @module
 */

import { ToolError } from "../errors.ts";
import type { HostRunner } from "../remote/runner.ts";
import { sh, type ShellScript } from "../remote/shell.ts";

/** What `qemu-img info --output=json` says about one image of a chain. */
export interface ImageInfo {
  /** File name as qemu-img printed it. */
  filename: string;
  /** Format (`raw`, `qcow2`, `luks`, `vmdk`, ...). */
  format: string;
  /** Virtual size in bytes. */
  virtualSize: number;
  /** Bytes allocated on disk (0 when qemu-img does not say). */
  actualSize: number;
  /** Backing file name as stored in the image, `""` without one. */
  backingFilename: string;
  /** Backing file name resolved by qemu-img, `""` without one. */
  fullBackingFilename: string;
  /** Format of the backing file as stored in the image, `""` when not recorded. */
  backingFormat: string;
  /** External data file of a qcow2 image (`data-file`), `""` without one. */
  dataFile: string;
  /** Files a vmdk descriptor points to (its extents), empty for other formats. */
  extentFiles: string[];
  /** The raw JSON object. */
  raw: Record<string, unknown>;
}

/** What `qemu-img check --output=json` says. */
export interface CheckResult {
  /** Number of errors found (corruptions, leaks are separate). */
  errors: number;
  /** Leaked clusters. */
  leaks: number;
  /** The raw JSON object. */
  raw: Record<string, unknown>;
}

function requireAbsolute(path: string): string {
  if (!path.startsWith("/")) throw new TypeError(`qemu-img needs an absolute path, got ${path}`);
  return path;
}

function num(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function toInfo(object: Record<string, unknown>): ImageInfo {
  const specific = (object["format-specific"] ?? {}) as { type?: string; data?: Record<string, unknown> };
  const data = specific.data ?? {};
  const extents = Array.isArray(data.extents) ? data.extents as Record<string, unknown>[] : [];
  return {
    filename: str(object.filename),
    format: str(object.format),
    virtualSize: num(object["virtual-size"]),
    actualSize: num(object["actual-size"]),
    backingFilename: str(object["backing-filename"]),
    fullBackingFilename: str(object["full-backing-filename"]),
    backingFormat: str(object["backing-filename-format"]),
    dataFile: str(data["data-file"]),
    extentFiles: extents.map((e) => str(e.filename)).filter((f) => f !== ""),
    raw: object,
  };
}

/**
 * Parses the output of `qemu-img info --output=json` (one object) or of `--backing-chain` (an
 * array, the image first). Always returns the chain as an array, the image itself first.
 */
export function parseImageInfo(json: string): ImageInfo[] {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new ToolError(`qemu-img info printed something that is not JSON: ${json.slice(0, 200)}`);
  }
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0 || list.some((v) => typeof v !== "object" || v === null)) {
    throw new ToolError("qemu-img info printed an unexpected JSON document");
  }
  return list.map((v) => toInfo(v as Record<string, unknown>));
}

/** Options of {@linkcode infoScript}. */
export interface InfoOptions {
  /** Whole backing chain (`--backing-chain`). */
  chain?: boolean;
  /** Read an image that a running VM holds open (`-U`). */
  forceShare?: boolean;
  /** Format to assume instead of probing (`-f`). */
  format?: string;
}

/** `qemu-img info --output=json` of `path`. */
export function infoScript(path: string, options: InfoOptions = {}): ShellScript {
  const args: string[] = ["--output=json"];
  if (options.chain) args.push("--backing-chain");
  if (options.forceShare) args.push("-U");
  if (options.format) args.push("-f", options.format);
  return sh`qemu-img info ${args} ${requireAbsolute(path)}`;
}

/** Options of {@linkcode createScript}. */
export interface CreateOptions {
  /** Target file (absolute). */
  path: string;
  /** Format to create (`raw`, `qcow2`). */
  format: string;
  /** Virtual size in MiB (ignored with a backing file unless set). */
  sizeMb?: number;
  /** Backing file of a qcow2 overlay. */
  backing?: string;
  /** Format of the backing file (qemu-img requires it with a backing file). */
  backingFormat?: string;
  /** Preallocation mode (`off`, `metadata`, `falloc`, `full`). */
  preallocation?: string;
  /** Extra creation options (argv words, e.g. QCOW2_OPTIONS); applied to qcow2 only. */
  qcow2Options?: readonly string[];
}

/** `qemu-img create`: an empty image, or a qcow2 overlay of `backing`. */
export function createScript(options: CreateOptions): ShellScript {
  const args: string[] = ["-q", "-f", options.format];
  if (options.format === "qcow2") args.push(...(options.qcow2Options ?? []));
  if (options.backing !== undefined) {
    if (!options.backingFormat) throw new TypeError("A backing file needs its format (-F)");
    args.push("-b", options.backing, "-F", options.backingFormat);
  }
  if (options.preallocation) args.push("-o", `preallocation=${options.preallocation}`);
  const size = options.sizeMb === undefined ? [] : [`${options.sizeMb}M`];
  return sh`qemu-img create ${args} ${requireAbsolute(options.path)} ${size}`;
}

/** Options of {@linkcode convertScript}. */
export interface ConvertOptions {
  /** Source image (absolute). */
  src: string;
  /** Destination file (absolute). */
  dst: string;
  /** Output format. */
  format: string;
  /** Source format; probed when absent. */
  srcFormat?: string;
  /** Keep holes (default true); false writes every zero (`-S 0`), i.e. a fully allocated file. */
  sparse?: boolean;
  /** Extra creation options (argv words, e.g. QCOW2_OPTIONS) for a qcow2 output. */
  qcow2Options?: readonly string[];
  /** Read an image that a running VM holds open (`-U`). */
  forceShare?: boolean;
}

/** `qemu-img convert` of `src` into a standalone `dst` (backing chains are flattened). */
export function convertScript(options: ConvertOptions): ShellScript {
  const args: string[] = ["-q"];
  if (options.forceShare) args.push("-U");
  if (options.srcFormat) args.push("-f", options.srcFormat);
  args.push("-O", options.format);
  if (options.format === "qcow2") args.push(...(options.qcow2Options ?? []));
  if (options.sparse === false) args.push("-S", "0");
  return sh`qemu-img convert ${args} ${requireAbsolute(options.src)} ${requireAbsolute(options.dst)}`;
}

/** `qemu-img resize` to `sizeMb` MiB; `preallocate` allocates the new space (SPARSE=NO). */
export function resizeScript(
  path: string,
  sizeMb: number,
  options: { preallocate?: boolean } = {},
): ShellScript {
  const args: string[] = ["-q"];
  if (options.preallocate) args.push("--preallocation=falloc");
  return sh`qemu-img resize ${args} ${requireAbsolute(path)} ${`${sizeMb}M`}`;
}

/**
 * `qemu-img check --output=json`. qemu-img exits 2 on corruption and 3 on leaks, still printing
 * the JSON; the script maps both to 0 so the caller reads the counts, and keeps other codes
 * (1: cannot check, 63: the format has no check) as they are.
 */
export function checkScript(path: string): ShellScript {
  return sh`qemu-img check -q --output=json ${requireAbsolute(path)}; rc=$?
case $rc in 0|2|3) exit 0 ;; *) exit $rc ;; esac`;
}

/** `qemu-img compare -q a b`: exit 0 when the guest-visible contents are equal, 1 when not. */
export function compareScript(a: string, b: string): ShellScript {
  return sh`qemu-img compare -q ${requireAbsolute(a)} ${requireAbsolute(b)}`;
}

/** Runs `qemu-img info` on `host` (null: here) and parses it; the image is first in the result. */
export async function imageInfo(
  runner: HostRunner,
  host: string | null,
  path: string,
  options: InfoOptions & { timeoutMs?: number } = {},
): Promise<ImageInfo[]> {
  const out = await runner.output(host, infoScript(path, options), {
    what: `Reading image information of ${path}`,
    timeoutMs: options.timeoutMs,
  });
  return parseImageInfo(out);
}

/** Runs `qemu-img check` on `host` and returns the counts. */
export async function checkImage(
  runner: HostRunner,
  host: string | null,
  path: string,
  options: { timeoutMs?: number } = {},
): Promise<CheckResult> {
  const out = await runner.output(host, checkScript(path), {
    what: `Checking image ${path}`,
    timeoutMs: options.timeoutMs,
  });
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(out);
  } catch {
    throw new ToolError(`qemu-img check printed something that is not JSON: ${out.slice(0, 200)}`);
  }
  return {
    errors: num(value["check-errors"]) + num(value.corruptions),
    leaks: num(value.leaks),
    raw: value,
  };
}

/**
 * Files other than the image itself that qemu would read when opening it: a backing file, a qcow2
 * external data file, vmdk extents. An image to import must have none, or converting it would
 * copy those files (any file the driver can read) into the new image.
 */
export function referencedFiles(info: ImageInfo): string[] {
  const files: string[] = [];
  if (info.backingFilename) files.push(info.backingFilename);
  if (info.dataFile) files.push(info.dataFile);
  for (const extent of info.extentFiles) {
    if (extent !== info.filename) files.push(extent);
  }
  return files;
}
