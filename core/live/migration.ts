/**
 * Live migration on local system datastores: `premigrate`, `postmigrate`, `failmigrate
 * <src_host> <dst_host> <vm_dir> <vm_id> <ds_id> [<caller_tm>]`, stdin = base64 VM XML (spec §3.3
 * and §14). The KVM driver (vmm/kvm/migrate) creates empty files for the writable disks on the
 * destination and migrates with `virsh migrate --live --copy-storage-all`: libvirt copies those
 * disks while the guest runs. Everything else of the VM folder is the TM's:
 *
 * - premigrate prepares the destination folder: it copies, from the source, every entry the
 *   storage migration does not copy (context ISO and other read-only disks, `disk.<i>.snap/`
 *   snapshot folders, symlinked disks, `vm.xml`, `ds.xml`, ...) with the transfer primitive, and
 *   writes the datastore's `.monitor` marker there (a host that only ever receives VMs by live
 *   migration is monitored too). It refuses to clear a destination folder whose domain runs there.
 * - postmigrate removes the source folder, but only after verifying the destination: the domain
 *   runs on the destination and no longer on the source, every entry of the source folder exists
 *   in the destination folder, and every writable disk there is a readable image. Otherwise the
 *   source stays and the action fails (upstream removed it unconditionally: #5531).
 * - failmigrate undoes premigrate on the destination, never touching the source; it refuses when
 *   the domain runs on the destination or the source folder cannot be confirmed (the destination
 *   might then hold the only copy).
 *
 * Same host: nothing to do (as upstream). Other drivers of the VM's disks get the same call
 * (`migrate_other`, see migrate_other.ts).
 *
 * @module
 */

import { InputError, OneStorError } from "../errors.ts";
import { isActiveState, virshPrelude } from "../hypervisor/virsh.ts";
import { parseBase64Xml } from "../one/driver_action.ts";
import { dirnameOf } from "../one/location.ts";
import { logInfo } from "../one/log.ts";
import { intOrNull, VmView } from "../one/objects.ts";
import { joinScripts, sh } from "../remote/shell.ts";
import { copyEntries } from "../transfer/copy.ts";
import { markerScript } from "../tm/monitor_marker.ts";
import { checkVmPath, parseId } from "../tm/paths.ts";
import type { TmServices } from "../tm/services.ts";
import { migrateOther, tmDirOf } from "./migrate_other.ts";
import { liveDomain } from "./vm_domain.ts";

/** Arguments and stdin of the three migration actions. */
export interface MigrationRequest {
  /** Host the VM runs on before the migration. */
  srcHost: string;
  /** Host it moves to. */
  dstHost: string;
  /** VM folder (the same path on both hosts), as oned passed it. */
  vmDir: string;
  /** VM id. */
  vmId: number;
  /** System datastore id. */
  dsId: number;
  /** 6th argument: the driver that called us (then other drivers are not called again). */
  caller?: string;
  /** Base64 VM XML from stdin. */
  vmXmlBase64: string;
  /** The remotes `tm` folder (for the other drivers' scripts). */
  tmDir: string;
}

/** Kind of a folder entry, as `find -printf %y` prints it (`f` file, `d` folder, `l` link, ...). */
export type EntryKind = string;

/** Entries of a VM folder by name, or null when the folder does not exist. */
export type Listing = Map<string, EntryKind> | null;

/** Prefix of onestor's temporary names inside VM folders (never migrated, never required). */
const TEMP_PREFIX = ".onestor-";

/** The script listing a folder: `MISSING`, or one `<kind>\t<name>` line per entry. */
export function listingScript(dir: string) {
  return sh`if [ ! -d ${dir} ]; then echo MISSING; exit 0; fi
cd -- ${dir} && find . -mindepth 1 -maxdepth 1 -printf '%y\\t%f\\n'`;
}

/** Parses the output of {@linkcode listingScript}. */
export function parseListing(text: string): Listing {
  if (text.trim() === "MISSING") return null;
  const map = new Map<string, EntryKind>();
  for (const line of text.split("\n")) {
    const tab = line.indexOf("\t");
    if (tab <= 0) continue;
    map.set(line.slice(tab + 1), line.slice(0, tab));
  }
  return map;
}

/**
 * Names of the VM's disks that the storage migration copies: `disk.<id>` of every DISK that is
 * neither a CD-ROM nor read-only (libvirt's --copy-storage-all skips read-only disks; the context
 * CD-ROM is not a DISK at all).
 */
export function writableDiskNames(vm: VmView): Set<string> {
  const names = new Set<string>();
  for (const disk of vm.disks()) {
    if (disk.id === null) continue;
    if (disk.type.toUpperCase() === "CDROM" || disk.attr("READONLY").toUpperCase() === "YES") continue;
    names.add(`disk.${disk.id}`);
  }
  return names;
}

/**
 * What premigrate copies: every entry of the source folder except the writable disks that are
 * regular files (the hypervisor copies those) and onestor's temporary files. A symlinked disk (the
 * recovery layout) is copied as the link, its target travels in its `.snap` folder.
 */
