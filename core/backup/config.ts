/**
 * What OpenNebula's backup framework tells the TM about a backup (spec §2, §3.3): the arguments
 * `<host>:<vm_dir> <disk_ids ':'-joined> <deploy_id> <bj_id|-> <vm_id> <ds_id>` shared by
 * prebackup[_live] and postbackup[_live], and the VM's `BACKUPS/BACKUP_CONFIG` (stdin).
 *
 * Backup numbering, as upstream: a FULL backup is backup 0; in INCREMENT mode backup
 * `LAST_INCREMENT_ID + 1` is incremental to checkpoint `LAST_INCREMENT_ID` (none yet: a full
 * backup 0 that starts the chain). Disk `<id>` of backup `<n>` is written to
 * `<backup dir>/disk.<id>.<n>`, with the base64 VM XML in `<backup dir>/vm.xml`; the backup
 * datastore driver collects them from there. Checkpoints (libvirt) and bitmaps (qcow2) are named
 * `one-<vm_id>-<n>`.
 *
 * @module
 */

import { InputError } from "../errors.ts";
import { intOrNull, type VmView } from "../one/objects.ts";
import type { PauseMode } from "../hypervisor/pause.ts";
import { checkVmPath, parseId, parseVmDir, type VmDir } from "../tm/paths.ts";

/** The arguments of the four backup actions. */
export interface BackupArgs {
  /** The VM folder on its host. */
  vmDir: VmDir;
  /** Disk ids to back up, in the order given. */
  diskIds: number[];
  /** Domain name as oned passed it. */
  deployId: string;
  /** Backup job id (`-` when none). */
  backupJobId: string;
  /** VM id. */
  vmId: number;
  /** System datastore id. */
  dsId: number;
}

/** Parses `<host>:<vm_dir> <disks> <deploy_id> <bj_id> <vm_id> <ds_id>`. */
export function parseBackupArgs(args: readonly string[]): BackupArgs {
  const [dir, disks, deployId, bjId, vmId, dsId] = args;
  const diskIds = (disks ?? "").split(":").filter((d) => d.trim() !== "").map((d) => parseId(d, "Disk id"));
  if (diskIds.length === 0) throw new InputError(`No disk ids to back up in '${disks ?? ""}'`);
  return {
    vmDir: parseVmDir(dir, "VM folder location"),
    diskIds: [...new Set(diskIds)],
    deployId: (deployId ?? "").trim(),
    backupJobId: (bjId ?? "-").trim(),
    vmId: parseId(vmId, "VM id"),
    dsId: parseId(dsId, "Datastore id"),
  };
}

/** A VM's backup settings and the numbers of this backup. */
export interface BackupPlan {
  /** `FULL` or `INCREMENT` (`BACKUP_CONFIG/MODE`, FULL when unset). */
  mode: "FULL" | "INCREMENT";
  /** `cbt` (bitmaps and checkpoints) or `snapshot` (`BACKUP_CONFIG/INCREMENT_MODE`). */
  incrementMode: "cbt" | "snapshot";
  /** This backup's number: 0 for a full backup. */
  backupId: number;
  /** The backup it is incremental to, -1 for a full backup. */
  parentId: number;
  /** How the domain is held still when a live backup starts (`BACKUP_CONFIG/FS_FREEZE`). */
  pause: PauseMode;
  /** The backup datastore (`BACKUP_CONFIG/LAST_DATASTORE_ID`), null when unknown. */
  datastoreId: number | null;
  /** Whether the run tracks changed blocks (INCREMENT mode in cbt): checkpoints/bitmaps are kept. */
  tracksChanges: boolean;
}

