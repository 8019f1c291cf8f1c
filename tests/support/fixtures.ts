/**
 * Builders of XML shaped like oned 7.x answers (`one.vm.info`, `one.datastore.info`,
 * `one.host.info`, `one.hostpool.info`) and of DS_DRIVER_ACTION_DATA payloads.
 *
 * The shape follows oned's serialisers (VirtualMachine::to_xml_extended, History::to_xml,
 * Datastore::to_xml, Host::to_xml, Image::to_xml): object fields are plain text in a fixed order;
 * template attributes are CDATA, sorted by name (oned keeps them in a multimap), vector attributes
 * (DISK, CONTEXT, ...) hold one level of CDATA values, also sorted. Output is compact, as the API
 * sends it (`onevm show -x` only re-indents it).
 *
 * Every builder takes an options object with defaults for a small cluster: front-end `fe`, hosts
 * `host1`..., image datastore 1 (`default`), system datastore 100, `DS_LOC` with the double slash
 * oned produces with the default DATASTORE_LOCATION.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { encodeDriverAction } from "../../core/one/driver_action.ts";
import { escapeXml } from "../../core/one/xml.ts";

/** The datastore location as oned writes it by default (note the double slash). */
export const DS_LOC = "/var/lib/one//datastores";

/** A template value; `undefined` leaves the attribute out (use it to drop a default). */
export type TemplateValue = string | number | boolean | undefined;

/** A vector attribute such as DISK or CONTEXT: one level of name → value. */
export type VectorAttrs = Record<string, TemplateValue>;

/** Template attributes: single values, vectors, or repeated vectors (several DISKs). */
export type TemplateAttrs = Record<string, TemplateValue | VectorAttrs | VectorAttrs[]>;

/**
 * Wraps a value in CDATA as oned does. oned does not split `]]>` (it would emit broken XML);
 * the fixture does, so tests can hold any text.
 */
export function cdata(value: string | number | boolean): string {
  const text = typeof value === "boolean" ? (value ? "YES" : "NO") : String(value);
  return `<![CDATA[${text.replaceAll("]]>", "]]]]><![CDATA[>")}]]>`;
}

function sortedEntries<T>(record: Record<string, T>): [string, T][] {
  return Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function vectorXml(name: string, attrs: VectorAttrs): string {
  const inner = sortedEntries(attrs)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `<${k}>${cdata(v as string | number | boolean)}</${k}>`)
    .join("");
  return `<${name}>${inner}</${name}>`;
}

/** Serialises a template like oned's `Template::to_xml` (attributes sorted by name, values in CDATA). */
export function templateXml(root: string, attrs: TemplateAttrs): string {
  const parts: string[] = [];
  for (const [name, value] of sortedEntries(attrs)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) parts.push(...value.map((v) => vectorXml(name, v)));
    else if (typeof value === "object") parts.push(vectorXml(name, value));
    else parts.push(`<${name}>${cdata(value)}</${name}>`);
  }
  return `<${root}>${parts.join("")}</${root}>`;
}

/** Merges attribute records; an `undefined` in `overrides` removes the attribute. */
export function mergeAttrs<T extends Record<string, unknown>>(base: T, overrides: Partial<T> = {}): T {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out as T;
}

function permissionsXml(): string {
  return "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U>" +
    "<GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A>" +
    "</PERMISSIONS>";
}

function idsXml(name: string, ids: readonly number[]): string {
  return `<${name}>${ids.map((id) => `<ID>${id}</ID>`).join("")}</${name}>`;
}

/** The SOURCE oned's fs driver gives image `imageId` in datastore `dsId`: `<DS_LOC>/<ds>/<md5>`. */
export function imageSource(imageId: number, dsId = 1): string {
  const hash = createHash("md5").update(`1700000000:${imageId}\n`).digest("hex");
  return `${DS_LOC}/${dsId}/${hash}`;
}

const TARGETS = "abcdefghijklmnopqrstuvwxyz";

