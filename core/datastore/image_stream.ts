/**
 * The download pipeline of `cp` and `stat`, as upstream's downloader.sh but in-process: the source
 * bytes are hashed (MD5/SHA1, over the stream as downloaded, i.e. compressed), rate-limited
 * (LIMIT_TRANSFER_BW), decompressed when they start with a gzip, bzip2 or xz signature (unless
 * NO_DECOMPRESS), counted against a maximum, and handed on as a stream.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { InputError, OneStorError, ToolError } from "../errors.ts";
import { lastLines, runCommand, type RunResult, streamStdout } from "../remote/process.ts";
import type { ProgressReporter } from "../progress/reporter.ts";
import type { ByteSource } from "./sources.ts";

/** Compression formats recognised by their first bytes. */
export type Compression = "gzip" | "bzip2" | "xz";

/** The decompressing command of each format (reads stdin, writes stdout). */
const DECOMPRESSORS: Record<Compression, string[]> = {
  gzip: ["gzip", "-dc"],
  bzip2: ["bzip2", "-dc"],
  xz: ["xz", "-dc"],
};

/** Recognises gzip (1f 8b), bzip2 (`BZh` + level) and xz (fd `7zXZ` 00) by their signatures. */
export function detectCompression(head: Uint8Array): Compression | null {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (
    head.length >= 4 && head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68 && head[3] >= 0x31 &&
    head[3] <= 0x39
  ) {
    return "bzip2";
  }
  const xz = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
  if (head.length >= 6 && xz.every((b, i) => head[i] === b)) return "xz";
  return null;
}

/**
 * Parses LIMIT_TRANSFER_BW as curl's `--limit-rate` does: bytes per second, with an optional
 * K, M or G suffix (powers of 1024). Empty means no limit.
 */
export function parseRate(text: string): number | null {
  const value = text.trim();
  if (value === "") return null;
  const match = value.match(/^(\d+(?:\.\d+)?)\s*([kKmMgG])?[bB]?$/);
  if (!match) {
    throw new InputError(`LIMIT_TRANSFER_BW ${JSON.stringify(text)} is not a rate such as 10M or 500K`);
  }
  const unit = { "": 1, k: 1024, m: 1048576, g: 1073741824 }[(match[2] ?? "").toLowerCase()]!;
  const rate = Math.floor(Number(match[1]) * unit);
  if (rate <= 0) throw new InputError(`LIMIT_TRANSFER_BW ${JSON.stringify(text)} must be more than zero`);
  return rate;
}

/** Checks an expected MD5/SHA1 value from the image template and returns it lower-cased. */
export function checkHashValue(kind: "MD5" | "SHA1", value: string): string {
  const hex = value.trim().toLowerCase();
  const length = kind === "MD5" ? 32 : 40;
  if (!new RegExp(`^[0-9a-f]{${length}}$`).test(hex)) {
    throw new InputError(`Image ${kind} ${JSON.stringify(value)} is not ${length} hexadecimal digits`);
  }
  return hex;
}

/** Options of {@linkcode openImageStream}. */
export interface ImageStreamOptions {
  /** Expected MD5 of the downloaded bytes (hex). */
  md5?: string;
  /** Expected SHA1 of the downloaded bytes (hex). */
  sha1?: string;
  /** Decompress gzip/bzip2/xz streams (default true). */
  decompress?: boolean;
  /** Bytes per second at most, over the downloaded bytes. */
  rate?: number | null;
  /** Stop after this many output bytes without error (a head, for size probing). */
  limitBytes?: number;
  /**
   * Fail when the output holds more than this many bytes of data. Whole blocks of zeros are not
   * counted: they are written as holes and take no space.
   */
  maxDataBytes?: number;
  /** How `maxDataBytes` was set, for the error message. */
  maxReason?: string;
  /** Counts downloaded bytes. */
  progress?: ProgressReporter;
}

