import assert from "node:assert/strict";
import { InputError } from "../../core/errors.ts";
import { checkVmPath, isDiskLocation, parseId, parseVmDir, parseVmFile } from "../../core/tm/paths.ts";

Deno.test("parseVmFile() splits a disk location into host, VM folder, datastore folder and disk id", () => {
  const f = parseVmFile("hv1:/var/lib/one//datastores/100/7/disk.3");
  assert.deepEqual(f, {
    host: "hv1",
    path: "/var/lib/one/datastores/100/7/disk.3",
    vmDir: "/var/lib/one/datastores/100/7",
    dsDir: "/var/lib/one/datastores/100",
    name: "disk.3",
    diskId: 3,
  });
  assert.equal(parseVmFile("hv1:/ds/100/7/kernel").diskId, null);
});

Deno.test("parseVmFile() and parseVmDir() refuse locations without a host, relative, short or with '..'", () => {
  assert.throws(() => parseVmFile("/var/lib/one/datastores/100/7/disk.0"), InputError);
  assert.throws(() => parseVmFile("hv1:var/lib/one/100/7/disk.0"), InputError);
  assert.throws(() => parseVmFile("hv1:/ds/100/../../disk.0"), /'\.' or '\.\.'/);
  assert.throws(() => parseVmFile("hv1:/100/disk.0"), /too short/);
  assert.throws(() => parseVmDir("hv1:/"), /too short/);
  assert.throws(() => parseVmDir("hv1:/ds/100"), /too short/);
  assert.equal(parseVmDir("fe:/ds/100/7/").path, "/ds/100/7");
  assert.equal(checkVmPath("//a//b/c//", 3, "x"), "/a/b/c");
});

Deno.test("isDiskLocation() is upstream's is_disk on the path part", () => {
  assert.equal(isDiskLocation("hv1:/ds/100/7/disk.0"), true);
  assert.equal(isDiskLocation("hv1:/ds/100/7"), false);
});

Deno.test("parseId() takes non-negative integers only", () => {
  assert.equal(parseId(" 42 ", "VM id"), 42);
  assert.throws(
    () => parseId("-1", "VM id"),
    /VM id must be a whole number from 0 to 2147483647 \(got "-1"\)/,
  );
  assert.throws(() => parseId("7;rm", "VM id"), InputError);
});
