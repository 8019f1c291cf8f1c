/**
 * What the doctor looks at, derived from oned's host and datastore pools: which hosts are
 * hypervisors and which are replicas, the datastore location, the system and image datastore
 * folders, and every pair of hosts that must reach each other over SSH:
 *
 * - front-end → every host (every action);
 * - replica → the hypervisors of its clusters with REPLICA_SSH_OPTS (the cache push), or the
 *   hypervisor → the replica's REPLICA_STORAGE_IP when it pulls (docs/replica-cache.md);
 * - hypervisor → every other hypervisor of its cluster (migrations);
 * - every host → the front-end: the OneStor guide asks that all hosts, the front-end included,
 *   reach each other; onestor's own actions never need it, so a failure there is a warning.
 *
 * `--cluster` keeps the hosts and datastores of one cluster; `--host` keeps one host, with the
 * other hosts probed only for their hops to it.
 *
 * @module
 */

import { DatastoreType, type DatastoreView, HostState, type HostView } from "../one/objects.ts";

/** The hosts and datastores oned knows. */
export interface Inventory {
  hosts: HostView[];
  datastores: DatastoreView[];
}

/** One SSH hop a host must be able to make. */
export interface Hop {
  /** Host name of the target, for the report. */
  target: string;
  /** Address the source connects to (a REPLICA_STORAGE_IP, or the name). */
  address: string;
  /** OpenSSH options of the hop. */
  options: readonly string[];
  /** fail (onestor needs it) or warn (only asked for by the OneStor guide). */
  level: "fail" | "warn";
  /** Why the pair must talk, for the report. */
  why: string;
}

/** What to check on one host. */
export interface HostPlan {
  name: string;
  hypervisor: boolean;
  replica: boolean;
  /** Local checks (tools, folders, caches, disks); false: only the hops (with `--host` on a peer). */
  full: boolean;
  /** Programs it needs (hypervisors more than a replica). */
  tools: string[];
  /** System datastore folders `<DS_LOC>/<id>` of its clusters, with the TM driver that marks them. */
  systemDirs: { id: number; dir: string; tm: string }[];
  /** Replica: the cache folders `<DS_LOC>/<image ds id>`. */
  cacheDirs: string[];
  /** The host-side scripts OpenNebula's probe runs (`/var/tmp/one/tm/<tm>/monitor_ds`). */
  probeScripts: string[];
  hops: Hop[];
}

/** The whole plan. */
export interface DoctorPlan {
  /** DATASTORE_LOCATION as the datastores' BASE_PATHs give it. */
  dsLocation: string;
  /** Image datastore folders (on the front-end, and cache folders on replicas). */
  imageDirs: string[];
  hosts: HostPlan[];
  /** Names of replicas (for the report). */
  replicas: string[];
}

/** Selection of the command line. */
export interface Selection {
  cluster: number | null;
  host: string | null;
}

/** Settings the plan needs. */
export interface PlanSettings {
  /** TM driver names onestor serves (its own and the stock `ssh` it may replace). */
  tmNames: readonly string[];
  /** Programs of the configuration every host needs (checksum, compression). */
  extraTools: readonly string[];
  /** SUPPORTED_FS. */
  supportedFs: readonly string[];
  /** REPLICA_SSH_OPTS. */
  replicaSshOpts: readonly string[];
  /** Name under which hosts reach the front-end. */
  frontend: string;
  /** Whether a host name is the front-end itself. */
  isFrontend: (name: string) => boolean;
}

/** Programs every host runs for onestor's scripts. */
const BASE_TOOLS = [
  "bash",
  "tar",
  "mktemp",
  "mkfifo",
  "timeout",
  "flock",
  "base64",
  "du",
  "df",
  "stat",
  "find",
  "fallocate",
  "sha256sum",
  "b2sum",
];

function norm(path: string): string {
  return path.replace(/\/{2,}/g, "/").replace(/(.)\/$/, "$1");
}

function parentOf(path: string): string {
  const p = norm(path);
  return p.slice(0, p.lastIndexOf("/")) || "/";
}

function active(host: HostView): boolean {
  const s = host.state;
  return s !== HostState.DISABLED && s !== HostState.OFFLINE && s !== HostState.MONITORING_DISABLED;
}

