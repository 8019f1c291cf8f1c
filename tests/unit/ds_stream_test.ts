import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  checkHashValue,
  detectCompression,
  openImageStream,
  parseRate,
} from "../../core/datastore/image_stream.ts";
import {
  type ByteSource,
  checkUrl,
  httpSource,
  parseContentRange,
  sourceKind,
} from "../../core/datastore/sources.ts";
import { runCommand } from "../../core/remote/process.ts";
import { startRangeServer } from "../support/range_server.ts";
import { writeLocalFile } from "../../core/datastore/sink.ts";

const MiB = 1 << 20;

function memorySource(bytes: Uint8Array, chunk = 100_000): ByteSource {
  return {
    describe: "memory",
    size: bytes.length,
    async *chunks() {
      for (let off = 0; off < bytes.length; off += chunk) yield bytes.slice(off, off + chunk);
    },
  };
}

function image(): Uint8Array {
  // 1 MiB of data, 3 MiB of zeros, 1 MiB of data.
  const bytes = new Uint8Array(5 * MiB);
  crypto.getRandomValues(bytes.subarray(0, 65536));
  bytes.fill(7, 65536, MiB);
  bytes.fill(9, 4 * MiB);
  return bytes;
}

async function compress(bytes: Uint8Array, program: string): Promise<Uint8Array> {
  const r = await runCommand([program, "-c"], { stdin: bytes, captureLimit: 64 * MiB });
  assert.equal(r.code, 0, r.stderr);
  return r.stdoutBytes;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("parseRate() reads curl's --limit-rate forms", () => {
  assert.equal(parseRate(""), null);
  assert.equal(parseRate("1000"), 1000);
  assert.equal(parseRate("10K"), 10240);
  assert.equal(parseRate("10M"), 10 * MiB);
  assert.equal(parseRate("1.5m"), 1.5 * MiB);
  assert.equal(parseRate("2G"), 2 * 1024 * MiB);
  for (const bad of ["fast", "10 MB/s", "-1", "0"]) assert.throws(() => parseRate(bad), /LIMIT_TRANSFER_BW/);
});

Deno.test("checkHashValue() wants hex of the right length", () => {
  assert.equal(checkHashValue("MD5", "D41D8CD98F00B204E9800998ECF8427E"), "d41d8cd98f00b204e9800998ecf8427e");
  assert.throws(() => checkHashValue("SHA1", "d41d8cd98f00b204e9800998ecf8427e"), /40 hexadecimal/);
  assert.throws(() => checkHashValue("MD5", "$(id)"), /32 hexadecimal/);
});

Deno.test("sourceKind() and checkUrl() classify and refuse sources", () => {
  assert.equal(sourceKind("https://x/y"), "http");
  assert.equal(sourceKind("ssh://h:/p"), "ssh");
  assert.equal(sourceKind("/var/tmp/x"), "local");
  assert.throws(() => sourceKind("s3://bucket/x"), /Unsupported image source s3:\/\//);
  assert.throws(() => checkUrl("http://h/$(id)"), /percent-encoded/);
  assert.throws(() => checkUrl("http://h/a b"), /percent-encoded/);
  assert.throws(() => checkUrl("http://h/a\nb"), /percent-encoded/);
  assert.equal(checkUrl("http://127.0.0.1:8080/a/b.qcow2?x=1&y=%20").hostname, "127.0.0.1");
  assert.deepEqual(parseContentRange("bytes 100-199/1000"), { start: 100, total: 1000 });
  assert.deepEqual(parseContentRange("bytes 100-199/*"), { start: 100, total: null });
  assert.equal(parseContentRange("items 1-2/3"), null);
});

Deno.test("detectCompression() and openImageStream() decompress gzip, bzip2 and xz, hashing the compressed bytes", async () => {
  const plain = image();
  assert.equal(detectCompression(plain.subarray(0, 8)), null);
  for (const [program, kind] of [["gzip", "gzip"], ["bzip2", "bzip2"], ["xz", "xz"]] as const) {
    const packed = await compress(plain, program);
    assert.equal(detectCompression(packed.subarray(0, 8)), kind);
    const md5 = createHash("md5").update(packed).digest("hex");
    const sha1 = createHash("sha1").update(packed).digest("hex");
    const s = await openImageStream(memorySource(packed), { md5, sha1 });
    assert.equal(s.compression, kind);
    assert.deepEqual(await readAll(s.stream), plain);
    const summary = await s.done;
    assert.equal(summary.sourceBytes, packed.length);
    assert.equal(summary.outputBytes, plain.length);
    assert.equal(summary.dataBytes, 2 * MiB, "zero blocks are not data");
    // NO_DECOMPRESS: bytes as they are.
    const kept = await openImageStream(memorySource(packed), { decompress: false });
    assert.deepEqual(await readAll(kept.stream), packed);
  }
});

Deno.test("openImageStream() rejects a wrong hash, too much data, and a broken compressed stream", async () => {
  const plain = image();
  let s = await openImageStream(memorySource(plain), { md5: "0".repeat(32) });
  await readAll(s.stream);
  await assert.rejects(s.done, /Hash does not match: MD5 of memory is [0-9a-f]{32}, expected 0{32}/);

  s = await openImageStream(memorySource(plain), { maxDataBytes: MiB + 1, maxReason: "test limit" });
  await assert.rejects(readAll(s.stream), /holds more than 1 MiB of data \(test limit\)/);
  await assert.rejects(s.done, /more than 1 MiB/);
  // The same limit passes when the data fits: zeros do not count.
  s = await openImageStream(memorySource(plain), { maxDataBytes: 2 * MiB });
  await readAll(s.stream);
  await s.done;

  const packed = await compress(plain, "gzip");
  s = await openImageStream(memorySource(packed.subarray(0, packed.length - 100)));
  await assert.rejects(readAll(s.stream), /Cannot decompress memory \(gzip\)/);
});

Deno.test("openImageStream() stops after limitBytes without error, also through a decompressor", async () => {
  const plain = image();
  const packed = await compress(plain, "xz");
  for (const bytes of [plain, packed]) {
    const s = await openImageStream(memorySource(bytes, 4096), { limitBytes: 65536 });
    const head = await readAll(s.stream);
    assert.deepEqual(head, plain.subarray(0, 65536));
    assert.equal((await s.done).outputBytes, 65536);
  }
});

Deno.test("openImageStream() paces the source at the rate asked", async () => {
  const bytes = new Uint8Array(600_000);
  const started = performance.now();
  const s = await openImageStream(memorySource(bytes, 50_000), { rate: 2_000_000 });
  await readAll(s.stream);
  await s.done;
  // 600 kB at 2 MB/s cannot take less than 0.3 s (a floor, not a timing target).
  assert.ok(performance.now() - started >= 280);
});

/** A server that can drop bodies, ignore ranges, or change the file under the client. */
function server(body: Uint8Array, mode: { ranges: boolean; etag: () => string; drops: number }) {
  const srv = startRangeServer({ "/img": body }, {
    ranges: mode.ranges,
    etag: mode.etag,
    dropAfter: 300_000,
  });
  srv.drop(mode.drops);
  return {
    url: srv.url("/img"),
    get requests() {
      return srv.requests.map((r) => r.range);
    },
    close: () => srv.close(),
  };
}

Deno.test("httpSource() resumes a dropped download with Range, and the bytes match", async () => {
  const body = image();
  const srv = server(body, { ranges: true, etag: () => '"a"', drops: 2 });
  try {
    const s = await openImageStream(httpSource(srv.url, { retryDelayMs: 10 }), {
      md5: createHash("md5").update(body).digest("hex"),
    });
    assert.deepEqual(await readAll(s.stream), body);
    await s.done;
    assert.equal(srv.requests[0], null);
    assert.match(srv.requests[1]!, /^bytes=[1-9]\d*-$/);
    assert.equal(srv.requests.length, 3);
  } finally {
    await srv.close();
  }
});

Deno.test("httpSource() re-reads and skips when the server ignores Range, but not when the file changed", async () => {
  const body = image();
  let srv = server(body, { ranges: false, etag: () => '"a"', drops: 1 });
  try {
    const s = await openImageStream(httpSource(srv.url, { retryDelayMs: 10 }));
    assert.deepEqual(await readAll(s.stream), body);
    await s.done;
  } finally {
    await srv.close();
  }
  let version = 0;
  srv = server(body, { ranges: true, etag: () => `"v${version++}"`, drops: 1 });
  try {
    const s = await openImageStream(httpSource(srv.url, { retryDelayMs: 10 }));
    await assert.rejects(readAll(s.stream), /can neither resume it nor show that the file is unchanged/);
  } finally {
    await srv.close();
  }
});

Deno.test("httpSource() gives up after its retries and reports HTTP errors at once", async () => {
  const body = image();
  const srv = server(body, { ranges: true, etag: () => '"a"', drops: 99 });
  try {
    const s = await openImageStream(httpSource(srv.url, { retryDelayMs: 1, retries: 2 }));
    await assert.rejects(readAll(s.stream), /failed at byte \d+ of 5242880 after 3 attempts/);
  } finally {
    await srv.close();
  }
  const notFound = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("no", { status: 404 }),
  );
  try {
    await assert.rejects(
      openImageStream(httpSource(`http://127.0.0.1:${notFound.addr.port}/x`)),
      /Cannot download .*: HTTP 404/,
    );
  } finally {
    await notFound.shutdown();
  }
});

Deno.test("writeLocalFile() keeps zero blocks as holes (also at the end) unless told not to", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "onestor_sink_" });
  try {
    const bytes = image();
    for (const sparse of [true, false]) {
      const path = `${dir}/sub/${sparse}`;
      // Odd chunk sizes: blocks must be judged at file offsets, not chunk offsets.
      await writeLocalFile(path, ReadableStream.from(memorySource(bytes, 77_777).chunks()), sparse);
      assert.deepEqual(await Deno.readFile(path), bytes);
      const allocated = (Deno.statSync(path).blocks ?? 0) * 512;
      if (sparse) assert.ok(allocated <= 2 * MiB + 65536, `sparse file allocates ${allocated}`);
      else assert.ok(allocated >= 5 * MiB, `full file allocates ${allocated}`);
    }
    const trailing = new Uint8Array(3 * MiB);
    trailing[5] = 1;
    await writeLocalFile(`${dir}/t`, ReadableStream.from(memorySource(trailing).chunks()), true);
    assert.equal(Deno.statSync(`${dir}/t`).size, 3 * MiB);
    assert.deepEqual(await Deno.readFile(`${dir}/t`), trailing);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
