/**
 * `mkimage <size_mb> <format> <host>:<vm_dir>/disk.<i> <vm_id> <ds_id>` and `mkswap <size_mb>
 * <host>:<vm_dir>/disk.<i> <vm_id> <ds_id>` (spec §3.3): volatile disks, made on the host by the
 * datablock script of core/image/datablock.ts (FS checked against SUPPORTED_FS before anything
 * runs, FS_OPTS_<FS> as argv words, QCOW2_OPTIONS for qcow2, SPARSE=NO preallocated, written under
 * a temporary name and renamed). The FS comes from the disk's FS attribute; swap is a raw file
 * with a swap signature. A retry makes the disk again, empty.
 *
 * @module
 */

import { datablockScript } from "../image/datablock.ts";
import { logInfo } from "../one/log.ts";
import { confined } from "../remote/confine.ts";
import { joinScripts, sh } from "../remote/shell.ts";
import { sizeMb, volatileFormat } from "../validate.ts";
import { prepareScript, prepareWrites } from "./clone.ts";
import { diskFacts } from "./disk_facts.ts";
import { parseVmFile } from "./paths.ts";
import type { TmServices } from "./services.ts";

/** Arguments of mkimage (mkswap is mkimage with format `swap`). */
export interface VolatileRequest {
  /** Size in MiB, as oned passed it. */
  sizeMb: string;
  /** `raw`, `qcow2` or `swap`. */
  format: string;
  /** `<host>:<vm_dir>/disk.<i>`. */
  destination: string;
  /** VM id. */
  vmId: number;
}

/** Runs mkimage/mkswap (see the module doc). */
export async function makeVolatileDisk(services: TmServices, request: VolatileRequest): Promise<void> {
  const dst = parseVmFile(request.destination, "Volatile disk location");
  const size = sizeMb(request.sizeMb, "Volatile disk size");
  const format = volatileFormat(request.format);
  const vm = await services.lookup.vm(request.vmId);
  const facts = diskFacts(vm, dst.diskId);
  const fs = format === "swap" ? undefined : facts.fs.trim() || undefined;
  // Built (and the FS checked) before anything happens on the host.
  const script = datablockScript(
    { path: dst.path, sizeMb: size, format, fs, sparse: facts.sparse },
    services.config,
  );
  logInfo(
    `Making ${format}${fs ? ` ${fs}` : ""} disk ${dst.host}:${dst.path} of ${size} MiB`,
  );
  // One command on the host: the marker and folder, then the disk.
  await services.runner.run(
    dst.host,
    confined(
      services.confine,
      dst.host,
      { write: [...prepareWrites(dst), dst.path], remove: [`${dst.path}.snap`] },
      joinScripts([prepareScript(services, dst), sh`rm -rf -- ${`${dst.path}.snap`}`, script]),
    ),
    {
      what: `Creating image ${dst.path}`,
      timeoutMs: facts.sparse ? services.controlTimeoutMs : services.transferTimeoutMs,
    },
  );
}
