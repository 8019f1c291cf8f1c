/**
 * Datastore `cp`: registers an image from a local path, an http(s) URL or another host
 * (`ssh://host:/path`) into the datastore (spec §7.2), and answers `<SOURCE> <FORMAT>`.
 *
 * Steps: check the inputs (nothing runs for a hostile PATH); stream the bytes (hashed, paced,
 * decompressed, counted against the room the datastore has) into a hidden staging file on the
 * front-end or the BRIDGE_LIST host; refuse an image that refers to other files (a qcow2 backing
 * file or data file, vmdk extents: converting it would copy them in); convert to DRIVER when
 * CONVERT allows; punch zero holes unless SPARSE=NO; rename to the final name. On failure every
 * temporary file is removed and nothing is left under the final name.
 *
 * @module
 */

import { InputError, OneStorError } from "../errors.ts";
import { convertScript, type ImageInfo, imageInfo, referencedFiles } from "../image/qemu_img.ts";
import { logInfo } from "../one/log.ts";
import { DatastoreType, ImageType } from "../one/objects.ts";
import { confined } from "../remote/confine.ts";
import { sh } from "../remote/shell.ts";
import { checksumProgram, contentAlgorithm, transferTimeoutMs } from "../runtime.ts";
import { learnIdentity } from "../cache/identity.ts";
import { datastoreDriver } from "../validate.ts";
import { dsConfinement, type DsEnv, workHost } from "./env.ts";
import { checkHashValue, openImageStream, parseRate } from "./image_stream.ts";
import { checkBasePath, checkPathSyntax, imageHash } from "./paths.ts";
import { ProgressReporter } from "../progress/reporter.ts";
import { dirPolicy, isAllowed, notAllowedError, resolveAllowedPath } from "./safe_dirs.ts";
import { writeStream } from "./sink.ts";
import { fsSpace } from "./space.ts";
import { type ByteSource, fileSource, httpSource, parseSshUrl, sourceKind, sshSource } from "./sources.ts";

/** The result of an import. */
export interface ImportResult {
  /** The new image file (SOURCE). */
  source: string;
  /** Its format as qemu-img reports it (`luks` reported as `raw`). */
  format: string;
}

const MIB = 1048576;

function yes(value: string): boolean {
  return value.trim().toLowerCase() === "yes";
}

/** Settings of one import, read and checked from DS_DRIVER_ACTION_DATA. */
export interface ImportPlan {
  path: string;
  basePath: string;
  md5?: string;
  sha1?: string;
  decompress: boolean;
  rate: number | null;
  convert: boolean;
  driver: string;
  sparse: boolean;
  stagingDir: string;
}

/** Reads and checks everything `cp` takes from DS_DRIVER_ACTION_DATA (spec §7.2 step 1). */
export function importPlan(env: DsEnv): ImportPlan {
  const a = env.action;
  const fileDs = a.dsType === DatastoreType.FILE_DS;
  const path = a.imagePath.trim();
  if (path === "") throw new InputError("The image has no PATH to copy from");
  const noDecompress = a.dsTemplate("NO_DECOMPRESS") || (fileDs ? "yes" : "");
  let convert = (a.dsTemplate("CONVERT") || "yes").trim().toLowerCase() === "yes";
  if (a.imageType === ImageType.CDROM || fileDs) convert = false;
  const md5 = a.imageMd5.trim();
  const sha1 = a.imageSha1.trim();
  return {
    path,
    basePath: checkBasePath(a.dsBasePath),
    md5: md5 ? checkHashValue("MD5", md5) : undefined,
    sha1: sha1 ? checkHashValue("SHA1", sha1) : undefined,
    decompress: !yes(noDecompress),
    rate: parseRate(a.dsTemplate("LIMIT_TRANSFER_BW")),
    convert,
    driver: datastoreDriver(a.dsTemplate("DRIVER"), "DRIVER of the datastore"),
    sparse: a.dsTemplate("SPARSE").trim().toLowerCase() !== "no",
    stagingDir: checkPathSyntax(a.dsTemplate("STAGING_DIR").trim() || "/var/tmp", "STAGING_DIR"),
  };
}

/** Opens the source PATH after the SAFE_DIRS/RESTRICTED_DIRS checks (local and ssh:// paths). */
export async function openSource(env: DsEnv, path: string): Promise<ByteSource> {
  const policy = dirPolicy({
    restrictedDirs: env.action.dsTemplate("RESTRICTED_DIRS"),
    safeDirs: env.action.dsTemplate("SAFE_DIRS"),
  });
  switch (sourceKind(path)) {
    case "http":
      return httpSource(path);
    case "ssh": {
      const { host, path: remotePath } = parseSshUrl(path);
      // Judge the file where it really is on that host, as for a local path.
      const real = await env.runner.output(host, sh`readlink -e -- ${remotePath} || echo`, {
        what: `Resolving ${remotePath}`,
      });
      if (real === "") {
        if (!isAllowed(remotePath, policy)) throw notAllowedError(path);
        throw new InputError(`cannot access '${path}' (No such file or directory)`);
      }
      if (!real.startsWith("/") || !isAllowed(real, policy)) throw notAllowedError(path);
      return sshSource(env.runner, host, real, path);
    }
    default:
      return fileSource(resolveAllowedPath(path, policy), path);
  }
}

