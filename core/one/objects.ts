/**
 * Typed, read-only views over oned's object XML (`one.vm.info`, `one.datastore.info`,
 * `one.host.info`), exposing what the TM and DS actions read. Missing values read as `""` (like
 * `xpath.rb`) or `null` for numbers, so callers decide what absence means.
 *
 * Template values in oned's XML are CDATA (`<SIZE><![CDATA[256]]></SIZE>`) while the object's own
 * fields are plain text (`<STATE>3</STATE>`); the parser makes both plain strings.
 *
 * @module
 */

import { hostName } from "../validate.ts";
import { InputError } from "../errors.ts";
import { childElement, childText, parseXml, type XmlElement, xpathText } from "./xml.ts";

/** VM `STATE` values (VirtualMachine.h). */
export const VmState = {
  INIT: 0,
  PENDING: 1,
  HOLD: 2,
  ACTIVE: 3,
  STOPPED: 4,
  SUSPENDED: 5,
  DONE: 6,
  POWEROFF: 8,
  UNDEPLOYED: 9,
  CLONING: 10,
  CLONING_FAILURE: 11,
} as const;

/** VM `LCM_STATE` values the drivers look at (VirtualMachine.h has the full list). */
export const LcmState = {
  LCM_INIT: 0,
  PROLOG: 1,
  BOOT: 2,
  RUNNING: 3,
  MIGRATE: 4,
  EPILOG_STOP: 10,
  EPILOG: 11,
  UNKNOWN: 16,
  HOTPLUG: 17,
  CLEANUP_DELETE: 23,
  HOTPLUG_SNAPSHOT: 24,
  HOTPLUG_SAVEAS: 26,
  HOTPLUG_SAVEAS_POWEROFF: 27,
  HOTPLUG_SAVEAS_SUSPENDED: 28,
  HOTPLUG_PROLOG_POWEROFF: 33,
  HOTPLUG_EPILOG_POWEROFF: 34,
  DISK_SNAPSHOT_POWEROFF: 51,
  DISK_SNAPSHOT_REVERT_POWEROFF: 52,
  DISK_SNAPSHOT_DELETE_POWEROFF: 53,
  DISK_SNAPSHOT_SUSPENDED: 54,
  DISK_SNAPSHOT_DELETE_SUSPENDED: 56,
  DISK_SNAPSHOT: 57,
  DISK_SNAPSHOT_DELETE: 59,
  PROLOG_MIGRATE_UNKNOWN: 60,
  PROLOG_MIGRATE_UNKNOWN_FAILURE: 61,
  DISK_RESIZE: 62,
  DISK_RESIZE_POWEROFF: 63,
  DISK_RESIZE_UNDEPLOYED: 64,
  HOTPLUG_SAVEAS_UNDEPLOYED: 67,
  HOTPLUG_SAVEAS_STOPPED: 68,
  BACKUP: 69,
  BACKUP_POWEROFF: 70,
  RESTORE: 71,
} as const;

/** History record `ACTION` values the drivers look at (vm.xsd has the full list). */
export const HistoryAction = {
  NONE: 0,
  MIGRATE: 1,
  LIVE_MIGRATE: 2,
  UNDEPLOY: 5,
  UNDEPLOY_HARD: 6,
  STOP: 9,
  DELETE: 13,
  DELETE_RECREATE: 14,
  TERMINATE: 27,
  TERMINATE_HARD: 28,
  RECOVER: 42,
} as const;

/** Host `STATE` values (Host.h). */
export const HostState = {
  INIT: 0,
  MONITORING_MONITORED: 1,
  MONITORED: 2,
  ERROR: 3,
  DISABLED: 4,
  MONITORING_ERROR: 5,
  MONITORING_INIT: 6,
  MONITORING_DISABLED: 7,
  OFFLINE: 8,
} as const;

/** Datastore `TYPE` values (the numeric field, not the template's `TYPE` string). */
export const DatastoreType = { IMAGE_DS: 0, SYSTEM_DS: 1, FILE_DS: 2, BACKUP_DS: 3 } as const;