/** Attributes oned puts on a DISK made from a non-persistent image (CLONE=YES); override any. */
export function imageDisk(
  overrides: VectorAttrs & { DISK_ID?: number; IMAGE_ID?: number } = {},
): VectorAttrs {
  const diskId = Number(overrides.DISK_ID ?? 0);
  const imageId = Number(overrides.IMAGE_ID ?? diskId);
  const dsId = Number(overrides.DATASTORE_ID ?? 1);
  return mergeAttrs<VectorAttrs>({
    ALLOW_ORPHANS: "YES",
    CLONE: "YES",
    CLONE_TARGET: "SYSTEM",
    CLUSTER_ID: "0",
    DATASTORE: dsId === 1 ? "default" : `ds${dsId}`,
    DATASTORE_ID: dsId,
    DEV_PREFIX: "vd",
    DISK_ID: diskId,
    DISK_SNAPSHOT_TOTAL_SIZE: 0,
    DISK_TYPE: "FILE",
    DRIVER: "qcow2",
    FORMAT: "qcow2",
    IMAGE: `image-${imageId}`,
    IMAGE_ID: imageId,
    IMAGE_STATE: 2,
    IMAGE_UNAME: "oneadmin",
    LN_TARGET: "SYSTEM",
    ORIGINAL_SIZE: 256,
    READONLY: "NO",
    SAVE: "NO",
    SIZE: 256,
    SOURCE: imageSource(imageId, dsId),
    TARGET: `vd${TARGETS[diskId % 26]}`,
    TM_MAD: "ssh",
    TYPE: "FILE",
  }, overrides);
}

/** Attributes of a DISK made from a persistent image (CLONE=NO, SAVE=YES; oned emits LN/MVDS). */
export function persistentDisk(
  overrides: VectorAttrs & { DISK_ID?: number; IMAGE_ID?: number } = {},
): VectorAttrs {
  return imageDisk(mergeAttrs<VectorAttrs>({ CLONE: "NO", SAVE: "YES", PERSISTENT: "YES" }, overrides));
}

/** Attributes of a volatile DISK (`TYPE` fs or swap; no image, no SOURCE). */
export function volatileDisk(overrides: VectorAttrs & { DISK_ID?: number } = {}): VectorAttrs {
  const diskId = Number(overrides.DISK_ID ?? 1);
  return mergeAttrs<VectorAttrs>({
    ALLOW_ORPHANS: "YES",
    CLUSTER_ID: "0",
    DATASTORE: "system",
    DATASTORE_ID: 100,
    DEV_PREFIX: "vd",
    DISK_ID: diskId,
    DISK_TYPE: "FILE",
    FORMAT: "raw",
    SIZE: 1024,
    TARGET: `vd${TARGETS[diskId % 26]}`,
    TM_MAD: "ssh",
    TYPE: "fs",
  }, overrides);
}

/** One history record (a placement of the VM on a host and system datastore). */
export interface HistoryFixture {
  /** Host name (default `host1`). */
  hostname?: string;
  /** Host id (default 1). */
  hid?: number;
  /** Cluster id (default 0). */
  cid?: number;
  /** System datastore id (default 100). */
  dsId?: number;
  /** VMM driver (default `kvm`). */
  vmMad?: string;
  /** TM driver of the system datastore (default `ssh`). */
  tmMad?: string;
  /** History action (default 0 NONE; 14 = DELETE_RECREATE). */
  action?: number;
  /** Start time (default 1700000000 + seq). */
  stime?: number;
  /** End time (default 0: still open). */
  etime?: number;
}

function historyXml(vmId: number, seq: number, h: HistoryFixture): string {
  const stime = h.stime ?? 1700000000 + seq * 100;
  return "<HISTORY>" +
    `<OID>${vmId}</OID><SEQ>${seq}</SEQ><HOSTNAME>${h.hostname ?? "host1"}</HOSTNAME>` +
    `<HID>${h.hid ?? 1}</HID><CID>${h.cid ?? 0}</CID><STIME>${stime}</STIME><ETIME>${h.etime ?? 0}</ETIME>` +
    `<VM_MAD>${cdata(h.vmMad ?? "kvm")}</VM_MAD><TM_MAD>${cdata(h.tmMad ?? "ssh")}</TM_MAD>` +
    `<DS_ID>${h.dsId ?? 100}</DS_ID><PLAN_ID>-1</PLAN_ID><ACTION_ID>-1</ACTION_ID>` +
    `<PSTIME>${stime}</PSTIME><PETIME>${stime + 5}</PETIME><RSTIME>${stime + 5}</RSTIME><RETIME>0</RETIME>` +
    `<ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>${h.action ?? 0}</ACTION><UID>-1</UID><GID>-1</GID>` +
    "<REQUEST_ID>-1</REQUEST_ID></HISTORY>";
}

