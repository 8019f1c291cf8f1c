/**
 * `mv <hostA>:<path> <hostB>:<path> <vm_id> <ds_id>` (spec §3.3): moves a VM folder between hosts
 * (cold migration), from a host to the front-end (stop, undeploy: the front-end pulls) and back
 * (resume). Disk arguments succeed at once: disks travel with their folder. In PROLOG_MIGRATE_UNKNOWN
 * (60, 61) nothing is moved (the source host is gone).
 *
 * Same storage is decided from what the hosts see, not from names or paths (upstream #6379): a
 * probe file is created in the destination datastore folder on B, then looked for in the source
 * datastore folder on A; the two folders are one when A sees that file with the inode B created
 * (the device numbers are compared too and logged; they differ between NFS clients of one export).
 * Then the VM folder is already where it must be (same name) or is renamed in place.
 *
 * Otherwise the folder is copied with the transfer primitive (sparse, checksummed, written aside
 * and renamed into place) and the source is removed only after that copy is verified and in place
 * (upstream #5531). A retry after a successful move (source gone, destination present) succeeds
 * without touching anything. Disks with SPARSE=NO are allocated again after the sparse transfer.
 * The destination gets the datastore's `.monitor` marker in the system datastore folder itself.
 *
 * @module
 */

import { InputError, OneStorError } from "../errors.ts";
import { preallocateScript } from "../image/disk_scripts.ts";
import { logInfo } from "../one/log.ts";
import { LcmState, type VmView } from "../one/objects.ts";
import { joinScripts, sh } from "../remote/shell.ts";
import { copyEntries } from "../transfer/copy.ts";
import { markerScript } from "./monitor_marker.ts";
import { isDiskLocation, parseVmDir, type VmDir } from "./paths.ts";
import type { TmServices } from "./services.ts";

/** Arguments of mv. */
export interface MoveRequest {
  /** `<hostA>:<path>`. */
  source: string;
  /** `<hostB>:<path>`. */
  destination: string;
  /** VM id. */
  vmId: number;
  /** Datastore id of the call. */
  dsId: number;
}

/** What each side reported about the probe. */
export interface ProbeView {
  /** `dev:ino` of the datastore folder, `""` when absent. */
  dir: string;
  /** `dev:ino` of the probe file, `""` when not visible. */
  probe: string;
  /** Whether the VM folder exists there. */
  exists: boolean;
}

/** How the two datastore folders relate. */
export type StorageRelation = "same-folder" | "distinct";

/** Parses `KEY=value` lines of a probe answer. */
export function parseProbe(text: string): ProbeView {
  const value = (key: string) => text.match(new RegExp(`^${key}=(.*)$`, "m"))?.[1].trim() ?? "";
  return { dir: value("DIR"), probe: value("PROBE"), exists: value("EXISTS") === "1" };
}

function inode(devIno: string): string {
  return devIno.slice(devIno.indexOf(":") + 1);
}

/**
 * Same folder when the source side sees the destination's probe file under its name with the
 * inode it was created with. Device numbers are only reported: NFS clients of one export see it
 * under different device numbers.
 */
export function storageRelation(source: ProbeView, destination: ProbeView): StorageRelation {
  if (source.probe === "" || destination.probe === "") return "distinct";
  if (inode(source.probe) !== inode(destination.probe)) return "distinct";
  return "same-folder";
}

/** The probe script: `DIR`, `PROBE` (dev:ino) and `EXISTS` lines for a datastore folder. */
function probeScript(dsDir: string, vmPath: string, probeName: string, create: boolean) {
  const probe = `${dsDir}/${probeName}`;
  return sh`${create ? sh`: >${probe} || exit 1` : sh`true`}
printf 'DIR=%s\\n' "$(stat -c %d:%i -- ${dsDir} 2>/dev/null)"
printf 'PROBE=%s\\n' "$(stat -c %d:%i -- ${probe} 2>/dev/null)"
if [ -e ${vmPath} ]; then echo EXISTS=1; else echo EXISTS=0; fi`;
}