/** Builds the plan (see the module doc). */
export function buildPlan(inventory: Inventory, settings: PlanSettings, selection: Selection): DoctorPlan {
  const ours = (ds: DatastoreView) => settings.tmNames.includes(ds.tmMad);
  const systems = inventory.datastores.filter((ds) =>
    ds.type === DatastoreType.SYSTEM_DS && ours(ds) &&
    (selection.cluster === null || ds.clusterIds.includes(selection.cluster))
  );
  const images = inventory.datastores.filter((ds) =>
    ds.type === DatastoreType.IMAGE_DS && ds.basePath !== ""
  );
  const dsLocation = parentOf(
    systems.find((d) => d.basePath)?.basePath ?? images[0]?.basePath ?? "/var/lib/one/datastores/0",
  );
  const imageDirs = [...new Set(images.map((d) => norm(d.basePath)))].sort();
  const hypervisors = inventory.hosts.filter((h) =>
    active(h) && (selection.cluster === null || h.clusterId === selection.cluster)
  );
  const byName = new Map(inventory.hosts.map((h) => [h.name, h]));
  const plans = new Map<string, HostPlan>();
  const plan = (name: string): HostPlan => {
    let p = plans.get(name);
    if (!p) {
      p = {
        name,
        hypervisor: false,
        replica: false,
        full: true,
        tools: [],
        systemDirs: [],
        cacheDirs: [],
        probeScripts: [],
        hops: [],
      };
      plans.set(name, p);
    }
    return p;
  };
  const clusterOf = (h: HostView) => h.clusterId ?? -1;
  const systemsOf = (h: HostView) =>
    systems.filter((ds) => ds.clusterIds.length === 0 || ds.clusterIds.includes(clusterOf(h)));

  for (const h of hypervisors) {
    if (settings.isFrontend(h.name)) continue;
    const p = plan(h.name);
    p.hypervisor = true;
    for (const ds of systemsOf(h)) {
      p.systemDirs.push({ id: ds.id, dir: norm(ds.basePath || `${dsLocation}/${ds.id}`), tm: ds.tmMad });
      const script = `/var/tmp/one/tm/${ds.tmMad}/monitor_ds`;
      if (!p.probeScripts.includes(script)) p.probeScripts.push(script);
    }
    // Migrations: every other hypervisor of the same cluster.
    for (const other of hypervisors) {
      if (other.name === h.name || clusterOf(other) !== clusterOf(h) || settings.isFrontend(other.name)) {
        continue;
      }
      p.hops.push({
        target: other.name,
        address: other.name,
        options: [],
        level: "fail",
        why: "migrations between hypervisors",
      });
    }
  }
  const replicas: string[] = [];
  for (const ds of systems) {
    const replica = ds.replicaHost;
    if (replica === "") continue;
    if (!replicas.includes(replica)) replicas.push(replica);
    const r = plan(replica);
    r.replica = true;
    for (const dir of imageDirs) if (!r.cacheDirs.includes(dir)) r.cacheDirs.push(dir);
    const replicaIp = byName.get(replica)?.replicaStorageIp ?? "";
    for (const h of hypervisors) {
      if (h.name === replica || settings.isFrontend(h.name)) continue;
      if (ds.clusterIds.length > 0 && !ds.clusterIds.includes(clusterOf(h))) continue;
      const why = `the cache push of system datastore ${ds.id} (REPLICA_SSH_OPTS)`;
      if (h.replicaStorageIp === "" && replicaIp !== "") {
        // The hypervisor pulls from the replica's storage address.
        const hv = plan(h.name);
        if (!hv.hops.some((x) => x.address === replicaIp)) {
          hv.hops.push({
            target: replica,
            address: replicaIp,
            options: settings.replicaSshOpts,
            level: "fail",
            why: `the cache pull of system datastore ${ds.id} (REPLICA_STORAGE_IP, REPLICA_SSH_OPTS)`,
          });
        }
        continue;
      }
      const address = h.replicaStorageIp || h.name;
      if (!r.hops.some((x) => x.address === address && x.options === settings.replicaSshOpts)) {
        r.hops.push({ target: h.name, address, options: settings.replicaSshOpts, level: "fail", why });
      }
    }
  }
  for (const p of plans.values()) {
    const tools = [...BASE_TOOLS, ...settings.extraTools];
    if (p.hypervisor) {
      tools.push("qemu-img", "virsh");
      for (const fs of settings.supportedFs) tools.push(`mkfs.${fs}`);
    }
    p.tools = [...new Set(tools)];
    if (!p.hops.some((x) => x.target === settings.frontend)) {
      p.hops.push({
        target: settings.frontend,
        address: settings.frontend,
        options: [],
        level: "warn",
        why: "the OneStor guide asks every host to reach the front-end",
      });
    }
  }
  let hosts = [...plans.values()].sort((a, b) => a.name.localeCompare(b.name));
  if (selection.host !== null) {
    const target = selection.host;
    hosts = hosts.flatMap((p) => {
      if (p.name === target) return [p];
      const hops = p.hops.filter((x) => x.target === target);
      return hops.length ? [{ ...p, full: false, hops }] : [];
    });
    if (!hosts.some((p) => p.name === target)) {
      hosts.unshift({
        name: target,
        hypervisor: false,
        replica: false,
        full: true,
        tools: [...BASE_TOOLS, ...settings.extraTools],
        systemDirs: [],
        cacheDirs: [],
        probeScripts: [],
        hops: [],
      });
    }
  }
  return { dsLocation, imageDirs, hosts, replicas: replicas.sort() };
}
