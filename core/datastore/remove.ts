/**
 * Datastore `rm` (spec §7.5): deletes an image file, its snapshots, every side file (the
 * `.md5sum` checksum upstream's replica cache keys on, onestor's temporary files) and tells the
 * replica cache that the image is gone. Deleting an image that is already gone succeeds (oned
 * retries).
 *
 * @module
 */

import { invalidateImage } from "../cache/invalidate.ts";
import { logInfo } from "../one/log.ts";
import { confined } from "../remote/confine.ts";
import { sh, type ShellScript } from "../remote/shell.ts";
import { controlTimeoutMs } from "../runtime.ts";
import { dsConfinement, type DsEnv, workHost } from "./env.ts";
import { checkImageSource, tempNameFor } from "./paths.ts";

/** Every file that belongs to image `source` in its datastore directory. */
export function imageFiles(source: string): string[] {
  return [
    source,
    `${source}.snap`,
    `${source}.md5sum`,
    tempNameFor(source),
    tempNameFor(source, "onestor-part"),
    tempNameFor(source, "onestor-tmp.raw"),
  ];
}

/** The script that deletes the image and everything that belongs to it. */
export function removeScript(source: string): ShellScript {
  return sh`rm -rf -- ${imageFiles(source)}`;
}

/** Runs `rm`. */
export async function removeImage(env: DsEnv): Promise<void> {
  const a = env.action;
  const source = checkImageSource(a.imageSource, a.dsBasePath);
  const host = await workHost(a.bridgeList, env.id);
  logInfo(`Removing ${source} from the image repository${host ? ` on ${host}` : ""}`);
  const script = confined(dsConfinement(a), host, { remove: imageFiles(source) }, removeScript(source));
  await env.runner.run(host, script, {
    timeoutMs: controlTimeoutMs() * 10,
    what: `Error deleting ${source}`,
  });
  await invalidateImage(source, "rm");
}
