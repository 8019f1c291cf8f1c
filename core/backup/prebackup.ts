/**
 * `prebackup` / `prebackup_live <host>:<vm_dir> <disks> <deploy_id> <bj_id> <vm_id> <ds_id>`,
 * stdin = VM XML (spec §3.3): leaves `disk.<id>.<n>` for each disk and `vm.xml` in the backup
 * folder on the host, for the backup datastore driver to collect.
 *
 * - Powered off: `qemu-img convert` of each disk (full), or the clusters changed since the last
 *   backup pulled through a `qemu-nbd` export of its bitmap (incremental); see scripts.ts.
 * - Live: libvirt's push-mode backup job (core/hypervisor/backup_job.ts). QEMU copies the disks as
 *   they were when the job started while the guest keeps running on them: no overlay is put under
 *   the domain, so nothing can be left half-committed (upstream's snapshot + blockcommit could).
 *   `FS_FREEZE` = AGENT freezes the guest's file systems through the agent while the job starts,
 *   SUSPEND pauses the vCPUs; a freeze that fails fails the backup (the domain is left running).
 *   In INCREMENT mode the job also creates checkpoint `one-<vm>-<n>` and copies only what changed
 *   since checkpoint `one-<vm>-<n-1>`.
 *
 * A failure leaves no backup file behind (the folder is emptied); oned then runs postbackup, which
 * removes the folders.
 *
 * @module
 */

import { pushBackupScript } from "../hypervisor/backup_job.ts";
import { logInfo, logWarn } from "../one/log.ts";
import { VmView } from "../one/objects.ts";
import { decodeBase64Text, encodeBase64Text } from "../one/driver_action.ts";
import { InputError } from "../errors.ts";
import { backupConfinement, confined } from "../remote/confine.ts";
import type { TmServices } from "../tm/services.ts";
import {
  type BackupArgs,
  backupDirs,
  backupPlan,
  checkPlan,
  checkpointName,
  confinement,
  diskTargets,
  parseBackupArgs,
} from "./config.ts";
import {
  checkpointsScript,
  cleanupScript,
  cleanupTargets,
  dropCheckpointsScript,
  offlineFullScript,
  offlineIncrementScript,
  prepareScript,
} from "./scripts.ts";
import { liveDomain } from "../live/vm_domain.ts";

/** The VM XML oned writes on the backup actions' stdin (plain XML; base64 is accepted too). */
export function vmXmlText(stdin: string): string {
  const t = stdin.trim();
  if (t === "") throw new InputError("No VM XML on standard input");
  return t.startsWith("<") ? t : decodeBase64Text(t, "VM XML");
}

/** Runs prebackup (`live` false) or prebackup_live (`live` true). */
export async function prebackup(
  services: TmServices,
  argv: readonly string[],
  stdin: string,
  live: boolean,
): Promise<void> {
  const args = parseBackupArgs(argv);
  const xml = vmXmlText(stdin);
  const vm = VmView.fromXml(xml);
  const plan = backupPlan(vm);
  checkPlan(plan);
  const dirs = backupDirs(args.vmDir.path, args.vmId, services.config.backupBasePath);
  const host = args.vmDir.host;
  const disks = diskTargets(vm, args.diskIds).map((d) => ({ ...d, path: `${args.vmDir.path}/disk.${d.id}` }));
  const runner = services.runner;
  const c = backupConfinement(services.config);
  const folders = [dirs.backup, dirs.tmp];
  await runner.run(
    host,
    confined(c, host, { write: [...folders, `${dirs.backup}/vm.xml`], remove: folders }, prepareScript(dirs)),
    {
      stdin: encodeBase64Text(xml) + "\n",
      what: `Error preparing ${dirs.backup}`,
      timeoutMs: services.controlTimeoutMs,
    },
  );
  const kind = plan.parentId < 0 ? "full" : `incremental (since ${plan.parentId})`;
  logInfo(`${live ? "Live" : "Offline"} ${kind} backup ${plan.backupId} of disks ${args.diskIds.join(", ")}`);
  try {
    if (live) {
      await liveBackup(services, args, vm, disks, plan);
    } else {
      const wrap = await confinementOf(services, plan.datastoreId);
      const request = {
        vmId: args.vmId,
        disks,
        backupDir: dirs.backup,
        backupId: plan.backupId,
        tracksChanges: plan.tracksChanges,
        wrap,
      };
      const script = plan.parentId < 0
        ? offlineFullScript(request)
        : offlineIncrementScript({ ...request, parentId: plan.parentId });
      await runner.run(
        host,
        confined(c, host, { write: [dirs.backup, ...disks.map((d) => d.path)] }, script),
        {
          what: "Error preparing disk files",
          timeoutMs: services.transferTimeoutMs,
        },
      );
    }
  } catch (error) {
    // Nothing half-made stays in the backup folder for the datastore driver to pick up.
    await runner.run(host, confined(c, host, { remove: cleanupTargets(dirs) }, cleanupScript(dirs)), {
      check: false,
      timeoutMs: services.controlTimeoutMs,
    })
      .catch(() => {});
    throw error;
  }
}

