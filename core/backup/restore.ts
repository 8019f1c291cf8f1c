/**
 * `restore <host>:<vm_dir> <vm_id> <img_id> <inc_id> <disk_id>` (spec §3.3): the VM's disks (all,
 * or `disk_id`) are replaced by those of backup image `img_id` (up to increment `inc_id`).
 *
 * 1. The backup datastore's own driver lists the backup: `<remotes>/datastore/<DS_MAD>/ls -i
 *    <inc_id>` with `<DS_DRIVER_ACTION_DATA>` (datastore, VM and image XML) on stdin prints a JSON
 *    object of disk id → URL.
 * 2. Each disk comes to the front-end: a local path is read in place, any other URL is fetched by
 *    OpenNebula's `datastore/downloader.sh --nodecomp` (it knows every backup URL scheme) into a
 *    staging folder next to the front-end's system datastore folder.
 * 3. The transfer primitive copies them to the host as `disk.<id>.backup` (checksummed, written
 *    aside and renamed); only when every disk is there are they moved over `disk.<id>` (converted
 *    to the disk's FORMAT when the backup is in another one), the disk's snapshots folder removed
 *    (its snapshots belong to the replaced disk) and the changed-block bitmaps dropped (they
 *    describe the old contents).
 *
 * Refused when the VM's domain runs on the host: its disks cannot be swapped under it. A vTPM
 * state in the backup is not restored (this driver does not manage vTPM state; logged).
 *
 * @module
 */

import { InputError, OneStorError } from "../errors.ts";
import { isActiveState, virshPrelude } from "../hypervisor/virsh.ts";
import { basenameOf, dirnameOf } from "../one/location.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { DatastoreView, intOrNull, VmView } from "../one/objects.ts";
import { parseXml } from "../one/xml.ts";
import { lastLines, runCommand } from "../remote/process.ts";
import { joinScripts, sh } from "../remote/shell.ts";
import { copyEntries, type CopyEntry } from "../transfer/copy.ts";
import { localAllocated, trackCopy } from "../progress/copy_progress.ts";
import { checkFormat } from "../image/disk_scripts.ts";
import { parseId, parseVmDir } from "../tm/paths.ts";
import type { TmServices } from "../tm/services.ts";

/** Arguments of restore. */
export interface RestoreArgs {
  /** `<host>:<vm_dir>`. */
  dir: string;
  /** VM id. */
  vmId: number;
  /** Backup image id. */
  imageId: number;
  /** Increment id (-1: the last). */
  incrementId: number;
  /** Disk id (-1: every disk of the backup). */
  diskId: number;
}

/** Parses `<host>:<vm_dir> <vm_id> <img_id> <inc_id> <disk_id>`. */
export function parseRestoreArgs(argv: readonly string[]): RestoreArgs {
  const [dir, vmId, imageId, incId, diskId] = argv;
  const signed = (text: string, what: string) => {
    if (!/^-?[0-9]+$/.test((text ?? "").trim())) {
      throw new InputError(`${what} must be an integer, got '${text}'`);
    }
    return Number(text.trim());
  };
  return {
    dir,
    vmId: parseId(vmId, "VM id"),
    imageId: parseId(imageId, "Image id"),
    incrementId: signed(incId, "Increment id"),
    diskId: signed(diskId, "Disk id"),
  };
}

