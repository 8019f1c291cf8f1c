/**
 * Confinement of the recovery scripts (core/remote/confine.ts): every script that writes, moves or
 * deletes on a replica or a hypervisor starts with the check of its targets, run on that host
 * right before the write. On a replica the allowed roots are DATASTORE_LOCATION and
 * REPLICA_RECOVERY_SNAPS_DIR; on a hypervisor DATASTORE_LOCATION.
 *
 * @module
 */

import type { Config } from "../../config/load.ts";
import {
  confine,
  type Confinement,
  type ConfineTargets,
  replicaConfinement,
  tmConfinement,
} from "../remote/confine.ts";
import type { ShellScript } from "../remote/shell.ts";

/** Where a script runs and where it may write. */
export interface Guard {
  /** Allowed roots. */
  confine: Confinement;
  /** The host, for refusals. */
  host: string;
}

/** The guard of scripts on replica `host`. */
export function replicaGuard(config: Config, host: string): Guard {
  return { confine: replicaConfinement(config), host };
}

/** The guard of scripts on hypervisor `host`. */
export function hypervisorGuard(config: Config, host: string): Guard {
  return { confine: tmConfinement(config), host };
}

/** The confinement prologue of a script with these targets. */
export function guarded(guard: Guard, targets: ConfineTargets): ShellScript {
  return confine(guard.confine, guard.host, targets);
}
