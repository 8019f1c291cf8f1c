/**
 * The one schema of every onestor setting: which file holds it, its default, its type, what it means
 * and where it is used. The loader ({@link ./load.ts}), the typed `Config` object and
 * docs/configuration.md (scripts/gen_config_docs.ts) are all derived from {@linkcode SETTINGS}, so
 * adding a setting is adding one entry there: its `Config` field is the key in camelCase
 * (`REPLICA_MAX_SIZE_MB` → `replicaMaxSizeMb`), typed from `type` and `default`.
 *
 * Kept free of imports: every driver action loads it.
 *
 * @module
 */

/** Identifies a configuration file. */
export type ConfigFileId = "sshrc" | "tmrc" | "fs.conf" | "datastore.conf" | "onestor.conf";

/** Where a configuration file lives and who else reads it. */
export interface ConfigFileSpec {
  /** Path in a system-wide installation. */
  path: string;
  /** Path relative to `$ONE_LOCATION` in a self-contained installation. */
  selfContainedPath: string;
  /** Shared with other OpenNebula drivers: unknown keys are warned about, not refused. */
  shared: boolean;
  /** one_tm exports the file into the driver's environment; the environment wins over the file. */
  fromEnvironment: boolean;
  /** One sentence for the docs: what the file is. */
  about: string;
}

/** Every configuration file onestor reads, in documentation order. */
export const CONFIG_FILES: Readonly<Record<ConfigFileId, ConfigFileSpec>> = {
  "onestor.conf": {
    path: "/var/lib/one/remotes/etc/onestor/onestor.conf",
    selfContainedPath: "var/remotes/etc/onestor/onestor.conf",
    shared: false,
    fromEnvironment: false,
    about: "onestor's own settings; only onestor reads this file.",
  },
  sshrc: {
    path: "/var/lib/one/remotes/etc/tm/ssh/sshrc",
    selfContainedPath: "var/remotes/etc/tm/ssh/sshrc",
    shared: true,
    fromEnvironment: false,
    about: "The stock replica (OneStor) settings of OpenNebula's ssh transfer driver.",
  },
  tmrc: {
    path: "/etc/one/tmrc",
    selfContainedPath: "etc/tmrc",
    shared: true,
    fromEnvironment: true,
    about: "Environment of all transfer drivers; one_tm sources it and exports what it assigns.",
  },
  "fs.conf": {
    path: "/var/lib/one/remotes/etc/datastore/fs/fs.conf",
    selfContainedPath: "var/remotes/etc/datastore/fs/fs.conf",
    shared: true,
    fromEnvironment: false,
    about: "Settings of OpenNebula's fs datastore driver.",
  },
  "datastore.conf": {
    path: "/var/lib/one/remotes/etc/datastore/datastore.conf",
    selfContainedPath: "var/remotes/etc/datastore/datastore.conf",
    shared: true,
    fromEnvironment: false,
    about: "Settings shared by all datastore drivers.",
  },
};

/** Value types. Error messages and the docs describe them with {@linkcode SETTING_TYPES}. */
export type SettingType =
  | "string"
  | "integer"
  | "boolean"
  | "percent"
  | "choice"
  | "ssh-options"
  | "argv"
  | "path"
  | "list"
  | "block-size";

/** How a type is described: `expected` in errors (`... must be <expected>`), `rule` in the docs. */
export interface SettingTypeInfo {
  expected: string;
  rule: string;
}

