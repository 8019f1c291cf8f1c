/**
 * A small HTTP/1.1 file server on 127.0.0.1 for the datastore tests, written on plain TCP so it
 * can really break a connection in the middle of a body (as a flaky network does): it honours
 * `Range: bytes=N-` (and `If-Range`) unless told not to, and can drop the next N responses after
 * part of their body.
 *
 * @module
 */

/** One request as the server saw it. */
export interface RangeRequest {
  /** Request path. */
  path: string;
  /** Range header, or null. */
  range: string | null;
  /** Whether the response was cut short on purpose. */
  dropped: boolean;
}

/** Options of {@linkcode startRangeServer}. */
export interface RangeServerOptions {
  /** Answer range requests with 206 (default true). */
  ranges?: boolean;
  /** ETag of the files (a function to change it between requests); default `"v1"`. */
  etag?: () => string;
  /** Bytes of the body sent before a drop (default 1 MiB + 12345). */
  dropAfter?: number;
}

/** A running server. */
export interface RangeServer {
  /** URL of a file path. */
  url(path: string): string;
  /** Every request so far. */
  requests: RangeRequest[];
  /** Cut the next `count` responses (default 1) short. */
  drop(count?: number): void;
  /** Stops the server. */
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const MiB = 1 << 20;

async function readHead(conn: Deno.Conn): Promise<string | null> {
  const buffer = new Uint8Array(16384);
  let text = "";
  while (!text.includes("\r\n\r\n")) {
    const n = await conn.read(buffer);
    if (n === null) return null;
    text += new TextDecoder().decode(buffer.subarray(0, n));
    if (text.length > 65536) return null;
  }
  return text;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** Starts a server for `files` (path → content). */
export function startRangeServer(
  files: Record<string, Uint8Array>,
  options: RangeServerOptions = {},
): RangeServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: RangeRequest[] = [];
  const etag = options.etag ?? (() => '"v1"');
  let drops = 0;
  const conns = new Set<Deno.Conn>();

  async function serve(conn: Deno.Conn): Promise<void> {
    try {
      const head = await readHead(conn);
      if (head === null) return;
      const [requestLine, ...headerLines] = head.split("\r\n");
      const path = requestLine.split(" ")[1] ?? "/";
      const headers = new Map<string, string>();
      for (const line of headerLines) {
        const colon = line.indexOf(":");
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const range = headers.get("range") ?? null;
      const body = files[path];
      const tag = etag();
      if (!body) {
        requests.push({ path, range, dropped: false });
        await writeAll(
          conn,
          encoder.encode("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
        );
        return;
      }
      const match = range?.match(/^bytes=(\d+)-$/);
      const ifRange = headers.get("if-range");
      const partial = (options.ranges ?? true) && match !== null && match !== undefined &&
        (ifRange === undefined || ifRange === tag);
      const start = partial ? Number(match![1]) : 0;
      const slice = body.subarray(start);
      const drop = drops > 0 && slice.length > (options.dropAfter ?? MiB + 12345);
      if (drop) drops--;
      requests.push({ path, range, dropped: drop });
      const lines = [
        partial ? "HTTP/1.1 206 Partial Content" : "HTTP/1.1 200 OK",
        `content-length: ${slice.length}`,
        `etag: ${tag}`,
        "connection: close",
      ];
      if (options.ranges ?? true) lines.push("accept-ranges: bytes");
      if (partial) lines.push(`content-range: bytes ${start}-${body.length - 1}/${body.length}`);
      await writeAll(conn, encoder.encode(lines.join("\r\n") + "\r\n\r\n"));
      await writeAll(conn, drop ? slice.subarray(0, options.dropAfter ?? MiB + 12345) : slice);
    } catch {
      // The client went away.
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  }

  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      serve(conn);
    }
  })().catch(() => {});

  const port = (listener.addr as Deno.NetAddr).port;
  return {
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    requests,
    drop(count = 1) {
      drops = count;
    },
    async close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await accepting;
    },
  };
}
