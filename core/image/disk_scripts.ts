/**
 * Shell scripts that work on a VM disk in place, on the host that holds it: snapshots as full
 * copies in `disk.<i>.snap/<id>` (the ssh driver's model: every snapshot is independent), revert,
 * growth, flattening of chained or recovery-layout disks, QCOW2_OPTIONS on copies.
 *
 * Rules every script follows:
 * - the disk format is the one oned recorded (`DISK/FORMAT`); a file is probed only when that is
 *   unknown or when it is onestor's own qcow2 overlay (a symlinked recovery-layout disk): probing
 *   a raw guest disk would let a guest that wrote a qcow2 header into it choose its format;
 * - new files are written under a temporary name next to their final place and renamed, so an
 *   interrupted script leaves either the old file or the new one, never half of one;
 * - nothing is removed before what replaces it exists (a revert first checks the snapshot, then
 *   copies it, then renames over the disk);
 * - every qcow2 file created gets QCOW2_OPTIONS.
 *
 * Recovery layout (spec §5.2): `disk.<i>` → `disk.<i>.snap/base.1`, a qcow2 overlay whose backing
 * file is `disk.<i>.snap/base`, resolved through the self-link `disk.<i>.snap/disk.<i>.snap` → `.`.
 *
 * @module
 */

import { InputError } from "../errors.ts";
import { joinScripts, raw, sh, type ShellScript } from "../remote/shell.ts";
import { diskFormat, snapshotId } from "../validate.ts";

/** Checks a format name from oned (`raw`, `qcow2`, ...; see core/validate.ts); `""` means unknown. */
export function checkFormat(format: string): string {
  return diskFormat(format);
}

/** Checks a snapshot id: oned's snapshot ids are non-negative integers. */
export function checkSnapshotId(id: string | number): number {
  return snapshotId(id);
}

/** Shell functions shared by the scripts: `fail`, `probe_format`, `disk_format`, `virtual_size`. */
const PRELUDE = raw(`fail() { printf '%s\\n' "$1" >&2; exit 1; }
probe_format() { qemu-img info -U -- "$1" 2>/dev/null | sed -n 's/^file format: //p' | head -n 1; }
virtual_size() { qemu-img info -U -f "$2" --output=json -- "$1" | sed -n 's/^ *"virtual-size": *\\([0-9][0-9]*\\).*/\\1/p' | head -n 1; }
disk_format() {
  # $1 file, $2 format oned recorded ('' = unknown). A symlinked disk is onestor's own overlay.
  if [ -L "$1" ] || [ -z "$2" ]; then probe_format "$1"; else printf '%s\\n' "$2"; fi
}`);

/** Options of scripts that write a new image file. */
export interface WriteOptions {
  /** QCOW2_OPTIONS (argv words), applied when the file written is qcow2. */
  qcow2Options: readonly string[];
  /** false writes every zero (SPARSE=NO): the file is fully allocated. */
  sparse: boolean;
}

/**
 * A fragment that converts `$src` (format `$infmt`) into `$dst` (format `$outfmt`) as a
 * standalone image (backing chains are read through), writing `$dst` under a temporary name.
 */
function convertFragment(options: WriteOptions, failure: string): ShellScript {
  const dense = options.sparse ? raw("") : raw("-S 0");
  return sh`tmp="$(dirname -- "$dst")/.$(basename -- "$dst").onestor-tmp"
rm -f -- "$tmp"
if [ "$outfmt" = qcow2 ]; then
  qemu-img convert -q -f "$infmt" -O qcow2 ${options.qcow2Options} ${dense} -- "$src" "$tmp" || { rm -f -- "$tmp"; fail ${failure}; }
else
  qemu-img convert -q -f "$infmt" -O "$outfmt" ${dense} -- "$src" "$tmp" || { rm -f -- "$tmp"; fail ${failure}; }
fi
mv -f -- "$tmp" "$dst" || { rm -f -- "$tmp"; fail ${failure}; }`;
}

/** What a snapshot script works on. */
export interface SnapshotTarget {
  /** Path of the disk (`<vm_dir>/disk.<i>`). */
  disk: string;
  /** Snapshot id. */
  snapId: number;
  /** Disk format oned recorded (`DISK/FORMAT`), `""` if unknown. */
  format: string;
}

/**
 * `snap_create` (poweroff): a full, standalone copy of the disk's current content into
 * `disk.<i>.snap/<id>`, in the disk's format. A recovery-layout disk is read through its chain, so
 * the snapshot holds the whole disk, not just the overlay (upstream copied only `base.1`: §11.9).
 */