/** A disk snapshot in `/VM/SNAPSHOTS`. */
export interface SnapshotFixture {
  /** Snapshot id. */
  id: number;
  /** Snapshot name (default `snap-<id>`). */
  name?: string;
  /** Parent snapshot id (default -1). */
  parent?: number;
  /** Size in MiB (default 256). */
  size?: number;
  /** Whether it is the active snapshot. */
  active?: boolean;
}

/** The snapshot tree of one disk. */
export interface DiskSnapshotsFixture {
  /** Disk id. */
  diskId: number;
  /** Snapshots, in id order. */
  snapshots: SnapshotFixture[];
}

function snapshotsXml(s: DiskSnapshotsFixture): string {
  const next = s.snapshots.reduce((m, x) => Math.max(m, x.id + 1), 0);
  const snaps = s.snapshots.map((x) =>
    "<SNAPSHOT>" + (x.active ? "<ACTIVE>YES</ACTIVE>" : "") +
    `<DATE>${1700000000 + x.id}</DATE><ID>${x.id}</ID><NAME>${escapeXml(x.name ?? `snap-${x.id}`)}</NAME>` +
    `<PARENT>${x.parent ?? -1}</PARENT><SIZE>${x.size ?? 256}</SIZE></SNAPSHOT>`
  );
  return `<SNAPSHOTS><ALLOW_ORPHANS>YES</ALLOW_ORPHANS><CURRENT_BASE>-1</CURRENT_BASE>` +
    `<DISK_ID>${s.diskId}</DISK_ID><NEXT_SNAPSHOT>${next}</NEXT_SNAPSHOT>${snaps.join("")}</SNAPSHOTS>`;
}

/** What a test can vary in a VM. */
export interface VmFixture {
  /** VM id (default 0). */
  id?: number;
  /** Name (default `vm-<id>`). */
  name?: string;
  /** Owner id (default 0). */
  uid?: number;
  /** Owner name (default `oneadmin`). */
  uname?: string;
  /** `STATE` (default 3 ACTIVE). */
  state?: number;
  /** `LCM_STATE` (default 3 RUNNING). */
  lcmState?: number;
  /** `PREV_STATE` (default = state). */
  prevState?: number;
  /** `PREV_LCM_STATE` (default = lcmState). */
  prevLcmState?: number;
  /** `DEPLOY_ID` (default `one-<id>`; `""` before the first deploy). */
  deployId?: string;
  /** Disks (default: one image disk 0); build them with imageDisk(), persistentDisk(), volatileDisk(). */
  disks?: VectorAttrs[];
  /** CONTEXT attributes (default: a context CD-ROM after the last disk); `null` for none. */
  context?: VectorAttrs | null;
  /** More template attributes (override the defaults; `undefined` removes one). */
  template?: TemplateAttrs;
  /** USER_TEMPLATE attributes. */
  userTemplate?: TemplateAttrs;
  /** History records, oldest first (default: one on host1, system DS 100); `[]` for none. */
  history?: HistoryFixture[];
  /** Disk snapshot trees. */
  snapshots?: DiskSnapshotsFixture[];
}

