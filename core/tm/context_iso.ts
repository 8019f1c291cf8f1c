/**
 * `context <context.sh> [file...] <host>:<vm_dir>/disk.<i> <vm_id> <ds_id>` (spec §3.3): the
 * context CD-ROM. The ISO is built on the front-end (`xorriso -as mkisofs` or `genisoimage`,
 * whichever is installed; volume label CONTEXT, Joliet and Rock Ridge) from the context script and
 * the files of CONTEXT/FILES and FILES_DS, then sent with the transfer primitive as `disk.<i>`.
 *
 * File arguments: a front-end path (copied recursively, under its own name), `path:name` (copied
 * as `name`; FILES_DS images arrive as `<SOURCE>:'<image name>'`, the quotes are dropped as
 * upstream's shell did), or an `http://`/`https://` URL (downloaded, named after the last part of
 * its path). A name never becomes a path inside the ISO: `/` is replaced by `_`.
 *
 * @module
 */

import { InputError, OneStorError, ToolError } from "../errors.ts";
import { logInfo } from "../one/log.ts";
import { basenameOf } from "../one/location.ts";
import { runCommand } from "../remote/process.ts";
import { sh } from "../remote/shell.ts";
import { copyEntries } from "../transfer/copy.ts";
import { markerScript } from "./monitor_marker.ts";
import { parseId, parseVmFile, type VmFile } from "./paths.ts";
import type { TmServices } from "./services.ts";

/** One file to put into the ISO. */
export interface ContextFile {
  /** A front-end path or a URL. */
  kind: "path" | "url";
  /** The path or URL. */
  source: string;
  /** Name inside the ISO. */
  name: string;
}

/** The parsed arguments of context. */
export interface ContextArgs {
  files: ContextFile[];
  destination: VmFile;
  vmId: number;
  dsId: number;
}

function safeName(name: string, arg: string): string {
  const n = name.replaceAll("/", "_");
  if (n === "" || n === "." || n === "..") throw new InputError(`Context file '${arg}' has no usable name`);
  return n;
}

/** Parses one file argument (see the module doc). */
export function parseContextFile(arg: string): ContextFile {
  if (/^https?:\/\//i.test(arg)) {
    let url: URL;
    try {
      url = new URL(arg);
    } catch {
      throw new InputError(`Context file URL '${arg}' is not a valid URL`);
    }
    const last = url.pathname.split("/").filter((p) => p !== "").pop() ?? "";
    let name = last;
    try {
      name = decodeURIComponent(last);
    } catch {
      // Keep the raw segment.
    }
    return { kind: "url", source: arg, name: safeName(name || "index.html", arg) };
  }
  const colon = arg.indexOf(":");
  const source = colon < 0 ? arg : arg.slice(0, colon);
  let name = colon < 0 ? basenameOf(source) : arg.slice(colon + 1);
  if (name.length >= 2 && name.startsWith("'") && name.endsWith("'")) name = name.slice(1, -1);
  if (!source.startsWith("/")) {
    throw new InputError(`Context file '${arg}' must be an absolute path or a URL`);
  }
  return { kind: "path", source, name: safeName(name, arg) };
}

/** Parses the whole argument list: files first, then destination, VM id and datastore id. */
export function parseContextArgs(args: readonly string[]): ContextArgs {
  if (args.length < 4) throw new InputError("context needs CONTEXT_SH [FILE...] HOST:DST VM_ID DS_ID");
  const n = args.length;
  return {
    files: args.slice(0, n - 3).map(parseContextFile),
    destination: parseVmFile(args[n - 3], "Context destination"),
    vmId: parseId(args[n - 2], "VM id"),
    dsId: parseId(args[n - 1], "Datastore id"),
  };
}

/** The ISO builder installed on this machine (xorriso preferred), or a ToolError naming both. */
export function isoBuilder(path = Deno.env.get("PATH") ?? "/usr/bin:/bin"): string[] {
  for (const tool of ["xorriso", "genisoimage", "mkisofs"]) {
    for (const dir of path.split(":").filter((d) => d !== "")) {
      try {
        if (Deno.statSync(`${dir}/${tool}`).isFile) {
          return tool === "xorriso" ? [tool, "-as", "mkisofs"] : [tool];
        }
      } catch {
        // Not in this folder.
      }
    }
  }
  throw new ToolError(
    "Cannot build the context ISO: neither xorriso nor genisoimage is installed (install xorriso)",
  );
}

async function fetchInto(file: ContextFile, dir: string, timeoutMs: number): Promise<void> {
  let response: Response;
  try {
    response = await fetch(file.source, {
      signal: timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined,
    });
  } catch (error) {
    throw new OneStorError(`Error downloading ${file.source}: ${(error as Error).message}`);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new OneStorError(
      `Error downloading ${file.source}: HTTP ${response.status} ${response.statusText}`,
    );
  }
  await Deno.writeFile(`${dir}/${file.name}`, response.body);
}

/** Builds `<work>/context.iso` from the files (in order; a later file of the same name wins). */
export async function buildContextIso(
  files: readonly ContextFile[],
  work: string,
  timeoutMs = 0,
): Promise<string> {
  const dir = `${work}/files`;
  await Deno.mkdir(dir, { recursive: true });
  for (const file of files) {
    if (file.kind === "url") {
      await fetchInto(file, dir, timeoutMs);
      continue;
    }
    await Deno.remove(`${dir}/${file.name}`, { recursive: true }).catch(() => {});
    const r = await runCommand(["cp", "-R", "--", file.source, `${dir}/${file.name}`]);
    if (r.code !== 0) {
      throw new OneStorError(
        `Error copying ${file.source} to the context ISO: ${r.stderr.trim().replace(/^cp: /, "")}`,
      );
    }
  }
  const iso = `${work}/context.iso`;
  const r = await runCommand([...isoBuilder(), "-o", iso, "-V", "CONTEXT", "-J", "-R", dir]);
  if (r.code !== 0) {
    throw new ToolError(`Error creating the context ISO: ${r.stderr.trim().split("\n").pop()}`);
  }
  return iso;
}

/** Runs context (see the module doc). */
export async function contextDisk(services: TmServices, args: readonly string[]): Promise<void> {
  const request = parseContextArgs(args);
  const dst = request.destination;
  logInfo(`Generating context block device at ${dst.host}:${dst.path}`);
  const work = await Deno.makeTempDir({ prefix: "onestor-context-" });
  try {
    await buildContextIso(request.files, work, services.transferTimeoutMs);
    await services.runner.run(
      dst.host,
      sh`${markerScript(dst.dsDir, services.driver)}
mkdir -p -- ${dst.vmDir}`,
      { what: `Creating directory ${dst.vmDir}`, timeoutMs: services.controlTimeoutMs },
    );
    await copyEntries(services.runner, {
      from: { host: null, dir: work, entries: [{ name: "context.iso", as: dst.name }] },
      to: { host: dst.host, dir: dst.vmDir, confine: services.confine },
      sparse: true,
      checksum: services.checksum,
      timeoutMs: services.transferTimeoutMs,
      what: `Error copying context ISO to ${dst.host}:${dst.path}`,
    });
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
