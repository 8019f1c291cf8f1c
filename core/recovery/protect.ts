/**
 * The start of a disk's protection, at clone/ln time, before the domain exists:
 *
 * - on the hypervisor, a qcow2 disk gets the persistent bitmap `onestor-rec-<i>-0`, enabled: QEMU
 *   loads it at the first boot and records every write from then on, so the first period copies
 *   only what the guest wrote, never the whole disk;
 * - on the replica, point 0 is the image itself: a hard link of the cache entry the disk was just
 *   copied from (no byte copied, no space used while the entry is cached; the link keeps the data
 *   when the cache evicts the entry), trusted only when the entry's record is the same before and
 *   after the link, its file has the size and mtime the record says, and its content checksum is
 *   the front-end image's. A recovery folder on another filesystem gets a local copy, checksummed.
 *   An empty qcow2 overlay `merged` on it gives point 0 the disk's size (SIZE growth) and later
 *   receives the old increments.
 *
 * Nothing here fails the deployment: a disk whose protection could not start gets a full copy at
 * its first period, and the log says why.
 *
 * @module
 */

import { parseEntry } from "../cache/entry.ts";
import { cachedIdentity, statImage } from "../cache/identity.ts";
import { oneLine } from "../errors.ts";
import { basenameOf, dirnameOf } from "../one/location.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { sh } from "../remote/shell.ts";
import type { TmServices } from "../tm/services.ts";
import { protectDiskScript, statusFileScript } from "./hypervisor_scripts.ts";
import { BASE_FILE, MERGED_FILE } from "./names.ts";
import { algorithmOf } from "./period.ts";
import { chainDigest, newRecord, type RecoveryRecord } from "./record.ts";
import { linkBaseScript, makeBaseScript } from "./replica_scripts.ts";
import { type DiskStore, diskStore } from "./store.ts";
import { hypervisorGuard } from "./guard.ts";
import { statusLine } from "./status_line.ts";

/** A disk just deployed on a replica system datastore, with RECOVERY_SNAPSHOT_FREQ. */
export interface ProtectRequest {
  vmId: number;
  diskId: number;
  /** Hypervisor, VM folder and `<vm_dir>/disk.<i>`. */
  host: string;
  vmDir: string;
  disk: string;
  replica: string;
  /** The image's SOURCE on the front-end (the cache entry's key). */
  source: string;
}

function value(out: string, key: string): string {
  return out.match(new RegExp(`^ONESTOR_${key}=(.*)$`, "m"))?.[1] ?? "";
}

const b64decode = (text: string): string =>
  new TextDecoder().decode(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)));

/** Adds the bitmap of point `pointId` to the disk; returns its format, virtual size and whether it has the bitmap. */
export async function markDisk(
  services: TmServices,
  request: Pick<ProtectRequest, "host" | "vmDir" | "disk" | "diskId">,
  pointId: number,
  line: string,
): Promise<{ format: string; vsize: number; bitmap: boolean; why: string }> {
  const out = await services.runner.output(
    request.host,
    protectDiskScript(hypervisorGuard(services.config, request.host), {
      vmDir: request.vmDir,
      disk: request.disk,
      diskId: request.diskId,
      pointId,
      statusLine: line,
    }),
    {
      what: `Error preparing ${request.host}:${request.disk} for recovery points`,
      timeoutMs: services.controlTimeoutMs,
    },
  );
  const bitmap = value(out, "BITMAP");
  return {
    format: value(out, "FORMAT"),
    vsize: Number(value(out, "VSIZE")) || 0,
    bitmap: bitmap === "yes",
    why: bitmap === "yes" ? "" : bitmap,
  };
}

