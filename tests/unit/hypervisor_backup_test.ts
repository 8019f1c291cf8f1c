/**
 * Backups offline: argument and BACKUP_CONFIG parsing, folders, job XML, the backup datastore's
 * listing, and the host scripts run here on real files with qemu-img / qemu-nbd (no libvirt, no
 * root): offline full and incremental backups, and the restore's disk replacement.
 */

import assert from "node:assert/strict";
import {
  backupDirs,
  backupPlan,
  checkPlan,
  confinement,
  diskTargets,
  parseBackupArgs,
} from "../../core/backup/config.ts";
import {
  localPathOf,
  parseBackupListing,
  parseRestoreArgs,
  replaceScript,
  selectDisks,
} from "../../core/backup/restore.ts";
import { offlineFullScript, offlineIncrementScript, prepareScript } from "../../core/backup/scripts.ts";
import { vmXmlText } from "../../core/backup/prebackup.ts";
import { BACKUP_XML_TAIL, backupXmlHead, checkpointXml } from "../../core/hypervisor/backup_job.ts";
import { VmView } from "../../core/one/objects.ts";
import { base64Xml, imageDisk, vmXml, volatileDisk } from "../support/fixtures.ts";

function vmWith(config: string): VmView {
  const xml = vmXml({ id: 5, disks: [imageDisk({ DISK_ID: 0 }), volatileDisk({ DISK_ID: 1 })] });
  return VmView.fromXml(
    xml.replace("<BACKUP_CONFIG></BACKUP_CONFIG>", `<BACKUP_CONFIG>${config}</BACKUP_CONFIG>`),
  );
}

Deno.test("parseBackupArgs() reads the six arguments and refuses bad disk ids", () => {
  const a = parseBackupArgs(["hv1:/var/lib/one//datastores/100/5", "0:1:1", "one-5", "-", "5", "100"]);
  assert.equal(a.vmDir.host, "hv1");
  assert.equal(a.vmDir.path, "/var/lib/one/datastores/100/5");
  assert.deepEqual(a.diskIds, [0, 1]);
  assert.equal(a.deployId, "one-5");
  assert.throws(() => parseBackupArgs(["hv1:/d/100/5", "0:x", "one-5", "-", "5", "100"]), /Disk id/);
  assert.throws(() => parseBackupArgs(["hv1:/d/100/5", "", "one-5", "-", "5", "100"]), /No disk ids/);
  assert.throws(() => parseBackupArgs(["/d/100/5", "0", "one-5", "-", "5", "100"]), /HOST:PATH/);
});

Deno.test("backupPlan() numbers full and incremental backups like upstream", () => {
  assert.deepEqual(backupPlan(vmWith("")), {
    mode: "FULL",
    incrementMode: "cbt",
    backupId: 0,
    parentId: -1,
    pause: "none",
    datastoreId: null,
    tracksChanges: false,
  });
  const first = backupPlan(vmWith("<MODE>INCREMENT</MODE><LAST_INCREMENT_ID>-1</LAST_INCREMENT_ID>"));
  assert.equal(first.backupId, 0);
  assert.equal(first.parentId, -1);
  assert.equal(first.tracksChanges, true);
  const next = backupPlan(
    vmWith(
      "<MODE>INCREMENT</MODE><LAST_INCREMENT_ID>3</LAST_INCREMENT_ID><FS_FREEZE>AGENT</FS_FREEZE>" +
        "<LAST_DATASTORE_ID>200</LAST_DATASTORE_ID>",
    ),
  );
  assert.deepEqual([next.backupId, next.parentId, next.pause, next.datastoreId], [4, 3, "agent", 200]);
  assert.equal(backupPlan(vmWith("<FS_FREEZE>SUSPEND</FS_FREEZE>")).pause, "suspend");
  const snap = backupPlan(vmWith("<MODE>INCREMENT</MODE><INCREMENT_MODE>SNAPSHOT</INCREMENT_MODE>"));
  assert.throws(() => checkPlan(snap), /INCREMENT_MODE=SNAPSHOT are not supported/);
  checkPlan(backupPlan(vmWith("<MODE>FULL</MODE><INCREMENT_MODE>SNAPSHOT</INCREMENT_MODE>")));
  assert.throws(() => backupPlan(vmWith("<MODE>DIFF</MODE>")), /Unknown backup MODE/);
});

