import assert from "node:assert/strict";
import { InputError } from "../../core/errors.ts";
import {
  DatastoreType,
  DatastoreView,
  HistoryAction,
  HostState,
  HostView,
  intOrNull,
  LcmState,
  VmState,
  VmView,
} from "../../core/one/objects.ts";
import { parseXml } from "../../core/one/xml.ts";
import {
  datastoreXml,
  DS_LOC,
  hostXml,
  imageDisk,
  imageSource,
  persistentDisk,
  vmXml,
  volatileDisk,
} from "../support/fixtures.ts";

Deno.test("`VmView` reads identity and states", () => {
  const vm = VmView.fromXml(
    vmXml({ id: 42, name: "web", state: VmState.POWEROFF, lcmState: LcmState.LCM_INIT }),
  );
  assert.equal(vm.id, 42);
  assert.equal(vm.name, "web");
  assert.equal(vm.state, VmState.POWEROFF);
  assert.equal(vm.lcmState, 0);
  assert.equal(vm.deployId, "one-42");
  assert.equal(VmView.fromXml(vmXml({ deployId: "" })).deployId, "");
});

Deno.test("`VmView.historyLast()` and `historyPrev()` read the last two records", () => {
  const vm = VmView.fromXml(vmXml({
    history: [
      { hostname: "host1", dsId: 100 },
      { hostname: "host2", dsId: 101, action: HistoryAction.LIVE_MIGRATE },
      { hostname: "host3", dsId: 102, action: HistoryAction.DELETE_RECREATE, vmMad: "qemu" },
    ],
  }));
  assert.equal(vm.historyLast("DS_ID"), "102");
  assert.equal(vm.historyLast("HOSTNAME"), "host3");
  assert.equal(vm.historyLast("ACTION"), "14");
  assert.equal(vm.historyLast("VM_MAD"), "qemu");
  assert.equal(vm.historyLast("TM_MAD"), "ssh");
  assert.equal(vm.historyPrev("DS_ID"), "101");
  assert.equal(vm.historyPrev("HOSTNAME"), "host2");
  assert.equal(vm.historyLast("NOPE"), "");
  assert.equal(vm.systemDsId, 102);
  assert.equal(vm.hostname, "host3");
  assert.equal(vm.history().length, 3);
});

Deno.test("`VmView` without history returns empty values", () => {
  const vm = VmView.fromXml(vmXml({ history: [] }));
  assert.equal(vm.historyLast("DS_ID"), "");
  assert.equal(vm.historyPrev("DS_ID"), "");
  assert.equal(vm.systemDsId, null);
  const one = VmView.fromXml(vmXml({ history: [{ dsId: 100 }] }));
  assert.equal(one.historyPrev("DS_ID"), "");
});

Deno.test("`VmView.disk()` returns the DISK record by id", () => {
  const vm = VmView.fromXml(vmXml({
    id: 7,
    disks: [
      imageDisk({ DISK_ID: 0, IMAGE_ID: 3, SIZE: 4096, RECOVERY_SNAPSHOT_FREQ: 3600, SPARSE: "NO" }),
      persistentDisk({ DISK_ID: 1, IMAGE_ID: 4, DATASTORE_ID: 101, FORMAT: "raw", QCOW2_STANDALONE: "YES" }),
      volatileDisk({ DISK_ID: 2, TYPE: "fs", FS: "ext4", SIZE: 100 }),
    ],
  }));
  assert.equal(vm.disks().length, 3);
  const d0 = vm.disk(0)!;
  assert.equal(d0.id, 0);
  assert.equal(d0.size, 4096);
  assert.equal(d0.originalSize, 256);
  assert.equal(d0.sparse, "NO");
  assert.equal(d0.sparseDisabled, true);
  assert.equal(d0.format, "qcow2");
  assert.equal(d0.type, "FILE");
  assert.equal(d0.target, "vda");
  assert.equal(d0.source, imageSource(3, 1));
  assert.equal(d0.clone, true);
  assert.equal(d0.save, false);
  assert.equal(d0.recoverySnapshotFreq, 3600);
  assert.equal(d0.tmMad, "ssh");
  assert.equal(d0.datastoreId, 1);
  assert.equal(d0.imageId, 3);
  assert.equal(d0.attrs.CLONE_TARGET, "SYSTEM");
  assert.equal(d0.attr("LN_TARGET"), "SYSTEM");
  assert.equal(d0.attr("MISSING"), "");
  assert.equal(d0.has("DISK_SNAPSHOT_TOTAL_SIZE"), true);

  const d1 = vm.disk("1")!;
  assert.equal(d1.clone, false);
  assert.equal(d1.save, true);
  assert.equal(d1.persistent, true);
  assert.equal(d1.datastoreId, 101);
  assert.equal(d1.qcow2Standalone, true);
  assert.equal(d1.recoverySnapshotFreq, null);
  assert.equal(d1.sparseDisabled, false);

  const d2 = vm.disk(2)!;
  assert.equal(d2.fs, "ext4");
  assert.equal(d2.source, "");
  assert.equal(d2.imageId, null);
  assert.equal(d2.originalSize, null);

  assert.equal(vm.disk(9), undefined);
  assert.equal(vm.disk(null), undefined);
  assert.equal(vm.disk("kernel"), undefined);
});