/** Image `TYPE` values (Image.h). */
export const ImageType = {
  OS: 0,
  CDROM: 1,
  DATABLOCK: 2,
  KERNEL: 3,
  RAMDISK: 4,
  CONTEXT: 5,
  BACKUP: 6,
  FILESYSTEM: 7,
} as const;

/** An integer from oned's text, or `null` when empty or not an integer. */
export function intOrNull(text: string): number | null {
  const t = text.trim();
  return /^-?[0-9]+$/.test(t) ? Number(t) : null;
}

/** Leaf children of an element as a name → text record (first occurrence wins). */
export function leafAttributes(element: XmlElement | undefined): Readonly<Record<string, string>> {
  const out: Record<string, string> = Object.create(null);
  for (const c of element?.children ?? []) {
    if (c.children.length === 0 && !Object.hasOwn(out, c.name)) out[c.name] = c.text;
  }
  return out;
}

function expectRoot(element: XmlElement, name: string): XmlElement {
  if (element.name !== name) {
    throw new InputError(`Expected a <${name}> document from oned, got <${element.name}>`);
  }
  return element;
}

/**
 * What every oned object answer shares: the root element (checked), `ID`, `NAME`, `STATE` and the
 * `TEMPLATE` attributes.
 */
abstract class ObjectView {
  /** The object's root element (`VM`, `DATASTORE`, `HOST`). */
  readonly element: XmlElement;

  constructor(element: XmlElement, root: string) {
    this.element = expectRoot(element, root);
  }

  /** `ID`. */
  get id(): number {
    return intOrNull(childText(this.element, "ID")) ?? -1;
  }
  /** `NAME`. */
  get name(): string {
    return childText(this.element, "NAME");
  }
  /** `STATE` (see {@linkcode VmState}, {@linkcode HostState}; datastores: 0 ready, 1 disabled). */
  get state(): number | null {
    return intOrNull(childText(this.element, "STATE"));
  }
  /** `TEMPLATE/<name>` (a relative path such as `CONTEXT/TARGET` works too), `""` when missing. */
  templateAttr(name: string): string {
    return xpathText(this.element, `TEMPLATE/${name}`);
  }
}

/** One `DISK` of a VM template. */
export class DiskView {
  /** The `DISK` element. */
  readonly element: XmlElement;
  /** All attributes of the disk (`SIZE`, `SOURCE`, `TM_MAD`, ...). */
  readonly attrs: Readonly<Record<string, string>>;

  constructor(element: XmlElement) {
    this.element = element;
    this.attrs = leafAttributes(element);
  }

  /** An attribute's value, `""` when missing. */
  attr(name: string): string {
    return Object.hasOwn(this.attrs, name) ? this.attrs[name] : "";
  }

  /** Whether the disk carries the attribute (even if empty). */
  has(name: string): boolean {
    return Object.hasOwn(this.attrs, name);
  }

