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
 * Recovery points (core/recovery): a disk with RECOVERY_SNAPSHOT_FREQ on a replica system datastore
 * starts its protection once in place (a bitmap in the disk, point 0 on the replica); after `onevm
 * recover --recreate` it is rebuilt from its recovery point instead of copied from the image.
 *
 * SPARSE=NO copies without holes and grows with `--preallocation=falloc`. The copy is byte-exact
 * (checksummed), so a copied qcow2 keeps the options it was created with; QCOW2_OPTIONS are then
 * applied in place with `qemu-img amend` where qemu-img can change them (compat, lazy_refcounts,
 * ...); one it cannot change is logged and the disk is used as it is. QCOW2_STANDALONE has no
 * effect: every disk this driver gives a VM is already a standalone copy, never an overlay.
 *
 * @module
 */

import { replicaClone, type ReplicaSettings } from "../cache/replica_clone.ts";
import { cloneFromRecovery, isProtected, isRecreate, protectAfterClone } from "../recovery/hooks.ts";
import { InputError } from "../errors.ts";
import { amendScript, growScript } from "../image/disk_scripts.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { basenameOf, dirnameOf, parseLocation } from "../one/location.ts";
import type { VmView } from "../one/objects.ts";
import { confined } from "../remote/confine.ts";
import { joinScripts, sh, type ShellScript } from "../remote/shell.ts";
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

/**
 * What runs on the host before a disk arrives: the datastore's `.monitor` marker and the VM
 * folder (a stale `<disk>.snap` is replaced or removed when the copy is committed).
 */
export function prepareScript(services: TmServices, dst: VmFile): ShellScript {
  return joinScripts([
    markerScript(dst.dsDir, services.driver),
    sh`[ -d ${dst.vmDir} ] || mkdir -p -- ${dst.vmDir} || exit 1`,
  ]);
}

/** What {@linkcode prepareScript} writes (for the confinement of the script that runs it). */
export function prepareWrites(dst: VmFile): string[] {
  return [`${dst.dsDir}/.monitor`, `${dst.dsDir}/.monitor.onestor-tmp`, dst.vmDir];
}

