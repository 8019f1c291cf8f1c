/**
 * Datastore `export` (spec §7.8, a marketplace action): what a marketplace needs to import the
 * image, as one IMPORT_INFO fragment. With BRIDGE_LIST the image is read on the bridge host and
 * offered as `ssh://<bridge>:<SOURCE>`.
 *
 * @module
 */

import { OneStorError } from "../errors.ts";
import { parseImageInfo } from "../image/qemu_img.ts";
import { sh } from "../remote/shell.ts";
import { transferTimeoutMs } from "../runtime.ts";
import { type DsEnv, workHost } from "./env.ts";
import { checkPathSyntax } from "./paths.ts";

function cdata(text: string): string {
  return `<![CDATA[${text.replaceAll("]]>", "]]]]><![CDATA[>")}]]>`;
}

/** The IMPORT_INFO fragment for the given values. */
export function importInfoXml(v: { source: string; md5: string; size: string; format: string }): string {
  return `<IMPORT_INFO><IMPORT_SOURCE>${cdata(v.source)}</IMPORT_SOURCE> <MD5>${cdata(v.md5)}</MD5> ` +
    `<SIZE>${cdata(v.size)}</SIZE> <FORMAT>${cdata(v.format)}</FORMAT> <DISPOSE>NO</DISPOSE></IMPORT_INFO>`;
}

/** Runs `export`. */
export async function exportImage(env: DsEnv): Promise<string> {
  const a = env.action;
  const source = a.imageSource.trim();
  checkPathSyntax(source, "Image source");
  const size = a.get("IMAGE/SIZE").trim();
  const host = await workHost(a.bridgeList, env.id);
  const out = await env.runner.output(
    host,
    sh`set -e
[ -f ${source} ] || { echo ${`Image ${source} does not exist`} >&2; exit 1; }
md5sum -- ${source} | cut -d' ' -f1
qemu-img info -U --output=json ${source} 2>/dev/null || echo '{}'`,
    { timeoutMs: transferTimeoutMs(), what: "Image info script" },
  );
  const newline = out.indexOf("\n");
  const md5 = (newline < 0 ? out : out.slice(0, newline)).trim();
  if (!/^[0-9a-f]{32}$/.test(md5)) throw new OneStorError(`Cannot compute the MD5 of ${source}`);
  let format = "";
  try {
    format = parseImageInfo(out.slice(newline + 1))[0].format;
  } catch {
    format = "";
  }
  return importInfoXml({
    source: host ? `ssh://${host}:${source}` : source,
    md5,
    size,
    format: format || "raw",
  });
}