/** A `<VM>` document as `one.vm.info` returns it. */
export function vmXml(options: VmFixture = {}): string {
  const id = options.id ?? 0;
  const state = options.state ?? 3;
  const lcmState = options.lcmState ?? 3;
  const disks = options.disks ?? [imageDisk({ DISK_ID: 0 })];
  const history = options.history ?? [{}];
  const nextDiskId = disks.reduce((m, d) => Math.max(m, Number(d.DISK_ID ?? 0) + 1), 0);
  const context = options.context === null ? undefined : mergeAttrs<VectorAttrs>({
    DISK_ID: nextDiskId,
    NETWORK: "YES",
    SSH_PUBLIC_KEY: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests test@fe",
    TARGET: "hda",
  }, options.context ?? {});
  const template = mergeAttrs<TemplateAttrs>({
    AUTOMATIC_DS_REQUIREMENTS: '("CLUSTERS/ID" @> 0)',
    AUTOMATIC_NIC_REQUIREMENTS: '("CLUSTERS/ID" @> 0)',
    AUTOMATIC_REQUIREMENTS: "(CLUSTER_ID = 0) & !(PUBLIC_CLOUD = YES) & !(PIN_POLICY = PINNED)",
    CONTEXT: context,
    CPU: "1",
    DISK: disks,
    GRAPHICS: { LISTEN: "0.0.0.0", PORT: 5900 + id, TYPE: "VNC" },
    MEMORY: "512",
    OS: { ARCH: "x86_64", UUID: `00000000-0000-4000-8000-${String(id).padStart(12, "0")}` },
    TEMPLATE_ID: "0",
    TM_MAD_SYSTEM: "ssh",
    VMID: id,
  }, options.template ?? {});
  const uname = options.uname ?? "oneadmin";
  const stime = 1700000000;
  const historyXmlText = history.length === 0
    ? "<HISTORY_RECORDS/>"
    : `<HISTORY_RECORDS>${history.map((h, i) => historyXml(id, i, h)).join("")}</HISTORY_RECORDS>`;
  return "<VM>" +
    `<ID>${id}</ID><UID>${options.uid ?? 0}</UID><GID>0</GID><UNAME>${escapeXml(uname)}</UNAME>` +
    `<GNAME>oneadmin</GNAME><NAME>${escapeXml(options.name ?? `vm-${id}`)}</NAME>${permissionsXml()}` +
    `<LAST_POLL>${stime + 60}</LAST_POLL><STATE>${state}</STATE><LCM_STATE>${lcmState}</LCM_STATE>` +
    `<PREV_STATE>${options.prevState ?? state}</PREV_STATE>` +
    `<PREV_LCM_STATE>${options.prevLcmState ?? lcmState}</PREV_LCM_STATE><RESCHED>0</RESCHED>` +
    `<STIME>${stime}</STIME><ETIME>0</ETIME><DEPLOY_ID>${
      escapeXml(options.deployId ?? `one-${id}`)
    }</DEPLOY_ID>` +
    `<MONITORING><CPU>${cdata("0.5")}</CPU><DISKRDBYTES>${cdata(1048576)}</DISKRDBYTES>` +
    `<ID>${cdata(id)}</ID><MEMORY>${cdata(524288)}</MEMORY><TIMESTAMP>${cdata(stime + 60)}</TIMESTAMP>` +
    "</MONITORING><SCHED_ACTIONS></SCHED_ACTIONS>" +
    templateXml("TEMPLATE", template) +
    templateXml("USER_TEMPLATE", options.userTemplate ?? {}) +
    historyXmlText +
    (options.snapshots ?? []).map(snapshotsXml).join("") +
    "<BACKUPS><BACKUP_CONFIG></BACKUP_CONFIG><BACKUP_IDS></BACKUP_IDS></BACKUPS>" +
    "</VM>";
}

/** What a test can vary in a datastore. */
export interface DatastoreFixture {
  /** Datastore id (default 1). */
  id?: number;
  /** Numeric TYPE: 0 image, 1 system, 2 files (default: 1 when id ≥ 100, else 0). */
  type?: number;
  /** Name (default `default`, `system` or `files`). */
  name?: string;
  /** DS_MAD (default `fs`; `-` for system). */
  dsMad?: string;
  /** TM_MAD (default `ssh`). */
  tmMad?: string;
  /** BASE_PATH (default `<DS_LOC>/<id>`). */
  basePath?: string;
  /** STATE (default 0 ready). */
  state?: number;
  /** Cluster ids (default [0]). */
  clusters?: number[];
  /** Capacity in MiB (defaults 102400 total, 51200 free). */
  totalMb?: number;
  /** Free MiB. */
  freeMb?: number;
  /** Used MiB (default total - free). */
  usedMb?: number;
  /** Image ids. */
  images?: number[];
  /** Template attributes, merged over the defaults of the type (`undefined` removes one). */
  template?: TemplateAttrs;
}