/** How each type is written, for the docs and error messages. */
export const SETTING_TYPES: Readonly<Record<SettingType, SettingTypeInfo>> = {
  string: { expected: "a string", rule: "Any text." },
  integer: {
    expected: "a whole number",
    rule: "Digits only, no sign or unit; the unit (seconds, MiB) is part of the key's meaning.",
  },
  boolean: {
    expected: "yes or no (also true/false, 1/0)",
    rule: "`yes`/`no`, `true`/`false` or `1`/`0`, in any case.",
  },
  percent: {
    expected: "a percentage from 1 to 100",
    rule: "A whole number from 1 to 100, optionally followed by `%`.",
  },
  choice: {
    expected: "one of the listed values",
    rule: "One of the listed words, in any case.",
  },
  "ssh-options": {
    expected: "OpenSSH options starting with -, with balanced quotes",
    rule: "OpenSSH command-line options (`-c aes128-gcm@openssh.com -o Compression=no`), split into " +
      "arguments by shell word rules (quotes group, backslash escapes); never run through a shell.",
  },
  argv: {
    expected: "command options with balanced quotes",
    rule: "Command options split into arguments by shell word rules (`-L 'my label'` is two " +
      "arguments); never run through a shell, so `$` and backticks are plain characters.",
  },
  path: { expected: "an absolute path", rule: "An absolute path." },
  list: {
    expected: "a comma-separated list of words",
    rule: "Comma-separated words; blanks around commas are ignored.",
  },
  "block-size": {
    expected: "a dd block size such as 64k, 1M or 4MiB",
    rule: "A block size as GNU dd takes it (`512`, `64k`, `1M`, `4MiB`, `1MB`); passed to dd as written.",
  },
};

/** One setting. `default` is written as in the file; "" means empty. */
export interface SettingSpec {
  /** Variable name; for a family of keys the pattern, e.g. `FS_OPTS_<FS>`. */
  readonly key: string;
  /** File that holds it. */
  readonly file: ConfigFileId;
  /** Value type. */
  readonly type: SettingType;
  /** Default as written in the file; "" is empty (no value: `null`, or `[]` for lists). */
  readonly default: string;
  /** For a default computed when the key is empty (e.g. read from oned.conf): how, for the docs. */
  readonly derivedDefault?: string;
  /** For `choice`: the allowed values, lower case. */
  readonly choices?: readonly string[];
  /** For `integer`: the smallest accepted value. */
  readonly min?: number;
  /** For `integer`: the largest accepted value. */
  readonly max?: number;
  /** Unit shown with the type in the docs (`seconds`, `MiB`). */
  readonly unit?: string;
  /** The key is a family: `<...>` in `key` stands for any `[A-Za-z0-9_]+` suffix. */
  readonly pattern?: boolean;
  /** Known stock key that onestor does not use: accepted without a warning, documented as unused. */
  readonly ignored?: boolean;
  /** For administrators: what it does (one or two sentences). */
  readonly meaning: string;
  /** Where in onestor it is used. */
  readonly usedBy: string;
  /** How onestor's handling differs from upstream's, when it does. */
  readonly upstream?: string;
}