function token(): string {
  return [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Paths of the disks of `vm` that must be fully allocated (SPARSE=NO) inside VM folder `dir`. */
export function denseDiskPaths(vm: VmView, dir: string): string[] {
  return vm.disks()
    .filter((d) => d.sparseDisabled && d.id !== null)
    .map((d) => `${dir}/disk.${d.id}`);
}

/** Runs mv (see the module doc). */
export async function moveVmDir(services: TmServices, request: MoveRequest): Promise<void> {
  if (isDiskLocation(request.destination)) {
    logInfo(`Not moving ${request.source}: disks move with their VM folder`);
    return;
  }
  const src = parseVmDir(request.source, "Move source");
  const dst = parseVmDir(request.destination, "Move destination");
  const vm = await services.lookup.vm(request.vmId);
  const lcm = vm.lcmState;
  if (lcm === LcmState.PROLOG_MIGRATE_UNKNOWN || lcm === LcmState.PROLOG_MIGRATE_UNKNOWN_FAILURE) {
    logInfo(`Not moving files from ${src.host} in FT mode`);
    return;
  }
  const runner = services.runner;
  const probeName = `.onestor-mv-${token()}`;
  const timeoutMs = services.controlTimeoutMs;
  const dstView = parseProbe(
    await runner.output(
      dst.host,
      joinScripts([
        markerScript(dst.dsDir, services.driver),
        probeScript(dst.dsDir, dst.path, probeName, true),
      ]),
      { what: `Creating directory ${dst.dsDir}`, timeoutMs },
    ),
  );
  try {
    const srcView = parseProbe(
      await runner.output(src.host, probeScript(src.dsDir, src.path, probeName, false), {
        what: `Reading ${src.dsDir}`,
        timeoutMs,
      }),
    );
    const relation = storageRelation(srcView, dstView);
    if (relation === "same-folder") {
      await moveInPlace(services, src, dst, srcView, dstView);
      return;
    }
    if (!srcView.exists) {
      if (dstView.exists) {
        logInfo(`${src.host}:${src.path} is gone and ${dst.host}:${dst.path} exists: already moved`);
        return;
      }
      throw new OneStorError(
        `Cannot move ${src.host}:${src.path}: it does not exist, and neither does ${dst.host}:${dst.path}`,
      );
    }
    logInfo(`Moving ${src.host}:${src.path} to ${dst.host}:${dst.path}`);
    const result = await copyEntries(runner, {
      from: { host: src.host, dir: src.dsDir, entries: [{ name: src.name, as: dst.name }] },
      to: { host: dst.host, dir: dst.dsDir, confine: services.confine },
      sparse: true,
      checksum: services.checksum,
      timeoutMs: services.transferTimeoutMs,
      what: `Error copying disk directory ${src.host}:${src.path} to ${dst.host}:${dst.path}`,
    });
    logInfo(`Copied ${(result.streamBytes / 1048576).toFixed(1)} MiB in ${result.seconds.toFixed(1)} s`);
    const dense = denseDiskPaths(vm, dst.path);
    if (dense.length > 0) {
      await runner.run(dst.host, preallocateScript(dense), {
        what: `Allocating disks in ${dst.path}`,
        timeoutMs: services.transferTimeoutMs,
      });
    }
    // The copy is verified and in place: only now does the source go.
    await runner.run(src.host, sh`rm -rf -- ${src.path}`, {
      what: `Removing ${src.path} after moving it to ${dst.host}`,
      timeoutMs,
    });
  } finally {
    await runner.run(dst.host, sh`rm -f -- ${`${dst.dsDir}/${probeName}`}`, { check: false, timeoutMs })
      .catch(() => {});
  }
}

async function moveInPlace(
  services: TmServices,
  src: VmDir,
  dst: VmDir,
  srcView: ProbeView,
  dstView: ProbeView,
): Promise<void> {
  const devices = srcView.dir === dstView.dir
    ? `folder ${srcView.dir}`
    : `folders ${srcView.dir || "?"} and ${dstView.dir || "?"}`;
  if (src.name === dst.name) {
    logInfo(`Not moving ${src.host}:${src.path} to ${dst.host}:${dst.path}: same storage (${devices})`);
    return;
  }
  if (!srcView.exists) {
    if (dstView.exists) return;
    throw new InputError(`Cannot move ${src.host}:${src.path}: it does not exist`);
  }
  // The destination folder as the source host sees it (mount points may differ between hosts).
  const target = `${src.dsDir}/${dst.name}`;
  logInfo(`Renaming ${src.path} to ${target} on shared storage (${devices})`);
  await services.runner.run(src.host, sh`rm -rf -- ${target} && mv -- ${src.path} ${target}`, {
    what: `Renaming ${src.path} to ${dst.path}`,
    timeoutMs: services.controlTimeoutMs,
  });
}