/** A `<DATASTORE>` document as `one.datastore.info` returns it. */
export function datastoreXml(options: DatastoreFixture = {}): string {
  const id = options.id ?? 1;
  const type = options.type ?? (id >= 100 ? 1 : 0);
  const typeName = ["IMAGE_DS", "SYSTEM_DS", "FILE_DS", "BACKUP_DS"][type] ?? "IMAGE_DS";
  const dsMad = options.dsMad ?? (type === 1 ? "-" : "fs");
  const tmMad = options.tmMad ?? "ssh";
  const defaults: TemplateAttrs = type === 1
    ? {
      ALLOW_ORPHANS: "YES",
      DISK_TYPE: "FILE",
      DS_MIGRATE: "YES",
      RESTRICTED_DIRS: "/",
      SAFE_DIRS: "/var/tmp",
      SHARED: "NO",
      TM_MAD: tmMad,
      TYPE: typeName,
    }
    : {
      ALLOW_ORPHANS: "YES",
      CLONE_TARGET: "SYSTEM",
      DISK_TYPE: "FILE",
      DS_MAD: dsMad,
      LN_TARGET: "SYSTEM",
      RESTRICTED_DIRS: "/",
      SAFE_DIRS: "/var/tmp",
      TM_MAD: tmMad,
      TYPE: typeName,
    };
  const totalMb = options.totalMb ?? 102400;
  const freeMb = options.freeMb ?? 51200;
  const name = options.name ?? (type === 1 ? "system" : type === 2 ? "files" : "default");
  return "<DATASTORE>" +
    `<ID>${id}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME>` +
    `<NAME>${escapeXml(name)}</NAME>${permissionsXml()}` +
    `<DS_MAD>${cdata(dsMad)}</DS_MAD><TM_MAD>${cdata(tmMad)}</TM_MAD>` +
    `<BASE_PATH>${cdata(options.basePath ?? `${DS_LOC}/${id}`)}</BASE_PATH>` +
    `<TYPE>${type}</TYPE><DISK_TYPE>0</DISK_TYPE><STATE>${options.state ?? 0}</STATE>` +
    idsXml("CLUSTERS", options.clusters ?? [0]) +
    `<TOTAL_MB>${totalMb}</TOTAL_MB><FREE_MB>${freeMb}</FREE_MB>` +
    `<USED_MB>${options.usedMb ?? totalMb - freeMb}</USED_MB>` +
    idsXml("IMAGES", options.images ?? []) +
    templateXml("TEMPLATE", mergeAttrs(defaults, options.template ?? {})) +
    "</DATASTORE>";
}

/** Datastore usage a host reports in `HOST_SHARE/DATASTORES/DS`. */
export interface HostDatastoreFixture {
  /** Datastore id. */
  id: number;
  /** Total MiB (default 102400). */
  totalMb?: number;
  /** Free MiB (default 51200). */
  freeMb?: number;
  /** Extra elements such as REPLICA_CACHE, REPLICA_CACHE_SIZE, REPLICA_IMAGES. */
  extra?: Record<string, string | number>;
}

/** What a test can vary in a host. */
export interface HostFixture {
  /** Host id (default 1). */
  id?: number;
  /** Name (default `host<id>`). */
  name?: string;
  /** STATE (default 2 MONITORED; 3 error, 4 disabled, 8 offline). */
  state?: number;
  /** IM_MAD (default `kvm`). */
  imMad?: string;
  /** VM_MAD (default `kvm`). */
  vmMad?: string;
  /** Cluster id (default 0). */
  clusterId?: number;
  /** Cluster name (default `default`). */
  cluster?: string;
  /** Ids of the VMs on the host. */
  vms?: number[];
  /** System datastores monitored on the host (default: 100). */
  datastores?: HostDatastoreFixture[];
  /** Template attributes merged over the defaults (e.g. `{ REPLICA_STORAGE_IP: "127.0.0.5" }`). */
  template?: TemplateAttrs;
}

