/**
 * One HTTP/1.1 POST, as the XML-RPC calls to oned need it. Over plain `http:` (oned's own
 * endpoint, `http://localhost:2633/RPC2` by default) it writes the request on a TCP connection and
 * reads the answer to its end: `fetch` costs every action about 15 ms of CPU more (measured: 85
 * against 70 ms for a process that posts once), since it sets up a whole HTTP client with its TLS
 * roots for a single call. Other endpoints (`https:`, credentials in the URL) go through `fetch`.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";

/** What came back. */
export interface PostAnswer {
  status: number;
  statusText: string;
  body: string;
}

/** Why no answer came: `timeout` (nothing within the time given) or `unreachable`. */
export class PostError extends Error {
  constructor(readonly kind: "timeout" | "unreachable", readonly reason: string, options?: ErrorOptions) {
    super(reason, options);
    this.name = "PostError";
  }
}

/** Largest answer read (oned's pools of a big cloud are several MiB of XML). */
const MAX_ANSWER = 512 << 20;

/** Posts `body` (content type `contentType`) to `endpoint`, within `timeoutMs`. @throws {PostError} */
export async function post(
  endpoint: string,
  body: string,
  contentType: string,
  timeoutMs: number,
): Promise<PostAnswer> {
  let url: URL | null = null;
  try {
    url = new URL(endpoint);
  } catch { /* left to fetch, which says what is wrong with it */ }
  if (!url || url.protocol !== "http:" || url.username || url.password) {
    return await viaFetch(endpoint, body, contentType, timeoutMs);
  }
  const signal = AbortSignal.timeout(timeoutMs);
  let conn: Deno.TcpConn | null = null;
  try {
    conn = await Deno.connect({
      hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: url.port ? Number(url.port) : 80,
      signal,
    });
    const closeOnTimeout = () => {
      try {
        conn?.close();
      } catch { /* closed */ }
    };
    signal.addEventListener("abort", closeOnTimeout, { once: true });
    try {
      const payload = new TextEncoder().encode(body);
      const head = `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
        `Content-Type: ${contentType}\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n` +
        "User-Agent: onestor\r\n\r\n";
      await writeAll(conn, new TextEncoder().encode(head));
      await writeAll(conn, payload);
      return parseAnswer(await readAll(conn));
    } finally {
      signal.removeEventListener("abort", closeOnTimeout);
    }
  } catch (error) {
    if (error instanceof PostError) throw error;
    if (signal.aborted) {
      throw new PostError("timeout", `no answer within ${timeoutMs / 1000} s`, { cause: error });
    }
    throw new PostError("unreachable", describeSocketError(error), { cause: error });
  } finally {
    try {
      conn?.close();
    } catch { /* closed by the timeout, or by the peer */ }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
}

/** Reads the answer: to the end of the connection, or to the end of a body of known length. */
async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  let expected = -1;
  for (;;) {
    const buffer = new Uint8Array(64 * 1024);
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(buffer.subarray(0, n));
    total += n;
    if (total > MAX_ANSWER) {
      throw new PostError("unreachable", `the answer is larger than ${MAX_ANSWER >> 20} MiB`);
    }
    if (expected < 0) {
      // A server that keeps the connection open after the answer is not waited for.
      const all = concatBytes(chunks);
      const end = indexOfHeadEnd(all);
      if (end >= 0) {
        const head = new TextDecoder().decode(all.subarray(0, end));
        const length = head.match(/\r\ncontent-length: *(\d+)/i);
        const interim = /^HTTP\/1\.[01] 1\d\d/.test(head);
        expected = length && !interim && !/\r\ntransfer-encoding:/i.test(head)
          ? end + 4 + Number(length[1])
          : Infinity;
      }
    }
    if (expected >= 0 && total >= expected) break;
  }
  return concatBytes(chunks);
}

/** Parses a whole HTTP/1.x answer (status line, headers, body by length, chunks or to the end). */
export function parseAnswer(raw: Uint8Array): PostAnswer {
  let rest = raw;
  for (;;) {
    const end = indexOfHeadEnd(rest);
    if (end < 0) throw new PostError("unreachable", "the connection closed before a whole answer came");
    const head = new TextDecoder().decode(rest.subarray(0, end)).split("\r\n");
    const status = head[0].match(/^HTTP\/1\.[01] (\d{3})(?: (.*))?$/);
    if (!status) throw new PostError("unreachable", `not an HTTP answer: ${head[0].slice(0, 80)}`);
    const headers = new Map<string, string>();
    for (const line of head.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const code = Number(status[1]);
    rest = rest.subarray(end + 4);
    // An interim answer (100 Continue) comes before the real one.
    if (code >= 100 && code < 200) continue;
    let body: Uint8Array;
    if (/\bchunked\b/i.test(headers.get("transfer-encoding") ?? "")) {
      body = dechunk(rest);
    } else if (headers.has("content-length")) {
      const length = Number(headers.get("content-length"));
      if (!Number.isInteger(length) || length < 0 || rest.length < length) {
        throw new PostError("unreachable", "the connection closed before the whole answer came");
      }
      body = rest.subarray(0, length);
    } else {
      body = rest;
    }
    return { status: code, statusText: status[2] ?? "", body: new TextDecoder().decode(body) };
  }
}

function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
  }
  return -1;
}

function dechunk(bytes: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    let eol = at;
    while (eol + 1 < bytes.length && !(bytes[eol] === 13 && bytes[eol + 1] === 10)) eol++;
    if (eol + 1 >= bytes.length) throw new PostError("unreachable", "the chunked answer ended early");
    const size = parseInt(new TextDecoder().decode(bytes.subarray(at, eol)).split(";")[0].trim(), 16);
    if (!Number.isFinite(size) || size < 0) {
      throw new PostError("unreachable", "a malformed chunk in the answer");
    }
    if (size === 0) break;
    const start = eol + 2;
    if (start + size > bytes.length) throw new PostError("unreachable", "the chunked answer ended early");
    parts.push(bytes.subarray(start, start + size));
    at = start + size + 2;
  }
  return concatBytes(parts);
}

async function viaFetch(endpoint: string, body: string, contentType: string, timeoutMs: number) {
  try {
    const response = await fetch(endpoint, {
      method: "POST",
      headers: { "content-type": contentType },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: response.status, statusText: response.statusText, body: await response.text() };
  } catch (error) {
    if (error instanceof DOMException && (error.name === "TimeoutError" || error.name === "AbortError")) {
      throw new PostError("timeout", `no answer within ${timeoutMs / 1000} s`, { cause: error });
    }
    throw new PostError("unreachable", describeSocketError(error), { cause: error });
  }
}

/** One plain reason for a failed connection. */
function describeSocketError(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : "";
  const text = `${error instanceof Error ? error.message : String(error)} ${cause}`;
  if (error instanceof Deno.errors.ConnectionRefused || /connection refused/i.test(text)) {
    return "connection refused";
  }
  if (/dns error|failed to lookup|name or service not known|name resolution/i.test(text)) {
    return "cannot resolve its host name";
  }
  if (error instanceof Deno.errors.ConnectionReset || /connection reset/i.test(text)) {
    return "connection reset";
  }
  if (/no route to host|network is unreachable/i.test(text)) return "no route to host";
  return (cause || text).replace(/\s+/g, " ").trim();
}