Deno.test("backupDirs() honours BACKUP_BASE_PATH", () => {
  assert.deepEqual(backupDirs("/d/100/5", 5, null), {
    backup: "/d/100/5/backup",
    tmp: "/d/100/5/tmp",
    base: null,
  });
  assert.deepEqual(backupDirs("/d/100/5", 5, "/scratch//bk/"), {
    backup: "/scratch/bk/5/backup",
    tmp: "/d/100/5/tmp",
    base: "/scratch/bk/5",
  });
});

Deno.test("diskTargets() and confinement() read the template", () => {
  assert.deepEqual(diskTargets(vmWith(""), [1, 0]), [{ id: 1, target: "vdb" }, { id: 0, target: "vda" }]);
  assert.throws(() => diskTargets(vmWith(""), [4]), /VM 5 has no disk 4/);
  const attrs: Record<string, string> = { RSYNC_NICE: "10", RSYNC_IONICE: "6", BAD_NICE: "99" };
  assert.deepEqual(confinement("rsync", (n) => attrs[n] ?? ""), ["nice", "-n", "10", "ionice", "-c2", "-n6"]);
  assert.deepEqual(confinement("bad", (n) => attrs[n] ?? ""), []);
  assert.deepEqual(confinement("", (n) => attrs[n] ?? ""), []);
});

Deno.test("backup job and checkpoint XML escape their values", () => {
  const head = backupXmlHead({ disks: [{ target: "vda", file: "/b/<x>&'\"" }], incrementalFrom: "one-5-2" });
  assert.equal(
    head + BACKUP_XML_TAIL,
    '<domainbackup mode="push"><incremental>one-5-2</incremental><disks><disk name="vda" backup="yes" ' +
      'type="file"><driver type="qcow2"/><target file="/b/&lt;x&gt;&amp;&apos;&quot;"/></disk></disks></domainbackup>',
  );
  assert.equal(
    checkpointXml("one-5-3", ["vda", "vdb"]),
    '<domaincheckpoint><name>one-5-3</name><disks><disk name="vda"/><disk name="vdb"/></disks></domaincheckpoint>',
  );
});

Deno.test("vmXmlText() takes plain or base64 VM XML", () => {
  assert.equal(vmXmlText(" <VM><ID>5</ID></VM>\n"), "<VM><ID>5</ID></VM>");
  assert.equal(vmXmlText(base64Xml("<VM><ID>5</ID></VM>")), "<VM><ID>5</ID></VM>");
  assert.throws(() => vmXmlText(""), /No VM XML/);
});

Deno.test("restore arguments and the backup datastore's listing", () => {
  assert.deepEqual(parseRestoreArgs(["hv1:/d/100/5", "5", "50", "-1", "-1"]), {
    dir: "hv1:/d/100/5",
    vmId: 5,
    imageId: 50,
    incrementId: -1,
    diskId: -1,
  });
  assert.throws(() => parseRestoreArgs(["hv1:/d/100/5", "5", "50", "x", "-1"]), /Increment id/);
  const listing = parseBackupListing(
    '{"1":"rsync://200/0:ab/d/disk.1.0","0":"/b/disk.0.0","tpm":"/b/tpm"}\n',
  );
  assert.deepEqual(selectDisks(listing, -1), [{ id: 0, url: "/b/disk.0.0" }, {
    id: 1,
    url: "rsync://200/0:ab/d/disk.1.0",
  }]);
  assert.deepEqual(selectDisks(listing, 1), [{ id: 1, url: "rsync://200/0:ab/d/disk.1.0" }]);
  assert.throws(() => selectDisks(listing, 3), /disk 3 not found in the backup/);
  assert.throws(() => parseBackupListing("[1]"), /not a JSON object/);
  assert.throws(() => parseBackupListing("nope"), /not JSON/);
  assert.equal(localPathOf("/b/disk.0.0"), "/b/disk.0.0");
  assert.equal(localPathOf("file:///b/disk%200"), "/b/disk 0");
  assert.equal(localPathOf("rsync://200/x"), null);
});

