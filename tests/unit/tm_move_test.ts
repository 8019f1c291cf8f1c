import assert from "node:assert/strict";
import { VmView } from "../../core/one/objects.ts";
import { denseDiskPaths, parseProbe, storageRelation } from "../../core/tm/move.ts";
import { imageDisk, vmXml, volatileDisk } from "../support/fixtures.ts";

Deno.test("parseProbe() reads the DIR, PROBE and EXISTS lines", () => {
  assert.deepEqual(parseProbe("DIR=64768:12\nPROBE=64768:99\nEXISTS=1\n"), {
    dir: "64768:12",
    probe: "64768:99",
    exists: true,
  });
  assert.deepEqual(parseProbe("DIR=\nPROBE=\nEXISTS=0"), { dir: "", probe: "", exists: false });
});

Deno.test("storageRelation() is 'same-folder' only when the source sees the probe with its inode", () => {
  const dst = { dir: "2049:10", probe: "2049:77", exists: false };
  // Same host, same folder.
  assert.equal(storageRelation({ dir: "2049:10", probe: "2049:77", exists: true }, dst), "same-folder");
  // NFS: other client, other device number, same inode.
  assert.equal(storageRelation({ dir: "45:10", probe: "45:77", exists: true }, dst), "same-folder");
  // Probe not visible: different storage, even with equal dev:ino of the folders (another machine).
  assert.equal(storageRelation({ dir: "2049:10", probe: "", exists: true }, dst), "distinct");
  // A file of that name with another inode is not the probe.
  assert.equal(storageRelation({ dir: "2049:10", probe: "2049:78", exists: true }, dst), "distinct");
  assert.equal(storageRelation({ dir: "", probe: "", exists: false }, { ...dst, probe: "" }), "distinct");
});

Deno.test("denseDiskPaths() lists the SPARSE=NO disks inside the destination folder", () => {
  const vm = VmView.fromXml(vmXml({
    disks: [
      imageDisk({ DISK_ID: 0 }),
      imageDisk({ DISK_ID: 1, SPARSE: "NO" }),
      volatileDisk({ DISK_ID: 2, SPARSE: "no" }),
    ],
  }));
  assert.deepEqual(denseDiskPaths(vm, "/ds/100/7"), ["/ds/100/7/disk.1", "/ds/100/7/disk.2"]);
});
