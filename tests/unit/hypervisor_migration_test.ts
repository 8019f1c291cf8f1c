/**
 * The decisions of the live-migration actions, offline: what premigrate copies, what postmigrate
 * requires before removing the source, migrate_other's dispatch to other drivers.
 */

import assert from "node:assert/strict";
import {
  entriesForTm,
  listingScript,
  migrationRequestFrom,
  missingAtDestination,
  parseListing,
  sourceDirOf,
  writableDiskNames,
} from "../../core/live/migration.ts";
import { migrateOther, otherTmMads, tmDirOf } from "../../core/live/migrate_other.ts";
import { VmView } from "../../core/one/objects.ts";
import { base64Xml, imageDisk, vmXml, volatileDisk } from "../support/fixtures.ts";

function vm(extra: Parameters<typeof vmXml>[0] = {}) {
  return VmView.fromXml(vmXml({
    id: 7,
    disks: [
      imageDisk({ DISK_ID: 0, TM_MAD: "onestor" }),
      volatileDisk({ DISK_ID: 1, TM_MAD: "onestor" }),
      imageDisk({ DISK_ID: 3, IMAGE_ID: 3, TYPE: "CDROM", TM_MAD: "onestor" }),
      imageDisk({ DISK_ID: 4, IMAGE_ID: 4, READONLY: "YES", TM_MAD: "ceph" }),
      imageDisk({ DISK_ID: 5, IMAGE_ID: 5, TM_MAD: "ceph" }),
      imageDisk({ DISK_ID: 6, IMAGE_ID: 6, TM_MAD: "shared" }),
    ],
    context: { DISK_ID: 2 },
    ...extra,
  }));
}

Deno.test("parseListing() reads the kinds of a folder's entries, or a missing folder", () => {
  const listing = parseListing("f\tdisk.0\nd\tdisk.0.snap\nl\tdisk.5\nf\tvm.xml\n");
  assert.deepEqual([...listing!.entries()], [["disk.0", "f"], ["disk.0.snap", "d"], ["disk.5", "l"], [
    "vm.xml",
    "f",
  ]]);
  assert.equal(parseListing("MISSING\n"), null);
  assert.match(listingScript("/d/$(x)/7").text, /\[ ! -d '\/d\/\$\(x\)\/7' \]/);
});

Deno.test("writableDiskNames() leaves out CD-ROMs, read-only disks and the context", () => {
  assert.deepEqual([...writableDiskNames(vm())].sort(), ["disk.0", "disk.1", "disk.5", "disk.6"]);
});

Deno.test("entriesForTm() copies all but the writable regular-file disks and temporary files", () => {
  const listing = parseListing(
    "f\tdisk.0\nd\tdisk.0.snap\nf\tdisk.1\nf\tdisk.2\nf\tdisk.3\nf\tdisk.4\nl\tdisk.5\nd\tdisk.5.snap\n" +
      "f\tvm.xml\nf\tds.xml\nf\t.onestor-export-disk.0-ab\n",
  )!;
  assert.deepEqual(entriesForTm(listing, vm()), [
    "disk.0.snap",
    "disk.2",
    "disk.3",
    "disk.4",
    "disk.5",
    "disk.5.snap",
    "ds.xml",
    "vm.xml",
  ]);
});

Deno.test("missingAtDestination() names what the source has and the destination lacks", () => {
  const src = parseListing("f\tdisk.0\nd\tdisk.0.snap\nf\tvm.xml\nf\t.onestor-tmp\n")!;
  assert.deepEqual(missingAtDestination(src, parseListing("f\tdisk.0\nf\tvm.xml\n")!), ["disk.0.snap"]);
  assert.deepEqual(missingAtDestination(src, parseListing("f\tdisk.0\nd\tdisk.0.snap\nf\tvm.xml\n")!), []);
});

