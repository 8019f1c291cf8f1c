/**
 * Where a protected disk's recovery data lives and what its pieces are called.
 *
 * On the replica, one folder per protected disk, under REPLICA_RECOVERY_SNAPS_DIR:
 * ```
 * <SNAPS_DIR>/<vm>/disk.<i>.recovery/
 *   record.json        the chain record (record.ts): points, files, checksums, the merge journal
 *   lease.json         the lease of the process working on this disk now (a period or a restore)
 *   .onestor.lock      flock of record changes (core/cache/store.ts transactions)
 *   base               point 0: a hard link of the verified cache entry (never written)
 *   merged             qcow2 overlay on `base`: older increments are committed into it
 *   inc.<n>            the clusters written between point n-1 (or an older one) and point n
 *   full.<n>           a standalone point (raw disks; qcow2 disks whose chain was broken)
 * ```
 * On the hypervisor, beside the disk in the VM folder (migrated with it):
 * ```
 * <vm_dir>/disk.<i>                       the disk, a regular file; a qcow2 disk carries the
 *                                         persistent bitmap onestor-rec-<i>-<n> of its last point
 * <vm_dir>/disk.<i>.recovery              the monitoring line of the last period (DISK_RECOVERY_SNAPSHOT)
 * <vm_dir>/.onestor-rec-<i>-<token>.qcow2 the scratch target of a running period (never migrated)
 * ```
 *
 * @module
 */

/** Prefix of the bitmaps and libvirt checkpoints of recovery points (never OpenNebula's `one-<vm>-<n>`). */
export const BITMAP_PREFIX = "onestor-rec-";

/** Bitmap / checkpoint name of point `point` of disk `disk`: `onestor-rec-<disk>-<point>`. */
export function bitmapName(disk: number, point: number): string {
  return `${BITMAP_PREFIX}${disk}-${point}`;
}

/** Parses a bitmap name of disk `disk`; the point id, or null when it is not one. */
export function bitmapPoint(name: string, disk: number): number | null {
  const m = name.match(/^onestor-rec-([0-9]+)-([0-9]+)$/);
  if (!m || Number(m[1]) !== disk) return null;
  return Number(m[2]);
}

/** `<SNAPS_DIR>/<vm>`: everything of a VM on the replica (removed by a DELETE that is not a recreate). */
export function vmRecoveryDir(snapsDir: string, vmId: number): string {
  return `${snapsDir.replace(/\/+$/, "")}/${vmId}`;
}

/** `<SNAPS_DIR>/<vm>/disk.<i>.recovery`: the folder of one protected disk on the replica. */
export function diskRecoveryDir(snapsDir: string, vmId: number, diskId: number): string {
  return `${vmRecoveryDir(snapsDir, vmId)}/disk.${diskId}.recovery`;
}

/** Name of the chain record in a disk's recovery folder. */
export const RECORD_FILE = "record.json";
/** Name of the lease in a disk's recovery folder. */
export const LEASE_FILE = "lease.json";
/** Point 0: the hard link of the cached image. */
export const BASE_FILE = "base";
/** The overlay on `base` that absorbs old increments. */
export const MERGED_FILE = "merged";

/** File name of an incremental point. */
export function incFile(point: number): string {
  return `inc.${point}`;
}

/** File name of a standalone point. */
export function fullFile(point: number): string {
  return `full.${point}`;
}

/** Name of the hypervisor-side status file of disk `disk` (in the VM folder). */
export function statusFileName(disk: number): string {
  return `disk.${disk}.recovery`;
}

/** Prefix of the scratch targets of disk `disk` in the VM folder. */
export function scratchPrefix(disk: number): string {
  return `.onestor-rec-${disk}-`;
}

/** A fresh scratch file name for disk `disk`. */
export function scratchName(disk: number): string {
  const tag = [...crypto.getRandomValues(new Uint8Array(5))].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
  return `${scratchPrefix(disk)}${tag}.qcow2`;
}
