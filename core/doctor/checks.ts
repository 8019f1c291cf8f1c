/**
 * `onestor doctor`: the checks that find what breaks deploys before oned runs into it — the
 * settings, the programs on the front-end, oned's API, the SSH mesh (front-end → every host, and
 * each replica → the hypervisors of its clusters with REPLICA_SSH_OPTS, upstream #2235) and the
 * programs every host needs.
 *
 * @module
 */

import type { Config } from "../../config/load.ts";
import { OneStorError } from "../errors.ts";
import { DatastoreType, DatastoreView, HostState, HostView } from "../one/objects.ts";
import type { OneClient } from "../one/xmlrpc.ts";
import { xpathNodes } from "../one/xml.ts";
import { runCommand } from "../remote/process.ts";
import type { HostRunner } from "../remote/runner.ts";
import { sh } from "../remote/shell.ts";
import { hopScript } from "../remote/ssh.ts";
import { HASH_PROGRAMS, isHashAlgorithm } from "../transfer/hashes.ts";

/** Outcome of one check. */
export interface CheckResult {
  /** What was checked, e.g. `ssh frontend → hv1`. */
  name: string;
  /** ok, warn (works but needs attention) or fail. */
  status: "ok" | "warn" | "fail";
  /** Why, when not ok. */
  detail?: string;
}

/**
 * Programs every host runs for onestor (scripts are sent over SSH; flock guards cache records,
 * fallocate allocates SPARSE=NO disks, b2sum is the checksum every host can compute).
 */
const HOST_TOOLS = [
  "bash",
  "tar",
  "qemu-img",
  "mktemp",
  "mkfifo",
  "timeout",
  "flock",
  "fallocate",
  "find",
  "sha256sum",
  "b2sum",
];

/**
 * Programs hosts should have: xxhsum (package xxhash) computes TRANSFER_CHECKSUM=xxh128; a host
 * without it gets blake2b instead (slower), so its absence is a warning.
 */
export const RECOMMENDED_HOST_TOOLS = ["xxhsum"];

/** Programs the configuration adds on every host: the checksum's program and the wire compression. */
export function configuredHostTools(algorithm: string, compression: string): string[] {
  const program = isHashAlgorithm(algorithm) && algorithm !== "xxh128" ? HASH_PROGRAMS[algorithm][0] : "";
  return [program, compression].filter((t) => t !== "none" && t !== "");
}

/** Programs the front-end runs. */
function frontendTools(config: Config, algorithm: string): string[][] {
  const tools = [["ssh"], ["tar"], ["qemu-img"], ["bash"], ["xorriso", "genisoimage"], ["b2sum"]];
  const program = isHashAlgorithm(algorithm) ? HASH_PROGRAMS[algorithm][0] : "";
  if (program !== "" && program !== "b2sum") tools.push([program]);
  for (const fs of config.supportedFs) tools.push([fs === "xfs" ? "mkfs.xfs" : `mkfs.${fs}`]);
  return tools;
}

function message(error: unknown): string {
  return error instanceof OneStorError || error instanceof Error ? error.message : String(error);
}

/** Checks the front-end's own programs. */
export async function checkFrontendTools(config: Config, checksum: string): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const alternatives of frontendTools(config, checksum)) {
    const script = alternatives.map((t) => `command -v ${t}`).join(" || ");
    const found = await runCommand(["sh", "-c", `PATH="$PATH:/sbin:/usr/sbin"; ${script}`]);
    results.push(
      found.code === 0
        ? { name: `front-end has ${alternatives.join(" or ")}`, status: "ok" }
        : { name: `front-end has ${alternatives.join(" or ")}`, status: "fail", detail: "not found in PATH" },
    );
  }
  for (const t of RECOMMENDED_HOST_TOOLS) {
    const found = await runCommand(["sh", "-c", `command -v ${t}`]);
    results.push(
      found.code === 0 ? { name: `front-end has ${t}`, status: "ok" } : {
        name: `front-end has ${t}`,
        status: "warn",
        detail: "not found (install package xxhash: image checksums fall back to blake2b, slower)",
      },
    );
  }
  return results;
}

