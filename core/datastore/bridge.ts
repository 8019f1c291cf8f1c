/**
 * BRIDGE_LIST: the hosts that do a datastore's work instead of the front-end (spec §7). As
 * upstream's `get_destination_host`: hosts that oned reports off, in error or disabled are dropped,
 * then `hosts[id mod N]` is taken (a random one when there is no id). When oned cannot be asked,
 * the list is used as it is, as upstream does.
 *
 * @module
 */

import { OneStorError } from "../errors.ts";
import { hostName } from "../validate.ts";
import { logWarn } from "../one/log.ts";
import { HostState } from "../one/objects.ts";
import { childElement, type XmlElement } from "../one/xml.ts";

/** Host states upstream's `onehost list --filter STAT=off,STAT=err,STAT=dsbl` drops. */
const UNUSABLE: ReadonlySet<number> = new Set([
  HostState.ERROR,
  HostState.DISABLED,
  HostState.MONITORING_DISABLED,
  HostState.OFFLINE,
]);

/** Splits and checks a BRIDGE_LIST value (host names only: they end up as ssh arguments). */
export function parseBridgeList(hosts: readonly string[]): string[] {
  return hosts.map((host) => hostName(host, "Each host of BRIDGE_LIST"));
}

/** Names of the hosts of a `<HOST_POOL>` whose state makes them unusable as bridges. */
export function unusableHosts(pool: XmlElement): Set<string> {
  const names = new Set<string>();
  for (const host of pool.children) {
    if (host.name !== "HOST") continue;
    const name = childElement(host, "NAME")?.text.trim() ?? "";
    const state = Number(childElement(host, "STATE")?.text.trim());
    if (name && UNUSABLE.has(state)) names.add(name);
  }
  return names;
}

/**
 * Picks the bridge host for object `id` from `hosts`, or null when the list is empty (the work is
 * done on the front-end). `pool` reads oned's host pool; when it fails, no host is dropped.
 */
export async function pickBridge(
  hosts: readonly string[],
  id: number | null,
  pool: () => Promise<XmlElement>,
): Promise<string | null> {
  const list = parseBridgeList(hosts);
  if (list.length === 0) return null;
  let usable = list;
  try {
    const off = unusableHosts(await pool());
    usable = list.filter((h) => !off.has(h));
  } catch (error) {
    logWarn(`Cannot read the host pool from oned (${(error as Error).message}); using BRIDGE_LIST as it is`);
  }
  if (usable.length === 0) {
    throw new OneStorError("All hosts from 'BRIDGE_LIST' are offline, error or disabled");
  }
  const index = id === null || !Number.isFinite(id)
    ? Math.floor(Math.random() * usable.length)
    : Math.abs(Math.trunc(id)) % usable.length;
  return usable[index];
}
