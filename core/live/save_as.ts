/**
 * `cpds <host>:<vm_dir>/disk.<i> <SOURCE> <snap_id> <vm_id> <ds_id>` (disk-saveas, spec §3.3): a
 * copy of a VM disk (its current state with snapshot id -1, else snapshot `disk.<i>.snap/<id>`)
 * becomes the new image file SOURCE, normally on the front-end (a bare path), or on another host
 * when SOURCE has a `host:` part.
 *
 * Where the bytes come from:
 * - the current state of a running disk (LCM_STATE 26, HOTPLUG_SAVEAS, on kvm/qemu): an export
 *   made by the hypervisor next to the disk, `virsh blockcopy --wait --finish` (a point-in-time
 *   copy while the guest runs; see core/hypervisor/blockcopy.ts); when that fails, like upstream,
 *   a copy while the file systems are frozen through the guest agent, then a copy while the domain
 *   is suspended; a running disk is never read directly;
 * - a file with a backing chain (a recovery-layout disk `disk.<i> -> disk.<i>.snap/base.1`): an
 *   export flattened by `qemu-img convert` into the disk's format;
 * - anything else (a stopped VM's disk, a snapshot): the file itself, links followed.
 * The copy to SOURCE is the transfer primitive's (the front-end pulls from the host, checksums on
 * both ends, written under a temporary name and renamed), so nothing half-written is ever at
 * SOURCE. Exports are removed in every case; leftovers of an earlier try are removed first.
 *
 * A stopped or undeployed VM's disk arrives as `<fe>:<vm_dir>/disk.<i>`: everything then runs on
 * the front-end itself.
 *
 * @module
 */

import { InputError, OneStorError, RemoteError } from "../errors.ts";
import { checkFormat } from "../image/disk_scripts.ts";
import { blockCopyScript, EXIT_NOT_ATTACHED, EXIT_SOURCE_CHANGED } from "../hypervisor/blockcopy.ts";
import { pausedCopyScript } from "../hypervisor/pause.ts";
import { basenameOf, dirnameOf, parseLocation } from "../one/location.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { LcmState, type VmView } from "../one/objects.ts";
import { sh } from "../remote/shell.ts";
import { copyEntries, type CopyEntry } from "../transfer/copy.ts";
import { diskFacts } from "../tm/disk_facts.ts";
import { checkVmPath, parseVmFile, snapDirOf, type VmFile } from "../tm/paths.ts";
import type { TmServices } from "../tm/services.ts";
import { LIBVIRT_VMMS, liveDomain, vmMadOf } from "./vm_domain.ts";

/** Arguments of cpds. */
export interface SaveAsRequest {
  /** `<host>:<vm_dir>/disk.<i>`. */
  disk: string;
  /** The new image's SOURCE (bare path on the front-end, or `host:path`). */
  source: string;
  /** Snapshot id, `-1` for the disk's current state. */
  snapId: string | number;
  /** VM id. */
  vmId: number;
}

/** How the bytes of a save-as are obtained (see the module doc). */
export type ExportMethod = "blockcopy" | "agent-freeze" | "suspend" | "flatten" | "file";

/** Prefix of the exports cpds leaves next to a disk while it copies. */
export const EXPORT_PREFIX = ".onestor-export-";