/** Every setting onestor knows, grouped by file. */
export const SETTINGS = [
  // ---- onestor.conf ----------------------------------------------------------------------------
  {
    key: "REPLICA_FALLBACK",
    file: "onestor.conf",
    type: "boolean",
    default: "yes",
    meaning: "When the replica host cannot be reached (or a cache fill cannot be waited for, see " +
      "REPLICA_COPY_LOCK_TIMEOUT), copy the image straight from the front-end to the hypervisor and log " +
      "why, instead of failing the deployment.",
    usedBy: "tm clone/ln in replica mode",
    upstream: "Upstream has no fallback: an unreachable replica fails the deployment.",
  },
  {
    key: "REPLICA_LEASE_SECONDS",
    file: "onestor.conf",
    type: "integer",
    default: "30",
    min: 5,
    max: 3600,
    unit: "seconds",
    meaning: "Lease duration of the cache-fill lock of an image on a replica. The copying process " +
      "renews the lease while it works; a lease not renewed for this long belongs to a dead process and " +
      "is broken by the next waiter.",
    usedBy: "core/cache (lease locks on the replica)",
  },
  {
    key: "REPLICA_CACHE_VERIFY",
    file: "onestor.conf",
    type: "choice",
    choices: ["size-mtime", "checksum"],
    default: "size-mtime",
    meaning: "How a cached image is re-validated each time it is used. `size-mtime`: its size and " +
      "mtime on the replica match the cache index and the checksum recorded there matches the " +
      "front-end's; on its first use after each start of the replica its content is also re-read " +
      "and checked once (a crash can leave a promoted file with its size and mtime but not its data). " +
      "`checksum`: re-read the whole cached file and recompute its checksum on every use " +
      "(detects bit rot, costs a full read per use).",
    usedBy: "core/cache (cache hit check)",
    upstream: "Upstream trusted a copied `.md5sum` sidecar forever and never looked at the cached file.",
  },
  {
    key: "REPLICA_CUT_THROUGH",
    file: "onestor.conf",
    type: "boolean",
    default: "yes",
    meaning: "On a cache miss, forward the image to the hypervisor while it is being written into the " +
      "replica cache (one stream front-end → replica → hypervisor), so a cold deployment costs about " +
      "one hop instead of two sequential copies. `no` fills the cache first, then copies from it. Not " +
      "used for SPARSE=NO disks or when the hypervisor pulls from the replica (REPLICA_STORAGE_IP on " +
      "the replica host): those fill first.",
    usedBy: "core/cache (cache miss in tm clone/ln)",
    upstream: "Upstream always copied front-end → replica, then replica → hypervisor.",
  },
  {
    key: "SSH_CONNECT_TIMEOUT",
    file: "onestor.conf",
    type: "integer",
    default: "10",
    min: 1,
    unit: "seconds",
    meaning: "How long to wait for an SSH connection to be established (OpenSSH `ConnectTimeout`) " +
      "before the host counts as unreachable.",
    usedBy: "core/remote (every hop)",
  },
  {
    key: "SSH_CONTROL_TIMEOUT",
    file: "onestor.conf",
    type: "integer",
    default: "120",
    unit: "seconds",
    meaning: "Longest run time of a control command on a remote host (mkdir, checksum query, eviction, " +
      "qemu-img, virsh); it is killed and the action fails after that. 0 means no limit.",
    usedBy: "core/remote (commands that move no image data)",
  },
  {
    key: "SSH_TRANSFER_TIMEOUT",
    file: "onestor.conf",
    type: "integer",
    default: "0",
    unit: "seconds",
    meaning: "Longest run time of one image data transfer; it is aborted after that. 0 (the default) " +
      "means no limit, because a large image on a slow link can legitimately take hours.",
    usedBy: "core/transfer (every copy of disk data)",
  },
  {
    key: "SSH_CONTROL_PERSIST",
    file: "onestor.conf",
    type: "integer",
    default: "60",
    unit: "seconds",
    meaning: "How long an idle shared OpenSSH connection (ControlMaster) to a host stays open after its " +
      "last use, so that the next actions skip the SSH handshake. 0 turns connection sharing off.",
    usedBy: "core/remote",
  },
  {
    key: "SSH_OPTS",
    file: "onestor.conf",
    type: "ssh-options",
    default: "",
    meaning: "Extra OpenSSH options for every ssh command onestor runs, on every hop; the per-hop " +
      "REPLICA_SSH_OPTS and REPLICA_SSH_FE_OPTS come after them.",
    usedBy: "core/remote (every hop)",
  },
  {
    key: "SSH_CIPHERS",
    file: "onestor.conf",
    type: "list",
    default:
      "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr",
    meaning: "Ciphers onestor's ssh commands offer, first preferred (OpenSSH `Ciphers`), on every hop. " +
      "AES-GCM runs on the AES instructions of x86 and ARM server CPUs: about 1.5x the throughput of " +
      "OpenSSH's default chacha20-poly1305 per core on image data, so a copy costs the sending and receiving " +
      "hosts less CPU. `default` leaves the choice to ssh_config and OpenSSH. A `Ciphers` option in " +
      "SSH_OPTS, REPLICA_SSH_OPTS or REPLICA_SSH_FE_OPTS wins over this setting.",
    usedBy: "core/remote (every hop)",
    upstream: "Upstream used OpenSSH's default cipher (chacha20-poly1305).",
  },
  {
    key: "SSH_FORWARD_AGENT",
    file: "onestor.conf",
    type: "boolean",
    default: "no",
    meaning: "Forward the front-end's ssh-agent on hops where one host has to reach another (replica → " +
      "hypervisor, hypervisor → hypervisor). With `no` those hosts use their own oneadmin key, which " +
      "OpenNebula already requires for migrations.",
    usedBy: "core/remote (host-to-host hops)",
    upstream: "Upstream always forwarded the agent to the replica for its copy scripts.",
  },
  {
    key: "TRANSFER_CHECKSUM",
    file: "onestor.conf",
    type: "choice",
    choices: ["xxh128", "blake2b", "sha256", "md5", "none"],
    default: "xxh128",
    meaning: "Content checksum of images: the identity of replica cache entries, computed once per " +
      "image version on the front-end while the cache fills (the image is never read twice for it) and " +
      "re-read on the replica only for REPLICA_CACHE_VERIFY=checksum and `onestor cache verify`; also " +
      "the checksum of TRANSFER_VERIFY=content. `xxh128` (xxhsum of the Debian package `xxhash`, " +
      "several GB/s) where the hosts have it, else `blake2b` (coreutils `b2sum`, everywhere) is used " +
      "for that host, remembered per host; `sha256` and `md5` are slower; `none` is the same as the " +
      "default (cache entries always need an identity).",
    usedBy: "core/cache, core/transfer",
    upstream: "Upstream copied without verification and keyed the cache on an MD5 sidecar file.",
  },
  {
    key: "TRANSFER_VERIFY",
    file: "onestor.conf",
    type: "choice",
    choices: ["transport", "content"],
    default: "transport",
    meaning: "How a copy is proved complete before it is renamed into place. `transport`: SSH " +
      "authenticates every byte in transit, and tar's exit status on both ends plus the byte count the " +
      "sender announces in the stream's trailer must agree (a truncated or half-failed copy is never " +
      "renamed into place). `content`: in addition, every copied file is hashed on both ends with " +
      "TRANSFER_CHECKSUM and the checksums must be equal (one more read of each file on each end).",
    usedBy: "core/transfer (every copy of disk data)",
    upstream: "Upstream's tar pipes had no pipefail and no check: a short read passed as success.",
  },
  {
    key: "TRANSFER_COMPRESSION",
    file: "onestor.conf",
    type: "choice",
    choices: ["none", "gzip", "zstd", "xz"],
    default: "none",
    meaning: "Compression of image data on the wire, worth it on slow links (edge sites) since disk " +
      "images compress well. The tool must be installed on both ends of every hop; `zstd` is the best " +
      "trade-off where available. Cache fills that stream on to a hypervisor while they fill " +
      "(REPLICA_CUT_THROUGH) are not compressed.",
    usedBy: "core/transfer",
  },
  {
    key: "DATASTORE_LOCATION",
    file: "onestor.conf",
    type: "path",
    default: "",
    derivedDefault:
      "oned.conf's DATASTORE_LOCATION (`/etc/one/oned.conf`, or `$ONE_LOCATION/etc/oned.conf`) " +
      "when readable, else oned's own default `/var/lib/one/datastores` (`$ONE_LOCATION/var/datastores`)",
    meaning: "The datastores folder, the same path on the front-end, the replicas and the hypervisors (as " +
      "OpenNebula assumes). Every path a TM action writes, moves or deletes must resolve inside it, " +
      "checked on the host that writes with symlinks followed; anything else is refused before it is " +
      "touched. Set it only when the driver cannot read oned.conf.",
    usedBy: "core/remote/confine.ts (every TM action that writes, moves or deletes)",
  },
  {
    key: "LOG_LEVEL",
    file: "onestor.conf",
    type: "choice",
    choices: ["info", "debug"],
    default: "info",
    meaning: "Detail of the `INFO:`/`DEBUG:` lines the drivers write to oned.log; `debug` adds every " +
      "remote command and its timing.",
    usedBy: "core/remote/runner.ts (every remote or local command), core/one/log.ts",
  },
  {
    key: "LIBVIRT_URI",
    file: "onestor.conf",
    type: "string",
    default: "qemu:///system",
    meaning: "libvirt connection URI used by `virsh -c` on the hypervisors for live operations (live " +
      "disk snapshots, save-as of a running disk, live backups, migration checks). Keep it equal to " +
      "`LIBVIRT_URI` of the KVM driver's kvmrc.",
    usedBy: "core/hypervisor (snap_create_live, cpds, prebackup_live, postmigrate)",
    upstream: "Upstream read it from the KVM driver's kvmrc.",
  },
  {
    key: "VIRSH_TIMEOUT",
    file: "onestor.conf",
    type: "integer",
    default: "60",
    min: 1,
    unit: "seconds",
    meaning: "Longest wait for `virsh domfsfreeze` (a guest agent that does not answer) before the " +
      "operation falls back or fails.",
    usedBy: "core/hypervisor (cpds of a running disk, live backups with FS_FREEZE=AGENT)",
    upstream: "Upstream read it from the KVM driver's kvmrc.",
  },

  {
    key: "REPLICA_RECOVERY_KEEP",
    file: "onestor.conf",
    type: "integer",
    default: "1",
    min: 1,
    max: 100,
    meaning: "Recovery points kept per protected disk on the replica. Each period adds a point; older " +
      "increments are merged on the replica (qemu-img commit), so a recreate can use any of the last " +
      "this many points (`onestor recovery restore VMID --point N`).",
    usedBy: "recovery snapshots (core/recovery): each period, onestor recovery",
    upstream: "Upstream kept exactly one point, an overlay that grew without bound and was uploaded " +
      "whole every period.",
  },
  {
    key: "REPLICA_RECOVERY_FALLBACK",
    file: "onestor.conf",
    type: "choice",
    choices: ["fail", "image"],
    default: "fail",
    meaning: "What a recreate (`onevm recover --recreate`) does with a protected disk that has no usable " +
      "recovery point: `fail` fails the deployment with a message that says why; `image` deploys the disk " +
      "from its image instead (the guest's data since deployment is lost) and logs a warning.",
    usedBy: "tm clone/ln of a protected disk after onevm recover --recreate",
    upstream: "Upstream silently deployed the image when no recovery snapshot existed.",
  },
  {
    key: "REPLICA_RECOVERY_PARALLEL",
    file: "onestor.conf",
    type: "integer",
    default: "2",
    min: 1,
    max: 64,
    meaning: "How many VMs `onestor recovery run` and `onestor recovery daemon` protect at the same time " +
      "(the disks of one VM are always done one after the other).",
    usedBy: "onestor recovery run/daemon",
  },
  {
    key: "REPLICA_RECOVERY_POLL",
    file: "onestor.conf",
    type: "integer",
    default: "30",
    min: 5,
    max: 3600,
    unit: "seconds",
    meaning: "Longest time `onestor recovery daemon` sleeps between two passes; it wakes earlier when a " +
      "disk's next point is due sooner. Each pass reads the VM pool from oned once.",
    usedBy: "onestor recovery daemon",
  },
  {
    key: "REPLICA_RECOVERY_QUIESCE",
    file: "onestor.conf",
    type: "choice",
    choices: ["agent", "none"],
    default: "agent",
    meaning: "`agent`: each point is taken with the guest's file systems frozen through the QEMU guest " +
      "agent when the guest has one (the point is then application-consistent); without an agent it is " +
      "crash-consistent, and the status says so. `none`: never ask the agent.",
    usedBy: "recovery snapshots (core/recovery): each period",
    upstream: "Upstream tried `--quiesce`, then took the snapshot without it.",
  },

  // ---- sshrc -----------------------------------------------------------------------------------
  {
    key: "REPLICA_COPY_LOCK_TIMEOUT",
    file: "sshrc",
    type: "integer",
    default: "600",
    unit: "seconds",
    meaning: "Longest time a deployment waits for another process that is filling the replica cache " +
      "with the same image. When it is reached the image is copied straight from the front-end if " +
      "REPLICA_FALLBACK is `yes`, otherwise the deployment fails with a lock error. 0 waits as long as " +
      "the other process keeps its lease (REPLICA_LEASE_SECONDS) alive.",
    usedBy: "core/cache (waiting for a cache fill), tm clone/ln in replica mode",
    upstream: "Upstream (a flock on the front-end) failed the deployment after this time even when the " +
      "copy it waited for was healthy, and told administrators to raise it to the longest transfer time. " +
      "In onestor a dead holder is detected when its lease expires, so this limit only bounds waiting " +
      "for a slow but live copy, and reaching it falls back instead of failing by default.",
  },
  {
    key: "REPLICA_RECOVERY_SNAPS_DIR",
    file: "sshrc",
    type: "path",
    default: "/var/lib/one/datastores/replica_snaps",
    meaning: "Directory on the replica host that holds the recovery points of protected VM disks (one " +
      "sub-directory per VM), used to recreate VMs after a host failure. Keep it on the filesystem of the " +
      "image cache: the first point of a disk is then a hard link of the cached image and costs no space.",
    usedBy: "recovery snapshots (core/recovery), tm clone/ln/delete in replica mode",
  },
  {
    key: "REPLICA_SSH_OPTS",
    file: "sshrc",
    type: "ssh-options",
    default: "-c aes128-gcm@openssh.com -m umac-64@openssh.com",
    meaning: "OpenSSH options for disk data between the replica and the hypervisors (both directions). " +
      "The default favours speed: these hops usually run on a trusted cluster network.",
    usedBy: "core/transfer (replica → hypervisor, hypervisor → replica)",
  },
  {
    key: "REPLICA_SSH_FE_OPTS",
    file: "sshrc",
    type: "ssh-options",
    default: "",
    meaning: "OpenSSH options for image data from the front-end to a replica (cache fill). Empty keeps " +
      "OpenSSH's defaults, which favour security on public links, with SSH_CIPHERS' order (AES-GCM first: " +
      "as strong as OpenSSH's first choice, and faster on server CPUs).",
    usedBy: "core/transfer (front-end → replica)",
  },
  {
    key: "REPLICA_MAX_SIZE_MB",
    file: "sshrc",
    type: "integer",
    default: "",
    min: 1,
    unit: "MiB",
    meaning: "Upper bound of the image cache on each replica; least recently used images that no " +
      "deployment is using are evicted beyond it. Empty: only REPLICA_MAX_USED_PERC applies.",
    usedBy: "core/cache (eviction)",
    upstream: "Read on the front-end. Upstream read it on the replica, where this file usually does not " +
      "exist, so its defaults applied whatever the front-end said.",
  },
  {
    key: "REPLICA_MAX_USED_PERC",
    file: "sshrc",
    type: "percent",
    default: "90",
    meaning: "The cache may grow until the replica's filesystem is this full; least recently used " +
      "images are evicted beyond it. Applies together with REPLICA_MAX_SIZE_MB when that is set.",
    usedBy: "core/cache (eviction)",
    upstream: "Read on the front-end (see REPLICA_MAX_SIZE_MB). Eviction never fails a deployment; " +
      "upstream's deleted one image per run and then failed the deployment.",
  },

  // ---- tmrc ------------------------------------------------------------------------------------
  {
    key: "QCOW2_OPTIONS",
    file: "tmrc",
    type: "argv",
    default: "",
    meaning: "Extra `qemu-img create` options for the qcow2 overlays and clones onestor creates, e.g. " +
      "`-o compat=0.10`. The environment variable of the same name (one_tm exports tmrc) wins over " +
      "the file.",
    usedBy: "core/image (qemu-img create), tm clone/ln/mkimage",
    upstream: "Honoured by onestor; upstream's ssh driver copied with tar and ignored it.",
  },

  // ---- fs.conf ---------------------------------------------------------------------------------
  {
    key: "DD_BLOCK_SIZE",
    file: "fs.conf",
    type: "block-size",
    default: "64k",
    meaning: "Block size of the dd commands that write image data on BRIDGE_LIST hosts.",
    usedBy: "ds cp and clone through BRIDGE_LIST hosts",
  },

  // ---- datastore.conf --------------------------------------------------------------------------
  {
    key: "SUPPORTED_FS",
    file: "datastore.conf",
    type: "list",
    default: "ext2,ext3,ext4,xfs",
    meaning: "File systems allowed for formatted datablocks and volatile disks (the FS attribute). Each " +
      "needs `mkfs.<fs>` on the front-end and the hosts; any other FS is refused before anything is " +
      "created.",
    usedBy: "ds mkfs, tm mkimage",
    upstream: "Upstream's docs said an unsupported FS falls back to a default; the code refused it, and " +
      "so does onestor.",
  },
  {
    key: "FS_OPTS_<FS>",
    file: "datastore.conf",
    type: "argv",
    default: "",
    pattern: true,
    meaning: "Extra mkfs options for file system `<FS>` (a name in SUPPORTED_FS), e.g. " +
      "`FS_OPTS_ext4=\"-b 4096 -L 'my label'\"`.",
    usedBy: "ds mkfs, tm mkimage",
    upstream: "Never evaluated by a shell; upstream passed it through `eval`.",
  },
  {
    key: "BACKUP_BASE_PATH",
    file: "datastore.conf",
    type: "path",
    default: "",
    meaning: "Scratch directory on the hosts for VM backups (`<path>/<vm_id>/backup`); it must be the " +
      "same path on every host. Empty: the `backup` directory inside the VM's directory.",
    usedBy: "tm prebackup/postbackup",
  },
] as const satisfies readonly SettingSpec[];

