import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { InputError, OneStorError } from "../../core/errors.ts";
import {
  checkBasePath,
  checkImageSource,
  checkPathSyntax,
  imageHash,
  newImagePath,
  tempNameFor,
} from "../../core/datastore/paths.ts";
import { dirPolicy, isAllowed, isWithin, resolveAllowedPath } from "../../core/datastore/safe_dirs.ts";
import { parseBridgeList, pickBridge } from "../../core/datastore/bridge.ts";
import { parseXml } from "../../core/one/xml.ts";
import { hostPoolXml, hostXml } from "../support/fixtures.ts";

Deno.test("imageHash() is the md5 of '<seconds>:<id>\\n' as upstream's generate_image_hash", () => {
  const expected = createHash("md5").update("1700000000:42\n").digest("hex");
  assert.equal(imageHash(42, 1700000000), expected);
  assert.equal(
    newImagePath("/var/lib/one//datastores/1", 42, 1700000000),
    `/var/lib/one//datastores/1/${expected}`,
  );
  assert.match(imageHash(1), /^[0-9a-f]{32}$/);
});

Deno.test("checkPathSyntax() refuses shell syntax, control characters, relative paths and dot components", () => {
  for (
    const bad of [
      "/var/tmp/$(id)",
      "/var/tmp/`id`",
      "/var/tmp/a;id",
      "/var/tmp/a b",
      "/var/tmp/a\nb",
      "/var/tmp/a'b",
      "/var/tmp/*",
      "var/tmp/a",
      "/var/tmp/../etc/passwd",
      "/var/tmp/./a",
      "",
    ]
  ) {
    assert.throws(() => checkPathSyntax(bad, "Image path"), InputError, JSON.stringify(bad));
  }
  assert.equal(checkPathSyntax("/var//tmp/a.qcow2", "p"), "/var/tmp/a.qcow2");
  assert.equal(checkPathSyntax("/var/tmp/a..b", "p"), "/var/tmp/a..b");
});

Deno.test("checkBasePath() keeps oned's text and refuses / and hostile values", () => {
  assert.equal(checkBasePath("/var/lib/one//datastores/1"), "/var/lib/one//datastores/1");
  assert.equal(checkBasePath("/var/lib/one/datastores/1/"), "/var/lib/one/datastores/1");
  assert.throws(() => checkBasePath("/"), InputError);
  assert.throws(() => checkBasePath("/x/$(id)"), InputError);
});

Deno.test("checkImageSource() accepts only a file directly in BASE_PATH, with exit code 1 otherwise", () => {
  const base = "/var/lib/one//datastores/1";
  assert.equal(checkImageSource(`${base}/abc`, base), `${base}/abc`);
  assert.equal(checkImageSource("/var/lib/one/datastores/1/abc", base), "/var/lib/one/datastores/1/abc");
  for (
    const bad of [
      `${base}/../../../etc/passwd`,
      `${base}/sub/abc`,
      `${base}/`,
      `${base}`,
      `${base}/.hidden`,
      `${base}/$(id)`,
      "/etc/passwd",
      "",
      `${base}/abc/`,
    ]
  ) {
    assert.throws(() => checkImageSource(bad, base), (e: unknown) => {
      assert.ok(e instanceof OneStorError);
      assert.equal(e.exitCode, 1);
      assert.equal(e.message, `Bad formed or unavailable Image source: ${bad}`);
      return true;
    });
  }
  assert.equal(tempNameFor(`${base}/abc`), `${base}/.abc.onestor-tmp`);
});

Deno.test("isWithin() compares whole path components", () => {
  assert.ok(isWithin("/var/tmp/a", "/var/tmp"));
  assert.ok(isWithin("/var/tmp/a", "/var/tmp/"));
  assert.ok(isWithin("/var/tmp", "/var/tmp/"));
  assert.ok(!isWithin("/var/tmpfoo/a", "/var/tmp"));
  assert.ok(isWithin("/anything", "/"));
});

