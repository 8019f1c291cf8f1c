import assert from "node:assert/strict";
import { parseAnswer, post, PostError } from "../../core/one/http_post.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

/**
 * A TCP server on 127.0.0.1 that answers each connection with `answer` (after reading the request),
 * in pieces of `piece` bytes a few milliseconds apart when asked (as oned writes its header lines).
 */
function rawServer(answer: (request: string) => string, keepOpen = false, piece = 0) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: string[] = [];
  const open: Deno.Conn[] = [];
  const done = (async () => {
    for await (const conn of listener) {
      const buffer = new Uint8Array(65536);
      let request = "";
      while (!/\r\n\r\n/.test(request) || bytes(request).length < requestLength(request)) {
        const n = await conn.read(buffer);
        if (n === null) break;
        request += new TextDecoder().decode(buffer.subarray(0, n));
      }
      requests.push(request);
      const all = bytes(answer(request));
      for (let at = 0; at < all.length; at += piece || all.length) {
        await conn.write(all.subarray(at, at + (piece || all.length)));
        if (piece) await new Promise((r) => setTimeout(r, 5));
      }
      if (keepOpen) open.push(conn);
      else conn.close();
    }
  })();
  return {
    endpoint: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/RPC2`,
    requests,
    close: async () => {
      for (const conn of open) conn.close();
      listener.close();
      await done.catch(() => {});
    },
  };
}

function requestLength(request: string): number {
  const end = bytes(request.slice(0, request.indexOf("\r\n\r\n"))).length;
  const length = Number(request.match(/content-length: (\d+)/i)?.[1] ?? 0);
  return end + 4 + length;
}

Deno.test("post writes one HTTP/1.1 request and reads an answer of known length, even from a server that stays open", async () => {
  const server = rawServer(() => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true);
  try {
    const start = performance.now();
    const answer = await post(server.endpoint, "<é/>", "text/xml", 2000);
    assert.deepEqual(answer, { status: 200, statusText: "OK", body: "hello" });
    assert.ok(performance.now() - start < 2000, "did not wait for the server to close");
    const request = server.requests[0];
    assert.match(request, /^POST \/RPC2 HTTP\/1\.1\r\n/);
    assert.match(request, /\r\nContent-Length: 5\r\n/, "the length counts bytes, not characters");
    assert.match(request, /\r\nContent-Type: text\/xml\r\n/);
    assert.ok(request.endsWith("\r\n\r\n<é/>"));
  } finally {
    await server.close();
  }
});

Deno.test("post reads an answer that arrives in pieces, a header line at a time", async () => {
  for (
    const [keepOpen, piece, size] of [[false, 17, 3000], [true, 17, 3000], [false, 1000, 3000], [
      true,
      1,
      60,
    ]] as const
  ) {
    const body = "<methodResponse>" + "x".repeat(size) + "</methodResponse>";
    const server = rawServer(
      () => `HTTP/1.1 200 OK\r\nContent-type: text/xml\r\nContent-length: ${body.length}\r\n\r\n${body}`,
      keepOpen,
      piece,
    );
    try {
      const answer = await post(server.endpoint, "x", "text/xml", 10_000);
      assert.equal(answer.status, 200);
      assert.equal(answer.body, body, `pieces of ${piece}`);
    } finally {
      await server.close();
    }
  }
});

Deno.test("post reads chunked answers, skips an interim answer and reports errors by kind", async () => {
  const chunked = rawServer(() =>
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n<ok>\r\n5;x=y\r\n</ok>\r\n0\r\n\r\n"
  );
  try {
    assert.equal((await post(chunked.endpoint, "x", "text/xml", 2000)).body, "<ok></ok>");
  } finally {
    await chunked.close();
  }
  const short = rawServer(() => "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\ntoo short");
  try {
    await assert.rejects(post(short.endpoint, "x", "text/xml", 2000), (e: unknown) => {
      assert.ok(e instanceof PostError);
      assert.equal(e.kind, "unreachable");
      assert.match(e.message, /closed before the whole answer came/);
      return true;
    });
  } finally {
    await short.close();
  }
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const start = performance.now();
    await assert.rejects(
      post(`http://127.0.0.1:${(silent.addr as Deno.NetAddr).port}/`, "x", "text/xml", 200),
      (e: unknown) =>
        e instanceof PostError && e.kind === "timeout" && /no answer within 0.2 s/.test(e.message),
    );
    assert.ok(performance.now() - start < 2000);
  } finally {
    silent.close();
  }
});

Deno.test("parseAnswer takes the status, a body by length or to the end, and refuses what is not HTTP", () => {
  assert.deepEqual(parseAnswer(bytes("HTTP/1.0 503 Service Unavailable\r\n\r\nbusy")), {
    status: 503,
    statusText: "Service Unavailable",
    body: "busy",
  });
  assert.deepEqual(parseAnswer(bytes("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nokEXTRA")), {
    status: 200,
    statusText: "",
    body: "ok",
  });
  assert.throws(() => parseAnswer(bytes("SSH-2.0-OpenSSH_9.2\r\n\r\n")), /not an HTTP answer/);
  assert.throws(() => parseAnswer(bytes("HTTP/1.1 200 OK\r\nContent-Le")), /closed before a whole answer/);
  assert.throws(
    () => parseAnswer(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc")),
    /chunked answer ended early/,
  );
});