/** A setting of the schema, as its literal type. */
export type Setting = (typeof SETTINGS)[number];

/** Settings with a single fixed key (all but the `FS_OPTS_<FS>` family). */
export type FixedSetting = Exclude<Setting, { pattern: true }>;

/** Every fixed setting key. */
export type SettingKey = FixedSetting["key"];

/** `REPLICA_MAX_SIZE_MB` → `replicaMaxSizeMb`, at the type level. */
export type CamelCase<K extends string> = K extends `${infer Head}_${infer Tail}`
  ? `${Lowercase<Head>}${Capitalize<CamelCase<Tail>>}`
  : Lowercase<K>;

/** `REPLICA_MAX_SIZE_MB` → `replicaMaxSizeMb`: the `Config` field of a key. */
export function fieldName(key: string): string {
  return key.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

interface TypeValues {
  string: string;
  integer: number;
  boolean: boolean;
  percent: number;
  choice: string;
  "ssh-options": string[];
  argv: string[];
  path: string;
  list: string[];
  "block-size": string;
}

/** Runtime value of a setting: list types are arrays (empty when unset), other empty values `null`. */
export type SettingValueOf<S extends SettingSpec> = S extends { choices: readonly (infer C)[] } ? C
  : TypeValues[S["type"]] extends string[] ? string[]
  : S["default"] extends "" ? TypeValues[S["type"]] | null
  : TypeValues[S["type"]];

/** Value of the setting with key `K`. */
export type ValueOfKey<K extends SettingKey> = SettingValueOf<Extract<FixedSetting, { key: K }>>;

/** Any setting value. */
export type SettingValue = string | number | boolean | string[] | null;

/** The typed fields of `Config`, one per fixed setting, named by {@linkcode fieldName}. */
export type ConfigValues = {
  readonly [S in FixedSetting as CamelCase<S["key"]>]: SettingValueOf<S>;
};

/** Whether a type's value is a list (empty means `[]`, not `null`). */
export function isListType(type: SettingType): boolean {
  return type === "ssh-options" || type === "argv" || type === "list";
}

/** For a family key (`FS_OPTS_<FS>`): the fixed prefix (`FS_OPTS_`). */
export function patternPrefix(spec: SettingSpec): string {
  return spec.key.slice(0, spec.key.indexOf("<"));
}
