/**
 * Live backups made by the hypervisor: libvirt's push-mode `virsh backup-begin`. QEMU copies each
 * selected disk as it was at the start of the job into a new qcow2 file while the guest keeps
 * running on its own disk (copy-before-write): no overlay is ever put under the domain, so nothing
 * needs committing back and a failure cannot leave the domain on a temporary file.
 *
 * With a checkpoint name the job also starts a checkpoint (a persistent dirty bitmap in each qcow2
 * disk); with a parent checkpoint it copies only the clusters written since that checkpoint
 * (incremental backup, changed-block tracking).
 *
 * @module
 */

import { escapeXml } from "../one/xml.ts";
import { joinScripts, sh, type ShellScript } from "../remote/shell.ts";
import { pauseFragment, type PauseMode } from "./pause.ts";
import { virshPrelude } from "./virsh.ts";

/** Exit status when the job ran but did not complete. */
export const EXIT_JOB_FAILED = 81;

/** One disk of a backup job. */
export interface BackupJobDisk {
  /** Target device of the disk in the domain (`vda`). */
  target: string;
  /** File the backup of this disk is written to (absolute, qcow2). */
  file: string;
}

/** What {@linkcode pushBackupScript} runs. */
export interface PushBackupRequest {
  /** libvirt URI. */
  uri: string;
  /** Domain name. */
  domain: string;
  /** Disks to back up; every other disk of the domain is left out. */
  disks: BackupJobDisk[];
  /** Checkpoint the backup is incremental to (its bitmaps must exist), absent for a full backup. */
  incrementalFrom?: string;
  /** Checkpoint to create with this backup (absent: none). */
  checkpoint?: string;
  /** How the domain is held still while the job starts (the backup's point in time). */
  pause: PauseMode;
  /** Seconds to wait for a guest agent freeze. */
  freezeTimeoutSeconds: number;
  /** Give up (and abort the job) after this many seconds; 0: no limit. */
  timeoutSeconds: number;
}

/** End of the `<domainbackup>` document (the disks left out are inserted before it). */
export const BACKUP_XML_TAIL = "</disks></domainbackup>";

/**
 * The `<domainbackup>` document of a push-mode job up to its last selected disk; the caller
 * appends `<disk name="..." backup="no"/>` entries and {@linkcode BACKUP_XML_TAIL}.
 */
export function backupXmlHead(request: Pick<PushBackupRequest, "disks" | "incrementalFrom">): string {
  const disks = request.disks.map((d) =>
    `<disk name="${escapeXml(d.target)}" backup="yes" type="file">` +
    `<driver type="qcow2"/><target file="${escapeXml(d.file)}"/></disk>`
  );
  const incremental = request.incrementalFrom
    ? `<incremental>${escapeXml(request.incrementalFrom)}</incremental>`
    : "";
  return `<domainbackup mode="push">${incremental}<disks>${disks.join("")}`;
}

/** The `<domaincheckpoint>` document of the checkpoint created with a backup. */
export function checkpointXml(name: string, targets: readonly string[]): string {
  const disks = targets.map((t) => `<disk name="${escapeXml(t)}"/>`).join("");
  return `<domaincheckpoint><name>${escapeXml(name)}</name><disks>${disks}</disks></domaincheckpoint>`;
}

/**
 * The host-side script: creates each target (qcow2, the disk's capacity, by oneadmin so that QEMU
 * can open it), holds the domain still while the job starts, waits for the job and checks that it
 * completed. A job that fails or times out is aborted and its targets are removed. Disks not in
 * the request are left out of the job explicitly (libvirt would back them up too).
 */