Deno.test("dirPolicy() adds OpenNebula's dirs and oneadmin's home; safe dirs win over restricted ones", () => {
  const policy = dirPolicy({ restrictedDirs: "/ /srv", safeDirs: "/var/tmp relative" }, {
    HOME: "/var/lib/one",
  });
  assert.deepEqual(policy.safeDirs, ["/var/tmp"]);
  assert.deepEqual(policy.restrictedDirs, ["/var/lib/one/", "/etc/one/", "/var/lib/one/", "/", "/srv"]);
  assert.ok(isAllowed("/var/tmp/x", policy));
  assert.ok(!isAllowed("/var/tmpx", policy));
  assert.ok(!isAllowed("/home/x", policy));
  const open = dirPolicy({ restrictedDirs: "", safeDirs: "" }, {
    ONE_LOCATION: "/opt/one",
    HOME: "/home/oneadmin",
  });
  assert.deepEqual(open.restrictedDirs, ["/opt/one/var/", "/opt/one/etc/", "/home/oneadmin/"]);
  assert.ok(isAllowed("/srv/img", open));
  assert.ok(!isAllowed("/opt/one/var/datastores/1/x", open));
});

Deno.test("resolveAllowedPath() judges symlinks by their targets, and missing paths by their existing part", () => {
  const root = Deno.realPathSync(Deno.makeTempDirSync({ prefix: "onestor_dirs_" }));
  try {
    Deno.mkdirSync(`${root}/safe`);
    Deno.mkdirSync(`${root}/secret`);
    Deno.writeTextFileSync(`${root}/safe/ok.img`, "x");
    Deno.writeTextFileSync(`${root}/secret/key`, "x");
    Deno.symlinkSync(`${root}/secret/key`, `${root}/safe/link`);
    Deno.symlinkSync(`${root}/secret`, `${root}/safe/dirlink`);
    const policy = dirPolicy({ restrictedDirs: "/", safeDirs: `${root}/safe` }, {});
    assert.equal(resolveAllowedPath(`${root}/safe/ok.img`, policy), `${root}/safe/ok.img`);
    assert.throws(() => resolveAllowedPath(`${root}/safe/link`, policy), /Not allowed to copy image from/);
    assert.throws(() => resolveAllowedPath(`${root}/safe/dirlink/key`, policy), /Not allowed/);
    assert.throws(() => resolveAllowedPath(`${root}/safe/dirlink/missing`, policy), /Not allowed/);
    assert.throws(
      () => resolveAllowedPath(`${root}/safe/missing`, policy),
      /cannot access '.*' \(No such file or directory\)/,
    );
    assert.throws(() => resolveAllowedPath(`${root}/safe/../secret/key`, policy), /\.\. component/);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("pickBridge() drops off, error and disabled hosts and takes id mod N", async () => {
  const pool = parseXml(hostPoolXml([
    hostXml({ id: 1, name: "a" }),
    hostXml({ id: 2, name: "b", state: 8 }),
    hostXml({ id: 3, name: "c", state: 3 }),
    hostXml({ id: 4, name: "d", state: 4 }),
    hostXml({ id: 5, name: "e" }),
  ]));
  const get = () => Promise.resolve(pool);
  assert.equal(await pickBridge([], 3, get), null);
  assert.equal(await pickBridge(["a", "b", "c", "d", "e"], 0, get), "a");
  assert.equal(await pickBridge(["a", "b", "c", "d", "e"], 1, get), "e");
  assert.equal(await pickBridge(["a", "b", "c", "d", "e"], 2, get), "a");
  assert.ok(["a", "e"].includes((await pickBridge(["a", "b", "e"], null, get))!));
  // A host oned does not know is kept (upstream filters only what onehost lists as off).
  assert.equal(await pickBridge(["zz"], 5, get), "zz");
  await assert.rejects(() => pickBridge(["b", "c", "d"], 1, get), /All hosts from 'BRIDGE_LIST' are offline/);
  // oned unreachable: the list as it is.
  assert.equal(await pickBridge(["b", "c"], 1, () => Promise.reject(new Error("down"))), "c");
  assert.throws(
    () => parseBridgeList(["-oProxyCommand=x"]),
    /BRIDGE_LIST must be a host name .*not starting with '-'/,
  );
  assert.throws(() => parseBridgeList(["a;b"]), /BRIDGE_LIST must be a host name/);
});
