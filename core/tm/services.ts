/**
 * What the TM operations of `core/tm` need from the runtime, passed in one object so they can be
 * driven by tests with their own runner, configuration and oned lookups.
 *
 * @module
 */

import type { Config } from "../../config/load.ts";
import type { OneLookup } from "../one/lookup.ts";
import { type Confinement, tmConfinement } from "../remote/confine.ts";
import type { HostRunner } from "../remote/runner.ts";
import {
  checksumProgram,
  controlTimeoutMs,
  getConfig,
  getLookup,
  getRunner,
  transferTimeoutMs,
} from "../runtime.ts";

/** Runtime services of a TM operation. */
export interface TmServices {
  /** Runs scripts on hosts and on the front-end. */
  runner: HostRunner;
  /** Effective configuration. */
  config: Config;
  /** oned lookups (VMs, datastores, hosts). */
  lookup: OneLookup;
  /** Installed driver name (written into `.monitor` markers). */
  driver: string;
  /** Timeout of control commands in ms (0: none). */
  controlTimeoutMs: number;
  /** Timeout of data transfers and full image copies in ms (0: none). */
  transferTimeoutMs: number;
  /** Checksum program of copies (`b2sum`, ..., `none`). */
  checksum: string;
  /** Where TM scripts may write, move and delete on hosts and the front-end (DATASTORE_LOCATION). */
  confine: Confinement;
}

/** The services of this process for an action installed as `driver`. */
export function tmServices(driver: string): TmServices {
  return {
    runner: getRunner(),
    config: getConfig(),
    lookup: getLookup(),
    driver,
    controlTimeoutMs: controlTimeoutMs(),
    transferTimeoutMs: transferTimeoutMs(),
    checksum: checksumProgram(),
    confine: tmConfinement(getConfig()),
  };
}
