/**
 * Datastore `stat`: the size in MiB (rounded up) an image will take once registered (spec §7.3).
 * oned calls it synchronously inside `oneimage create`, so it reads as little as it can:
 * - a directory: the bytes of its files (`du -sb`);
 * - a local file or an http(s) URL: the first bytes (decompressed unless NO_DECOMPRESS), grown
 *   until qemu-img recognises the format; a format with a header gives its virtual size;
 * - a raw image: the file's size, the decompressed size of a local compressed file (xz from its
 *   index, gzip and bzip2 by decompressing), or the Content-Length of an uncompressed remote one
 *   (a compressed remote raw image cannot be sized without downloading it, as upstream).
 * The same SAFE_DIRS/RESTRICTED_DIRS checks as `cp` apply: a refused path is not even sized.
 *
 * @module
 */

import { InputError, OneStorError, ToolError } from "../errors.ts";
import { parseImageInfo } from "../image/qemu_img.ts";
import { runCommand } from "../remote/process.ts";
import type { DsEnv } from "./env.ts";
import { type Compression, openImageStream, parseRate } from "./image_stream.ts";
import { dirPolicy, resolveAllowedPath } from "./safe_dirs.ts";
import { type ByteSource, fileSource, httpSource, sourceKind } from "./sources.ts";

const MIB = 1048576;
const FIRST_HEAD = 65536;
const MAX_HEAD = 64 * MIB;

/** Rounds bytes up to MiB, as upstream: `(bytes + 1048575) / 1048576`. */
export function bytesToMb(bytes: number): number {
  return Math.floor((bytes + MIB - 1) / MIB);
}

/** What the head of an image says. */
interface HeadProbe {
  format: string;
  virtualSize: number;
  compression: Compression | null;
  /** Response headers of the (first) http request. */
  headers: Headers | null;
}

async function qemuInfoLocal(
  path: string,
): Promise<{ ok: true; format: string; virtualSize: number } | { ok: false; error: string }> {
  const r = await runCommand(["qemu-img", "info", "--output=json", path], { timeoutMs: 60_000 });
  if (r.code !== 0) return { ok: false, error: r.stderr };
  const [info] = parseImageInfo(r.stdout);
  return { ok: true, format: info.format, virtualSize: info.virtualSize };
}

/** Downloads growing heads of the source until qemu-img recognises the image. */
async function probeHead(
  open: () => ByteSource,
  decompress: boolean,
  rate: number | null,
): Promise<HeadProbe> {
  const file = await Deno.makeTempFile({ prefix: "onestor-stat-" });
  try {
    let want = FIRST_HEAD;
    let headers: Headers | null = null;
    for (;;) {
      const source = open();
      const image = await openImageStream(source, { decompress, rate, limitBytes: want });
      const out = await Deno.open(file, { write: true, truncate: true });
      await image.stream.pipeTo(out.writable);
      await image.done;
      if (headers === null && "headers" in source) headers = (source as { headers: Headers | null }).headers;
      const info = await qemuInfoLocal(file);
      if (info.ok) {
        return {
          format: info.format,
          virtualSize: info.virtualSize,
          compression: image.compression,
          headers,
        };
      }
      const need = info.error.match(/expecting at least (\d+) bytes/);
      const next = need ? Number(need[1]) : NaN;
      if (!Number.isFinite(next) || next <= want || next > MAX_HEAD) {
        throw new ToolError(`Failed to detect image format of ${source.describe}`);
      }
      want = next;
    }
  } finally {
    await Deno.remove(file).catch(() => {});
  }
}

/** Counts every byte of a decompressed stream. */
async function decompressedSize(source: ByteSource, rate: number | null): Promise<number> {
  const image = await openImageStream(source, { decompress: true, rate });
  await image.stream.pipeTo(new WritableStream());
  return (await image.done).outputBytes;
}

/** The uncompressed size an xz file records in its index. */
async function xzSize(path: string): Promise<number> {
  const r = await runCommand(["xz", "--robot", "--list", "--", path], { timeoutMs: 60_000 });
  const totals = r.stdout.split("\n").find((l) => l.startsWith("totals\t"));
  const size = Number(totals?.split("\t")[4]);
  if (r.code !== 0 || !Number.isFinite(size)) throw new ToolError(`Cannot read the size of ${path} from xz`);
  return size;
}

/** An http source that keeps the headers of its first answer. */
function httpWithHeaders(url: string): ByteSource & { headers: Headers | null } {
  const holder: { headers: Headers | null } = { headers: null };
  const source = httpSource(url, { onHeaders: (h) => holder.headers ??= h });
  return {
    describe: source.describe,
    get size() {
      return source.size;
    },
    chunks: () => source.chunks(),
    get headers() {
      return holder.headers;
    },
  };
}

/** Bytes of a directory tree, as `du -sb`. */
async function directorySize(path: string): Promise<number> {
  const r = await runCommand(["du", "-sb", "--", path], { timeoutMs: 120_000 });
  const size = Number(r.stdout.split("\t")[0]);
  if (r.code !== 0 || !Number.isFinite(size)) throw new ToolError(`Cannot read the size of ${path}`);
  return size;
}

/** Runs `stat`: the image's size in MiB. */
export async function imageSizeMb(env: DsEnv): Promise<number> {
  const a = env.action;
  const path = a.imagePath.trim();
  if (path === "") throw new InputError("The image has no PATH to size");
  const decompress = a.dsTemplate("NO_DECOMPRESS").trim().toLowerCase() !== "yes";
  const rate = parseRate(a.dsTemplate("LIMIT_TRANSFER_BW"));
  let bytes: number;
  switch (sourceKind(path)) {
    case "http": {
      const head = await probeHead(() => httpWithHeaders(path), decompress, rate);
      if (head.format !== "raw" && head.format !== "luks") {
        bytes = head.virtualSize;
      } else if (head.compression && decompress) {
        throw new OneStorError("Unsupported remote image format");
      } else {
        const length = head.headers?.get("content-length");
        if (!length || !/^\d+$/.test(length)) throw new OneStorError("Unsupported remote image format");
        bytes = Number(length);
      }
      break;
    }
    case "ssh":
      throw new OneStorError(
        `Cannot determine size for ${path}: ssh:// sources are sized by the marketplace`,
      );
    default: {
      const policy = dirPolicy({
        restrictedDirs: a.dsTemplate("RESTRICTED_DIRS"),
        safeDirs: a.dsTemplate("SAFE_DIRS"),
      });
      const real = resolveAllowedPath(path, policy);
      const st = Deno.statSync(real);
      if (st.isDirectory) {
        bytes = await directorySize(real);
        break;
      }
      const head = await probeHead(() => fileSource(real, path), decompress, rate);
      if (head.format !== "raw" && head.format !== "luks") {
        bytes = head.virtualSize;
      } else if (head.compression && decompress) {
        bytes = head.compression === "xz"
          ? await xzSize(real)
          : await decompressedSize(fileSource(real, path), null);
      } else {
        bytes = st.size;
      }
    }
  }
  if (!(bytes > 0)) throw new OneStorError("Runtime error during size estimation");
  return bytesToMb(bytes);
}