  /** `DISK_ID`. */
  get id(): number | null {
    return intOrNull(this.attr("DISK_ID"));
  }
  /** `SIZE` in MiB. */
  get size(): number | null {
    return intOrNull(this.attr("SIZE"));
  }
  /** `ORIGINAL_SIZE` in MiB (the image's size; SIZE > ORIGINAL_SIZE means grow after copy). */
  get originalSize(): number | null {
    return intOrNull(this.attr("ORIGINAL_SIZE"));
  }
  /** `SPARSE` as written (`""` when unset). */
  get sparse(): string {
    return this.attr("SPARSE");
  }
  /** tm/ssh's rule: copies are sparse unless `SPARSE` is exactly `no` or `NO`. */
  get sparseDisabled(): boolean {
    return /^(no|NO)$/.test(this.sparse);
  }
  /** `FORMAT` (`raw`, `qcow2`, ...). */
  get format(): string {
    return this.attr("FORMAT");
  }
  /** `FS` of a volatile or FS disk. */
  get fs(): string {
    return this.attr("FS");
  }
  /** `TYPE` (`FILE`, `CDROM`, `fs`, `swap`, `BLOCK`, ...). */
  get type(): string {
    return this.attr("TYPE");
  }
  /** `TARGET` device (`vda`). */
  get target(): string {
    return this.attr("TARGET");
  }
  /** `SOURCE`, the image's path in its datastore (empty for volatile disks). */
  get source(): string {
    return this.attr("SOURCE");
  }
  /** `CLONE=YES`: a non-persistent image copied for the VM. */
  get clone(): boolean {
    return this.attr("CLONE").toUpperCase() === "YES";
  }
  /** `SAVE=YES`: a persistent image written back at epilog (MVDS). */
  get save(): boolean {
    return this.attr("SAVE").toUpperCase() === "YES";
  }
  /** `PERSISTENT=YES`. */
  get persistent(): boolean {
    return this.attr("PERSISTENT").toUpperCase() === "YES";
  }
  /** `RECOVERY_SNAPSHOT_FREQ` in seconds, `null` when unset. */
  get recoverySnapshotFreq(): number | null {
    return intOrNull(this.attr("RECOVERY_SNAPSHOT_FREQ"));
  }
  /** `TM_MAD` of the disk's datastore. */
  get tmMad(): string {
    return this.attr("TM_MAD");
  }
  /** `TM_MAD_SYSTEM` (mixed mode). */
  get tmMadSystem(): string {
    return this.attr("TM_MAD_SYSTEM");
  }
  /** `DATASTORE_ID` of the image datastore. */
  get datastoreId(): number | null {
    return intOrNull(this.attr("DATASTORE_ID"));
  }
  /** `IMAGE_ID`, `null` for volatile disks. */
  get imageId(): number | null {
    return intOrNull(this.attr("IMAGE_ID"));
  }
  /** `QCOW2_STANDALONE=YES`. */
  get qcow2Standalone(): boolean {
    return this.attr("QCOW2_STANDALONE").toUpperCase() === "YES";
  }
}

/** A VM as `one.vm.info` returns it. */
export class VmView extends ObjectView {
  constructor(element: XmlElement) {
    super(element, "VM");
  }

  /** Parses `<VM>` XML text (e.g. the VM XML premigrate gets on stdin, once decoded). */
  static fromXml(xml: string): VmView {
    return new VmView(parseXml(xml));
  }

  /** Text at an absolute path such as `/VM/TEMPLATE/CONTEXT/TARGET`, `""` when missing. */
  xpath(path: string): string {
    return xpathText(this.element, path);
  }

  /** `LCM_STATE` (see {@linkcode LcmState}). */
  get lcmState(): number | null {
    return intOrNull(childText(this.element, "LCM_STATE"));
  }
  /** `DEPLOY_ID`, the hypervisor's domain name (`one-7`); empty before the first deploy. */
  get deployId(): string {
    return childText(this.element, "DEPLOY_ID");
  }

  /** The history records, oldest first. */
  history(): XmlElement[] {
    return childElement(this.element, "HISTORY_RECORDS")?.children.filter((c) => c.name === "HISTORY") ?? [];
  }
  /** A field of the last history record (`HISTORY[last()]`), `""` when missing. */
  historyLast(field: string): string {
    const h = this.history();
    return h.length > 0 ? childText(h[h.length - 1], field) : "";
  }
  /** A field of the previous history record (`HISTORY[last()-1]`), `""` when missing. */
  historyPrev(field: string): string {
    const h = this.history();
    return h.length > 1 ? childText(h[h.length - 2], field) : "";
  }
  /** The current system datastore (`HISTORY[last()]/DS_ID`), `null` without history. */
  get systemDsId(): number | null {
    return intOrNull(this.historyLast("DS_ID"));
  }
  /** The current host (`HISTORY[last()]/HOSTNAME`). */
  get hostname(): string {
    return this.historyLast("HOSTNAME");
  }