/** A `<HOST>` document as `one.host.info` returns it. */
export function hostXml(options: HostFixture = {}): string {
  const id = options.id ?? 1;
  const name = options.name ?? `host${id}`;
  const imMad = options.imMad ?? "kvm";
  const vmMad = options.vmMad ?? "kvm";
  const vms = options.vms ?? [];
  const dss = (options.datastores ?? [{ id: 100 }]).map((d) => {
    const total = d.totalMb ?? 102400;
    const free = d.freeMb ?? 51200;
    const extra = Object.entries(d.extra ?? {}).map(([k, v]) => `<${k}>${cdata(v)}</${k}>`).join("");
    return `<DS><FREE_MB>${free}</FREE_MB><ID>${d.id}</ID><TOTAL_MB>${total}</TOTAL_MB>` +
      `<USED_MB>${total - free}</USED_MB>${extra}</DS>`;
  });
  const template = mergeAttrs<TemplateAttrs>({
    ARCH: "x86_64",
    CPUSPEED: "2400",
    HOSTNAME: name,
    HYPERVISOR: "kvm",
    IM_MAD: imMad,
    KVM_MACHINES: "pc q35",
    MODELNAME: "QEMU Virtual CPU",
    RESERVED_CPU: "",
    RESERVED_MEM: "",
    VERSION: "7.3.80",
    VM_MAD: vmMad,
  }, options.template ?? {});
  return "<HOST>" +
    `<ID>${id}</ID><NAME>${escapeXml(name)}</NAME><STATE>${options.state ?? 2}</STATE>` +
    `<PREV_STATE>${options.state ?? 2}</PREV_STATE><IM_MAD>${cdata(imMad)}</IM_MAD>` +
    `<VM_MAD>${cdata(vmMad)}</VM_MAD><CLUSTER_ID>${options.clusterId ?? 0}</CLUSTER_ID>` +
    `<CLUSTER>${escapeXml(options.cluster ?? "default")}</CLUSTER>` +
    "<HOST_SHARE><MEM_USAGE>0</MEM_USAGE><CPU_USAGE>0</CPU_USAGE><TOTAL_MEM>8388608</TOTAL_MEM>" +
    "<TOTAL_CPU>400</TOTAL_CPU><MAX_MEM>8388608</MAX_MEM><MAX_CPU>400</MAX_CPU>" +
    `<RUNNING_VMS>${vms.length}</RUNNING_VMS><VMS_THREAD>1</VMS_THREAD>` +
    `<DATASTORES><DISK_USAGE>0</DISK_USAGE>${dss.join("")}<FREE_DISK>51200</FREE_DISK>` +
    "<MAX_DISK>102400</MAX_DISK><USED_DISK>51200</USED_DISK></DATASTORES>" +
    "<PCI_DEVICES></PCI_DEVICES><NUMA_NODES></NUMA_NODES></HOST_SHARE>" +
    idsXml("VMS", vms) +
    templateXml("TEMPLATE", template) +
    `<MONITORING><TIMESTAMP>1700000060</TIMESTAMP><ID>${id}</ID></MONITORING>` +
    "</HOST>";
}

/** A `<HOST_POOL>` document from `<HOST>` documents. */
export function hostPoolXml(hosts: readonly string[]): string {
  return `<HOST_POOL>${hosts.join("")}</HOST_POOL>`;
}

/** What a test can vary in an image (the IMAGE of DS_DRIVER_ACTION_DATA). */
export interface ImageFixture {
  /** Image id (default 0). */
  id?: number;
  /** Name (default `image-<id>`). */
  name?: string;
  /** Numeric TYPE: 0 OS, 1 CDROM, 2 DATABLOCK, ... (default 0). */
  type?: number;
  /** PERSISTENT (default false). */
  persistent?: boolean;
  /** SOURCE (default: empty, as `cp` gets it). */
  source?: string;
  /** PATH (default `/var/tmp/image-<id>.qcow2`). */
  path?: string;
  /** FORMAT (default `""`; `save_as` for a disk-saveas target). */
  format?: string;
  /** FS (default `""`). */
  fs?: string;
  /** SIZE in MiB (default 256). */
  size?: number;
  /** STATE (default 4 LOCKED, as during cp). */
  state?: number;
  /** CLONING_ID (default -1). */
  cloningId?: number;
  /** TARGET_SNAPSHOT (default -1). */
  targetSnapshot?: number;
  /** DATASTORE_ID (default 1). */
  datastoreId?: number;
  /** Template attributes (MD5, SHA1, DEV_PREFIX, ...). */
  template?: TemplateAttrs;
  /** Persistent-image snapshots. */
  snapshots?: SnapshotFixture[];
}