function token(): string {
  return [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Parses the snapshot id argument: -1 (current state) or a snapshot id. */
export function parseSnapId(text: string | number): number {
  const t = String(text).trim();
  if (t === "-1") return -1;
  if (!/^[0-9]+$/.test(t)) {
    throw new InputError(`Snapshot id must be -1 or a non-negative integer, got '${text}'`);
  }
  return Number(t);
}

/** Whether the VM runs (the save-as is a hot one), from its LCM state. */
export function isHotSaveAs(vm: VmView): boolean {
  return vm.lcmState === LcmState.HOTPLUG_SAVEAS;
}

/** What a source file on the host looks like: a link, and whether its image has a backing file. */
function probeScript(path: string) {
  return sh`[ -e ${path} ] || { echo "MISSING"; exit 0; }
if [ -L ${path} ]; then echo LINK=1; else echo LINK=0; fi
qemu-img info -U --output=json -- ${path} | grep -q '"backing-filename"' && echo BACKING=1 || echo BACKING=0`;
}

/** Runs cpds (see the module doc). */
export async function saveAs(services: TmServices, request: SaveAsRequest): Promise<void> {
  const file = parseVmFile(request.disk, "Disk location");
  const snapId = parseSnapId(request.snapId);
  const target = parseLocation(request.source);
  const targetPath = checkVmPath(target.path, 3, "Image SOURCE");
  const targetHost = target.hasHost ? target.host : null;
  const vm = await services.lookup.vm(request.vmId);
  const facts = diskFacts(vm, file.diskId);
  const hot = isHotSaveAs(vm);
  if (hot && !LIBVIRT_VMMS.includes(vmMadOf(vm))) {
    throw new InputError(`cpds: Live operation not supported on ${vmMadOf(vm) || "an unknown hypervisor"}`);
  }
  const srcPath = snapId === -1 ? file.path : `${snapDirOf(file.path)}/${snapId}`;
  const exportName = `${EXPORT_PREFIX}${file.name}-${token()}`;
  const exportPath = `${file.vmDir}/${exportName}`;
  const runner = services.runner;
  // Exports of earlier tries of this disk (oned runs one save-as per VM at a time).
  await runner.run(
    file.host,
    sh`for f in ${file.vmDir}/${EXPORT_PREFIX}${file.name}-*; do if [ -e "$f" ]; then rm -f -- "$f"; fi; done`,
    { what: `Error cleaning ${file.vmDir}`, timeoutMs: services.controlTimeoutMs },
  );
  try {
    let from: { dir: string; entry: CopyEntry; dereference: boolean };
    if (hot && snapId === -1) {
      const method = await exportRunning(services, vm, file, exportPath, facts.format);
      logInfo(`Exported running disk ${file.path} (${method})`);
      from = { dir: file.vmDir, entry: { name: exportName }, dereference: false };
    } else {
      const probe = await runner.output(file.host, probeScript(srcPath), {
        what: `Error reading ${srcPath}`,
        timeoutMs: services.controlTimeoutMs,
      });
      if (probe === "MISSING") {
        throw new OneStorError(`Cannot save ${file.host}:${srcPath}: it does not exist`);
      }
      if (/BACKING=1/.test(probe)) {
        const format = facts.format === "raw" ? "raw" : "qcow2";
        logInfo(`Flattening ${srcPath} (it has a backing chain) into a standalone ${format} image`);
        await runner.run(
          file.host,
          sh`qemu-img convert -q -U -O ${format} -- ${srcPath} ${exportPath}`,
          { what: `cpds: Can not convert qcow2 chain ${srcPath}`, timeoutMs: services.transferTimeoutMs },
        );
        from = { dir: file.vmDir, entry: { name: exportName }, dereference: false };
      } else {
        from = {
          dir: dirnameOf(srcPath),
          entry: { name: basenameOf(srcPath) },
          dereference: /LINK=1/.test(probe),
        };
      }
    }
    logInfo(`Moving ${file.host}:${srcPath} to datastore as ${targetPath}`);
    const result = await copyEntries(runner, {
      from: { host: file.host, dir: from.dir, entries: [{ ...from.entry, as: basenameOf(targetPath) }] },
      to: { host: targetHost, dir: dirnameOf(targetPath), confine: services.confine },
      sparse: true,
      dereference: from.dereference,
      checksum: services.checksum,
      timeoutMs: services.transferTimeoutMs,
      what: `Error copying ${file.host}:${srcPath} to ${targetHost ?? "front-end"}:${targetPath}`,
    });
    logInfo(`Copied ${(result.streamBytes / 1048576).toFixed(1)} MiB in ${result.seconds.toFixed(1)} s`);
  } finally {
    await runner.run(file.host, sh`rm -f -- ${exportPath}`, {
      check: false,
      timeoutMs: services.controlTimeoutMs,
    })
      .catch(() => {});
  }
}

/**
 * Exports the current state of a running disk into `exportPath`: blockcopy, else a copy under a
 * guest-agent freeze, else a copy while suspended. Returns the method that worked.
 */
async function exportRunning(
  services: TmServices,
  vm: VmView,
  file: VmFile,
  exportPath: string,
  format: string,
): Promise<ExportMethod> {
  const domain = liveDomain(vm, "cpds");
  const uri = services.config.libvirtUri;
  const timeoutMs = services.transferTimeoutMs;
  const fmt = checkFormat(format);
  const failures: string[] = [];
  try {
    await services.runner.run(
      file.host,
      blockCopyScript({
        uri,
        domain,
        disk: file.path,
        dest: exportPath,
        format: fmt === "raw" || fmt === "qcow2" ? fmt : undefined,
        timeoutSeconds: Math.ceil(timeoutMs / 1000),
      }),
      { what: `blockcopy of ${file.path}`, timeoutMs },
    );
    return "blockcopy";
  } catch (error) {
    // A domain whose disk changed under us, or a disk it does not have: no fallback copies a file
    // the domain is not (or no longer) using as it believes.
    if (
      error instanceof RemoteError &&
      (error.status === EXIT_SOURCE_CHANGED || error.status === EXIT_NOT_ATTACHED)
    ) {
      throw error;
    }
    failures.push((error as Error).message);
    logWarn(`blockcopy failed, trying a copy under a guest-agent freeze: ${(error as Error).message}`);
  }
  for (const mode of ["agent", "suspend"] as const) {
    try {
      await services.runner.run(
        file.host,
        pausedCopyScript({
          uri,
          domain,
          src: file.path,
          dest: exportPath,
          mode,
          freezeTimeoutSeconds: services.config.virshTimeout,
        }),
        { what: `Copy of ${file.path} (${mode === "agent" ? "frozen" : "suspended"})`, timeoutMs },
      );
      return mode === "agent" ? "agent-freeze" : "suspend";
    } catch (error) {
      failures.push((error as Error).message);
      if (mode === "agent") {
        logWarn(`Guest-agent freeze failed, suspending the domain to copy: ${(error as Error).message}`);
      }
    }
  }
  throw new OneStorError(
    `Error creating export for domain ${domain} of disk ${file.path}: ${failures[failures.length - 1]}`,
  );
}
