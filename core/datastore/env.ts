/**
 * What every datastore action starts from: the object id argument, DS_DRIVER_ACTION_DATA from
 * stdin, the configuration and the host runner, and the host the work runs on (the front-end, or
 * the BRIDGE_LIST host picked for this id).
 *
 * @module
 */

import type { Config } from "../../config/load.ts";
import { InputError } from "../errors.ts";
import { type DriverAction, parseDriverAction } from "../one/driver_action.ts";
import { type Confinement, datastoreConfinement } from "../remote/confine.ts";
import type { HostRunner } from "../remote/runner.ts";
import { getConfig, getLookup, getRunner } from "../runtime.ts";
import { pickBridge } from "./bridge.ts";

/** The inputs and services of one datastore action. */
export interface DsEnv {
  /** The id argument (image id, or datastore id for monitor); null when not a number. */
  id: number | null;
  /** The decoded DS_DRIVER_ACTION_DATA. */
  action: DriverAction;
  /** Configuration. */
  config: Config;
  /** Runs scripts here or on hosts. */
  runner: HostRunner;
}

/** Parses the id argument (an integer; oned passes a request counter to stat). */
export function parseId(arg: string | undefined, what = "Image id"): number {
  if (arg === undefined || !/^-?[0-9]+$/.test(arg)) {
    throw new InputError(`${what} must be a number, got ${JSON.stringify(arg)}`);
  }
  return Number(arg);
}

/** Builds the environment from the action's arguments and standard input. */
export function dsEnv(args: readonly string[], stdin: string, what = "Image id"): DsEnv {
  return {
    id: parseId(args[0], what),
    action: parseDriverAction(stdin),
    config: getConfig(),
    runner: getRunner(),
  };
}

/**
 * Where a datastore action may write, move and delete: the datastore's BASE_PATH, plus its
 * STAGING_DIR (default /var/tmp, as upstream) when `staging` is set (cp through a bridge host).
 */
export function dsConfinement(action: DriverAction, options: { staging?: boolean } = {}): Confinement {
  const staging = options.staging ? action.dsTemplate("STAGING_DIR").trim() || "/var/tmp" : undefined;
  return datastoreConfinement(action.dsId ?? "?", action.dsBasePath, staging);
}

/**
 * The host that does the work: a BRIDGE_LIST host (`hosts[id mod N]` among usable ones, random
 * when `id` is null) or null for the front-end.
 */
export function workHost(hosts: readonly string[], id: number | null): Promise<string | null> {
  if (hosts.length === 0) return Promise.resolve(null);
  return pickBridge(hosts, id, () => getLookup().hostPool());
}
