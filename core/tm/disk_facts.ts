/**
 * What the TM actions read about one disk from the VM's XML, with the rules upstream applied to
 * each value (spec §3.2): sizes in MiB, growth after a copy when SIZE > ORIGINAL_SIZE, copies
 * sparse unless SPARSE is `no`/`NO`, the recorded format.
 *
 * @module
 */

import { checkFormat } from "../image/disk_scripts.ts";
import type { DiskView, VmView } from "../one/objects.ts";

/** The facts of one disk. */
export interface DiskFacts {
  /** The disk id looked up (null for `kernel`/`initrd` files: nothing is known about them). */
  diskId: number | null;
  /** Whether the VM holds a DISK with that id. */
  found: boolean;
  /** `FORMAT`, validated, `""` when unknown. */
  format: string;
  /** `SIZE` in MiB. */
  sizeMb: number | null;
  /** `ORIGINAL_SIZE` in MiB. */
  originalSizeMb: number | null;
  /** Copies keep holes (false when SPARSE is `no`/`NO`). */
  sparse: boolean;
  /** New size after a copy (SIZE when SIZE > ORIGINAL_SIZE), else null. */
  growToMb: number | null;
  /** `RECOVERY_SNAPSHOT_FREQ` in seconds. */
  recoveryFreq: number | null;
  /** `FS` of a volatile disk. */
  fs: string;
  /** `TYPE` (`fs`, `swap`, `FILE`, ...). */
  type: string;
}

/** Facts of disk `diskId` of `vm` (empty facts when the VM has no such disk). */
export function diskFacts(vm: VmView, diskId: number | null): DiskFacts {
  const disk: DiskView | undefined = diskId === null ? undefined : vm.disk(diskId);
  const sizeMb = disk?.size ?? null;
  const originalSizeMb = disk?.originalSize ?? null;
  return {
    diskId,
    found: disk !== undefined,
    format: checkFormat(disk?.format ?? ""),
    sizeMb,
    originalSizeMb,
    sparse: !(disk?.sparseDisabled ?? false),
    growToMb: sizeMb !== null && originalSizeMb !== null && sizeMb > originalSizeMb ? sizeMb : null,
    recoveryFreq: disk?.recoverySnapshotFreq ?? null,
    fs: disk?.fs ?? "",
    type: disk?.type ?? "",
  };
}
