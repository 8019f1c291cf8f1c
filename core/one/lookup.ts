/**
 * The objects an action reads from oned, each fetched at most once per process: an action that
 * asks for the same VM three times (disk size, history, deploy id) costs one XML-RPC call. Nothing
 * outlives the process, so a retried action always sees oned's current state.
 *
 * @module
 */

import { OnedError } from "../errors.ts";
import { DatastoreView, HostView, VmView } from "./objects.ts";
import { findHostByName, OneClient, OnedCallError, OnedErrorCode } from "./xmlrpc.ts";
import { childElement, type XmlElement } from "./xml.ts";

/** Memoised lookups of VMs, datastores and hosts through a {@linkcode OneClient}. */
export class OneLookup {
  /** The client used for every call. */
  readonly client: OneClient;
  readonly #vms = new Map<number, Promise<VmView>>();
  readonly #datastores = new Map<number, Promise<DatastoreView>>();
  readonly #hosts = new Map<string, Promise<HostView>>();
  #pool: Promise<XmlElement> | undefined;

  /** Uses `client`, or a client configured from the environment when omitted. */
  constructor(client?: OneClient) {
    this.client = client ?? new OneClient();
  }

  // Promises are memoised (not values) so concurrent callers share one call; a failed call is
  // forgotten so that a caller may try again.
  #memo<K, V>(map: Map<K, Promise<V>>, key: K, load: () => Promise<V>): Promise<V> {
    let promise = map.get(key);
    if (!promise) {
      promise = load();
      map.set(key, promise);
      promise.catch(() => map.delete(key));
    }
    return promise;
  }

  /** VM `id` (`one.vm.info`). */
  vm(id: number): Promise<VmView> {
    return this.#memo(this.#vms, id, async () => new VmView(await this.client.vmInfo(id)));
  }

  /** Datastore `id` (`one.datastore.info`). */
  datastore(id: number): Promise<DatastoreView> {
    return this.#memo(
      this.#datastores,
      id,
      async () => new DatastoreView(await this.client.datastoreInfo(id)),
    );
  }

  /** The current system datastore of VM `vmId` (from its last history record). */
  async systemDatastore(vmId: number): Promise<DatastoreView> {
    const vm = await this.vm(vmId);
    const dsId = vm.systemDsId;
    if (dsId === null) {
      throw new OnedError(`VM ${vmId} has no history record, so its system datastore is unknown`);
    }
    return await this.datastore(dsId);
  }

  /** The host pool (`one.hostpool.info`), fetched once. */
  hostPool(): Promise<XmlElement> {
    if (!this.#pool) {
      this.#pool = this.client.hostPoolInfo();
      this.#pool.catch(() => this.#pool = undefined);
    }
    return this.#pool;
  }

  /**
   * A host by id or name. By name it reads the host pool (once per process, shared by every name
   * looked up); by id it calls `one.host.info`, unless the pool was already read.
   */
  host(nameOrId: string | number): Promise<HostView> {
    const key = String(nameOrId);
    return this.#memo(this.#hosts, key, async () => {
      const byId = /^[0-9]+$/.test(key);
      if (!byId || this.#pool) {
        const pool = await this.hostPool();
        const host = byId
          ? pool.children.find((h) => h.name === "HOST" && childElement(h, "ID")?.text.trim() === key)
          : findHostByName(pool, key);
        if (host) return new HostView(host);
        if (!byId) {
          throw new OnedCallError(`oned has no host named ${key}`, {
            endpoint: this.client.endpoint,
            method: "one.hostpool.info",
            kind: "refused",
            code: OnedErrorCode.NO_EXISTS,
          });
        }
      }
      return new HostView(await this.client.hostInfo(Number(key)));
    });
  }
}
