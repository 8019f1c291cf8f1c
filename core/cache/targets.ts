/**
 * Which replicas exist and how a replica reaches a hypervisor.
 *
 * Replicas are the REPLICA_HOST values of the system datastores (one `one.datastorepool.info`
 * call). REPLICA_STORAGE_IP follows both upstream's code and its documentation, in this order:
 * 1. on the **destination hypervisor's** host template (what upstream's code reads): the replica
 *    pushes the disk to that address;
 * 2. else on the **replica's** host template (what upstream's documentation says): the hypervisor
 *    pulls the disk from the replica at that address;
 * 3. else the replica pushes to the hypervisor by its host name.
 * Either way the address belongs to the host that accepts the data connection.
 *
 * @module
 */

import { logInfo } from "../one/log.ts";
import type { OneLookup } from "../one/lookup.ts";
import { DatastoreType, DatastoreView } from "../one/objects.ts";
import type { OneClient } from "../one/xmlrpc.ts";
import type { CopyRoute } from "../transfer/copy.ts";

/** A replica host and the system datastores (and clusters) that use it. */
export interface ReplicaTarget {
  /** REPLICA_HOST value. */
  host: string;
  /** System datastore ids carrying it. */
  systemDatastores: number[];
  /** Clusters of those datastores. */
  clusters: number[];
}

/** Every replica of the cloud and every image datastore folder, from the datastore pool. */
export interface CacheTopology {
  replicas: ReplicaTarget[];
  /** BASE_PATH of every image datastore (where entries live on the replicas). */
  imageDirs: string[];
}

/** Reads the datastore pool once and derives the replicas and image folders. */
export async function cacheTopology(client: OneClient): Promise<CacheTopology> {
  const pool = await client.datastorePoolInfo();
  const replicas = new Map<string, ReplicaTarget>();
  const imageDirs = new Set<string>();
  for (const element of pool.children) {
    if (element.name !== "DATASTORE") continue;
    const ds = new DatastoreView(element);
    if (ds.type === DatastoreType.SYSTEM_DS && ds.replicaHost !== "") {
      const target = replicas.get(ds.replicaHost) ??
        { host: ds.replicaHost, systemDatastores: [], clusters: [] };
      target.systemDatastores.push(ds.id);
      for (const c of ds.clusterIds) if (!target.clusters.includes(c)) target.clusters.push(c);
      replicas.set(ds.replicaHost, target);
    } else if (ds.type === DatastoreType.IMAGE_DS && ds.basePath !== "") {
      imageDirs.add(ds.basePath.replace(/\/{2,}/g, "/").replace(/\/$/, ""));
    }
  }
  return { replicas: [...replicas.values()], imageDirs: [...imageDirs].sort() };
}

/** The data route from `replica` to hypervisor `host` (see the module doc). */
export async function storageRoute(lookup: OneLookup, host: string, replica: string): Promise<CopyRoute> {
  const ipOf = async (name: string): Promise<string> => {
    try {
      return (await lookup.host(name)).replicaStorageIp;
    } catch {
      // A host oned does not know (a replica need not be an OpenNebula host) has no such attribute.
      return "";
    }
  };
  const hostIp = await ipOf(host);
  if (hostIp !== "") {
    logInfo(`REPLICA_STORAGE_IP of ${host} is ${hostIp}: replica ${replica} pushes the disk there`);
    return { mode: "push", address: hostIp };
  }
  const replicaIp = replica === host ? "" : await ipOf(replica);
  if (replicaIp !== "") {
    logInfo(`REPLICA_STORAGE_IP of replica ${replica} is ${replicaIp}: ${host} pulls the disk from there`);
    return { mode: "pull", address: replicaIp };
  }
  return { mode: "push", address: host };
}