Deno.test("`DiskView.sparseDisabled` follows tm/ssh: only exactly no or NO", () => {
  for (
    const [value, disabled] of [["no", true], ["NO", true], ["No", false], ["yes", false], [
      "",
      false,
    ]] as const
  ) {
    const vm = VmView.fromXml(vmXml({ disks: [imageDisk({ SPARSE: value })] }));
    assert.equal(vm.disk(0)!.sparseDisabled, disabled, value);
  }
});

Deno.test("`VmView.templateAttr()` reads template, context and user template", () => {
  const vm = VmView.fromXml(vmXml({
    disks: [imageDisk({ DISK_ID: 0 }), imageDisk({ DISK_ID: 1 })],
    template: { MEMORY: 2048 },
    userTemplate: { LABELS: "a,b" },
  }));
  assert.equal(vm.templateAttr("MEMORY"), "2048");
  assert.equal(vm.templateAttr("TM_MAD_SYSTEM"), "ssh");
  assert.equal(vm.templateAttr("CONTEXT/DISK_ID"), "2");
  assert.equal(vm.templateAttr("NOPE"), "");
  assert.equal(vm.userTemplateAttr("LABELS"), "a,b");
  assert.equal(vm.xpath("/VM/TEMPLATE/DISK[DISK_ID=1]/TARGET"), "vdb");
});

Deno.test("`VmView.diskSnapshots()` finds the snapshot tree of a disk", () => {
  const vm = VmView.fromXml(vmXml({
    snapshots: [{ diskId: 0, snapshots: [{ id: 0 }, { id: 1, parent: 0, active: true }] }],
  }));
  const tree = vm.diskSnapshots(0)!;
  assert.equal(tree.children.filter((c) => c.name === "SNAPSHOT").length, 2);
  assert.equal(vm.diskSnapshots(1), undefined);
});

Deno.test("`VmView` refuses another document", () => {
  assert.throws(() => new VmView(parseXml("<HOST/>")), InputError);
  assert.throws(() => VmView.fromXml("<VM>"), InputError);
});

Deno.test("`DatastoreView` reads a system datastore with REPLICA_HOST", () => {
  const ds = DatastoreView.fromXml(
    datastoreXml({ id: 100, clusters: [0, 2], template: { REPLICA_HOST: " replica1 " } }),
  );
  assert.equal(ds.id, 100);
  assert.equal(ds.name, "system");
  assert.equal(ds.type, DatastoreType.SYSTEM_DS);
  assert.equal(ds.tmMad, "ssh");
  assert.equal(ds.dsMad, "-");
  assert.equal(ds.basePath, `${DS_LOC}/100`);
  assert.equal(ds.state, 0);
  assert.deepEqual(ds.clusterIds, [0, 2]);
  assert.equal(ds.replicaHost, "replica1");
  assert.equal(ds.templateAttr("SHARED"), "NO");
  assert.equal(ds.templateAttr("TYPE"), "SYSTEM_DS");
  assert.equal(ds.templateAttrs().TM_MAD, "ssh");
  assert.deepEqual(ds.bridgeList, []);
});

Deno.test("`DatastoreView` reads an image datastore without REPLICA_HOST", () => {
  const ds = DatastoreView.fromXml(
    datastoreXml({ id: 1, template: { BRIDGE_LIST: "h1 h2", SAFE_DIRS: undefined } }),
  );
  assert.equal(ds.type, DatastoreType.IMAGE_DS);
  assert.equal(ds.dsMad, "fs");
  assert.equal(ds.replicaHost, "");
  assert.deepEqual(ds.bridgeList, ["h1", "h2"]);
  assert.equal(ds.templateAttr("SAFE_DIRS"), "");
});

Deno.test("`HostView` reads state and REPLICA_STORAGE_IP", () => {
  const host = HostView.fromXml(
    hostXml({ id: 3, state: HostState.OFFLINE, template: { REPLICA_STORAGE_IP: "127.0.3.3" } }),
  );
  assert.equal(host.id, 3);
  assert.equal(host.name, "host3");
  assert.equal(host.state, 8);
  assert.equal(host.imMad, "kvm");
  assert.equal(host.vmMad, "kvm");
  assert.equal(host.clusterId, 0);
  assert.equal(host.replicaStorageIp, "127.0.3.3");
  assert.equal(host.templateAttr("HOSTNAME"), "host3");
  assert.equal(HostView.fromXml(hostXml()).replicaStorageIp, "");
});

Deno.test("`intOrNull()` accepts integers only", () => {
  assert.equal(intOrNull(" 12 "), 12);
  assert.equal(intOrNull("-1"), -1);
  assert.equal(intOrNull(""), null);
  assert.equal(intOrNull("1.5"), null);
  assert.equal(intOrNull("kernel"), null);
});
