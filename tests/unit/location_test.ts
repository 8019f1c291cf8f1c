import assert from "node:assert/strict";
import {
  argHost,
  argPath,
  basenameOf,
  dirnameOf,
  diskIdField,
  diskIdOf,
  dsDirOf,
  dsIdOfDir,
  fixDirSlashes,
  formatLocation,
  isDisk,
  parseLocation,
  vmDirOf,
} from "../../core/one/location.ts";

Deno.test("`argHost()` returns the text before the first colon", () => {
  assert.equal(argHost("host1:/var/lib/one/datastores/100/0/disk.0"), "host1");
  assert.equal(argHost("fe:/a:b"), "fe");
  assert.equal(argHost(":/x"), "");
});

Deno.test("`argHost()` returns the whole string when there is no colon", () => {
  assert.equal(argHost("host"), "host");
  assert.equal(argHost("/var/lib/one/datastores/1/abc"), "/var/lib/one/datastores/1/abc");
});

Deno.test("`argPath()` normalises the path after the first colon", () => {
  assert.equal(argPath("fe:/var//lib/one//datastores/1/abc"), "/var/lib/one/datastores/1/abc");
  assert.equal(argPath("host1:/var/lib/one/datastores/100/0/"), "/var/lib/one/datastores/100/0");
  assert.equal(argPath("fe:/a:b//c"), "/a:b/c");
  assert.equal(argPath("/no/host//here/"), "/no/host/here");
});

Deno.test("`argPath()` keeps the path verbatim with noFix", () => {
  assert.equal(argPath("fe:/var//lib/", { noFix: true }), "/var//lib/");
  assert.equal(argPath("plain//x", { noFix: true }), "plain//x");
});

Deno.test("`fixDirSlashes()` behaves like dirname \"$1/file\" | sed 's:/+:/:g'", () => {
  assert.equal(fixDirSlashes("/a//b///c/"), "/a/b/c");
  assert.equal(fixDirSlashes("a/b/"), "a/b");
  assert.equal(fixDirSlashes("a"), "a");
  assert.equal(fixDirSlashes("/"), "/");
  assert.equal(fixDirSlashes("///"), "/");
  assert.equal(fixDirSlashes(""), "/");
});

Deno.test("`parseLocation()` splits host and normalised path", () => {
  assert.deepEqual(parseLocation("fe:/var//lib/one//datastores/1/abc"), {
    host: "fe",
    path: "/var/lib/one/datastores/1/abc",
    hasHost: true,
  });
  assert.deepEqual(parseLocation("/var/lib/one//vms/7"), {
    host: "",
    path: "/var/lib/one/vms/7",
    hasHost: false,
  });
  assert.equal(formatLocation(parseLocation("h:/a//b/")), "h:/a/b");
  assert.equal(formatLocation(parseLocation("/a//b/")), "/a/b");
});

Deno.test("`isDisk()` detects /disk.<digits>", () => {
  assert.equal(isDisk("/var/lib/one/datastores/100/0/disk.0"), true);
  assert.equal(isDisk("/var/lib/one/datastores/100/0/disk.12.snap/1"), true);
  assert.equal(isDisk("/var/lib/one/datastores/100/0"), false);
  assert.equal(isDisk("/var/lib/one/datastores/100/0/disk.x"), false);
  assert.equal(isDisk("/var/lib/one/datastores/100/0/kernel"), false);
});

Deno.test("`diskIdOf()` reads the id like basename | cut -d. -f2", () => {
  assert.equal(diskIdOf("/var/lib/one//datastores/100/0/disk.3"), 3);
  assert.equal(diskIdOf("host1:/x/disk.10"), 10);
  assert.equal(diskIdOf("/x/disk.3.snap"), 3);
  assert.equal(diskIdOf("/x/disk.3/"), 3);
  assert.equal(diskIdOf("/x/kernel"), null);
  assert.equal(diskIdOf("/x/disk"), null);
  assert.equal(diskIdField("/x/kernel"), "kernel");
  assert.equal(diskIdField("/x/disk."), "");
});

Deno.test("`dirnameOf()` and `basenameOf()` follow POSIX", () => {
  assert.equal(dirnameOf("/a//b/c/"), "/a/b");
  assert.equal(dirnameOf("/c"), "/");
  assert.equal(dirnameOf("c"), ".");
  assert.equal(dirnameOf("/"), "/");
  assert.equal(basenameOf("/a/b/"), "b");
  assert.equal(basenameOf("/"), "/");
  assert.equal(basenameOf("x"), "x");
});

Deno.test("`vmDirOf()`, `dsDirOf()` and `dsIdOfDir()` walk up from a disk", () => {
  const disk = "/var/lib/one//datastores/100/7/disk.0";
  assert.equal(vmDirOf(disk), "/var/lib/one/datastores/100/7");
  assert.equal(dsDirOf(vmDirOf(disk)), "/var/lib/one/datastores/100");
  assert.equal(dsIdOfDir(dsDirOf(vmDirOf(disk))), 100);
  assert.equal(dsIdOfDir("/var/lib/one/datastores/"), null);
});