/** Reads `BACKUPS/BACKUP_CONFIG` of the VM. */
export function backupPlan(vm: VmView): BackupPlan {
  const value = (name: string) => vm.xpath(`/VM/BACKUPS/BACKUP_CONFIG/${name}`).trim();
  const modeText = value("MODE").toUpperCase();
  if (modeText !== "" && modeText !== "FULL" && modeText !== "INCREMENT") {
    throw new InputError(`Unknown backup MODE '${value("MODE")}' (FULL or INCREMENT)`);
  }
  const mode = modeText === "INCREMENT" ? "INCREMENT" : "FULL";
  const incrementMode = value("INCREMENT_MODE").toLowerCase() === "snapshot" ? "snapshot" : "cbt";
  const freeze = value("FS_FREEZE").toUpperCase();
  const pause: PauseMode = freeze === "AGENT" ? "agent" : freeze === "SUSPEND" ? "suspend" : "none";
  let backupId = 0;
  let parentId = -1;
  if (mode === "INCREMENT") {
    const last = intOrNull(value("LAST_INCREMENT_ID")) ?? -1;
    backupId = last + 1;
    parentId = last;
  }
  return {
    mode,
    incrementMode,
    backupId,
    parentId,
    pause,
    datastoreId: intOrNull(value("LAST_DATASTORE_ID")),
    tracksChanges: mode === "INCREMENT" && incrementMode === "cbt",
  };
}

/**
 * Refuses what this driver does not do: incremental backups in `snapshot` mode (upstream's mode
 * turns `disk.<i>` into a symlink to a qcow2 chain in `disk.<i>.snap/`, which live migration and
 * the recovery snapshots cannot follow; use the default changed-block tracking instead).
 */
export function checkPlan(plan: BackupPlan): void {
  if (plan.mode === "INCREMENT" && plan.incrementMode === "snapshot") {
    throw new InputError(
      "Incremental backups with INCREMENT_MODE=SNAPSHOT are not supported by this datastore " +
        "(they rewire disk.<i> into a qcow2 chain); use INCREMENT_MODE=CBT",
    );
  }
}

/** The folders of a backup on the host. */
export interface BackupDirs {
  /** Where the disk copies and vm.xml go. */
  backup: string;
  /** Scratch folder of live backups (`<vm_dir>/tmp`). */
  tmp: string;
  /** With BACKUP_BASE_PATH: `<base>/<vm_id>`, removed when the backup is over; else null. */
  base: string | null;
}

/** `$BACKUP_BASE_PATH/<vm_id>/backup` when set, else `<vm_dir>/backup`; `<vm_dir>/tmp`. */
export function backupDirs(vmDir: string, vmId: number, basePath: string | null): BackupDirs {
  if (basePath) {
    const base = `${checkVmPath(basePath, 1, "BACKUP_BASE_PATH")}/${vmId}`;
    return { backup: `${base}/backup`, tmp: `${vmDir}/tmp`, base };
  }
  return { backup: `${vmDir}/backup`, tmp: `${vmDir}/tmp`, base: null };
}

/** Name of checkpoint / bitmap `n` of VM `vmId`. */
export function checkpointName(vmId: number, n: number): string {
  return `one-${vmId}-${n}`;
}

/** Target device of each disk to back up (from the VM template), in the order given. */
export function diskTargets(vm: VmView, diskIds: readonly number[]): { id: number; target: string }[] {
  return diskIds.map((id) => {
    const disk = vm.disk(id);
    if (!disk) throw new InputError(`VM ${vm.id} has no disk ${id} to back up`);
    const target = disk.target.trim();
    if (!/^[a-z]+[0-9a-z]*$/.test(target)) {
      throw new InputError(`Disk ${id} has no usable TARGET ('${target}')`);
    }
    return { id, target };
  });
}

/** `nice`/`ionice` words for the heavy copies, from the backup datastore's `<DS_MAD>_NICE`/`_IONICE`. */
export function confinement(dsMad: string, templateAttr: (name: string) => string): string[] {
  const mad = dsMad.trim().toUpperCase();
  if (mad === "" || !/^[A-Z0-9_]+$/.test(mad)) return [];
  const nice = intOrNull(templateAttr(`${mad}_NICE`));
  const ionice = intOrNull(templateAttr(`${mad}_IONICE`));
  const words: string[] = [];
  if (nice !== null && nice >= -20 && nice <= 19) words.push("nice", "-n", String(nice));
  if (ionice !== null && ionice >= 0 && ionice <= 7) words.push("ionice", "-c2", `-n${ionice}`);
  return words;
}
