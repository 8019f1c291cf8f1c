/**
 * Which disks are protected, from oned's pools: a DISK with RECOVERY_SNAPSHOT_FREQ (seconds) of a
 * VM whose current system datastore (last history record) has REPLICA_HOST. Two XML-RPC calls per
 * pass, whatever the number of VMs: `one.vmpool.infoextended` (the short `one.vmpool.info` drops
 * the DISK attributes needed here) and `one.datastorepool.info`.
 *
 * A disk with the attribute that cannot be protected is listed with the reason (a volatile disk,
 * a system datastore without REPLICA_HOST, a VM not run by libvirt), so `onestor recovery status`
 * shows it instead of leaving the administrator to believe it is (upstream #6067).
 *
 * @module
 */

import { LIBVIRT_VMMS } from "../live/vm_domain.ts";
import { fixDirSlashes } from "../one/location.ts";
import { DatastoreType, DatastoreView, LcmState, VmState, VmView } from "../one/objects.ts";
import type { OneClient } from "../one/xmlrpc.ts";
import type { XmlElement } from "../one/xml.ts";

/** A disk with RECOVERY_SNAPSHOT_FREQ, and where it is. */
export interface ProtectedDisk {
  vmId: number;
  vmName: string;
  diskId: number;
  /** RECOVERY_SNAPSHOT_FREQ in seconds. */
  freq: number;
  /** Host the VM runs on (last history record). */
  host: string;
  systemDsId: number | null;
  /** REPLICA_HOST of that system datastore ("" when it has none). */
  replica: string;
  /** `<BASE_PATH of the system datastore>/<vm>`. */
  vmDir: string;
  /** libvirt domain name (DEPLOY_ID). */
  domain: string;
  /** VM STATE and LCM_STATE. */
  state: number | null;
  lcmState: number | null;
  /** DISK/FORMAT as oned records it. */
  format: string;
  /** The image's SOURCE. */
  source: string;
  /** Why it cannot be protected, null when it can. */
  problem: string | null;
}

/** Whether periods can run for the disk now: protectable and the VM running. */
export function runnable(disk: ProtectedDisk): boolean {
  return disk.problem === null && disk.state === VmState.ACTIVE && disk.lcmState === LcmState.RUNNING &&
    disk.domain !== "" && disk.host !== "";
}

/** The protected disks of the VMs of a pool, given the datastores by id. */
export function protectedDisks(
  vmPool: XmlElement,
  datastores: ReadonlyMap<number, DatastoreView>,
): ProtectedDisk[] {
  const out: ProtectedDisk[] = [];
  for (const element of vmPool.children) {
    if (element.name !== "VM") continue;
    const vm = new VmView(element);
    const sysDs = vm.systemDsId;
    const ds = sysDs === null ? undefined : datastores.get(sysDs);
    const replica = ds?.replicaHost ?? "";
    const basePath = ds ? fixDirSlashes(ds.basePath) : "";
    const vmMad = vm.historyLast("VM_MAD").trim();
    for (const disk of vm.disks()) {
      const freq = disk.recoverySnapshotFreq;
      if (freq === null || disk.id === null) continue;
      if (disk.type.toUpperCase() === "CDROM") continue;
      let problem: string | null = null;
      if (freq <= 0) problem = `RECOVERY_SNAPSHOT_FREQ must be a positive number of seconds, got ${freq}`;
      else if (disk.imageId === null || disk.source === "") {
        problem = "a volatile disk is not protected (a recreate makes it empty again)";
      } else if (sysDs === null) problem = "the VM has no placement yet";
      else if (!ds) problem = `system datastore ${sysDs} is unknown to oned`;
      else if (ds.type !== DatastoreType.SYSTEM_DS) problem = `datastore ${sysDs} is not a system datastore`;
      else if (replica === "") problem = `system datastore ${sysDs} has no REPLICA_HOST`;
      else if (vmMad !== "" && !LIBVIRT_VMMS.includes(vmMad)) {
        problem = `recovery points need a libvirt hypervisor (VM_MAD ${vmMad})`;
      }
      out.push({
        vmId: vm.id,
        vmName: vm.name,
        diskId: disk.id,
        freq,
        host: vm.hostname,
        systemDsId: sysDs,
        replica,
        vmDir: basePath === "" ? "" : `${basePath}/${vm.id}`,
        domain: vm.deployId.trim(),
        state: vm.state,
        lcmState: vm.lcmState,
        format: disk.format.trim().toLowerCase(),
        source: disk.source,
        problem,
      });
    }
  }
  return out.sort((a, b) => a.vmId - b.vmId || a.diskId - b.diskId);
}

/** Reads the pools from oned and lists the protected disks. */
export async function readInventory(client: OneClient): Promise<ProtectedDisk[]> {
  const [vms, dsPool] = await Promise.all([client.vmPoolInfo(-1), client.datastorePoolInfo()]);
  const datastores = new Map<number, DatastoreView>();
  for (const element of dsPool.children) {
    if (element.name !== "DATASTORE") continue;
    const ds = new DatastoreView(element);
    datastores.set(ds.id, ds);
  }
  return protectedDisks(vms, datastores);
}