export function snapshotCreateScript(target: SnapshotTarget, options: WriteOptions): ShellScript {
  const snapDir = `${target.disk}.snap`;
  return sh`${PRELUDE}
src=${target.disk}
dst=${`${snapDir}/${target.snapId}`}
[ -e "$src" ] || fail ${`Disk ${target.disk} does not exist`}
infmt=$(disk_format "$src" ${target.format})
[ -n "$infmt" ] || fail ${`Cannot tell the format of ${target.disk}`}
outfmt=${target.format}
[ -n "$outfmt" ] || outfmt=$infmt
mkdir -p -- ${snapDir} || fail ${`Cannot create ${snapDir}`}
${convertFragment(options, `Error creating snapshot ${target.snapId} of ${target.disk}`)}`;
}

/** `snap_delete`: removes `disk.<i>.snap/<id>`; a snapshot already gone is not an error (retries). */
export function snapshotDeleteScript(target: SnapshotTarget): ShellScript {
  const snap = `${target.disk}.snap/${target.snapId}`;
  return sh`snap=${snap}
if [ -e "$snap" ] || [ -L "$snap" ]; then
  rm -f -- "$snap" || { echo ${`Error deleting snapshot ${snap}`} >&2; exit 1; }
fi
rm -f -- ${`${target.disk}.snap/.${target.snapId}.onestor-tmp`}
exit 0`;
}

/**
 * `snap_revert`: makes the disk's content that of snapshot `<id>`. The snapshot must exist and be
 * readable before anything changes; its copy is written next to the disk, then renamed over it.
 * For a recovery-layout disk the base is rebuilt from the snapshot with a fresh overlay (what
 * upstream's create_base did, but with the base's real format and without deleting first).
 */
export function snapshotRevertScript(target: SnapshotTarget, options: WriteOptions): ShellScript {
  const snapDir = `${target.disk}.snap`;
  const name = target.disk.slice(target.disk.lastIndexOf("/") + 1);
  const snap = `${snapDir}/${target.snapId}`;
  const failure = `Error reverting ${target.disk} to snapshot ${target.snapId}`;
  return sh`${PRELUDE}
disk=${target.disk}
snapdir=${snapDir}
src=${snap}
[ -f "$src" ] || fail ${`Snapshot ${target.snapId} of ${target.disk} does not exist (${snap}); the disk was left unchanged`}
infmt=${target.format}
[ -n "$infmt" ] || infmt=$(probe_format "$src")
[ -n "$infmt" ] || fail ${`Cannot tell the format of ${snap}`}
qemu-img info -U -f "$infmt" -- "$src" >/dev/null 2>&1 || fail ${`Snapshot ${snap} is not a readable ${
    target.format || "disk"
  } image; the disk was left unchanged`}
outfmt=$infmt
link=$(readlink -- "$disk" 2>/dev/null || true)
case $link in
  ${name}.snap/*)
    # Recovery layout: new base from the snapshot, new empty overlay on it, then both renamed.
    dst="$snapdir/base.onestor-new"
    ${convertFragment(options, failure)}
    size=$(virtual_size "$dst" "$outfmt")
    [ -n "$size" ] || { rm -f -- "$dst"; fail ${failure}; }
    ov="$snapdir/base.1.onestor-new"
    rm -f -- "$ov"
    qemu-img create -q -f qcow2 ${options.qcow2Options} -u -b ${`${name}.snap/base`} -F "$outfmt" -- "$ov" "$size" || { rm -f -- "$ov" "$dst"; fail ${failure}; }
    [ -L ${`${snapDir}/${name}.snap`} ] || ln -s . ${`${snapDir}/${name}.snap`} || fail ${failure}
    mv -f -- "$dst" "$snapdir/base" && mv -f -- "$ov" "$snapdir/base.1" || fail ${failure}
    ;;
  *)
    dst=$disk
    ${convertFragment(options, failure)}
    ;;
esac`;
}

/** What a grow script works on. */
export interface GrowTarget {
  /** Path of the disk. */
  disk: string;
  /** Disk format oned recorded, `""` if unknown. */
  format: string;
  /** New virtual size in MiB. */
  sizeMb: number;
  /** Allocate the new space (`--preallocation=falloc`, SPARSE=NO). */
  preallocate: boolean;
  /** What to do when the disk is already larger: keep it (clone growth) or fail (resize). */
  whenLarger: "keep" | "fail";
}

/**
 * Grows a disk's virtual size to `sizeMb` MiB with `qemu-img resize`. A disk already at that size
 * is left alone, so a retried action converges.
 */
