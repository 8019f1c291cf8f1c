/**
 * What the TM actions read about one disk from the VM's XML, with the rules upstream applied to
 * each value (spec §3.2): sizes in MiB, growth after a copy when SIZE > ORIGINAL_SIZE, copies
 * sparse unless SPARSE is `no`/`NO`, the recorded format.
 *
 * @module
 */

import type { DiskView, VmView } from "../one/objects.ts";
import { diskFormat, diskType, frequencySeconds, optionalSizeMb, yesNo } from "../validate.ts";

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

/**
 * Facts of disk `diskId` of `vm` (empty facts when the VM has no such disk). Every value is
 * validated (core/validate.ts): a SIZE, FORMAT or RECOVERY_SNAPSHOT_FREQ that is set but wrong
 * stops the action with an error naming the attribute, instead of being read as "not set".
 */
export function diskFacts(vm: VmView, diskId: number | null): DiskFacts {
  const disk: DiskView | undefined = diskId === null ? undefined : vm.disk(diskId);
  const at = (name: string) => `DISK[DISK_ID=${diskId}]/${name} of VM ${vm.id}`;
  const value = (name: string) => disk?.attr(name) ?? "";
  const sizeMb = optionalSizeMb(value("SIZE"), at("SIZE"));
  const originalSizeMb = optionalSizeMb(value("ORIGINAL_SIZE"), at("ORIGINAL_SIZE"));
  // SPARSE must be yes or no; as tm/ssh, only `no` and `NO` turn holes off.
  yesNo(value("SPARSE"), at("SPARSE"));
  const sparse = !(disk?.sparseDisabled ?? false);
  return {
    diskId,
    found: disk !== undefined,
    format: diskFormat(value("FORMAT"), at("FORMAT")),
    sizeMb,
    originalSizeMb,
    sparse,
    growToMb: sizeMb !== null && originalSizeMb !== null && sizeMb > originalSizeMb ? sizeMb : null,
    recoveryFreq: frequencySeconds(value("RECOVERY_SNAPSHOT_FREQ"), at("RECOVERY_SNAPSHOT_FREQ")),
    fs: value("FS").trim(),
    type: diskType(value("TYPE"), at("TYPE")),
  };
}
