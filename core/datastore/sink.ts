/**
 * Writes a stream of image bytes into a file on the front-end or a BRIDGE_LIST host with `dd`
 * (DD_BLOCK_SIZE blocks, `conv=sparse` unless SPARSE=NO, as upstream's bridge path), and, on a
 * remote host, checks the written file against a checksum of the stream taken as it left.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { ToolError } from "../errors.ts";
import type { HostRunner } from "../remote/runner.ts";
import { sh } from "../remote/shell.ts";

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
}

const HASH_OF: Record<string, string> = {
  b2sum: "blake2b512",
  sha256sum: "sha256",
  md5sum: "md5",
  sha1sum: "sha1",
};

/** Streams `stream` into `path` on `host` (null: here), replacing any file there. */
export async function writeStream(
  runner: HostRunner,
  host: string | null,
  path: string,
  stream: ReadableStream<Uint8Array>,
  options: WriteOptions,
): Promise<void> {
  const remote = !runner.isLocal(host);
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
