/**
 * Empty datablocks: the images of datastore `mkfs` and the volatile disks of TM `mkimage`/`mkswap`.
 *
 * The FS attribute comes from users (image and VM templates). It is checked against SUPPORTED_FS
 * before anything runs and only ever becomes one quoted word of a command: upstream ran it through
 * `eval` (arbitrary commands on the front-end) and, with a FS that mkfs did not handle, produced a
 * different file system than asked (#5810). An unsupported FS is refused, as upstream's code did
 * (its documentation claimed a fallback to a default FS, which would hide a typo as a wrong disk).
 *
 * @module
 */

import type { Config } from "../../config/load.ts";
import { InputError } from "../errors.ts";
import { joinScripts, sh, type ShellScript } from "../remote/shell.ts";
import { fsName } from "../validate.ts";
import { convertScript, createScript } from "./qemu_img.ts";

/** An empty datablock to create. */
export interface DatablockSpec {
  /** Target file (absolute); written under a temporary name and renamed at the end. */
  path: string;
  /** Virtual size in MiB. */
  sizeMb: number;
  /** `raw`, `qcow2`, `swap` (raw + mkswap); anything else makes a raw file, as upstream did. */
  format: string;
  /** File system to format it with (a member of SUPPORTED_FS); none leaves it blank. */
  fs?: string;
  /** Keep the file sparse; false allocates every block (SPARSE=NO). */
  sparse: boolean;
}

/** Smallest size in MiB each file system can be made in (smaller: mkfs fails or drops the journal). */
export const MIN_FS_SIZE_MB: Readonly<Record<string, number>> = {
  ext2: 1,
  ext3: 2,
  ext4: 2,
  xfs: 300,
  btrfs: 114,
  vfat: 1,
};

/**
 * Throws InputError `Unsupported file system type: <FS>. Supported types are: <list>` unless fs is
 * in SUPPORTED_FS; the FS name must also match /^[a-z0-9]+$/.
 */
export function checkFs(fs: string, config: Config): void {
  fsName(fs, config.supportedFs);
}

/** The mkfs command line (argv words) for `fs`, options of FS_OPTS_<FS> included. */
export function mkfsArgv(fs: string, options: readonly string[], target: string): string[] {
  switch (fs) {
    case "xfs":
      return ["mkfs.xfs", "-f", ...options, target];
    case "btrfs":
      return ["mkfs.btrfs", "-f", ...options, target];
    case "vfat":
    case "fat":
    case "msdos":
      // mkfs.fat has no force flag, and its -F means FAT size.
      return ["mkfs.fat", ...options, target];
    default:
      return ["mkfs", "-F", "-t", fs, ...options, target];
  }
}

function checkSpec(spec: DatablockSpec, config: Config): void {
  if (!spec.path.startsWith("/") || spec.path.endsWith("/")) {
    throw new InputError(`Datablock path must be an absolute file path, got ${spec.path}`);
  }
  if (!Number.isInteger(spec.sizeMb) || spec.sizeMb <= 0) {
    throw new InputError(`Datablock size must be a positive whole number of MiB, got ${spec.sizeMb}`);
  }
  if (spec.fs) {
    checkFs(spec.fs, config);
    const min = MIN_FS_SIZE_MB[spec.fs];
    if (min !== undefined && spec.sizeMb < min && spec.format !== "swap") {
      throw new InputError(
        `A ${spec.fs} file system needs at least ${min} MiB, the datablock has ${spec.sizeMb} MiB: make it larger`,
      );
    }
  }
}

/**
 * A script that creates the datablock (on the FE or any host via HostRunner), removes a partial
 * file on failure, applies FS_OPTS_<FS> as argv words, QCOW2_OPTIONS for qcow2, preallocates when
 * !sparse, uses DD_BLOCK_SIZE wherever dd is used.
 *
 * The image is built as `.<name>.onestor-tmp` next to the target and renamed over it at the end,
 * so a failure never leaves a half-made image under the final name, and a retry starts clean.
 * With FS and format qcow2 the file system is made on a raw file first (mkfs needs a plain file),
 * then converted. Swap ignores FS (mkswap would overwrite it).
 *
 * @throws {InputError} for an unsupported or hostile FS, a bad size or path.
 */
export function datablockScript(spec: DatablockSpec, config: Config): ShellScript {
  checkSpec(spec, config);
  const slash = spec.path.lastIndexOf("/");
  const dir = spec.path.slice(0, slash) || "/";
  const tmp = `${dir === "/" ? "" : dir}/.${spec.path.slice(slash + 1)}.onestor-tmp`;
  const raw = `${tmp}.raw`;
  const qcow2 = spec.format === "qcow2";
  const swap = spec.format === "swap";
  const fs = swap ? undefined : spec.fs || undefined;
  const steps: ShellScript[] = [];

  // Where the file system (or swap signature) is written: a raw file, converted afterwards for qcow2.
  const rawTarget = qcow2 && fs ? raw : tmp;
  if (qcow2 && !fs) {
    steps.push(createScript({
      path: tmp,
      format: "qcow2",
      sizeMb: spec.sizeMb,
      qcow2Options: config.qcow2Options,
      preallocation: spec.sparse ? undefined : "falloc",
    }));
  } else {
    steps.push(createScript({ path: rawTarget, format: "raw", sizeMb: spec.sizeMb }));
  }
  if (fs) {
    steps.push(sh`${mkfsArgv(fs, config.fsOpts(fs), rawTarget)} >/dev/null`);
    // Make sure the result is what was asked for (upstream once produced ext2 for xfs, #5810).
    steps.push(sh`if command -v blkid >/dev/null 2>&1; then
  made=$(blkid -p -o value -s TYPE ${rawTarget} 2>/dev/null || true)
  if [ "$made" != ${fs} ]; then
    echo ${`mkfs was asked for ${fs} but made`} "\${made:-no file system}" >&2; exit 1
  fi
fi`);
  }
  if (swap) steps.push(sh`mkswap -L swap ${rawTarget} >/dev/null`);
  if (qcow2 && fs) {
    steps.push(convertScript({
      src: raw,
      dst: tmp,
      srcFormat: "raw",
      format: "qcow2",
      qcow2Options: config.qcow2Options,
      sparse: spec.sparse,
    }));
    steps.push(sh`rm -f -- ${raw}`);
  }
  if (!spec.sparse && !qcow2) {
    // Allocate every block while keeping the data mkfs wrote; where the file system has no
    // fallocate, rewrite the file onto itself, which turns holes into written zeros.
    steps.push(sh`fallocate -l ${`${spec.sizeMb}M`} ${tmp} 2>/dev/null ||
  dd if=${tmp} of=${tmp} bs=${config.ddBlockSize} conv=notrunc,nocreat status=none`);
  }
  steps.push(sh`mv -f -- ${tmp} ${spec.path}`);

  return sh`set -e
PATH=/usr/sbin:/sbin:$PATH; export PATH
tmp=${tmp}; raw=${raw}
trap 'rm -f -- "$tmp" "$raw"' EXIT
mkdir -p -- ${dir}
rm -f -- "$tmp" "$raw"
${joinScripts(steps)}`;
}