/** The hosts and datastores oned knows, for the mesh checks. */
export interface Inventory {
  hosts: HostView[];
  datastores: DatastoreView[];
}

/** Reads the host and datastore pools from oned. */
export async function readInventory(client: OneClient): Promise<Inventory> {
  const [hostPool, dsPool] = await Promise.all([client.hostPoolInfo(), client.datastorePoolInfo()]);
  return {
    hosts: xpathNodes(hostPool, "/HOST_POOL/HOST").map((h) => new HostView(h)),
    datastores: xpathNodes(dsPool, "/DATASTORE_POOL/DATASTORE").map((d) => new DatastoreView(d)),
  };
}

function active(host: HostView): boolean {
  const s = host.state;
  return s !== HostState.DISABLED && s !== HostState.OFFLINE && s !== HostState.MONITORING_DISABLED;
}

/** SSH from the front-end to every active host, and the programs each needs. */
export async function checkHosts(
  runner: HostRunner,
  inventory: Inventory,
  timeoutMs: number,
  extraTools: readonly string[] = [],
): Promise<CheckResult[]> {
  const names = new Set(inventory.hosts.filter(active).map((h) => h.name));
  for (const ds of inventory.datastores) if (ds.replicaHost) names.add(ds.replicaHost);
  const probe = sh`for t in ${[
    ...HOST_TOOLS,
    ...extraTools,
  ]}; do command -v "$t" >/dev/null 2>&1 || printf '%s ' "$t"; done
echo
for t in ${RECOMMENDED_HOST_TOOLS}; do command -v "$t" >/dev/null 2>&1 || printf '%s ' "$t"; done`;
  return await Promise.all(
    [...names].sort().map(async (name): Promise<CheckResult> => {
      const check = `ssh front-end → ${name}`;
      if (runner.isLocal(name)) return { name: check, status: "ok", detail: "this machine" };
      try {
        const out = (await runner.run(name, probe, { timeoutMs, what: "Tool check" })).stdout;
        const [missing = "", recommended = ""] = out.split("\n").map((l) => l.trim());
        if (missing !== "") {
          return { name: check, status: "fail", detail: `reachable, but missing: ${missing}` };
        }
        return recommended === "" ? { name: check, status: "ok" } : {
          name: check,
          status: "warn",
          detail:
            `reachable, but without ${recommended} (install package xxhash: checksums fall back to blake2b)`,
        };
      } catch (error) {
        return { name: check, status: "fail", detail: message(error) };
      }
    }),
  );
}

/** Each replica must reach the hypervisors of its clusters with REPLICA_SSH_OPTS (the cache push hop). */
export async function checkReplicaMesh(
  runner: HostRunner,
  inventory: Inventory,
  config: Config,
  timeoutMs: number,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const ds of inventory.datastores) {
    if (ds.type !== DatastoreType.SYSTEM_DS || ds.replicaHost === "") continue;
    const replica = ds.replicaHost;
    const clusters = new Set(ds.clusterIds);
    const targets = inventory.hosts.filter((h) =>
      active(h) && h.name !== replica && (clusters.size === 0 || clusters.has(h.clusterId ?? -1))
    );
    await Promise.all(targets.map(async (host) => {
      const address = host.replicaStorageIp || host.name;
      const name = `ssh ${replica} → ${address} (system datastore ${ds.id})`;
      try {
        await runner.run(
          replica,
          hopScript(address, sh`true`, {
            hopOptions: config.replicaSshOpts,
            connectTimeout: config.sshConnectTimeout,
          }),
          { timeoutMs, what: `SSH from ${replica} to ${address}` },
        );
        results.push({ name, status: "ok" });
      } catch (error) {
        results.push({ name, status: "fail", detail: message(error) });
      }
    }));
  }
  return results.sort((a, b) => a.name.localeCompare(b.name));
}