export function pushBackupScript(request: PushBackupRequest): ShellScript {
  const targets = request.disks.map((d) => d.target);
  const creates = request.disks.map((d) =>
    sh`cap=$(onestor_virsh domblkinfo "$dom" ${d.target} | awk '/^Capacity:/ { print $2 }')
[ -n "$cap" ] || { echo ${`Domain has no disk ${d.target}`} >&2; exit 3; }
rm -f -- ${d.file} && qemu-img create -q -f qcow2 ${d.file} "$cap" || exit 73
files="$files "${d.file}`
  );
  const checkpoint = request.checkpoint ? checkpointXml(request.checkpoint, targets) : "";
  return sh`${virshPrelude(request.uri)}
dom=${request.domain}
files=""
t=$(mktemp -d) || exit 70
cleanup_files() { for f in $files; do rm -f -- "$f"; done; }
${joinScripts(creates)}
# Disks left out must be named, or libvirt backs them up too.
{
  printf '%s' ${backupXmlHead(request)}
  onestor_virsh domblklist "$dom" --details | while read -r _type _device _target _source; do
    case ${` ${targets.join(" ")} `} in *" $_target "*) continue ;; esac
    [ "$_device" = disk ] && printf '<disk name="%s" backup="no"/>' "$_target"
  done
  printf '%s' ${BACKUP_XML_TAIL}
} >"$t/backup.xml" || { cleanup_files; rm -rf -- "$t"; exit 1; }
set -- "$t/backup.xml"
if [ -n ${checkpoint} ]; then printf '%s' ${checkpoint} >"$t/checkpoint.xml"; set -- "$@" "$t/checkpoint.xml"; fi
(
  ${pauseFragment(request.pause, request.freezeTimeoutSeconds)}
  onestor_virsh backup-begin "$dom" "$@" --reuse-external >/dev/null
) || { rc=$?; cleanup_files; rm -rf -- "$t"; exit "$rc"; }
deadline=$(( $(date +%s) + ${request.timeoutSeconds} ))
while :; do
  type=$(onestor_virsh domjobinfo "$dom" | awk -F: '/^Job type/ { gsub(/ /, "", $2); print $2 }')
  case $type in Bounded|Unbounded) ;; *) break ;; esac
  if [ ${request.timeoutSeconds} -gt 0 ] && [ "$(date +%s)" -ge "$deadline" ]; then
    onestor_virsh domjobabort "$dom" >/dev/null 2>&1
    cleanup_files
    rm -rf -- "$t"
    echo "Backup job of domain $dom did not finish in ${request.timeoutSeconds} s: aborted" >&2
    exit ${EXIT_JOB_FAILED}
  fi
  sleep 0.2
done
info=$(onestor_virsh domjobinfo "$dom" --completed)
rm -rf -- "$t"
result=$(printf '%s\\n' "$info" | awk -F: '/^Job type/ { gsub(/ /, "", $2); print $2 }')
op=$(printf '%s\\n' "$info" | awk -F: '/^Operation/ { gsub(/^ +| +$/, "", $2); print $2 }')
if [ "$result" != Completed ] || [ "$op" != Backup ]; then
  cleanup_files
  err=$(printf '%s\\n' "$info" | awk -F: '/^Error message/ { sub(/^[^:]*: */, ""); print }')
  echo "Backup job of domain $dom ended as \${result:-unknown}\${err:+: $err}" >&2
  exit ${EXIT_JOB_FAILED}
fi`;
}

/** Script that aborts a running backup job of a domain (cancel, clean-up); succeeds when there is none. */
export function abortBackupJobScript(uri: string, domain: string): ShellScript {
  return sh`${virshPrelude(uri)}
dom=${domain}
state=$(onestor_domstate "$dom") || exit 1
[ "$state" = absent ] && exit 0
info=$(onestor_virsh domjobinfo "$dom" 2>/dev/null)
type=$(printf '%s\\n' "$info" | awk -F: '/^Job type/ { gsub(/ /, "", $2); print $2 }')
op=$(printf '%s\\n' "$info" | awk -F: '/^Operation/ { gsub(/^ +| +$/, "", $2); print $2 }')
case $type in
  Bounded|Unbounded) [ "$op" = Backup ] && onestor_virsh domjobabort "$dom" ;;
esac
exit 0`;
}
