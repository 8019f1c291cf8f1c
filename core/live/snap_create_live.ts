/**
 * `snap_create_live <host>:<vm_dir>/disk.<i> <snap_id> <vm_id> <ds_id>` (spec §3.3, called by the
 * KVM driver for a running VM): the snapshot `disk.<i>.snap/<snap_id>` is a full, standalone copy
 * of the disk taken by the hypervisor with `virsh blockcopy --wait --finish` while the guest keeps
 * running and writing. See core/hypervisor/blockcopy.ts for the guarantees (written aside and
 * renamed, retry on a busy disk, roll-back, the domain's disk checked before and after).
 *
 * Unlike upstream, nothing is pushed to the replica: upstream's `disk.<i>.replica_snap` copy was
 * never read by anything (spec §11.10).
 *
 * @module
 */

import { checkSnapshotId } from "../image/disk_scripts.ts";
import { blockCopyScript } from "../hypervisor/blockcopy.ts";
import { logInfo } from "../one/log.ts";
import { confined } from "../remote/confine.ts";
import { diskFacts } from "../tm/disk_facts.ts";
import { parseVmFile, snapDirOf } from "../tm/paths.ts";
import type { TmServices } from "../tm/services.ts";
import { liveDomain } from "./vm_domain.ts";

/** Arguments of snap_create_live. */
export interface LiveSnapshotRequest {
  /** `<host>:<vm_dir>/disk.<i>`. */
  disk: string;
  /** Snapshot id. */
  snapId: string | number;
  /** VM id. */
  vmId: number;
}

/** Retry policy on a busy disk (tests shorten it; the actions use upstream's 3 tries, 5 s apart). */
export interface BusyRetry {
  tries: number;
  delaySeconds: number;
}

/** Upstream's policy: 3 tries, 5 s apart, while libvirt answers "active block job". */
export const DEFAULT_BUSY_RETRY: BusyRetry = { tries: 3, delaySeconds: 5 };

/** Runs snap_create_live (see the module doc). */
export async function snapCreateLive(
  services: TmServices,
  request: LiveSnapshotRequest,
  retry: BusyRetry = DEFAULT_BUSY_RETRY,
): Promise<void> {
  const file = parseVmFile(request.disk, "Disk location");
  const snapId = checkSnapshotId(request.snapId);
  const vm = await services.lookup.vm(request.vmId);
  const domain = liveDomain(vm, "snap_create_live");
  const facts = diskFacts(vm, file.diskId);
  const dest = `${snapDirOf(file.path)}/${snapId}`;
  logInfo(`Creating snapshot ${dest} of running domain ${domain} on ${file.host}`);
  await services.runner.run(
    file.host,
    confined(
      services.confine,
      file.host,
      { write: [snapDirOf(file.path), dest] },
      blockCopyScript({
        uri: services.config.libvirtUri,
        domain,
        disk: file.path,
        dest,
        // A recovery-layout disk is a qcow2 overlay of a raw image: the snapshot keeps the disk's format.
        format: facts.format === "raw" || facts.format === "qcow2" ? facts.format : undefined,
        tries: retry.tries,
        delaySeconds: retry.delaySeconds,
        timeoutSeconds: Math.ceil(services.transferTimeoutMs / 1000),
      }),
    ),
    { what: `Error creating snapshot ${dest}`, timeoutMs: services.transferTimeoutMs },
  );
}