export function entriesForTm(listing: Map<string, EntryKind>, vm: VmView): string[] {
  const byVmm = writableDiskNames(vm);
  return [...listing.entries()]
    .filter(([name, kind]) => !name.startsWith(TEMP_PREFIX) && !(byVmm.has(name) && kind === "f"))
    .map(([name]) => name)
    .sort();
}

/** Why a destination folder cannot be trusted yet (empty when it can). */
export function missingAtDestination(src: Map<string, EntryKind>, dst: Map<string, EntryKind>): string[] {
  return [...src.keys()].filter((n) => !n.startsWith(TEMP_PREFIX) && !dst.has(n)).sort();
}

function parseVm(request: MigrationRequest): VmView {
  return new VmView(parseBase64Xml(request.vmXmlBase64, "VM", "VM XML"));
}

function domStateScript(uri: string, domain: string) {
  return sh`${virshPrelude(uri)}
onestor_domstate ${domain}`;
}

async function domState(services: TmServices, host: string, domain: string): Promise<string> {
  return await services.runner.output(host, domStateScript(services.config.libvirtUri, domain), {
    what: `Error reading the state of domain ${domain}`,
    timeoutMs: services.controlTimeoutMs,
  });
}

async function listing(services: TmServices, host: string, dir: string): Promise<Listing> {
  return parseListing(
    await services.runner.output(host, listingScript(dir), {
      what: `Error listing ${dir}`,
      timeoutMs: services.controlTimeoutMs,
    }),
  );
}

function vmDirOf(request: MigrationRequest): string {
  return checkVmPath(request.vmDir, 3, "VM folder");
}

function others(services: TmServices, request: MigrationRequest, action: string, vm: VmView) {
  return migrateOther({
    action,
    args: [request.srcHost, request.dstHost, request.vmDir, String(request.vmId), String(request.dsId)],
    caller: request.caller,
    vmXmlBase64: request.vmXmlBase64,
    vm,
    driver: services.driver,
    tmDir: request.tmDir,
    timeoutMs: services.transferTimeoutMs,
  });
}

/** premigrate (see the module doc). */
export async function premigrate(services: TmServices, request: MigrationRequest): Promise<void> {
  if (request.srcHost === request.dstHost) {
    logInfo(`Not moving ${request.srcHost} to ${request.dstHost}, they are the same host`);
    return;
  }
  const dir = vmDirOf(request);
  const vm = parseVm(request);
  const domain = liveDomain(vm, "premigrate");
  const state = await domState(services, request.dstHost, domain);
  if (isActiveState(state)) {
    throw new OneStorError(
      `Domain ${domain} already runs on ${request.dstHost} (${state}): not clearing ${request.dstHost}:${dir}`,
    );
  }
  const src = await listing(services, request.srcHost, dir);
  if (src === null) {
    throw new OneStorError(`VM folder ${request.srcHost}:${dir} does not exist: nothing to migrate`);
  }
  await services.runner.run(
    request.dstHost,
    joinScripts([markerScript(dirnameOf(dir), services.driver), sh`rm -rf -- ${dir} && mkdir -p -- ${dir}`]),
    { what: `Error preparing ${dir}`, timeoutMs: services.controlTimeoutMs },
  );
  const entries = entriesForTm(src, vm);
  if (entries.length > 0) {
    const result = await copyEntries(services.runner, {
      from: { host: request.srcHost, dir, entries: entries.map((name) => ({ name })) },
      to: { host: request.dstHost, dir, confine: services.confine },
      sparse: true,
      checksum: services.checksum,
      timeoutMs: services.transferTimeoutMs,
      what: `Error copying ${request.srcHost}:${dir} to ${request.dstHost}`,
    });
    logInfo(
      `Copied ${entries.join(", ")} to ${request.dstHost}:${dir} ` +
        `(${(result.streamBytes / 1048576).toFixed(1)} MiB in ${result.seconds.toFixed(1)} s)`,
    );
  }
  const byVmm = [...src.keys()].filter((n) => !entries.includes(n) && !n.startsWith(TEMP_PREFIX)).sort();
  if (byVmm.length > 0) logInfo(`Left ${byVmm.join(", ")} to the hypervisor's storage migration`);
  await others(services, request, "premigrate", vm);
}

/** The source folder of a migration: the same path, or the folder in the previous system datastore. */
export function sourceDirOf(vm: VmView, vmDir: string, dsId: number, vmId: number): string {
  const prevDs = intOrNull(vm.historyPrev("DS_ID"));
  if (prevDs === null || prevDs === dsId) return vmDir;
  return `${dirnameOf(dirnameOf(vmDir))}/${prevDs}/${vmId}`;
}