/** Parses the backup driver's `ls` answer: `{"<disk id>": "<url>", ...}`. */
export function parseBackupListing(text: string): Map<string, string> {
  let value: unknown;
  try {
    value = JSON.parse(text.trim() || "{}");
  } catch {
    throw new OneStorError(`The backup datastore listed something that is not JSON: ${text.slice(0, 200)}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new OneStorError("The backup datastore listing is not a JSON object of disk id to URL");
  }
  const out = new Map<string, string>();
  for (const [key, url] of Object.entries(value as Record<string, unknown>)) {
    if (typeof url !== "string" || url === "") throw new OneStorError(`Backup disk ${key} has no URL`);
    out.set(key, url);
  }
  return out;
}

/** The disks of a listing to restore: every numeric id, or only `diskId`. */
export function selectDisks(listing: Map<string, string>, diskId: number): { id: number; url: string }[] {
  const selected: { id: number; url: string }[] = [];
  for (const [key, url] of listing) {
    if (!/^[0-9]+$/.test(key)) {
      logWarn(`Backup entry '${key}' is not a disk and is not restored by this driver`);
      continue;
    }
    const id = Number(key);
    if (diskId === -1 || id === diskId) selected.push({ id, url });
  }
  if (selected.length === 0) {
    throw new OneStorError(
      diskId === -1 ? "The backup holds no disk" : `disk ${diskId} not found in the backup`,
    );
  }
  return selected.sort((a, b) => a.id - b.id);
}

/** A local file path of a URL read in place (absolute path or `file://`), else null. */
export function localPathOf(url: string): string | null {
  if (url.startsWith("/")) return url;
  if (url.startsWith("file://")) return decodeURIComponent(url.slice("file://".length));
  return null;
}

function token(): string {
  return [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function rawInfo(services: TmServices, method: string, id: number, what: string): Promise<string> {
  const body = await services.lookup.client.call(method, [id, false], what);
  if (typeof body !== "string") throw new OneStorError(`oned answered ${method} for ${what} without XML`);
  return body;
}

/** Runs restore (see the module doc); `remotes` is the front-end's remotes folder. */
export async function restore(services: TmServices, argv: readonly string[], remotes: string): Promise<void> {
  const args = parseRestoreArgs(argv);
  const vmDir = parseVmDir(args.dir, "VM folder location");
  const runner = services.runner;
  try {
    const vmText = await rawInfo(services, "one.vm.info", args.vmId, `VM ${args.vmId}`);
    const imageText = await rawInfo(services, "one.image.info", args.imageId, `image ${args.imageId}`);
    const image = parseXml(imageText);
    const dsId = intOrNull(image.children.find((c) => c.name === "DATASTORE_ID")?.text ?? "");
    if (dsId === null) throw new OneStorError(`Image ${args.imageId} has no DATASTORE_ID`);
    const dsText = await rawInfo(services, "one.datastore.info", dsId, `datastore ${dsId}`);
    const ds = DatastoreView.fromXml(dsText);
    const vm = VmView.fromXml(vmText);

    await refuseRunning(services, vmDir.host, vm);
    const listing = await listBackup(services, remotes, ds, args.incrementId, dsText + vmText + imageText);
    const disks = selectDisks(listing, args.diskId);
    const formats = disks.map((d) => {
      const disk = vm.disk(d.id);
      if (!disk) throw new OneStorError(`VM ${args.vmId} has no disk ${d.id} to restore`);
      return checkFormat(disk.format) || "qcow2";
    });

    const staging = `${vmDir.dsDir}/.onestor-restore-${args.vmId}-${token()}`;
    try {
      for (const disk of disks) {
        const name = `disk.${disk.id}.backup`;
        let from: { dir: string; entry: CopyEntry };
        const local = localPathOf(disk.url);
        if (local !== null) {
          from = { dir: dirnameOf(local), entry: { name: basenameOf(local), as: name } };
        } else {
          await download(services, remotes, disk.url, staging, name);
          from = { dir: staging, entry: { name } };
        }
        logInfo(`Restoring disk ${disk.id} from ${disk.url}`);
        const label = `Restoring disk ${disk.id} of VM ${args.vmId}`;
        const total = localAllocated(`${from.dir}/${from.entry.name}`);
        await trackCopy(
          runner,
          { label, total, host: vmDir.host, dir: vmDir.path },
          () =>
            copyEntries(runner, {
              from: { host: null, dir: from.dir, entries: [from.entry] },
              to: { host: vmDir.host, dir: vmDir.path, confine: services.confine },
              sparse: true,
              dereference: true,
              checksum: services.checksum,
              timeoutMs: services.transferTimeoutMs,
              what: `Error restoring disk ${disk.id} of VM ${args.vmId} to ${vmDir.host}:${vmDir.path}`,
            }),
        );
      }
    } finally {
      await runner.run(null, sh`rm -rf -- ${staging}`, { check: false }).catch(() => {});
    }
    await runner.run(
      vmDir.host,
      replaceScript(vmDir.path, disks.map((d, i) => ({ id: d.id, format: formats[i] }))),
      { what: "cannot replace the disks by their backup", timeoutMs: services.transferTimeoutMs },
    );
    logInfo(`Restored disks ${disks.map((d) => d.id).join(", ")} of VM ${args.vmId} on ${vmDir.host}`);
  } catch (error) {
    throw new OneStorError(`Error restoring VM disks: ${(error as Error).message}`, {
      exitCode: error instanceof OneStorError ? error.exitCode : undefined,
      cause: error,
    });
  }
}

async function refuseRunning(services: TmServices, host: string, vm: VmView): Promise<void> {
  const domain = vm.deployId.trim();
  if (domain === "") return;
  const state = await services.runner.output(
    host,
    sh`if command -v virsh >/dev/null 2>&1; then ${virshPrelude(services.config.libvirtUri)}
onestor_domstate ${domain}; else echo absent; fi`,
    { what: `Error reading the state of domain ${domain}`, timeoutMs: services.controlTimeoutMs },
  );
  if (isActiveState(state)) {
    throw new OneStorError(`domain ${domain} runs on ${host} (${state}): power the VM off before restoring`);
  }
}

async function listBackup(
  services: TmServices,
  remotes: string,
  ds: DatastoreView,
  incrementId: number,
  objectsXml: string,
): Promise<Map<string, string>> {
  const mad = ds.dsMad.trim();
  if (!/^[A-Za-z0-9_.-]+$/.test(mad) || mad === "." || mad === "..") {
    throw new OneStorError(`Backup datastore ${ds.id} has no usable DS_MAD ('${mad}')`);
  }
  const ls = `${remotes}/datastore/${mad}/ls`;
  const result = await runCommand([ls, "-i", String(incrementId)], {
    stdin: `<DS_DRIVER_ACTION_DATA>${objectsXml}</DS_DRIVER_ACTION_DATA>`,
    timeoutMs: services.transferTimeoutMs,
  }).catch((error) => {
    throw new OneStorError(`cannot list backup contents with ${ls}: ${(error as Error).message}`);
  });
  if (result.code !== 0) {
    throw new OneStorError(
      `cannot list backup contents (${ls} exit ${result.code}): ${lastLines(result.stderr)}`,
    );
  }
  return parseBackupListing(result.stdout);
}

async function download(services: TmServices, remotes: string, url: string, dir: string, name: string) {
  const downloader = `${remotes}/datastore/downloader.sh`;
  await services.runner.run(null, sh`mkdir -p -- ${dir}`, { what: `Error creating ${dir}` });
  const result = await runCommand([downloader, "--nodecomp", url, `${dir}/${name}`], {
    timeoutMs: services.transferTimeoutMs,
  }).catch((error) => {
    throw new OneStorError(
      `cannot download backup disk ${url} with ${downloader}: ${(error as Error).message}`,
    );
  });
  if (result.code !== 0) {
    throw new OneStorError(
      `cannot download backup disk ${url} (exit ${result.code}): ${lastLines(result.stderr)}`,
    );
  }
}

/** awk program printing the bitmap names of `qemu-img info --output=json` (not snapshot names). */
export const BITMAP_NAMES_AWK = `/"bitmaps": \\[/ { on = 1; depth = 1; next }
on {
  if ($0 ~ /"name":/) { v = $0; sub(/.*"name": *"/, "", v); sub(/".*/, "", v); print v }
  depth += gsub(/\\[/, "[") - gsub(/\\]/, "]")
  if (depth <= 0) on = 0
}`;

/**
 * The host script that puts the restored disks in place: for each, the backup converted to the
 * disk's format when needed, moved over `disk.<id>`, its snapshots folder removed, its bitmaps
 * dropped. Every backup file is checked before any disk is replaced.
 */
export function replaceScript(vmDir: string, disks: { id: number; format: string }[]) {
  const checks = disks.map((d) => {
    const backup = `${vmDir}/disk.${d.id}.backup`;
    return sh`qemu-img info -- ${backup} >/dev/null || { echo ${`${backup} is not a readable image`} >&2; exit 1; }`;
  });
  const moves = disks.map((d) => {
    const disk = `${vmDir}/disk.${d.id}`;
    const backup = `${disk}.backup`;
    return sh`fmt=$(qemu-img info --output=json -- ${backup} | sed -n 's/^ *"format": *"\\([a-z0-9]*\\)".*/\\1/p' | head -n 1)
if [ "$fmt" != ${d.format} ]; then
  qemu-img convert -q -O ${d.format} -- ${backup} ${`${backup}.conv`} && mv -f -- ${`${backup}.conv`} ${backup} || exit 1
fi
rm -rf -- ${`${disk}.snap`} && mv -f -- ${backup} ${disk} || exit 1
if [ ${d.format} = qcow2 ]; then
  for b in $(qemu-img info --output=json -- ${disk} | awk ${BITMAP_NAMES_AWK}); do
    qemu-img bitmap --remove -- ${disk} "$b" || exit 1
  done
fi`;
  });
  return sh`${joinScripts(checks)}
${joinScripts(moves)}`;
}
