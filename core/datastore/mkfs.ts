/**
 * Datastore `mkfs`: a new empty datablock image (spec §7.4), or, for FORMAT `save_as`, only the
 * name a later CPDS writes into. FS is checked before anything runs (see core/image/datablock.ts).
 *
 * @module
 */

import { checkFs, datablockScript } from "../image/datablock.ts";
import { logInfo } from "../one/log.ts";
import { transferTimeoutMs } from "../runtime.ts";
import { mkfsFormat, sizeMb } from "../validate.ts";
import { confined } from "../remote/confine.ts";
import { dsConfinement, type DsEnv, workHost } from "./env.ts";
import { checkBasePath, newImagePath } from "./paths.ts";

/** Runs `mkfs`: returns the new SOURCE. */
export async function makeDatablockImage(env: DsEnv): Promise<string> {
  const a = env.action;
  const dst = newImagePath(checkBasePath(a.dsBasePath), env.id ?? 0);
  // FORMAT is what oned records for the image: only what this action really makes.
  const format = mkfsFormat(a.imageFormat);
  if (format === "save_as") return dst;
  const fs = a.imageFs.trim();
  if (fs !== "") checkFs(fs, env.config);
  const size = sizeMb(a.get("IMAGE/SIZE"), "IMAGE/SIZE");
  const script = datablockScript({
    path: dst,
    sizeMb: size,
    format,
    fs: fs || undefined,
    sparse: a.dsTemplate("SPARSE").trim().toLowerCase() !== "no",
  }, env.config);
  const host = await workHost(a.bridgeList, env.id);
  logInfo(
    `Making a ${size} MiB ${format || "raw"} datablock${fs ? ` with ${fs}` : ""} at ${
      host ? `${host}:` : ""
    }${dst}`,
  );
  // mkfs.xfs of a large file and a non-sparse allocation take longer than a control command.
  const timeoutMs = transferTimeoutMs();
  await env.runner.run(host, confined(dsConfinement(a), host, { write: [dst] }, script), {
    timeoutMs,
    what: `Unable to create image with format ${format || "raw"} in ${host ? `${host}:` : ""}${dst}`,
  });
  return dst;
}
