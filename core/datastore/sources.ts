/**
 * Where image bytes come from when an image is registered or sized: a local file, an http(s) URL
 * (streamed, resumed after a dropped connection) or `ssh://host:/path` (another host's file, e.g.
 * what `export` of a datastore with BRIDGE_LIST offers).
 *
 * @module
 */

import { InputError, ToolError } from "../errors.ts";
import { logInfo } from "../one/log.ts";
import type { HostRunner } from "../remote/runner.ts";
import { sh } from "../remote/shell.ts";
import { streamStdout } from "../remote/process.ts";
import { checkPathSyntax } from "./paths.ts";

/** A stream of an image's bytes, read once. */
export interface ByteSource {
  /** How the source is named in messages (the PATH as given). */
  readonly describe: string;
  /** Size in bytes when known before reading (Content-Length, file size). */
  readonly size: number | null;
  /** The bytes; stop early by breaking out of the loop (the source is then closed). */
  chunks(): AsyncIterable<Uint8Array>;
}

/** What kind of source a PATH names. */
export type SourceKind = "http" | "ssh" | "local";

/** Characters accepted in a URL; others must be percent-encoded (no quotes, `$`, `;`, blanks). */
const URL_CHARS = /^[A-Za-z0-9\-._~:/?#[\]@!&*+,=%]+$/;

/** Classifies a PATH, refusing schemes onestor does not read. */
export function sourceKind(path: string): SourceKind {
  if (/^https?:\/\//i.test(path)) return "http";
  if (/^ssh:\/\//i.test(path)) return "ssh";
  const scheme = path.match(/^([A-Za-z][A-Za-z0-9+.-]*):\/\//);
  if (scheme) {
    throw new InputError(
      `Unsupported image source ${scheme[1]}:// (onestor reads local paths, http://, https:// and ssh://)`,
    );
  }
  return "local";
}

/** Checks an http(s) URL and returns it parsed. */
export function checkUrl(url: string): URL {
  if (!URL_CHARS.test(url)) {
    throw new InputError(`Image URL ${JSON.stringify(url)} holds characters that must be percent-encoded`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InputError(`Image URL ${url} is not a valid URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new InputError(`Image URL ${url} is not http or https`);
  }
  return parsed;
}

/** `ssh://[user@]host:/path` split and checked. */
export function parseSshUrl(url: string): { host: string; path: string } {
  const match = url.match(/^ssh:\/\/((?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?[A-Za-z0-9_][A-Za-z0-9_.-]*):(.*)$/i);
  if (!match) throw new InputError(`Image source ${JSON.stringify(url)} is not of the form ssh://host:/path`);
  return { host: match[1], path: checkPathSyntax(match[2], "Image path") };
}

/** A local file, opened by its real path (already checked by the caller). */
export function fileSource(realPath: string, describe = realPath): ByteSource {
  let size: number | null = null;
  try {
    size = Deno.statSync(realPath).size;
  } catch {
    // Reported when opened.
  }
  return {
    describe,
    size,
    async *chunks() {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(realPath, { read: true });
      } catch (error) {
        throw new InputError(`Cannot read from ${describe}: ${(error as Error).message}`);
      }
      try {
        if (!(await file.stat()).isFile) {
          throw new InputError(`Cannot read from ${describe}: not a regular file`);
        }
        for (;;) {
          // A fresh buffer per read: the chunk is handed on without a copy.
          const buffer = new Uint8Array(1 << 20);
          const n = await file.read(buffer);
          if (n === null) return;
          yield buffer.subarray(0, n);
        }
      } finally {
        file.close();
      }
    },
  };
}

/** A file on another host, streamed through `cat` over SSH. */
export function sshSource(runner: HostRunner, host: string, path: string, describe: string): ByteSource {
  return {
    describe,
    size: null,
    async *chunks() {
      yield* streamStdout((hooks) =>
        runner.run(host, sh`exec cat -- ${path}`, { what: `Reading ${path}`, ...hooks })
      );
    },
  };
}

/** Options of {@linkcode httpSource}. */
export interface HttpOptions {
  /** Attempts after a dropped connection or a server error (default 5). */
  retries?: number;
  /** Milliseconds before the first retry, doubled each time up to 10 s (default 500). */
  retryDelayMs?: number;
  /** Called with the HTTP response headers of the first answer (for Content-Length). */
  onHeaders?: (headers: Headers) => void;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Parses `Content-Range: bytes <start>-<end>/<total|*>`. */
export function parseContentRange(value: string | null): { start: number; total: number | null } | null {
  const match = value?.match(/^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i);
  if (!match) return null;
  return { start: Number(match[1]), total: match[3] === "*" ? null : Number(match[3]) };
}

/**
 * An http(s) URL, streamed. When the connection drops mid-body, the download goes on from where
 * it stopped with a range request (`Range` + `If-Range`, so a changed file restarts instead of
 * mixing two versions); a server that ignores ranges is read again from the start, skipping the
 * bytes already delivered (only if the file is unchanged). Redirects are followed; bodies are
 * asked for without content encoding so the bytes are the file's.
 */
export function httpSource(url: string, options: HttpOptions = {}): ByteSource {
  const parsed = checkUrl(url);
  const retries = options.retries ?? 5;
  let announced: number | null = null;
  return {
    describe: url,
    get size() {
      return announced;
    },
    async *chunks() {
      let offset = 0;
      let total: number | null = null;
      let validator: string | null = null;
      let failures = 0;
      let delay = options.retryDelayMs ?? 500;
      const retry = async (reason: string): Promise<void> => {
        failures++;
        if (failures > retries) {
          throw new ToolError(
            `Download of ${url} failed at byte ${offset}${
              total !== null ? ` of ${total}` : ""
            } after ${failures} attempts: ${reason}`,
          );
        }
        logInfo(`Download of ${url} interrupted at byte ${offset} (${reason}); retrying`);
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
      };
      for (;;) {
        const headers = new Headers({ "Accept-Encoding": "identity", "User-Agent": "onestor" });
        if (offset > 0) {
          headers.set("Range", `bytes=${offset}-`);
          if (validator) headers.set("If-Range", validator);
        }
        let response: Response;
        try {
          response = await fetch(parsed, { headers, redirect: "follow" });
        } catch (error) {
          await retry((error as Error).message);
          continue;
        }
        let skip = 0;
        if (response.status >= 500 || response.status === 429) {
          await response.body?.cancel();
          await retry(`HTTP ${response.status} ${response.statusText}`);
          continue;
        }
        if (offset === 0 || response.status === 200) {
          if (response.status !== 200) {
            await response.body?.cancel();
            throw new InputError(
              `Cannot download ${url}: HTTP ${response.status} ${response.statusText}`.trim(),
            );
          }
          const length = response.headers.get("content-length");
          const newTotal = length !== null && /^\d+$/.test(length) ? Number(length) : null;
          const etag = response.headers.get("etag");
          const newValidator = etag && !etag.startsWith("W/") ? etag : response.headers.get("last-modified");
          if (offset > 0) {
            // The server sent the whole file again: usable only if it is the same file.
            if (newTotal !== total || newValidator !== validator || validator === null) {
              await response.body?.cancel();
              throw new ToolError(
                `Download of ${url} was interrupted at byte ${offset} and the server can neither resume it ` +
                  "nor show that the file is unchanged",
              );
            }
            skip = offset;
          } else {
            total = newTotal;
            validator = newValidator;
            announced = total;
            options.onHeaders?.(response.headers);
          }
        } else if (response.status === 206) {
          const range = parseContentRange(response.headers.get("content-range"));
          if (
            !range || range.start !== offset ||
            (range.total !== null && total !== null && range.total !== total)
          ) {
            await response.body?.cancel();
            throw new ToolError(
              `Download of ${url}: the server answered the resume request with a wrong range`,
            );
          }
        } else {
          await response.body?.cancel();
          throw new ToolError(
            `Download of ${url}: unexpected HTTP ${response.status} when resuming at byte ${offset}`,
          );
        }
        if (!response.body) {
          if (total === 0 || total === null) return;
          await retry("empty response body");
          continue;
        }
        try {
          for await (let chunk of response.body) {
            if (skip > 0) {
              if (chunk.length <= skip) {
                skip -= chunk.length;
                continue;
              }
              chunk = chunk.subarray(skip);
              skip = 0;
            }
            offset += chunk.length;
            yield chunk;
          }
        } catch (error) {
          await retry((error as Error).message);
          continue;
        }
        if (total !== null && offset < total) {
          await retry(`connection closed after ${offset} of ${total} bytes`);
          continue;
        }
        return;
      }
    },
  };
}
