/**
 * `postbackup` / `postbackup_live <host>:<vm_dir> <disks> <deploy_id> <bj_id> <vm_id> <ds_id>`,
 * stdin = VM XML (with `BACKUP_RESULT` FAILURE after a failed prebackup): once the backup
 * datastore has collected the files, the backup folder and scratch folder go (and
 * `$BACKUP_BASE_PATH/<vm_id>`). A live backup job still running (a cancelled or failed backup) is
 * aborted first. Live backups put no overlay under the domain, so there is nothing to commit back.
 *
 * Like upstream, it always succeeds: problems are logged, never fail the VM's backup state.
 *
 * @module
 */

import { abortBackupJobScript } from "../hypervisor/backup_job.ts";
import { logInfo, logWarn } from "../one/log.ts";
import type { TmServices } from "../tm/services.ts";
import { backupDirs, parseBackupArgs } from "./config.ts";
import { backupConfinement, confined } from "../remote/confine.ts";
import { cleanupScript, cleanupTargets } from "./scripts.ts";

/** Runs postbackup (`live` false) or postbackup_live (`live` true). */
export async function postbackup(
  services: TmServices,
  argv: readonly string[],
  stdin: string,
  live: boolean,
): Promise<void> {
  try {
    const args = parseBackupArgs(argv);
    if (/<BACKUP_RESULT>\s*FAILURE\s*<\/BACKUP_RESULT>/.test(stdin)) {
      logInfo("Cleaning up after a failed backup");
    }
    const host = args.vmDir.host;
    if (live && args.deployId !== "") {
      const abort = await services.runner.run(
        host,
        abortBackupJobScript(services.config.libvirtUri, args.deployId),
        {
          check: false,
          timeoutMs: services.controlTimeoutMs,
        },
      );
      if (abort.code !== 0) {
        logWarn(`Cannot check the backup job of ${args.deployId}: ${abort.stderr.trim()}`);
      }
    }
    const dirs = backupDirs(args.vmDir.path, args.vmId, services.config.backupBasePath);
    const c = backupConfinement(services.config);
    const result = await services.runner.run(
      host,
      confined(c, host, { remove: cleanupTargets(dirs) }, cleanupScript(dirs)),
      {
        check: false,
        timeoutMs: services.controlTimeoutMs,
      },
    );
    if (result.code !== 0) logWarn(`Cannot remove ${dirs.backup} on ${host}: ${result.stderr.trim()}`);
  } catch (error) {
    logWarn(`postbackup: ${(error as Error).message}`);
  }
}
