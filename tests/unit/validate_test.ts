/** core/validate.ts: every kind of value, accepted and refused, with the one-line error form. */
import assert from "node:assert/strict";
import { InputError } from "../../core/errors.ts";
import {
  choice,
  datastoreDriver,
  datastoreType,
  diskFormat,
  diskType,
  frequencySeconds,
  fsName,
  hostName,
  imageType,
  mkfsFormat,
  objectId,
  optionalSizeMb,
  sizeMb,
  snapshotId,
  volatileFormat,
  wholeNumber,
  yesNo,
} from "../../core/validate.ts";

/** The hostile or broken values every numeric check must refuse. */
const NOT_NUMBERS = [
  "",
  " ",
  "abc",
  "1;id",
  "$(id)",
  "-1",
  "1.5",
  "1e3",
  "0x10",
  "１２",
  "9".repeat(40),
  "1 2",
];

function refuses(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
}

Deno.test("wholeNumber() and ids accept plain digits in range only", () => {
  assert.equal(wholeNumber("X", " 42 "), 42);
  assert.equal(objectId("VM id", "0"), 0);
  assert.equal(snapshotId(7), 7);
  for (const bad of NOT_NUMBERS) {
    refuses(() => objectId("VM id", bad), /^VM id must be a whole number from 0 to 2147483647 \(got /);
  }
  refuses(() => objectId("VM id", "2147483648"), /from 0 to 2147483647/);
  assert.equal(wholeNumber("N", "-3", { min: -5, max: 5 }), -3);
});

Deno.test("sizeMb() and frequencySeconds() bound what a template may say", () => {
  assert.equal(sizeMb("1024"), 1024);
  refuses(() => sizeMb("0"), /^SIZE \(MiB\) must be a whole number from 1 to 1099511627776 \(got "0"\)$/);
  refuses(() => sizeMb("1099511627777", "IMAGE/SIZE"), /^IMAGE\/SIZE \(MiB\)/);
  assert.equal(optionalSizeMb("", "SIZE"), null);
  refuses(() => optionalSizeMb("big", "DISK/SIZE"), /DISK\/SIZE \(MiB\) must be/);
  assert.equal(frequencySeconds(""), null);
  assert.equal(frequencySeconds("3600"), 3600);
  for (const bad of ["0", "hourly", "-60", "31622401"]) {
    refuses(
      () => frequencySeconds(bad),
      /^RECOVERY_SNAPSHOT_FREQ \(seconds\) must be a whole number from 1 to/,
    );
  }
});

Deno.test("formats: existing disks any qemu format, created ones raw/qcow2, mkfs also swap and save_as", () => {
  assert.equal(diskFormat(" QCOW2 "), "qcow2");
  assert.equal(diskFormat(""), "");
  assert.equal(diskFormat("vmdk"), "vmdk");
  for (const bad of ["raw;rm -rf /", "raw -o x", "raw\nqcow2", "iso9660", "$(id)"]) {
    refuses(() => diskFormat(bad), /^FORMAT must be one of raw, qcow2, qcow, qed, vmdk, .* \(got /);
  }
  assert.equal(datastoreDriver(""), "");
  refuses(
    () => datastoreDriver("qcow3", "DRIVER of the datastore"),
    /^DRIVER of the datastore must be one of/,
  );
  // The datastore mkfs hole: a FORMAT that is no disk format made a raw image and reported success.
  assert.equal(mkfsFormat(""), "raw");
  assert.equal(mkfsFormat("QCOW2"), "qcow2");
  assert.equal(mkfsFormat("save_as"), "save_as");
  for (const bad of ["raw; touch /tmp/x", "raw\necho", "vmdk", "ext4"]) {
    refuses(() => mkfsFormat(bad), /^FORMAT must be one of raw, qcow2, swap, save_as \(got /);
  }
  assert.equal(volatileFormat("swap"), "swap");
  refuses(() => volatileFormat("fs"), /^Volatile disk format must be one of raw, qcow2, swap \(got "fs"\)$/);
});

Deno.test("FS, TYPE, yes/no and choices", () => {
  assert.equal(fsName("ext4", ["ext4", "xfs"]), "ext4");
  for (const bad of ["EXT4", "ext4;id", " ext4", "btrfs", ""]) {
    refuses(
      () => fsName(bad, ["ext4", "xfs"]),
      /^Unsupported file system type: .*\. Supported types are: ext4,xfs$/,
    );
  }
  assert.equal(diskType("fs"), "FS");
  assert.equal(diskType("cdrom"), "CDROM");
  refuses(() => diskType("FILE;x", "DISK/TYPE"), /^DISK\/TYPE must be one of FILE, CDROM, BLOCK/);
  assert.equal(imageType("1"), 1);
  assert.equal(imageType(""), null);
  refuses(() => imageType("9"), /^IMAGE\/TYPE must be a whole number from 0 to 6/);
  assert.equal(datastoreType("2"), 2);
  refuses(() => datastoreType("SYSTEM_DS"), /^DATASTORE\/TYPE must be/);
  assert.equal(yesNo("No", "SPARSE"), false);
  assert.equal(yesNo("", "SPARSE"), null);
  refuses(() => yesNo("nope", "SPARSE"), /^SPARSE must be YES or NO \(got "nope"\)$/);
  assert.equal(choice("X", "b", ["a", "b"] as const), "b");
});

Deno.test("hostName() takes names and addresses, never an ssh option or shell text", () => {
  for (const ok of ["hv1", "hv-1.example.org", "node_7", "127.0.0.1", "fe80::1", "oneadmin@hv1", "HV1."]) {
    assert.equal(hostName(ok), ok);
  }
  for (
    const bad of [
      "-oProxyCommand=id",
      "-p22",
      "hv 1",
      "hv1\n",
      "hv1;id",
      "$(id)",
      "",
      "a..b",
      "x".repeat(254),
      "hv1\t",
      "@hv1",
    ]
  ) {
    refuses(
      () => hostName(bad, "REPLICA_HOST"),
      /^REPLICA_HOST must be a host name .*not starting with '-'\) \(got /,
    );
  }
});