/** An `<IMAGE>` document as oned puts it into DS_DRIVER_ACTION_DATA. */
export function imageXml(options: ImageFixture = {}): string {
  const id = options.id ?? 0;
  const dsId = options.datastoreId ?? 1;
  const snaps = options.snapshots ?? [];
  const snapsXml = snapshotsXml({ diskId: -1, snapshots: snaps })
    .replace("<DISK_ID>-1</DISK_ID>", "");
  return "<IMAGE>" +
    `<ID>${id}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME>` +
    `<NAME>${escapeXml(options.name ?? `image-${id}`)}</NAME>${permissionsXml()}` +
    `<TYPE>${options.type ?? 0}</TYPE><DISK_TYPE>0</DISK_TYPE><PERSISTENT>${
      options.persistent ? 1 : 0
    }</PERSISTENT>` +
    "<REGTIME>1700000000</REGTIME><MODTIME>1700000000</MODTIME>" +
    `<SOURCE>${cdata(options.source ?? "")}</SOURCE>` +
    `<PATH>${cdata(options.path ?? `/var/tmp/image-${id}.qcow2`)}</PATH>` +
    `<FORMAT>${cdata(options.format ?? "")}</FORMAT><FS>${cdata(options.fs ?? "")}</FS>` +
    `<SIZE>${options.size ?? 256}</SIZE><STATE>${options.state ?? 4}</STATE><PREV_STATE>0</PREV_STATE>` +
    `<RUNNING_VMS>0</RUNNING_VMS><CLONING_OPS>0</CLONING_OPS><CLONING_ID>${
      options.cloningId ?? -1
    }</CLONING_ID>` +
    `<TARGET_SNAPSHOT>${options.targetSnapshot ?? -1}</TARGET_SNAPSHOT>` +
    `<DATASTORE_ID>${dsId}</DATASTORE_ID><DATASTORE>${dsId === 1 ? "default" : `ds${dsId}`}</DATASTORE>` +
    "<VMS></VMS><CLONES></CLONES><APP_CLONES></APP_CLONES>" +
    templateXml("TEMPLATE", mergeAttrs<TemplateAttrs>({ DEV_PREFIX: "vd" }, options.template ?? {})) +
    snapsXml +
    "<BACKUP_INCREMENTS></BACKUP_INCREMENTS><BACKUP_DISK_IDS></BACKUP_DISK_IDS>" +
    "</IMAGE>";
}

/** The reduced IMAGE oned sends to `stat`: `<IMAGE><PATH>…</PATH><SIZE>…</SIZE></IMAGE>` (entity-escaped). */
export function statImageXml(path: string, size = ""): string {
  return `<IMAGE><PATH>${escapeXml(path)}</PATH><SIZE>${escapeXml(size)}</SIZE></IMAGE>`;
}

/** Parts of a DS_DRIVER_ACTION_DATA document (already serialised XML). */
export interface DriverActionFixture {
  /** `<IMAGE>` XML (imageXml() or statImageXml()); omitted for monitor. */
  image?: string;
  /** `<DATASTORE>` XML (default: datastoreXml() of image datastore 1). */
  datastore?: string;
  /** Extra elements (`<SOURCE_BRIDGE_LIST>`, `<DATASTORE_LOCATION>`, ...). */
  extra?: string;
}

/** The DS_DRIVER_ACTION_DATA XML text. */
export function driverActionXml(parts: DriverActionFixture = {}): string {
  return `<DS_DRIVER_ACTION_DATA>${parts.image ?? ""}${parts.datastore ?? datastoreXml()}${
    parts.extra ?? ""
  }` +
    "</DS_DRIVER_ACTION_DATA>";
}

/** The base64 payload one_datastore writes on a DS action's stdin. */
export function driverActionBase64(parts: DriverActionFixture = {}): string {
  return encodeDriverAction({
    image: parts.image,
    datastore: parts.datastore ?? datastoreXml(),
    extra: parts.extra,
  });
}

/** Base64 of any XML text, as premigrate/postmigrate get the VM XML on stdin. */
export function base64Xml(xml: string): string {
  const bytes = new TextEncoder().encode(xml);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}