/** Point 0 from the cache entry; null (with the reason logged) when it cannot be trusted. */
async function linkBase(
  services: TmServices,
  store: DiskStore,
  request: ProtectRequest,
  algorithm: string,
): Promise<{ format: string; sum: string; size: number } | null> {
  const cacheDir = dirnameOf(request.source);
  const image = basenameOf(request.source);
  const out = await services.runner.output(
    request.replica,
    linkBaseScript(store.guard, store.dir, cacheDir, image, algorithm),
    { what: `Error linking the cached image into ${store.dir}`, timeoutMs: services.transferTimeoutMs },
  );
  const how = value(out, "HOW");
  const drop = async (why: string) => {
    await services.runner.run(
      request.replica,
      makeBaseScript(store.guard, store.dir, false, "", 0, algorithm),
      {
        check: false,
        timeoutMs: services.controlTimeoutMs,
      },
    ).catch(() => {});
    logInfo(
      `Disk ${request.diskId}: no point 0 from the cache (${why}): the first period copies the whole disk`,
    );
    return null;
  };
  if (how === "none") return await drop(`${request.source} is not cached on ${request.replica}`);
  const e1 = value(out, "ENTRY1");
  if (e1 === "" || e1 !== value(out, "ENTRY2")) {
    return await drop("the cache entry changed while it was linked");
  }
  const entry = parseEntry(b64decode(e1));
  if (!entry || entry.source.path !== request.source) {
    return await drop("the cache record names another image");
  }
  const file = entry.files.find((f) => f.name === image && f.type === "f");
  const [size, mtime] = value(out, "STAT").split(",").map(Number);
  if (!file || file.size !== size || (how === "link" && file.mtime !== mtime)) {
    return await drop("the cached file is not the one its record describes");
  }
  const stat = await statImage(request.source).catch(() => null);
  const identity = stat ? await cachedIdentity(stat, entry.source.algorithm) : null;
  if (!identity || identity.checksum !== entry.source.checksum) {
    return await drop("the cache entry is not a copy of the image's current content");
  }
  let sum = entry.source.sums[image] ?? "";
  if (how === "copy") {
    if (entry.source.algorithm === algorithm && value(out, "SUM") !== sum) {
      return await drop("the local copy of the cached image does not match its checksum");
    }
    sum = value(out, "SUM");
  } else if (entry.source.algorithm !== algorithm) {
    sum = (await services.runner.output(
      request.replica,
      sh`cd -- ${store.dir} && ${algorithm} <base.new | cut -d' ' -f1`,
      { what: "Error computing the checksum of point 0", timeoutMs: services.transferTimeoutMs },
    )).trim();
  }
  if (sum === "") return await drop("no checksum of the cached image");
  if (how === "copy") {
    logInfo(`Disk ${request.diskId}: point 0 is a copy of the cached image (another filesystem)`);
  }
  return { format: value(out, "FORMAT") || "raw", sum, size };
}

/** Starts the protection of a freshly deployed disk (see the module doc); never throws. */
export async function startProtection(services: TmServices, request: ProtectRequest): Promise<void> {
  const label = `VM ${request.vmId} disk ${request.diskId}`;
  let marked: Awaited<ReturnType<typeof markDisk>>;
  try {
    marked = await markDisk(services, request, 0, statusLine(request.diskId, null, null));
  } catch (error) {
    logWarn(`${label}: recovery points not prepared on ${request.host}: ${oneLine(error)}`);
    return;
  }
  if (!marked.bitmap) {
    logInfo(`${label}: no changed-block bitmap (${marked.why}): every point copies the whole disk`);
  }
  const store = diskStore(services, request.replica, request.vmId, request.diskId);
  try {
    const state = await store.read();
    if (state.recordText !== null) {
      logInfo(`${label}: a recovery record exists on ${request.replica}; the next period continues it`);
      return;
    }
    await store.ensure();
    const algorithm = algorithmOf(services);
    const now = store.now();
    let record: RecoveryRecord = newRecord({
      vm: request.vmId,
      disk: request.diskId,
      format: marked.format,
      size: marked.vsize,
      algorithm,
      source: request.source,
      now,
    });
    const base = await linkBase(services, store, request, algorithm);
    if (base) {
      const out = await services.runner.output(
        request.replica,
        makeBaseScript(store.guard, store.dir, true, base.format, marked.vsize, algorithm),
        { what: `Error creating point 0 in ${store.dir}`, timeoutMs: services.controlTimeoutMs },
      );
      const files = {
        [BASE_FILE]: { sum: base.sum, size: base.size, backing: null, format: base.format },
        [MERGED_FILE]: {
          sum: value(out, "SUM"),
          size: Number(value(out, "SIZE")),
          backing: BASE_FILE,
          format: "qcow2",
        },
      };
      record = {
        ...record,
        files,
        points: [{
          id: 0,
          time: now,
          top: MERGED_FILE,
          kind: "base",
          bytes: 0,
          data: 0,
          quiesced: null,
          checksum: await chainDigest(algorithm, files, [BASE_FILE, MERGED_FILE]),
        }],
        head: marked.bitmap ? 0 : null,
        next_id: 1,
      };
    }
    // Without point 0 the first period is a full copy; it reuses the name of the bitmap just added
    // (next_id 0), which removes that bitmap first.
    await store.writeRecord(null, record);
    if (base) {
      await services.runner.run(
        request.host,
        statusFileScript(
          hypervisorGuard(services.config, request.host),
          request.vmDir,
          request.diskId,
          statusLine(request.diskId, now, null),
        ),
        {
          what: `Error writing the recovery status of disk ${request.diskId} in ${request.vmDir}`,
          check: false,
          timeoutMs: services.controlTimeoutMs,
        },
      ).catch(() => {});
      logInfo(`${label}: protected on ${request.replica}; point 0 is the image (no copy)`);
    }
  } catch (error) {
    logWarn(`${label}: recovery record not created on ${request.replica}: ${oneLine(error)}`);
  }
}
