/**
 * Every action onestor answers, with its argument counts and a lazy loader: only the module of the
 * action being run is imported, so start-up stays small (oned starts one process per action).
 *
 * @module
 */

import type { ActionKind, ActionRun } from "./context.ts";

/** Description of one action. */
export interface ActionSpec {
  /** Name as oned calls it. */
  readonly name: string;
  /** Family. */
  readonly kind: ActionKind;
  /** Minimum and maximum number of positional arguments (max Infinity for variadic). */
  readonly args: readonly [number, number];
  /** Argument synopsis for help and usage errors. */
  readonly usage: string;
  /** Loads the implementation. */
  readonly load: () => Promise<{ run: ActionRun }>;
}

function tm(name: string, args: [number, number], usage: string, load: ActionSpec["load"]): ActionSpec {
  return { name, kind: "tm", args, usage, load };
}

function ds(name: string, load: ActionSpec["load"]): ActionSpec {
  return { name, kind: "ds", args: [1, 1], usage: "ID (base64 DS_DRIVER_ACTION_DATA on stdin)", load };
}

const MIGRATE_USAGE = "SRC_HOST DST_HOST VM_DIR VM_ID DS_ID [CALLER_TM] (base64 VM XML on stdin)";
const BACKUP_USAGE = "HOST:VM_DIR DISK_IDS DEPLOY_ID BJ_ID VM_ID DS_ID (VM XML on stdin)";

/** Transfer manager actions (spec §2, §3). */
export const TM_ACTIONS: readonly ActionSpec[] = [
  tm("clone", [4, 4], "FE:SOURCE HOST:DST VM_ID DS_ID", () => import("./tm/clone.ts")),
  tm("ln", [4, 4], "FE:SOURCE HOST:DST VM_ID DS_ID", () => import("./tm/ln.ts")),
  tm("clone.replica", [4, 5], "FE:SOURCE HOST:DST VM_ID DS_ID [REPLICA_HOST]", () => import("./tm/clone.ts")),
  tm("ln.replica", [4, 5], "FE:SOURCE HOST:DST VM_ID DS_ID [REPLICA_HOST]", () => import("./tm/ln.ts")),
  tm("mv", [4, 4], "SRC_HOST:PATH DST_HOST:PATH VM_ID DS_ID", () => import("./tm/mv.ts")),
  tm("mvds", [4, 4], "HOST:DISK SOURCE VM_ID DS_ID", () => import("./tm/mvds.ts")),
  tm("cpds", [5, 5], "HOST:DISK SOURCE SNAP_ID VM_ID DS_ID", () => import("./tm/cpds.ts")),
  tm("delete", [3, 3], "HOST:PATH VM_ID DS_ID", () => import("./tm/delete.ts")),
  tm("context", [4, Infinity], "CONTEXT_SH [FILE...] HOST:DST VM_ID DS_ID", () => import("./tm/context.ts")),
  tm("mkimage", [5, 5], "SIZE_MB FORMAT HOST:DST VM_ID DS_ID", () => import("./tm/mkimage.ts")),
  tm("mkswap", [4, 4], "SIZE_MB HOST:DST VM_ID DS_ID", () => import("./tm/mkswap.ts")),
  tm("resize", [3, 4], "HOST:DISK SIZE_MB VM_ID [DS_ID]", () => import("./tm/resize.ts")),
  tm("premigrate", [5, 6], MIGRATE_USAGE, () => import("./tm/premigrate.ts")),
  tm("postmigrate", [5, 6], MIGRATE_USAGE, () => import("./tm/postmigrate.ts")),
  tm("failmigrate", [5, 6], MIGRATE_USAGE, () => import("./tm/failmigrate.ts")),
  tm("snap_create", [4, 4], "HOST:DISK SNAP_ID VM_ID DS_ID", () => import("./tm/snap_create.ts")),
  tm("snap_create_live", [4, 4], "HOST:DISK SNAP_ID VM_ID DS_ID", () => import("./tm/snap_create_live.ts")),
  tm("snap_delete", [4, 4], "HOST:DISK SNAP_ID VM_ID DS_ID", () => import("./tm/snap_delete.ts")),
  tm("snap_revert", [4, 4], "HOST:DISK SNAP_ID VM_ID DS_ID", () => import("./tm/snap_revert.ts")),
  tm("monitor", [0, 1], "[DS_ID] (base64 DS_DRIVER_ACTION_DATA on stdin)", () => import("./tm/monitor.ts")),
  tm("monitor_ds", [1, 1], "DS_DIR", () => import("./tm/monitor_ds.ts")),
  tm("prebackup", [6, 6], BACKUP_USAGE, () => import("./tm/prebackup.ts")),
  tm("prebackup_live", [6, 6], BACKUP_USAGE, () => import("./tm/prebackup_live.ts")),
  tm("postbackup", [6, 6], BACKUP_USAGE, () => import("./tm/postbackup.ts")),
  tm("postbackup_live", [6, 6], BACKUP_USAGE, () => import("./tm/postbackup_live.ts")),
  tm("restore", [5, 5], "HOST:VM_DIR VM_ID IMG_ID INC_ID DISK_ID", () => import("./tm/restore.ts")),
];

/** Datastore actions of the fs driver (spec §7). */
export const DS_ACTIONS: readonly ActionSpec[] = [
  ds("cp", () => import("./ds/cp.ts")),
  ds("mkfs", () => import("./ds/mkfs.ts")),
  ds("rm", () => import("./ds/rm.ts")),
  ds("stat", () => import("./ds/stat.ts")),
  ds("clone", () => import("./ds/clone.ts")),
  ds("monitor", () => import("./ds/monitor.ts")),
  ds("snap_delete", () => import("./ds/snap_delete.ts")),
  ds("snap_revert", () => import("./ds/snap_revert.ts")),
  ds("snap_flatten", () => import("./ds/snap_flatten.ts")),
  ds("export", () => import("./ds/export.ts")),
];

/** TM actions that run on hypervisors (through OpenNebula's probes), laid as plain shell scripts. */
export const HOST_SIDE_TM_ACTIONS: readonly string[] = ["monitor_ds"];

/** Finds an action by family and name; a `name.suffix` (oned's TM_MAD_SYSTEM form) falls back to `name`. */
export function findAction(kind: "tm" | "ds", name: string): ActionSpec | undefined {
  const list = kind === "tm" ? TM_ACTIONS : DS_ACTIONS;
  const lower = name.toLowerCase();
  return list.find((a) => a.name === lower) ??
    (lower.includes(".") ? list.find((a) => a.name === lower.slice(0, lower.indexOf("."))) : undefined);
}
