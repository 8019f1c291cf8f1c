/**
 * `resize <host>:<vm_dir>/disk.<i> <size_mb> <vm_id> [<ds_id>]` (spec §3.3): grows a disk of a VM
 * that is not running. In DISK_RESIZE (62, running VM) the VMM driver resizes the disk through
 * the hypervisor, so this only logs. SPARSE=NO allocates the new space; disks are never shrunk;
 * a disk already at the size is left alone (retries).
 *
 * @module
 */

import { growScript } from "../image/disk_scripts.ts";
import { logInfo } from "../one/log.ts";
import { sizeMb as checkSizeMb } from "../validate.ts";
import { confined } from "../remote/confine.ts";
import { LcmState } from "../one/objects.ts";
import { diskFacts } from "./disk_facts.ts";
import { parseVmFile } from "./paths.ts";
import type { TmServices } from "./services.ts";

/** Arguments of resize. */
export interface ResizeRequest {
  /** `<host>:<vm_dir>/disk.<i>`. */
  disk: string;
  /** New size in MiB, as oned passed it. */
  sizeMb: string;
  /** VM id. */
  vmId: number;
}

/** Runs resize (see the module doc). */
export async function resizeDisk(services: TmServices, request: ResizeRequest): Promise<void> {
  const disk = parseVmFile(request.disk, "Disk location");
  const sizeMb = checkSizeMb(request.sizeMb, "New disk size");
  const vm = await services.lookup.vm(request.vmId);
  if (vm.lcmState === LcmState.DISK_RESIZE) {
    logInfo(`Not resizing ${disk.path}: the VM is running, its hypervisor resizes the disk`);
    return;
  }
  const facts = diskFacts(vm, disk.diskId);
  logInfo(`Resizing ${disk.host}:${disk.path} to ${sizeMb} MiB`);
  await services.runner.run(
    disk.host,
    confined(
      services.confine,
      disk.host,
      { write: [disk.path] },
      growScript({
        disk: disk.path,
        format: facts.format,
        sizeMb,
        preallocate: !facts.sparse,
        whenLarger: "fail",
      }),
    ),
    {
      what: `Resizing ${disk.path}`,
      timeoutMs: facts.sparse ? services.controlTimeoutMs : services.transferTimeoutMs,
    },
  );
}
