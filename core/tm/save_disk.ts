/**
 * `mvds <host>:<vm_dir>/disk.<i> <SOURCE> <vm_id> <ds_id>` (spec §3.3): a persistent disk goes back
 * to its image in the image datastore at the end of its VM's life (or on detach).
 *
 * 1. On the host, a disk that is not a standalone file (recovery layout: a link to a qcow2
 *    overlay, or any qcow2 with a backing file) is flattened in place into the image's recorded
 *    format (upstream always wrote qcow2: §11.11), and the recovery-layout files are dropped.
 * 2. The disk and its snapshots folder are copied with the transfer primitive to the image path
 *    (the front-end pulls when SOURCE is a bare path); the copy replaces the image and its `.snap`
 *    folder only once verified. An image whose disk has no snapshots left loses its `.snap` too.
 * 3. SPARSE=NO: the image is allocated again after the sparse transfer.
 * 4. The replica caches are told the image changed.
 *
 * The disk stays on the host (oned deletes the VM folder afterwards), so a retry converges.
 *
 * @module
 */

import { invalidateImage } from "../cache/invalidate.ts";
import { flattenScript, preallocateScript } from "../image/disk_scripts.ts";
import { logInfo } from "../one/log.ts";
import { basenameOf, dirnameOf, parseLocation } from "../one/location.ts";
import { joinScripts, sh } from "../remote/shell.ts";
import { copyEntries } from "../transfer/copy.ts";
import { diskFacts } from "./disk_facts.ts";
import { checkVmPath, parseVmFile } from "./paths.ts";
import type { TmServices } from "./services.ts";

/** Arguments of mvds. */
export interface SaveDiskRequest {
  /** `<host>:<vm_dir>/disk.<i>`. */
  disk: string;
  /** The image's SOURCE (a bare front-end path, or `<host>:<path>`). */
  target: string;
  /** VM id. */
  vmId: number;
}

/** Runs mvds (see the module doc). */
export async function saveDisk(services: TmServices, request: SaveDiskRequest): Promise<void> {
  const disk = parseVmFile(request.disk, "Disk location");
  const location = parseLocation(request.target);
  const targetPath = checkVmPath(location.path, 2, "Image path");
  const targetHost = location.hasHost && location.host !== "" ? location.host : null;
  const vm = await services.lookup.vm(request.vmId);
  const facts = diskFacts(vm, disk.diskId);
  const runner = services.runner;

  const flat = await runner.output(
    disk.host,
    sh`(${
      flattenScript(disk.path, facts.format, { qcow2Options: services.config.qcow2Options, sparse: true })
    }) || exit 1
if [ -d ${`${disk.path}.snap`} ]; then echo SNAP=1; else echo SNAP=0; fi`,
    { what: `Converting ${disk.path} to a standalone image`, timeoutMs: services.transferTimeoutMs },
  );
  const hasSnaps = /^SNAP=1$/m.test(flat);

  const name = basenameOf(targetPath);
  const dir = dirnameOf(targetPath);
  logInfo(`Moving ${disk.host}:${disk.path} to datastore as ${request.target}`);
  const result = await copyEntries(runner, {
    from: {
      host: disk.host,
      dir: disk.vmDir,
      entries: [
        { name: disk.name, as: name },
        ...(hasSnaps ? [{ name: `${disk.name}.snap`, as: `${name}.snap` }] : []),
      ],
    },
    to: { host: targetHost, dir, confine: services.confine },
    sparse: true,
    checksum: services.checksum,
    timeoutMs: services.transferTimeoutMs,
    what: `Error copying ${request.disk} to ${request.target}`,
  });
  logInfo(`Copied ${(result.streamBytes / 1048576).toFixed(1)} MiB in ${result.seconds.toFixed(1)} s`);
  const after = [
    ...(hasSnaps ? [] : [sh`rm -rf -- ${`${targetPath}.snap`}`]),
    ...(facts.sparse ? [] : [preallocateScript([targetPath])]),
  ];
  if (after.length > 0) {
    await runner.run(targetHost, joinScripts(after), {
      what: `Finishing image ${targetPath}`,
      timeoutMs: services.transferTimeoutMs,
    });
  }
  await invalidateImage(targetPath, "mvds");
}