Deno.test("sourceDirOf() follows a change of system datastore in the history", () => {
  const same = vm({ history: [{ hostname: "a", dsId: 100 }, { hostname: "b", dsId: 100 }] });
  assert.equal(sourceDirOf(same, "/var/lib/one/datastores/100/7", 100, 7), "/var/lib/one/datastores/100/7");
  const moved = vm({ history: [{ hostname: "a", dsId: 101 }, { hostname: "a", dsId: 100 }] });
  assert.equal(sourceDirOf(moved, "/var/lib/one/datastores/100/7", 100, 7), "/var/lib/one/datastores/101/7");
  const first = vm({ history: [{ hostname: "a", dsId: 100 }] });
  assert.equal(sourceDirOf(first, "/var/lib/one/datastores/100/7", 100, 7), "/var/lib/one/datastores/100/7");
});

Deno.test("otherTmMads() lists each other driver once and ignores names that are not folders", () => {
  assert.deepEqual(otherTmMads(vm(), "onestor"), ["ceph", "shared"]);
  const odd = VmView.fromXml(
    vmXml({ disks: [imageDisk({ TM_MAD: "../../bin" }), imageDisk({ DISK_ID: 1 })] }),
  );
  assert.deepEqual(otherTmMads(odd, "onestor"), ["ssh"]);
});

Deno.test("tmDirOf() finds the remotes tm folder from the invoked path", () => {
  assert.equal(tmDirOf("/var/lib/one/remotes/tm/onestor/premigrate"), "/var/lib/one/remotes/tm");
  assert.equal(tmDirOf("onestor/premigrate", "/srv/one/remotes/tm"), "/srv/one/remotes/tm");
  const saved = Deno.env.get("ONE_LOCATION");
  try {
    Deno.env.set("ONE_LOCATION", "/opt/one");
    assert.equal(tmDirOf(undefined), "/opt/one/var/remotes/tm");
    Deno.env.delete("ONE_LOCATION");
    assert.equal(tmDirOf(undefined), "/var/lib/one/remotes/tm");
  } finally {
    if (saved !== undefined) Deno.env.set("ONE_LOCATION", saved);
  }
});

Deno.test("migrationRequestFrom() parses the arguments and keeps the caller", () => {
  const r = migrationRequestFrom(
    ["h1", "h2", "/d//100/7", "7", "100", "ceph"],
    " QUJD\n",
    "/r/tm/x/premigrate",
    "/",
  );
  assert.deepEqual(r, {
    srcHost: "h1",
    dstHost: "h2",
    vmDir: "/d//100/7",
    vmId: 7,
    dsId: 100,
    caller: "ceph",
    vmXmlBase64: "QUJD",
    tmDir: "/r/tm",
  });
  assert.throws(() => migrationRequestFrom(["h1", "h2", "/d", "x", "1"], "", undefined, "/"), /VM id/);
});

Deno.test("migrateOther() calls each other driver with a 6th argument and the same stdin", async () => {
  const dir = await Deno.makeTempDir({ prefix: "migrate_other_" });
  try {
    for (const tm of ["ceph", "shared"]) {
      await Deno.mkdir(`${dir}/${tm}`);
      await Deno.writeTextFile(
        `${dir}/${tm}/postmigrate`,
        `#!/bin/sh\necho "${tm} $* $(cat)" >>${dir}/log\n${tm === "shared" ? "echo boom >&2; exit 3" : ""}\n`,
        { mode: 0o755 },
      );
    }
    const stdin = base64Xml("<VM/>");
    const request = {
      action: "postmigrate",
      args: ["h1", "h2", "/d/100/7", "7", "100"],
      vmXmlBase64: stdin,
      vm: vm(),
      driver: "onestor",
      tmDir: dir,
      timeoutMs: 10_000,
    };
    await assert.rejects(() => migrateOther(request), /shared\/postmigrate failed \(exit 3\): boom/);
    assert.equal(
      await Deno.readTextFile(`${dir}/log`),
      `ceph h1 h2 /d/100/7 7 100 onestor ${stdin}\nshared h1 h2 /d/100/7 7 100 onestor ${stdin}\n`,
    );
    await Deno.remove(`${dir}/log`);
    await migrateOther({ ...request, caller: "ceph" });
    await assert.rejects(() => Deno.stat(`${dir}/log`), Deno.errors.NotFound);
    // A driver without the script is skipped.
    await migrateOther({ ...request, action: "premigrate" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
