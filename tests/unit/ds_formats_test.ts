import assert from "node:assert/strict";
import { parseId } from "../../core/datastore/env.ts";
import { importInfoXml } from "../../core/datastore/export.ts";
import { parseSpace, spaceScript } from "../../core/datastore/space.ts";
import { imageFiles } from "../../core/datastore/remove.ts";
import { bytesToMb } from "../../core/datastore/stat.ts";
import { runCommand } from "../../core/remote/process.ts";
import { InputError } from "../../core/errors.ts";

Deno.test("importInfoXml() is the single IMPORT_INFO fragment of spec §7.8", () => {
  assert.equal(
    importInfoXml({ source: "ssh://hv1:/d/1/abc", md5: "0123", size: "16", format: "qcow2" }),
    "<IMPORT_INFO><IMPORT_SOURCE><![CDATA[ssh://hv1:/d/1/abc]]></IMPORT_SOURCE> <MD5><![CDATA[0123]]></MD5> " +
      "<SIZE><![CDATA[16]]></SIZE> <FORMAT><![CDATA[qcow2]]></FORMAT> <DISPOSE>NO</DISPOSE></IMPORT_INFO>",
  );
  assert.match(importInfoXml({ source: "/a]]>b", md5: "", size: "", format: "raw" }), /a]]]]><!\[CDATA\[>b/);
});

Deno.test("spaceScript() reads df of a folder it creates, in MiB or bytes", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "onestor_space_" });
  try {
    const r = await runCommand(["sh", "-c", spaceScript(`${dir}/new/ds`, "1M").text]);
    assert.equal(r.code, 0, r.stderr);
    const space = parseSpace(r.stdout);
    assert.match(space.total, /^\d+$/);
    assert.ok(Number(space.used) + Number(space.free) <= Number(space.total));
    assert.ok(Deno.statSync(`${dir}/new/ds`).isDirectory);
    assert.deepEqual(parseSpace(""), { total: "", used: "", free: "" });
    assert.deepEqual(parseSpace("10 x 3"), { total: "10", used: "", free: "3" });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("bytesToMb() rounds up as upstream and imageFiles() lists every side file", () => {
  assert.equal(bytesToMb(1), 1);
  assert.equal(bytesToMb(1048576), 1);
  assert.equal(bytesToMb(1048577), 2);
  assert.deepEqual(imageFiles("/d/1/abc"), [
    "/d/1/abc",
    "/d/1/abc.snap",
    "/d/1/abc.md5sum",
    "/d/1/.abc.onestor-tmp",
    "/d/1/.abc.onestor-part",
    "/d/1/.abc.onestor-tmp.raw",
  ]);
});

Deno.test("parseId() takes integers only", () => {
  assert.equal(parseId("42"), 42);
  assert.equal(parseId("-1"), -1);
  for (const bad of [undefined, "", "4a", "$(id)", "1 2"]) assert.throws(() => parseId(bad), InputError);
});
