/**
 * Writes a stream of image bytes into a file: on the front-end directly (zero blocks skipped as
 * holes unless SPARSE=NO), on a BRIDGE_LIST host with `dd` (DD_BLOCK_SIZE blocks, `conv=sparse`
 * unless SPARSE=NO, as upstream's bridge path), checking the written file there against a
 * checksum of the stream taken as it left.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { ToolError } from "../errors.ts";
import { confine, type Confinement } from "../remote/confine.ts";
import type { HostRunner } from "../remote/runner.ts";
import { sh } from "../remote/shell.ts";
import { isZero } from "./image_stream.ts";

/** Options of {@linkcode writeStream}. */
export interface WriteOptions {
  /** Keep zero blocks as holes (default true). */
  sparse?: boolean;
  /** dd block size (DD_BLOCK_SIZE). */
  blockSize: string;
  /** Checksum program run on the receiving host (b2sum, sha256sum, md5sum) or "none". */
  checksum?: string;
  /** Timeout in milliseconds (0: none). */
  timeoutMs?: number;
  /** For error messages. */
  what?: string;
  /** Where the file may be written; checked on the host that writes (here: before the first byte). */
  confine: Confinement;
}

const HASH_OF: Record<string, string> = {
  b2sum: "blake2b512",
  sha256sum: "sha256",
  md5sum: "md5",
  sha1sum: "sha1",
};

const BLOCK = 65536;

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}

/**
 * Writes `stream` into the local file `path` (replaced), leaving whole 64 KiB blocks of zeros as
 * holes when `sparse`; the file gets the stream's length even when it ends in a hole.
 */
export async function writeLocalFile(
  path: string,
  stream: ReadableStream<Uint8Array>,
  sparse: boolean,
): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  await Deno.mkdir(dir, { recursive: true });
  await Deno.remove(path).catch(() => {});
  const file = await Deno.open(path, { write: true, createNew: true });
  try {
    let pos = 0;
    for await (const chunk of stream) {
      if (!sparse) {
        await writeAll(file, chunk);
        pos += chunk.length;
        continue;
      }
      // Walk the chunk in blocks aligned on the file offset; write runs of data in one call.
      let off = 0;
      let run = -1;
      while (off < chunk.length) {
        const take = Math.min(BLOCK - (pos % BLOCK), chunk.length - off);
        const zero = isZero(chunk.subarray(off, off + take));
        if (zero && run >= 0) {
          await writeAll(file, chunk.subarray(run, off));
          run = -1;
        }
        if (zero) await file.seek(take, Deno.SeekMode.Current);
        else if (run < 0) run = off;
        off += take;
        pos += take;
      }
      if (run >= 0) await writeAll(file, chunk.subarray(run));
    }
    await file.truncate(pos);
  } finally {
    file.close();
  }
}

/** Streams `stream` into `path` on `host` (null: here), replacing any file there. */
export async function writeStream(
  runner: HostRunner,
  host: string | null,
  path: string,
  stream: ReadableStream<Uint8Array>,
  options: WriteOptions,
): Promise<void> {
  const remote = !runner.isLocal(host);
  const check = confine(options.confine, host, { write: [path] });
  if (!remote) {
    // This process writes the file itself: the same check, on this machine, right before.
    await runner.run(null, check, { what: `Checking ${path}` });
    return await writeLocalFile(path, stream, options.sparse !== false);
  }
  const program = remote ? options.checksum ?? "none" : "none";
  const algorithm = HASH_OF[program];
  if (program !== "none" && !algorithm) throw new TypeError(`Unknown checksum program ${program}`);
  const hash = algorithm ? createHash(algorithm) : null;
  const input = hash
    ? stream.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          hash.update(chunk);
          controller.enqueue(chunk);
        },
      }),
    )
    : stream;
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  const conv = options.sparse === false ? [] : ["conv=sparse"];
  const sum = algorithm ? sh`${program} -- ${path} | cut -d' ' -f1` : sh`:`;
  const out = await runner.run(
    host,
    sh`set -e
${check}
mkdir -p -- ${dir}
rm -f -- ${path}
dd of=${path} bs=${options.blockSize} iflag=fullblock ${conv} status=none
${sum}`,
    { stdin: input, timeoutMs: options.timeoutMs, what: options.what ?? `Writing ${path}` },
  );
  if (hash) {
    const expected = hash.digest("hex");
    const actual = out.stdout.trim();
    if (actual !== expected) {
      throw new ToolError(
        `${path} on ${host} does not match what was sent (${program} ${actual}, expected ${expected})`,
      );
    }
  }
}