/** What a finished stream delivered. */
export interface StreamSummary {
  /** Bytes read from the source. */
  sourceBytes: number;
  /** Bytes delivered (decompressed). */
  outputBytes: number;
  /** Bytes in non-zero 64 KiB blocks of the output. */
  dataBytes: number;
  /** Compression found at the start of the source (decompressed or not). */
  compression: Compression | null;
}

/** The output of {@linkcode openImageStream}. */
export interface ImageStream {
  /** The image bytes (decompressed when asked). */
  stream: ReadableStream<Uint8Array>;
  /** Compression found at the start of the source. */
  compression: Compression | null;
  /** Settles when the stream has been read to its end: rejects on a source, decompression, hash or size error. */
  done: Promise<StreamSummary>;
}

const BLOCK = 65536;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** True when every byte is zero (whole blocks of zeros are written as holes). */
export function isZero(bytes: Uint8Array): boolean {
  // Aligned 32-bit reads where possible: four times fewer iterations than bytes.
  let i = 0;
  if (bytes.byteOffset % 4 === 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
    for (let w = 0; w < words.length; w++) if (words[w] !== 0) return false;
    i = words.length << 2;
  }
  for (; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Counts bytes in non-zero blocks of a stream at 64 KiB granularity. */
class DataCounter {
  #carry = new Uint8Array(BLOCK);
  #fill = 0;
  data = 0;
  push(chunk: Uint8Array): void {
    let off = 0;
    // Whole blocks straight from the chunk when nothing is pending: no copy.
    while (this.#fill === 0 && chunk.length - off >= BLOCK) {
      if (!isZero(chunk.subarray(off, off + BLOCK))) this.data += BLOCK;
      off += BLOCK;
    }
    while (off < chunk.length) {
      const take = Math.min(BLOCK - this.#fill, chunk.length - off);
      this.#carry.set(chunk.subarray(off, off + take), this.#fill);
      this.#fill += take;
      off += take;
      if (this.#fill === BLOCK) this.#flush();
    }
  }
  #flush(): void {
    if (!isZero(this.#carry.subarray(0, this.#fill))) this.data += this.#fill;
    this.#fill = 0;
  }
  end(): void {
    if (this.#fill > 0) this.#flush();
  }
}

/**
 * Opens the pipeline over `source`. The first bytes are read at once (to detect compression);
 * the rest flows as the returned stream is read. Read the stream to its end and await `done`
 * before trusting what was written: a hash mismatch is only known at the end.
 */
export async function openImageStream(
  source: ByteSource,
  options: ImageStreamOptions = {},
): Promise<ImageStream> {
  const hashes: [string, string, Hash][] = [];
  if (options.md5) hashes.push(["MD5", options.md5, createHash("md5")]);
  if (options.sha1) hashes.push(["SHA1", options.sha1, createHash("sha1")]);
  const iterator = source.chunks()[Symbol.asyncIterator]();
  const started = Date.now();
  let sourceBytes = 0;

  // Source bytes: hashed, counted, paced.
  const next = async (): Promise<Uint8Array | null> => {
    const r = await iterator.next();
    if (r.done) return null;
    const chunk = r.value;
    sourceBytes += chunk.length;
    for (const [, , h] of hashes) h.update(chunk);
    options.progress?.add(chunk.length);
    if (options.rate) {
      const due = (sourceBytes / options.rate) * 1000 - (Date.now() - started);
      if (due > 0) await sleep(due);
    }
    return chunk;
  };

  // Read enough for the signatures.
  const head: Uint8Array[] = [];
  let headLength = 0;
  while (headLength < 8) {
    const chunk = await next();
    if (chunk === null) break;
    head.push(chunk);
    headLength += chunk.length;
  }
  const first = new Uint8Array(headLength);
  {
    let off = 0;
    for (const c of head) {
      first.set(c, off);
      off += c.length;
    }
  }
  // An http source knows its length once it has answered.
  if (source.size !== null) options.progress?.setTotal(source.size);
  const compression = detectCompression(first);
  const decompress = compression !== null && options.decompress !== false;

  async function* sourceChunks(): AsyncGenerator<Uint8Array> {
    if (first.length > 0) yield first;
    for (;;) {
      const chunk = await next();
      if (chunk === null) return;
      yield chunk;
    }
  }

  const closeSource = async () => {
    await iterator.return?.();
  };

  let resolveDone!: (s: StreamSummary) => void;
  let rejectDone!: (e: unknown) => void;
  const done = new Promise<StreamSummary>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  done.catch(() => {});

  // Decompressed (or plain) output chunks.
  async function* outputChunks(): AsyncGenerator<Uint8Array> {
    if (!decompress) {
      yield* sourceChunks();
      return;
    }
    const argv = DECOMPRESSORS[compression!];
    // The decompressor only sees its input end; a source error is kept to be reported instead.
    let sourceError: unknown = null;
    async function* tracked(): AsyncGenerator<Uint8Array> {
      try {
        yield* sourceChunks();
      } catch (error) {
        sourceError = error;
        throw error;
      }
    }
    let child!: Promise<RunResult>;
    const output = streamStdout((hooks) => {
      child = runCommand(argv, { stdin: ReadableStream.from(tracked()), captureLimit: 64 * 1024, ...hooks });
      return child;
    });
    // The child's own failure is reported below, with the source's error taking precedence.
    try {
      yield* output;
    } catch {
      // Read from `child` below.
    }
    const result = await child.catch((error) => ({ code: -2, stderr: (error as Error).message }));
    if (sourceError) throw sourceError;
    if (result.code !== 0) {
      throw new ToolError(
        `Cannot decompress ${source.describe} (${compression}): ${
          lastLines(result.stderr) || `exit ${result.code}`
        }`,
      );
    }
  }

  const counter = new DataCounter();
  let outputBytes = 0;
  const limit = options.limitBytes;
  const out = outputChunks();
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (limit !== undefined && outputBytes >= limit) {
          await out.return(undefined);
          await closeSource();
          finish();
          controller.close();
          return;
        }
        const r = await out.next();
        if (r.done) {
          finish();
          controller.close();
          return;
        }
        let chunk = r.value;
        if (limit !== undefined && outputBytes + chunk.length > limit) {
          chunk = chunk.subarray(0, limit - outputBytes);
        }
        outputBytes += chunk.length;
        counter.push(chunk);
        if (options.maxDataBytes !== undefined && counter.data > options.maxDataBytes) {
          throw new OneStorError(
            `Image ${source.describe} holds more than ${
              Math.floor(options.maxDataBytes / 1048576)
            } MiB of data` +
              (options.maxReason ? ` (${options.maxReason})` : ""),
          );
        }
        controller.enqueue(chunk);
      } catch (error) {
        controller.error(error);
        rejectDone(error);
        await out.return(undefined).catch(() => {});
        await closeSource().catch(() => {});
      }
    },
    async cancel(reason) {
      rejectDone(reason ?? new ToolError(`Reading ${source.describe} was cancelled`));
      await out.return(undefined).catch(() => {});
      await closeSource().catch(() => {});
    },
  }, { highWaterMark: 0 });

  function finish(): void {
    counter.end();
    const partial = limit !== undefined && outputBytes >= limit;
    if (!partial) {
      for (const [kind, expected, h] of hashes) {
        const actual = h.digest("hex");
        if (actual !== expected) {
          rejectDone(
            new OneStorError(
              `Hash does not match: ${kind} of ${source.describe} is ${actual}, expected ${expected}`,
            ),
          );
          return;
        }
      }
    }
    resolveDone({ sourceBytes, outputBytes, dataBytes: counter.data, compression });
  }

  return { stream, compression, done };
}
