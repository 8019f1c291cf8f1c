import assert from "node:assert/strict";
import {
  buildContextIso,
  isoBuilder,
  parseContextArgs,
  parseContextFile,
} from "../../core/tm/context_iso.ts";

Deno.test("parseContextFile() reads paths, path:name renames (FILES_DS quotes dropped) and URLs", () => {
  assert.deepEqual(parseContextFile("/var/lib/one/vms/7/context.sh"), {
    kind: "path",
    source: "/var/lib/one/vms/7/context.sh",
    name: "context.sh",
  });
  assert.deepEqual(parseContextFile("/ds/2/abc:'init.sh'"), {
    kind: "path",
    source: "/ds/2/abc",
    name: "init.sh",
  });
  assert.deepEqual(parseContextFile("/ds/2/abc:key:1"), { kind: "path", source: "/ds/2/abc", name: "key:1" });
  assert.deepEqual(parseContextFile("/x:../../etc/passwd").name, ".._.._etc_passwd");
  assert.deepEqual(parseContextFile("https://127.0.0.1:8080/a/b%20c.txt?x=1"), {
    kind: "url",
    source: "https://127.0.0.1:8080/a/b%20c.txt?x=1",
    name: "b c.txt",
  });
  assert.throws(() => parseContextFile("relative/file"), /absolute path or a URL/);
  assert.throws(() => parseContextFile("/x:.."), /no usable name/);
});

Deno.test("parseContextArgs() takes the last three arguments as destination, VM id and datastore id", () => {
  const a = parseContextArgs(["/vms/7/context.sh", "/f1", "hv1:/ds//100/7/disk.3", "7", "100"]);
  assert.equal(a.files.length, 2);
  assert.equal(a.destination.path, "/ds/100/7/disk.3");
  assert.equal(a.vmId, 7);
  assert.equal(a.dsId, 100);
  assert.throws(() => parseContextArgs(["hv1:/ds/100/7/disk.3", "7", "100"]), /needs CONTEXT_SH/);
});

Deno.test("isoBuilder() finds xorriso or genisoimage and names the package when neither exists", () => {
  assert.throws(() => isoBuilder("/nonexistent"), /install xorriso/);
});

Deno.test({
  name: "buildContextIso() puts files, renamed files and downloads into an ISO labelled CONTEXT",
  // xorriso both builds the ISO (preferred) and lists it back.
  ignore: !(() => {
    try {
      return isoBuilder()[0] === "xorriso";
    } catch {
      return false;
    }
  })(),
  async fn() {
    const work = await Deno.makeTempDir();
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const path = new URL(req.url).pathname;
      return path === "/keys/id.pub"
        ? new Response("ssh-ed25519 AAA test\n")
        : new Response("no", { status: 404 });
    });
    const base = `http://127.0.0.1:${server.addr.port}`;
    try {
      await Deno.writeTextFile(`${work}/context.sh`, "HOSTNAME='vm7'\n");
      await Deno.mkdir(`${work}/dir`);
      await Deno.writeTextFile(`${work}/dir/inner.txt`, "inner\n");
      await Deno.writeTextFile(`${work}/img`, "#!/bin/sh\n");
      const iso = await buildContextIso([
        parseContextFile(`${work}/context.sh`),
        parseContextFile(`${work}/dir`),
        parseContextFile(`${work}/img:'init.sh'`),
        parseContextFile(`${base}/keys/id.pub`),
      ], `${work}/out`);
      const list = new TextDecoder().decode(
        (await new Deno.Command("xorriso", {
          args: ["-indev", iso, "-pvd_info", "-find", "/", "-type", "f"],
          stdout: "piped",
          stderr: "piped",
        }).output()).stdout,
      );
      assert.match(list, /Volume Id\s*:\s*CONTEXT/);
      for (const f of ["/context.sh", "/dir/inner.txt", "/init.sh", "/id.pub"]) {
        assert.ok(list.includes(`'${f}'`), list);
      }
      await assert.rejects(
        buildContextIso([parseContextFile(`${base}/missing`)], `${work}/out2`),
        /Error downloading .*missing: HTTP 404/,
      );
      await assert.rejects(
        buildContextIso([parseContextFile(`${work}/absent`)], `${work}/out3`),
        /Error copying .*absent to the context ISO/,
      );
    } finally {
      await server.shutdown();
      await Deno.remove(work, { recursive: true });
    }
  },
});
