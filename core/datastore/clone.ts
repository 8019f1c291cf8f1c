/**
 * Datastore `clone` (spec §7.6): a new image from an existing one (IMAGE/PATH is the source
 * image's SOURCE), converted to the datastore's DRIVER when it is raw or qcow2, copied otherwise.
 *
 * Placement as upstream: on the front-end, or on a BRIDGE_LIST host of the target datastore; when
 * the source datastore has bridges (SOURCE_BRIDGE_LIST), the source file is first copied from one
 * of them to where the clone is made, through the copy primitive (sparse, checksummed), instead of
 * upstream's `dd` through a front-end temporary file.
 *
 * @module
 */

import { logInfo } from "../one/log.ts";
import { convertScript } from "../image/qemu_img.ts";
import { confined } from "../remote/confine.ts";
import { sh } from "../remote/shell.ts";
import { checksumProgram, contentAlgorithm, transferTimeoutMs } from "../runtime.ts";
import { learnIdentity } from "../cache/identity.ts";
import { datastoreDriver } from "../validate.ts";
import { copyEntries } from "../transfer/copy.ts";
import { dsConfinement, type DsEnv, workHost } from "./env.ts";
import { checkBasePath, checkPathSyntax, imageHash } from "./paths.ts";

/** The result of a clone. */
export interface CloneResult {
  /** The new image file. */
  source: string;
  /** DRIVER of the datastore (may be empty: oned then keeps the source image's format). */
  driver: string;
}

/** Runs `clone`. */
export async function cloneImage(env: DsEnv): Promise<CloneResult> {
  const a = env.action;
  const basePath = checkBasePath(a.dsBasePath);
  const src = checkPathSyntax(a.imagePath.trim(), "Source image");
  const driver = datastoreDriver(a.dsTemplate("DRIVER"), "DRIVER of the datastore");
  const sparse = a.dsTemplate("SPARSE").trim().toLowerCase() !== "no";
  const hash = imageHash(env.id ?? 0);
  const dst = `${basePath}/${hash}`;
  const part = `${basePath}/.${hash}.onestor-part`;
  const tmp = `${basePath}/.${hash}.onestor-tmp`;
  const host = await workHost(a.bridgeList, env.id);
  const srcHost = a.sourceBridgeList.length > 0 ? await workHost(a.sourceBridgeList, env.id) : host;
  const runner = env.runner;
  const timeoutMs = transferTimeoutMs();
  const sameHost = (runner.isLocal(srcHost) && runner.isLocal(host)) || srcHost === host;

  let from = src;
  try {
    if (!sameHost) {
      logInfo(`Copying ${src} from ${srcHost ?? "the front-end"} to ${host ?? "the front-end"}`);
      const slash = src.lastIndexOf("/");
      await copyEntries(runner, {
        from: {
          host: srcHost,
          dir: src.slice(0, slash) || "/",
          entries: [{ name: src.slice(slash + 1), as: `.${hash}.onestor-part` }],
        },
        to: { host, dir: basePath, confine: dsConfinement(a) },
        sparse,
        checksum: checksumProgram(),
        timeoutMs,
        what: `Error copying ${src} from ${srcHost ?? "front-end"}`,
      });
      from = part;
    }
    logInfo(`Copying image ${src} to ${dst}${host ? ` on ${host}` : ""}`);
    const copy = driver === "qcow2" || driver === "raw"
      ? convertScript({ src: from, dst: tmp, format: driver, sparse, qcow2Options: env.config.qcow2Options })
      : sh`cp -f --sparse=${sparse ? "always" : "never"} -- ${from} ${tmp}`;
    await runner.run(
      host,
      confined(
        dsConfinement(a),
        host,
        { write: [tmp, dst], remove: [part] },
        sh`set -e
mkdir -p -- ${basePath}
[ -f ${from} ] || { echo ${`Source image ${src} does not exist`} >&2; exit 1; }
rm -f -- ${tmp}
${copy}
rm -f -- ${part}
mv -f -- ${tmp} ${dst}`,
      ),
      { timeoutMs, what: `Error copying ${src} to ${dst}` },
    );
  } catch (error) {
    const cleanup = confined(dsConfinement(a), host, { remove: [part, tmp] }, sh`rm -f -- ${part} ${tmp}`);
    await runner.run(host, cleanup, { check: false }).catch(() => {});
    throw error;
  }
  if (runner.isLocal(host)) await learnIdentity(runner, dst, contentAlgorithm());
  return { source: dst, driver };
}