/** postmigrate (see the module doc). */
export async function postmigrate(services: TmServices, request: MigrationRequest): Promise<void> {
  const dir = vmDirOf(request);
  const vm = parseVm(request);
  const srcDir = sourceDirOf(vm, dir, request.dsId, request.vmId);
  const sameHost = request.srcHost === request.dstHost;
  if (sameHost && srcDir === dir) {
    logInfo(`Not moving ${request.srcHost} to ${request.dstHost}, they are the same host`);
    return;
  }
  let othersFailed: unknown;
  await others(services, request, "postmigrate", vm).catch((e) => othersFailed = e);

  const domain = liveDomain(vm, "postmigrate");
  const src = await listing(services, request.srcHost, srcDir);
  if (src === null) {
    logInfo(`${request.srcHost}:${srcDir} is already gone`);
  } else {
    await verifyDestination(services, request, vm, domain, src, sameHost);
    await services.runner.run(request.srcHost, sh`rm -rf -- ${srcDir}`, {
      what: `Error removing ${srcDir} after the migration to ${request.dstHost}`,
      timeoutMs: services.controlTimeoutMs,
    });
    logInfo(`Removed ${request.srcHost}:${srcDir}: the VM runs on ${request.dstHost} with all its files`);
  }
  if (othersFailed) throw othersFailed;
}

async function verifyDestination(
  services: TmServices,
  request: MigrationRequest,
  vm: VmView,
  domain: string,
  src: Map<string, EntryKind>,
  sameHost: boolean,
): Promise<void> {
  const dir = vmDirOf(request);
  const keep = `not removing ${request.srcHost}:${sourceDirOf(vm, dir, request.dsId, request.vmId)}`;
  const dstState = await domState(services, request.dstHost, domain);
  if (!isActiveState(dstState)) {
    throw new OneStorError(`Domain ${domain} does not run on ${request.dstHost} (${dstState}): ${keep}`);
  }
  if (!sameHost) {
    const srcState = await domState(services, request.srcHost, domain);
    if (isActiveState(srcState)) {
      throw new OneStorError(`Domain ${domain} still runs on ${request.srcHost} (${srcState}): ${keep}`);
    }
  }
  const dst = await listing(services, request.dstHost, dir);
  if (dst === null) throw new OneStorError(`${request.dstHost}:${dir} does not exist: ${keep}`);
  const missing = missingAtDestination(src, dst);
  if (missing.length > 0) {
    throw new OneStorError(`${request.dstHost}:${dir} lacks ${missing.join(", ")}: ${keep}`);
  }
  const disks = [...writableDiskNames(vm)].filter((n) => dst.has(n)).map((n) => `${dir}/${n}`);
  if (disks.length > 0) {
    const check = await services.runner.run(
      request.dstHost,
      sh`for d in ${disks}; do qemu-img info -U -- "$d" >/dev/null || { echo "$d"; exit 1; }; done`,
      { check: false, timeoutMs: services.controlTimeoutMs },
    );
    if (check.code !== 0) {
      throw new OneStorError(`${request.dstHost}:${check.stdout.trim()} is not a readable image: ${keep}`);
    }
  }
}

/** failmigrate (see the module doc). */
export async function failmigrate(services: TmServices, request: MigrationRequest): Promise<void> {
  if (request.srcHost === request.dstHost) {
    logInfo(`Not moving ${request.srcHost} to ${request.dstHost}, they are the same host`);
    return;
  }
  const dir = vmDirOf(request);
  const vm = parseVm(request);
  let othersFailed: unknown;
  await others(services, request, "failmigrate", vm).catch((e) => othersFailed = e);
  const domain = vm.deployId.trim();
  if (domain === "") throw new InputError(`failmigrate: VM ${request.vmId} has no DEPLOY_ID`);
  const keep = `not removing ${request.dstHost}:${dir}`;
  const state = await domState(services, request.dstHost, domain);
  if (isActiveState(state)) {
    throw new OneStorError(`Domain ${domain} runs on ${request.dstHost} (${state}): ${keep}`);
  }
  const src = await listing(services, request.srcHost, dir);
  const lost = src === null ? ["the folder"] : [...writableDiskNames(vm)].filter((n) => !src.has(n)).sort();
  if (lost.length > 0) {
    throw new OneStorError(
      `The source ${request.srcHost}:${dir} lacks ${
        lost.join(", ")
      }, so the destination may hold the only copy: ${keep}`,
    );
  }
  await services.runner.run(request.dstHost, sh`rm -rf -- ${dir}`, {
    what: `Error removing ${dir}`,
    timeoutMs: services.controlTimeoutMs,
  });
  logInfo(`Removed ${request.dstHost}:${dir}; ${request.srcHost}:${dir} is untouched`);
  if (othersFailed) throw othersFailed;
}

/**
 * The request of a migration action from its arguments (`src dst vm_dir vm_id ds_id [caller]`),
 * stdin, and the path it was invoked as (to find the other drivers next to it).
 */
export function migrationRequestFrom(
  args: readonly string[],
  stdin: string,
  invokedAs: string | undefined,
  cwd: string,
): MigrationRequest {
  const [srcHost, dstHost, vmDir, vmId, dsId, caller] = args;
  return {
    srcHost,
    dstHost,
    vmDir,
    vmId: parseId(vmId, "VM id"),
    dsId: parseId(dsId, "Datastore id"),
    caller: caller || undefined,
    vmXmlBase64: stdin.trim(),
    tmDir: tmDirOf(invokedAs, cwd),
  };
}
