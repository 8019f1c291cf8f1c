/**
 * `snap_create`, `snap_delete`, `snap_revert` of a disk of a VM that is not running (spec §3.3):
 * the ssh driver's model, where each snapshot is an independent full copy in
 * `disk.<i>.snap/<id>`, in the disk's format. The scripts are in core/image/disk_scripts.ts; this
 * module reads what they need (format, SPARSE, QCOW2_OPTIONS) and runs them on the host.
 *
 * Differences from upstream, on purpose: a snapshot of a recovery-layout disk holds the whole disk
 * (upstream copied only the overlay, and a later revert lost the disk: §11.9); a revert checks the
 * snapshot before anything is removed and renames its copy over the disk; a delete of a snapshot
 * already gone succeeds (retries); snapshots are not pushed to the replica as `.replica_snap`
 * (nothing ever read them, §11.10).
 *
 * @module
 */

import {
  checkSnapshotId,
  snapshotCreateScript,
  snapshotDeleteScript,
  snapshotRevertScript,
} from "../image/disk_scripts.ts";
import { logInfo } from "../one/log.ts";
import { confined } from "../remote/confine.ts";
import { chainBroken, dropDiskBitmaps } from "../recovery/hooks.ts";
import { diskFacts } from "./disk_facts.ts";
import { parseVmFile } from "./paths.ts";
import type { TmServices } from "./services.ts";

/** Arguments of the snapshot actions: `<host>:<vm_dir>/disk.<i> <snap_id> <vm_id> <ds_id>`. */
export interface SnapshotRequest {
  /** `<host>:<vm_dir>/disk.<i>`. */
  disk: string;
  /** Snapshot id as oned passed it. */
  snapId: string;
  /** VM id. */
  vmId: number;
}

async function target(services: TmServices, request: SnapshotRequest) {
  const disk = parseVmFile(request.disk, "Disk location");
  const snapId = checkSnapshotId(request.snapId);
  const vm = await services.lookup.vm(request.vmId);
  const facts = diskFacts(vm, disk.diskId);
  return { disk, snapId, facts, vm };
}

/** `snap_create`: a full copy of the disk into `disk.<i>.snap/<id>`. */
export async function createSnapshot(services: TmServices, request: SnapshotRequest): Promise<void> {
  const { disk, snapId, facts } = await target(services, request);
  logInfo(`Creating snapshot ${snapId} of ${disk.host}:${disk.path}`);
  const snap = `${disk.path}.snap/${snapId}`;
  await services.runner.run(
    disk.host,
    confined(
      services.confine,
      disk.host,
      { write: [`${disk.path}.snap`, snap] },
      snapshotCreateScript({ disk: disk.path, snapId, format: facts.format }, {
        qcow2Options: services.config.qcow2Options,
        sparse: facts.sparse,
      }),
    ),
    { what: `Creating snapshot ${disk.path}.snap/${snapId}`, timeoutMs: services.transferTimeoutMs },
  );
}

/** `snap_delete`: removes `disk.<i>.snap/<id>` (no oned lookup needed). */
export async function deleteSnapshot(services: TmServices, request: SnapshotRequest): Promise<void> {
  const disk = parseVmFile(request.disk, "Disk location");
  const snapId = checkSnapshotId(request.snapId);
  logInfo(`Deleting snapshot ${snapId} of ${disk.host}:${disk.path}`);
  const snap = `${disk.path}.snap/${snapId}`;
  const script = confined(
    services.confine,
    disk.host,
    { remove: [snap, `${disk.path}.snap/.${snapId}.onestor-tmp`] },
    snapshotDeleteScript({ disk: disk.path, snapId, format: "" }),
  );
  await services.runner.run(disk.host, script, {
    what: `Deleting snapshot ${disk.path}.snap/${snapId}`,
    timeoutMs: services.controlTimeoutMs,
  });
}

/** `snap_revert`: the disk becomes a copy of snapshot `<id>` (checked first, renamed over the disk). */
export async function revertSnapshot(services: TmServices, request: SnapshotRequest): Promise<void> {
  const { disk, snapId, facts, vm } = await target(services, request);
  logInfo(`Reverting ${disk.host}:${disk.path} to snapshot ${snapId}`);
  await services.runner.run(
    disk.host,
    confined(
      services.confine,
      disk.host,
      { write: [disk.path, `${disk.path}.snap/base`, `${disk.path}.snap/base.1`] },
      snapshotRevertScript({ disk: disk.path, snapId, format: facts.format }, {
        qcow2Options: services.config.qcow2Options,
        sparse: facts.sparse,
      }),
    ),
    { what: `Reverting to snapshot ${disk.path}.snap/${snapId}`, timeoutMs: services.transferTimeoutMs },
  );
  if (disk.diskId !== null && facts.recoveryFreq !== null) {
    // The disk changed under its recovery chain: no bitmap may describe it, the next point is full.
    await dropDiskBitmaps(services, disk.host, disk.path);
    await chainBroken(services, vm, disk.diskId, `the disk was reverted to snapshot ${snapId}`);
  }
}