async function sh(script: string, stdin?: string) {
  const child = new Deno.Command("sh", {
    args: ["-c", script],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

async function mapOf(path: string): Promise<number[][]> {
  const r = await sh(`qemu-img map --output=json '${path}'`);
  return (JSON.parse(r.stdout) as { start: number; length: number; data: boolean }[])
    .filter((e) => e.data).map((e) => [e.start >> 20, e.length >> 20]);
}

Deno.test("offline full then incremental backup scripts on real qcow2 files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "offline_backup_" });
  try {
    const disk = `${dir}/vm/disk.0`;
    const dirs = backupDirs(`${dir}/vm`, 5, null);
    assert.equal((await sh(`mkdir -p '${dir}/vm' && qemu-img create -q -f qcow2 '${disk}' 16M`)).code, 0);
    assert.equal((await sh(`qemu-io -f qcow2 -c 'write -P 0x11 0 2M' '${disk}'`)).code, 0);
    const prepared = await sh(prepareScript(dirs).text, "PFZNLz4=\n");
    assert.equal(prepared.code, 0, prepared.stderr);
    const request = {
      vmId: 5,
      disks: [{ id: 0, path: disk }],
      backupDir: dirs.backup,
      wrap: [],
      tracksChanges: true,
    };
    const full = await sh(offlineFullScript({ ...request, backupId: 0 }).text);
    assert.equal(full.code, 0, full.stderr);
    assert.deepEqual(await mapOf(`${dirs.backup}/disk.0.0`), [[0, 2]]);
    assert.match((await sh(`qemu-img info '${disk}'`)).stdout, /name: one-5-0/);

    assert.equal(
      (await sh(`qemu-io -f qcow2 -c 'write -P 0x22 6M 1M' -c 'write -P 0x33 9M 64k' '${disk}'`)).code,
      0,
    );
    const inc = await sh(offlineIncrementScript({ ...request, backupId: 1, parentId: 0 }).text);
    assert.equal(inc.code, 0, inc.stderr);
    const incFile = `${dirs.backup}/disk.0.1`;
    assert.deepEqual(await mapOf(incFile), [[6, 1], [9, 0]]);
    assert.doesNotMatch((await sh(`qemu-img info '${incFile}'`)).stdout, /backing file/);
    assert.equal(
      (await sh(`qemu-io -r -f qcow2 -c 'read -P 0x22 6M 1M' -c 'read -P 0x33 9M 64k' '${incFile}'`)).code,
      0,
    );
    const bitmaps = (await sh(`qemu-img info '${disk}'`)).stdout;
    assert.match(bitmaps, /name: one-5-0/);
    assert.match(bitmaps, /name: one-5-1/);

    const broken = await sh(offlineIncrementScript({ ...request, backupId: 9, parentId: 8 }).text);
    assert.notEqual(broken.code, 0);
    assert.match(broken.stderr, /has no changed-block bitmap one-5-8/);
    const raw = `${dir}/vm/disk.1`;
    await sh(`qemu-img create -q -f raw '${raw}' 4M`);
    const notQcow2 = await sh(
      offlineFullScript({ ...request, disks: [{ id: 1, path: raw }], backupId: 0 }).text,
    );
    assert.match(notQcow2.stderr, /Changed-block tracking needs qcow2 disks: .*disk\.1 is raw/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("replaceScript() converts to the disk's format, drops snapshots and bitmaps", async () => {
  const dir = await Deno.makeTempDir({ prefix: "restore_replace_" });
  try {
    const setup = [
      `cd '${dir}'`,
      "qemu-img create -q -f qcow2 disk.0.backup 8M",
      "qemu-io -f qcow2 -c 'write -P 0x44 0 1M' disk.0.backup >/dev/null",
      "qemu-img bitmap --add disk.0.backup one-5-0",
      "qemu-img create -q -f qcow2 disk.1.backup 8M",
      "qemu-io -f qcow2 -c 'write -P 0x55 1M 1M' disk.1.backup >/dev/null",
      "echo old > disk.0 && echo old > disk.1 && mkdir disk.0.snap && echo s > disk.0.snap/0",
    ].join(" && ");
    assert.equal((await sh(setup)).code, 0);
    const r = await sh(replaceScript(dir, [{ id: 0, format: "qcow2" }, { id: 1, format: "raw" }]).text);
    assert.equal(r.code, 0, r.stderr);
    const entries = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(entries, ["disk.0", "disk.1"]);
    assert.doesNotMatch((await sh(`qemu-img info '${dir}/disk.0'`)).stdout, /bitmaps/);
    assert.match((await sh(`qemu-img info '${dir}/disk.1'`)).stdout, /file format: raw/);
    assert.equal((await sh(`qemu-io -r -f raw -c 'read -P 0x55 1M 1M' '${dir}/disk.1'`)).code, 0);
    // A missing backup file stops the script before any disk is replaced.
    const again = await sh(replaceScript(dir, [{ id: 0, format: "qcow2" }]).text);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /disk\.0\.backup is not a readable image/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