  /** Every `DISK` of the template, in template order. */
  disks(): DiskView[] {
    const template = childElement(this.element, "TEMPLATE");
    return template?.children.filter((c) => c.name === "DISK").map((d) => new DiskView(d)) ?? [];
  }
  /** The `DISK` whose `DISK_ID` equals `diskId` (compared as numbers), if any. */
  disk(diskId: number | string | null): DiskView | undefined {
    const wanted = typeof diskId === "number" ? diskId : intOrNull(diskId ?? "");
    if (wanted === null) return undefined;
    return this.disks().find((d) => d.id === wanted);
  }
  /** The per-disk snapshot tree `/VM/SNAPSHOTS[DISK_ID=n]`, if the disk has snapshots. */
  diskSnapshots(diskId: number): XmlElement | undefined {
    return this.element.children.find((c) =>
      c.name === "SNAPSHOTS" && intOrNull(childText(c, "DISK_ID")) === diskId
    );
  }
  /** `/VM/USER_TEMPLATE/<name>`, `""` when missing. */
  userTemplateAttr(name: string): string {
    return xpathText(this.element, `USER_TEMPLATE/${name}`);
  }
}

/** A datastore as `one.datastore.info` returns it (also the `DATASTORE` of DS_DRIVER_ACTION_DATA). */
export class DatastoreView extends ObjectView {
  constructor(element: XmlElement) {
    super(element, "DATASTORE");
  }

  /** Parses `<DATASTORE>` XML text. */
  static fromXml(xml: string): DatastoreView {
    return new DatastoreView(parseXml(xml));
  }

  /** Numeric `TYPE` (see {@linkcode DatastoreType}). */
  get type(): number | null {
    return intOrNull(childText(this.element, "TYPE"));
  }
  /** `TM_MAD`. */
  get tmMad(): string {
    return childText(this.element, "TM_MAD");
  }
  /** `DS_MAD` (`-` for system datastores). */
  get dsMad(): string {
    return childText(this.element, "DS_MAD");
  }
  /** `BASE_PATH` (`<DS_LOC>/<id>`, possibly with a double slash). */
  get basePath(): string {
    return childText(this.element, "BASE_PATH");
  }
  /** Cluster ids from `CLUSTERS/ID`. */
  get clusterIds(): number[] {
    return (childElement(this.element, "CLUSTERS")?.children ?? [])
      .map((c) => intOrNull(c.text))
      .filter((n): n is number => n !== null);
  }
  /** All single-valued template attributes. */
  templateAttrs(): Readonly<Record<string, string>> {
    return leafAttributes(childElement(this.element, "TEMPLATE"));
  }
  /** `TEMPLATE/REPLICA_HOST` (non-empty on a system datastore means replica mode); a host name or "". */
  get replicaHost(): string {
    const host = this.templateAttr("REPLICA_HOST").trim();
    return host === "" ? "" : hostName(host, `REPLICA_HOST of datastore ${this.id}`);
  }
  /** `TEMPLATE/BRIDGE_LIST`, split on whitespace. */
  get bridgeList(): string[] {
    return this.templateAttr("BRIDGE_LIST").split(/\s+/).filter((h) => h !== "");
  }
}

/** A host as `one.host.info` (or one entry of `one.hostpool.info`) returns it. */
export class HostView extends ObjectView {
  constructor(element: XmlElement) {
    super(element, "HOST");
  }

  /** Parses `<HOST>` XML text. */
  static fromXml(xml: string): HostView {
    return new HostView(parseXml(xml));
  }

  /** `IM_MAD`. */
  get imMad(): string {
    return childText(this.element, "IM_MAD");
  }
  /** `VM_MAD`. */
  get vmMad(): string {
    return childText(this.element, "VM_MAD");
  }
  /** `CLUSTER_ID`. */
  get clusterId(): number | null {
    return intOrNull(childText(this.element, "CLUSTER_ID"));
  }
  /** `TEMPLATE/REPLICA_STORAGE_IP`: where the replica pushes disks for this host (empty: use the name). */
  get replicaStorageIp(): string {
    const ip = this.templateAttr("REPLICA_STORAGE_IP").trim();
    return ip === "" ? "" : hostName(ip, `REPLICA_STORAGE_IP of host ${this.name}`);
  }
}