/** Room for the image's data: free space of BASE_PATH's file system, and LIMIT_MB when set. */
async function roomFor(
  env: DsEnv,
  host: string | null,
  basePath: string,
): Promise<{ bytes?: number; reason?: string }> {
  const space = await fsSpace(env.runner, host, basePath, "1");
  let bytes = space.free === "" ? undefined : Number(space.free);
  let reason = bytes === undefined ? undefined : `the datastore has ${Math.floor(bytes / MIB)} MiB free`;
  const limit = Number(env.action.dsTemplate("LIMIT_MB"));
  if (env.action.dsTemplate("LIMIT_MB").trim() !== "" && Number.isFinite(limit) && limit > 0) {
    const used = Number(env.action.get("DATASTORE/USED_MB")) || 0;
    const left = Math.max(0, (limit - used) * MIB);
    if (bytes === undefined || left < bytes) {
      bytes = left;
      reason = `LIMIT_MB of the datastore leaves ${Math.floor(left / MIB)} MiB`;
    }
  }
  return { bytes, reason };
}

/** Runs `cp`: returns the new SOURCE and its FORMAT. */
export async function importImage(env: DsEnv): Promise<ImportResult> {
  const plan = importPlan(env);
  const source = await openSource(env, plan.path);
  const host = await workHost(env.action.bridgeList, env.id);
  const where = host ?? "the front-end";
  const hash = imageHash(env.id ?? 0);
  const dst = `${plan.basePath}/${hash}`;
  const staging = host === null
    ? `${plan.basePath}/.${hash}.onestor-part`
    : `${plan.stagingDir}/.${hash}.onestor-part`;
  const tmp = `${plan.basePath}/.${hash}.onestor-tmp`;
  const runner = env.runner;
  const timeoutMs = transferTimeoutMs();
  // BASE_PATH, and STAGING_DIR where a bridge host stages the image.
  const c = dsConfinement(env.action, { staging: host !== null });

  logInfo(
    sourceKind(plan.path) === "http"
      ? `Downloading image ${plan.path} to the image repository on ${where}`
      : `Copying image ${plan.path} to the image repository on ${where}`,
  );
  const room = await roomFor(env, host, plan.basePath);
  const progress = new ProgressReporter({ label: `Copying ${plan.path}`, total: source.size });
  const cleanup = async () => {
    await runner.run(host, confined(c, host, { remove: [staging, tmp] }, sh`rm -f -- ${staging} ${tmp}`), {
      check: false,
      what: "Cleaning up",
    }).catch(() => {});
  };
  try {
    const image = await openImageStream(source, {
      md5: plan.md5,
      sha1: plan.sha1,
      decompress: plan.decompress,
      rate: plan.rate,
      maxDataBytes: room.bytes,
      maxReason: room.reason,
      progress,
    });
    if (image.compression && plan.decompress) {
      logInfo(`Decompressing ${image.compression} data from ${plan.path}`);
    }
    await writeStream(runner, host, staging, image.stream, {
      sparse: plan.sparse,
      blockSize: env.config.ddBlockSize,
      checksum: checksumProgram(),
      timeoutMs,
      what: `Writing ${plan.path} to ${host ?? "front-end"}:${staging}`,
      confine: c,
    });
    const summary = await image.done;
    progress.finish();
    logInfo(`Received ${summary.sourceBytes} bytes, wrote ${summary.outputBytes} bytes`);

    const [info] = await imageInfo(runner, host, staging);
    const others = referencedFiles(info);
    if (others.length > 0) {
      throw new InputError(
        `Image ${plan.path} refers to other files (${others.join(", ")}): register a standalone image`,
      );
    }
    const finish = finishScript(plan, info, { staging, tmp, dst }, env.config.qcow2Options);
    await runner.run(host, confined(c, host, { write: [tmp, dst], remove: [staging] }, finish), {
      timeoutMs,
      what: `Error copying ${plan.path} to ${dst}`,
    });
    const [final] = await imageInfo(runner, host, dst);
    if (!final.format) {
      await runner.run(host, confined(c, host, { remove: [dst] }, sh`rm -f -- ${dst}`), { check: false });
      throw new OneStorError(`Unknown image format src=${plan.path}`);
    }
    if (runner.isLocal(host)) await learnIdentity(runner, dst, contentAlgorithm());
    return { source: dst, format: final.format === "luks" ? "raw" : final.format };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/** Converts (when asked) or moves the staged file to the temporary name, punches holes, renames. */
function finishScript(
  plan: ImportPlan,
  info: ImageInfo,
  paths: { staging: string; tmp: string; dst: string },
  qcow2Options: readonly string[],
) {
  const { staging, tmp, dst } = paths;
  const convert = plan.convert && (plan.driver === "raw" || plan.driver === "qcow2") &&
    info.format !== "" && info.format !== plan.driver && info.format !== "luks";
  const steps = convert
    ? sh`${
      convertScript({
        src: staging,
        dst: tmp,
        srcFormat: info.format,
        format: plan.driver,
        sparse: plan.sparse,
        qcow2Options,
      })
    }
rm -f -- ${staging}`
    : sh`mv -f -- ${staging} ${tmp}`;
  const punch = plan.sparse ? sh`fallocate -d -- ${tmp} 2>/dev/null || true` : sh`:`;
  return sh`set -e
mkdir -p -- ${plan.basePath}
${steps}
${punch}
mv -f -- ${tmp} ${dst}`;
}