/** Creates the VM folder and the datastore's `.monitor` marker; drops a stale `<disk>.snap`. */
export async function prepareDiskDestination(services: TmServices, dst: VmFile): Promise<void> {
  await services.runner.run(
    dst.host,
    confined(
      services.confine,
      dst.host,
      { write: prepareWrites(dst), remove: [`${dst.path}.snap`] },
      joinScripts([prepareScript(services, dst), sh`rm -rf -- ${`${dst.path}.snap`}`]),
    ),
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

/** The replica path's settings, from the configuration. */
export function replicaSettings(services: TmServices): ReplicaSettings {
  const c = services.config;
  return {
    fallback: c.replicaFallback,
    cutThrough: c.replicaCutThrough,
    leaseSeconds: c.replicaLeaseSeconds,
    lockTimeoutSeconds: c.replicaCopyLockTimeout,
    verify: c.replicaCacheVerify,
    maxSizeMb: c.replicaMaxSizeMb,
    maxUsedPercent: c.replicaMaxUsedPerc,
    frontendHopOptions: c.replicaSshFeOpts,
    replicaHopOptions: c.replicaSshOpts,
    algorithm: c.transferChecksum === "none" ? "xxh128" : c.transferChecksum,
    copyChecksum: services.checksum,
    compression: c.transferCompression,
    controlTimeoutMs: services.controlTimeoutMs,
    transferTimeoutMs: services.transferTimeoutMs,
  };
}

/**
 * Runs clone/ln (see the module doc). The host gets one command: the copy's receiver makes the
 * folder and the marker, renames the verified disk into place and grows it (finishScript); in
 * replica mode that command comes from the replica, inside the one that serves the cache.
 */
export async function cloneDisk(services: TmServices, request: CloneRequest): Promise<void> {
  const src = parseCloneSource(request.source);
  const dst = parseVmFile(request.destination, "Clone destination");
  const vm = await services.lookup.vm(request.vmId);
  const facts = diskFacts(vm, dst.diskId);
  const replica = await replicaFor(services, request, vm);
  const sourcePath = `${src.dir}/${src.name}`;
  if (dst.diskId !== null && isProtected(facts, replica) && isRecreate(vm)) {
    // onevm recover --recreate: the disk comes back from its recovery point when it has one.
    await prepareDiskDestination(services, dst);
    if (await cloneFromRecovery(services, vm, dst, facts, replica)) {
      await finishDisk(services, dst, facts);
      await protectAfterClone(services, vm, dst, facts, replica, sourcePath, true);
      return;
    }
  }
  const prepare = prepareScript(services, dst);
  const finish = finishScript(services, dst, facts);
  const finishWhat = `Resizing image ${label(dst)}`;
  let finishOutput: string;
  if (replica !== "" && services.runner.isLocal(src.host)) {
    const result = await replicaClone(
      { runner: services.runner, lookup: services.lookup, settings: replicaSettings(services) },
      {
        action: request.action,
        vmId: request.vmId,
        diskId: dst.diskId,
        sourcePath,
        imageDsId: request.dsId,
        dest: { host: dst.host, path: dst.path },
        replica,
        sparse: facts.sparse,
        prepare,
        finish,
        finishWhat,
        confine: services.confine,
        writes: prepareWrites(dst),
      },
    );
    finishOutput = result.finishOutput;
  } else {
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
      to: {
        host: dst.host,
        dir: dst.vmDir,
        confine: services.confine,
        writes: prepareWrites(dst),
        prepare,
        finish: finish ?? undefined,
        finishWhat,
      },
      sparse: facts.sparse,
      mirror: true,
      checksum: services.checksum,
      timeoutMs: services.transferTimeoutMs,
      what: `Error copying ${request.source} to ${request.destination}`,
    });
    logInfo(`Copied ${(result.streamBytes / 1048576).toFixed(1)} MiB in ${result.seconds.toFixed(1)} s`);
    finishOutput = result.finishOutput;
  }
  reportFinish(dst, facts, finishOutput);
  await protectAfterClone(services, vm, dst, facts, replica, sourcePath, false);
}

/** Growth to SIZE and QCOW2_OPTIONS of a freshly copied disk, run by the copy's receiver; null: nothing to do. */
export function finishScript(
  services: TmServices,
  dst: VmFile,
  facts: { format: string; growToMb: number | null; sparse: boolean },
): ShellScript | null {
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
  if (scripts.length === 0) return null;
  return joinScripts(scripts.map((s) => sh`(${s}) || exit 1`));
}

/** Logs what the finishing step did. */
function reportFinish(dst: VmFile, facts: { growToMb: number | null }, out: string): void {
  if (facts.growToMb !== null) logInfo(`Grew ${label(dst)} to ${facts.growToMb} MiB`);
  const amend = out.match(/ONESTOR_AMEND_FAILED: (.*)/);
  if (amend) logWarn(`QCOW2_OPTIONS could not be applied to ${label(dst)}: ${amend[1].trim()}`);
}

/** Growth to SIZE and QCOW2_OPTIONS on a disk already in place, as a command of its own. */
export async function finishDisk(
  services: TmServices,
  dst: VmFile,
  facts: { format: string; growToMb: number | null; sparse: boolean },
): Promise<void> {
  const script = finishScript(services, dst, facts);
  if (script === null) return;
  const out = await services.runner.output(
    dst.host,
    confined(services.confine, dst.host, { write: [dst.path] }, script),
    {
      what: `Resizing image ${label(dst)}`,
      timeoutMs: facts.sparse ? services.controlTimeoutMs : services.transferTimeoutMs,
    },
  );
  reportFinish(dst, facts, out);
}

function label(dst: VmFile): string {
  return `${dst.host}:${dst.path}`;
}
