/**
 * `clone` and `ln` (spec §3.3): a full copy of an image (and of its `.snap` folder of persistent
 * snapshots) from the image datastore into the VM folder on the host, as `disk.<i>` and
 * `disk.<i>.snap`, then growth to the disk's SIZE. The ssh driver copies persistent images too
 * (`ln` is the same operation; `mvds` copies them back at the end).
 *
 * Replica mode: when the VM's system datastore (last history record) has REPLICA_HOST, the image
 * comes through that cluster's cache (core/cache/replica_clone.ts: front-end → replica once, then
 * replica → host); this module still makes the folder and the marker and grows the disk, so both
 * paths give the same disk. `clone.replica`/`ln.replica` (upstream's names) take the replica as
 * a 5th argument or from the datastore.
 *
 * SPARSE=NO copies without holes and grows with `--preallocation=falloc`. The copy is byte-exact
 * (checksummed), so a copied qcow2 keeps the options it was created with; QCOW2_OPTIONS are then
 * applied in place with `qemu-img amend` where qemu-img can change them (compat, lazy_refcounts,
 * ...); one it cannot change is logged and the disk is used as it is. QCOW2_STANDALONE has no
 * effect: every disk this driver gives a VM is already a standalone copy, never an overlay.
 *
 * @module
 */

import { replicaClone } from "../cache/replica_clone.ts";
import { InputError } from "../errors.ts";
import { amendScript, growScript } from "../image/disk_scripts.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { basenameOf, dirnameOf, parseLocation } from "../one/location.ts";
import type { VmView } from "../one/objects.ts";
import { joinScripts, sh } from "../remote/shell.ts";
import { copyEntries } from "../transfer/copy.ts";
import { diskFacts } from "./disk_facts.ts";
import { markerScript } from "./monitor_marker.ts";
import { checkVmPath, parseVmFile, type VmFile } from "./paths.ts";
import type { TmServices } from "./services.ts";

/** Arguments of clone/ln as oned passes them. */
export interface CloneRequest {
  /** `clone` or `ln` (for the log). */
  action: "clone" | "ln";
  /** `<fe>:<SOURCE>` (or `<bridge>:<SOURCE>`). */
  source: string;
  /** `<host>:<vm_dir>/disk.<i>`. */
  destination: string;
  /** VM id. */
  vmId: number;
  /** Image datastore id. */
  dsId: number;
  /**
   * Set when invoked as `clone.replica`/`ln.replica`: the REPLICA_HOST given as 5th argument, or
   * `""` to read it from the system datastore (and fail when it has none).
   */
  replicaHost?: string;
}

/** The image to copy: host (null = this front-end), folder and file name. */
export interface CloneSource {
  host: string | null;
  dir: string;
  name: string;
}

/** Parses the source argument; an argument without `host:` is a path on the front-end. */
export function parseCloneSource(arg: string): CloneSource {
  const location = parseLocation(arg);
  const path = checkVmPath(location.path, 2, "Image source");
  return {
    host: location.hasHost && location.host !== "" ? location.host : null,
    dir: dirnameOf(path),
    name: basenameOf(path),
  };
}

/** Creates the VM folder and the datastore's `.monitor` marker; drops a stale `<disk>.snap`. */
export async function prepareDiskDestination(services: TmServices, dst: VmFile): Promise<void> {
  await services.runner.run(
    dst.host,
    joinScripts([
      markerScript(dst.dsDir, services.driver),
      sh`mkdir -p -- ${dst.vmDir} || exit 1
rm -rf -- ${`${dst.path}.snap`}`,
    ]),
    { what: `Creating directory ${dst.vmDir}`, timeoutMs: services.controlTimeoutMs },
  );
}

/**
 * The replica that serves this clone: the REPLICA_HOST of the VM's current system datastore
 * (history DS_ID), or the one given to `clone.replica`; `""` for a direct copy.
 */
export async function replicaFor(services: TmServices, request: CloneRequest, vm: VmView): Promise<string> {
  const given = request.replicaHost?.trim();
  if (given) return given;
  const sysDsId = vm.systemDsId;
  const replica = sysDsId === null ? "" : (await services.lookup.datastore(sysDsId)).replicaHost;
  if (replica === "" && request.replicaHost !== undefined) {
    throw new InputError(`No REPLICA_HOST in datastore ${sysDsId ?? "(the VM has no history)"} template`);
  }
  return replica;
}

/** Runs clone/ln (see the module doc). */
export async function cloneDisk(services: TmServices, request: CloneRequest): Promise<void> {
  const src = parseCloneSource(request.source);
  const dst = parseVmFile(request.destination, "Clone destination");
  const vm = await services.lookup.vm(request.vmId);
  const facts = diskFacts(vm, dst.diskId);
  const replica = await replicaFor(services, request, vm);
  await prepareDiskDestination(services, dst);
  if (replica !== "" && services.runner.isLocal(src.host)) {
    // The cache copies the image (and its .snap) into place; the rest is the same as below.
    await replicaClone({
      action: request.action,
      vmId: request.vmId,
      diskId: dst.diskId,
      sourcePath: `${src.dir}/${src.name}`,
      imageDsId: request.dsId,
      dest: { host: dst.host, path: dst.path },
      replica,
      sparse: facts.sparse,
    });
    await finishDisk(services, dst, facts);
    return;
  }
  if (replica !== "") {
    logInfo(`${request.source} is not on the front-end: copying it directly, not via ${replica}`);
  }
  logInfo(`Cloning ${request.source} in ${request.destination}`);
  const result = await copyEntries(services.runner, {
    from: {
      host: src.host,
      dir: src.dir,
      entries: [
        { name: src.name, as: dst.name },
        { name: `${src.name}.snap`, as: `${dst.name}.snap`, optional: true },
      ],
    },
    to: { host: dst.host, dir: dst.vmDir, confine: services.confine },
    sparse: facts.sparse,
    checksum: services.checksum,
    timeoutMs: services.transferTimeoutMs,
    what: `Error copying ${request.source} to ${request.destination}`,
  });
  logInfo(`Copied ${(result.streamBytes / 1048576).toFixed(1)} MiB in ${result.seconds.toFixed(1)} s`);
  await finishDisk(services, dst, facts);
}

/** Growth to SIZE and QCOW2_OPTIONS on a freshly copied disk (shared with the replica path). */
export async function finishDisk(
  services: TmServices,
  dst: VmFile,
  facts: { format: string; growToMb: number | null; sparse: boolean },
): Promise<void> {
  const scripts = [];
  if (facts.growToMb !== null) {
    scripts.push(growScript({
      disk: dst.path,
      format: facts.format,
      sizeMb: facts.growToMb,
      preallocate: !facts.sparse,
      whenLarger: "keep",
    }));
  }
  if (services.config.qcow2Options.length > 0) {
    scripts.push(amendScript(dst.path, facts.format, services.config.qcow2Options));
  }
  if (scripts.length === 0) return;
  const out = await services.runner.output(dst.host, joinScripts(scripts.map((s) => sh`(${s}) || exit 1`)), {
    what: `Resizing image ${label(dst)}`,
    timeoutMs: facts.sparse ? services.controlTimeoutMs : services.transferTimeoutMs,
  });
  if (facts.growToMb !== null) logInfo(`Grew ${label(dst)} to ${facts.growToMb} MiB`);
  const amend = out.match(/ONESTOR_AMEND_FAILED: (.*)/);
  if (amend) logWarn(`QCOW2_OPTIONS could not be applied to ${label(dst)}: ${amend[1].trim()}`);
}

function label(dst: VmFile): string {
  return `${dst.host}:${dst.path}`;
}