async function liveBackup(
  services: TmServices,
  args: BackupArgs,
  vm: VmView,
  disks: { id: number; target: string; path: string }[],
  plan: ReturnType<typeof backupPlan>,
): Promise<void> {
  const domain = args.deployId || liveDomain(vm, "prebackup_live");
  const uri = services.config.libvirtUri;
  const dirs = backupDirs(args.vmDir.path, args.vmId, services.config.backupBasePath);
  const targets = disks.map((d) => d.target);
  if (plan.tracksChanges) {
    await services.runner.run(
      args.vmDir.host,
      checkpointsScript({
        uri,
        domain,
        vmId: args.vmId,
        targets,
        disks: disks.map((d) => d.path),
        backupId: plan.backupId,
        parentId: plan.parentId,
      }),
      { what: "Error preparing the checkpoints of the backup", timeoutMs: services.controlTimeoutMs },
    );
  }
  const files = disks.map((d) => `${dirs.backup}/disk.${d.id}.${plan.backupId}`);
  await services.runner.run(
    args.vmDir.host,
    confined(
      backupConfinement(services.config),
      args.vmDir.host,
      { write: files },
      pushBackupScript({
        uri,
        domain,
        disks: disks.map((d) => ({ target: d.target, file: `${dirs.backup}/disk.${d.id}.${plan.backupId}` })),
        incrementalFrom: plan.parentId >= 0 ? checkpointName(args.vmId, plan.parentId) : undefined,
        checkpoint: plan.tracksChanges ? checkpointName(args.vmId, plan.backupId) : undefined,
        pause: plan.pause,
        freezeTimeoutSeconds: services.config.virshTimeout,
        timeoutSeconds: Math.ceil(services.transferTimeoutMs / 1000),
      }),
    ),
    { what: "Error preparing disk files", timeoutMs: services.transferTimeoutMs },
  );
  if (plan.tracksChanges && plan.parentId > 0) {
    await services.runner.run(
      args.vmDir.host,
      dropCheckpointsScript(uri, domain, args.vmId, plan.parentId),
      { check: false, timeoutMs: services.controlTimeoutMs },
    ).then((r) => {
      if (r.code !== 0) logWarn(`Old checkpoints of ${domain} not dropped: ${r.stderr.trim()}`);
    }).catch((e) => logWarn(`Old checkpoints of ${domain} not dropped: ${(e as Error).message}`));
  }
}

/** `nice`/`ionice` of the backup datastore, nothing when it cannot be read. */
async function confinementOf(services: TmServices, dsId: number | null): Promise<string[]> {
  if (dsId === null) return [];
  try {
    const ds = await services.lookup.datastore(dsId);
    return confinement(ds.dsMad, (name) => ds.templateAttr(name));
  } catch (error) {
    logWarn(`Backup datastore ${dsId} not read, no IO confinement: ${(error as Error).message}`);
    return [];
  }
}