export function growScript(target: GrowTarget): ShellScript {
  if (!Number.isInteger(target.sizeMb) || target.sizeMb <= 0) {
    throw new InputError(`Disk size must be a positive number of MiB, got '${target.sizeMb}'`);
  }
  const prealloc = target.preallocate ? raw("--preallocation=falloc") : raw("");
  const larger = target.whenLarger === "fail"
    ? sh`fail ${`Disk ${target.disk} is larger than ${target.sizeMb} MiB already; disks are never shrunk`}`
    : raw("true");
  return sh`${PRELUDE}
disk=${target.disk}
[ -e "$disk" ] || fail ${`Disk ${target.disk} does not exist`}
fmt=$(disk_format "$disk" ${target.format})
[ -n "$fmt" ] || fail ${`Cannot tell the format of ${target.disk}`}
cur=$(virtual_size "$disk" "$fmt")
[ -n "$cur" ] || fail ${`Cannot read the size of ${target.disk}`}
want=$((${target.sizeMb} * 1048576))
if [ "$cur" -lt "$want" ]; then
  qemu-img resize -q -f "$fmt" ${prealloc} -- "$disk" ${`${target.sizeMb}M`} || fail ${`Error resizing image ${target.disk}`}
elif [ "$cur" -gt "$want" ]; then
  ${larger}
fi`;
}

/**
 * Applies QCOW2_OPTIONS to a qcow2 disk in place (`qemu-img amend`), for copies of images that
 * onestor did not create itself. Prints `ONESTOR_AMEND_FAILED: <reason>` instead of failing when
 * an option cannot be changed in place (e.g. cluster_size): the data is intact either way.
 */
export function amendScript(disk: string, format: string, qcow2Options: readonly string[]): ShellScript {
  if (qcow2Options.length === 0) return sh`true`;
  return sh`${PRELUDE}
disk=${disk}
fmt=$(disk_format "$disk" ${format})
if [ "$fmt" = qcow2 ]; then
  if ! out=$(qemu-img amend -q -f qcow2 ${qcow2Options} -- "$disk" 2>&1); then
    printf 'ONESTOR_AMEND_FAILED: %s\\n' "$(printf '%s' "$out" | tr '\\n' ' ')"
  fi
fi
true`;
}

/**
 * Makes a disk a standalone regular file in its recorded format, in place: a symlinked disk
 * (recovery layout, or any link) or a qcow2 disk with a backing file is converted and renamed over
 * the link; then leftovers of the recovery layout (`base`, `base.1`, `rs_tmp`, the self-link) are
 * removed, keeping numbered snapshots. Safe to run again after an interruption.
 */
export function flattenScript(disk: string, format: string, options: WriteOptions): ShellScript {
  const name = disk.slice(disk.lastIndexOf("/") + 1);
  const snapDir = `${disk}.snap`;
  return sh`${PRELUDE}
src=${disk}
dst=${disk}
snapdir=${snapDir}
[ -e "$src" ] || fail ${`Disk ${disk} does not exist`}
infmt=$(disk_format "$src" ${format})
[ -n "$infmt" ] || fail ${`Cannot tell the format of ${disk}`}
chained=no
if [ -L "$src" ]; then
  chained=yes
elif [ "$infmt" = qcow2 ] && qemu-img info -U -f qcow2 -- "$src" | grep -q '^backing file:'; then
  chained=yes
fi
if [ "$chained" = yes ]; then
  # Unknown format: qcow2, what upstream always wrote here.
  outfmt=${format}
  [ -n "$outfmt" ] || outfmt=qcow2
  ${convertFragment(options, `Error converting ${disk} to standalone image`)}
fi
if [ -f "$snapdir/base" ] && [ ! -L "$src" ]; then
  rm -f -- "$snapdir/base" "$snapdir/base.1" "$snapdir/rs_tmp" "$snapdir/base.onestor-new" "$snapdir/base.1.onestor-new"
  [ -L ${`${snapDir}/${name}.snap`} ] && rm -f -- ${`${snapDir}/${name}.snap`}
  rmdir -- "$snapdir" 2>/dev/null || true
fi
true`;
}

/**
 * Allocates every hole of the given files (SPARSE=NO after a sparse transfer): data is kept, the
 * files end up fully allocated, as if written without holes.
 */
export function preallocateScript(paths: readonly string[]): ShellScript {
  const lines = paths.map((p) =>
    sh`if [ -f ${p} ] && [ ! -L ${p} ]; then
  fallocate -l "$(stat -c %s -- ${p})" -- ${p} || { echo ${`Cannot allocate ${p} (SPARSE=NO)`} >&2; exit 1; }
fi`
  );
  return lines.length === 0 ? sh`true` : joinScripts(lines);
}
