import assert from "node:assert/strict";
import { VmView } from "../../core/one/objects.ts";
import { diskFacts } from "../../core/tm/disk_facts.ts";
import { imageDisk, vmXml, volatileDisk } from "../support/fixtures.ts";

const vm = VmView.fromXml(vmXml({
  disks: [
    imageDisk({ DISK_ID: 0, SIZE: 2048, ORIGINAL_SIZE: 1024, FORMAT: "qcow2" }),
    imageDisk({ DISK_ID: 1, SIZE: 1024, ORIGINAL_SIZE: 1024, FORMAT: "raw", SPARSE: "no" }),
    volatileDisk({ DISK_ID: 2, SPARSE: "No", FS: "ext4", RECOVERY_SNAPSHOT_FREQ: 600 }),
  ],
}));

Deno.test("diskFacts() grows when SIZE > ORIGINAL_SIZE and keeps the recorded format", () => {
  const f = diskFacts(vm, 0);
  assert.equal(f.found, true);
  assert.equal(f.growToMb, 2048);
  assert.equal(f.format, "qcow2");
  assert.equal(f.sparse, true);
  assert.equal(diskFacts(vm, 1).growToMb, null);
});

Deno.test("diskFacts() reads SPARSE like tm/ssh: only 'no' and 'NO' turn it off", () => {
  assert.equal(diskFacts(vm, 1).sparse, false);
  assert.equal(diskFacts(vm, 2).sparse, true);
  assert.equal(diskFacts(vm, 2).fs, "ext4");
  assert.equal(diskFacts(vm, 2).recoveryFreq, 600);
});

Deno.test("diskFacts() of a file without disk id (kernel) or an unknown disk knows nothing", () => {
  for (const f of [diskFacts(vm, null), diskFacts(vm, 9)]) {
    assert.equal(f.found, false);
    assert.equal(f.format, "");
    assert.equal(f.growToMb, null);
    assert.equal(f.sparse, true);
  }
});

Deno.test("diskFacts() refuses a format that is not a plain word", () => {
  const bad = VmView.fromXml(vmXml({ disks: [imageDisk({ DISK_ID: 0, FORMAT: "raw -o x" })] }));
  assert.throws(
    () => diskFacts(bad, 0),
    /DISK\[DISK_ID=0\]\/FORMAT of VM 0 must be one of raw, qcow2, .* \(got "raw -o x"\)$/,
  );
});
