/**
 * The host-side scripts of backups. Every value is quoted by the `sh` template; the scripts fail
 * with one line on stderr naming the disk and what went wrong.
 *
 * - {@linkcode prepareScript}: a fresh backup folder holding `vm.xml` (base64 VM XML, from stdin).
 * - {@linkcode offlineFullScript}: `qemu-img convert` of each disk into `disk.<id>.0` (qcow2,
 *   chains flattened), and with changed-block tracking a fresh bitmap `one-<vm>-0` in each disk.
 * - {@linkcode offlineIncrementScript}: the clusters written since bitmap `one-<vm>-<parent>`,
 *   read through a read-only `qemu-nbd` export of the disk that exposes the bitmap, pulled into a
 *   standalone qcow2 `disk.<id>.<n>` holding only those clusters; then bitmap `one-<vm>-<n>`.
 * - {@linkcode checkpointsScript}: the libvirt checkpoints of a live domain set up for the next
 *   push backup (bitmaps without checkpoint redefined, a stale checkpoint of this backup number
 *   dropped, the parent required) and {@linkcode dropCheckpointsScript} afterwards.
 * - {@linkcode cleanupScript}: the backup folders removed.
 *
 * @module
 */

import { joinScripts, sh, type ShellScript } from "../remote/shell.ts";
import { virshPrelude } from "../hypervisor/virsh.ts";
import { checkTarget, redefineFunction } from "../hypervisor/checkpoint.ts";
import { type BackupDirs, checkpointName } from "./config.ts";

/** Requests larger than this are split (qemu's BDRV_REQUEST_MAX_BYTES is just under 2 GiB). */
const MAX_READ = 1 << 30;

/** A disk in a backup script: its id and file in the VM folder. */
export interface BackupDisk {
  /** Disk id. */
  id: number;
  /** `<vm_dir>/disk.<id>`. */
  path: string;
}

/** Fresh backup (and scratch) folders with `vm.xml` written from stdin. */
export function prepareScript(dirs: BackupDirs): ShellScript {
  return sh`rm -rf -- ${dirs.backup} ${dirs.tmp} || exit 1
mkdir -p -- ${dirs.backup} ${dirs.tmp} || exit 1
cat >${`${dirs.backup}/vm.xml`} || exit 1`;
}

/** What {@linkcode cleanupScript} removes. */
export function cleanupTargets(dirs: BackupDirs): string[] {
  return [dirs.backup, dirs.tmp, ...(dirs.base ? [dirs.base] : [])];
}

/** Removes the backup folders (postbackup). Never fails for what is already gone. */
export function cleanupScript(dirs: BackupDirs): ShellScript {
  const extra = dirs.base ? [dirs.base] : [];
  return sh`rm -rf -- ${dirs.backup} ${dirs.tmp} ${extra}`;
}

/** Shell function `onestor_bitmaps FILE VM_ID`: names of the `one-<vm>-<n>` bitmaps in a qcow2 file. */
function bitmapsFunction(): ShellScript {
  return sh`onestor_bitmaps() {
  qemu-img info -U --output=json -- "$1" | grep -o "\\"name\\": \\"one-$2-[0-9][0-9]*\\"" | sed 's/.*"\\(one-[^"]*\\)"/\\1/'
}
onestor_qcow2() {
  _f=$(qemu-img info -U --output=json -- "$1" | sed -n 's/^ *"format": *"\\([a-z0-9]*\\)".*/\\1/p' | head -n 1)
  if [ "$_f" != qcow2 ]; then
    echo "Changed-block tracking needs qcow2 disks: $1 is \${_f:-unreadable}" >&2
    exit 1
  fi
}`;
}

/** What the offline (powered-off VM) scripts back up. */
export interface OfflineBackupRequest {
  /** VM id (bitmap names). */
  vmId: number;
  /** Disks to back up. */
  disks: BackupDisk[];
  /** Backup folder. */
  backupDir: string;
  /** This backup's number. */
  backupId: number;
  /** Keep changed-block tracking going (INCREMENT mode): bitmaps are (re)created. */
  tracksChanges: boolean;
  /** `nice`/`ionice` words put before the heavy commands. */
  wrap: readonly string[];
}

/** Full backup of a powered-off VM (see the module doc). */
export function offlineFullScript(request: OfflineBackupRequest): ShellScript {
  const perDisk = request.disks.map((d) => {
    const dst = `${request.backupDir}/disk.${d.id}.${request.backupId}`;
    const bitmap = checkpointName(request.vmId, request.backupId);
    const track = request.tracksChanges
      ? sh`onestor_qcow2 ${d.path}
for b in $(onestor_bitmaps ${d.path} ${request.vmId}); do qemu-img bitmap --remove -- ${d.path} "$b" || exit 1; done
qemu-img bitmap --add -- ${d.path} ${bitmap} || { echo ${`Cannot add bitmap ${bitmap} to ${d.path}`} >&2; exit 1; }`
      : sh`true`;
    return sh`[ -e ${d.path} ] || { echo ${`Disk ${d.path} does not exist`} >&2; exit 1; }
${request.wrap} qemu-img convert -q -U -m 4 -O qcow2 -- ${d.path} ${dst} || { echo ${`Error copying ${d.path}`} >&2; exit 1; }
${track}`;
  });
  return sh`${bitmapsFunction()}
${joinScripts(perDisk)}`;
}

/** Incremental backup of a powered-off VM since bitmap `one-<vm>-<parentId>` (see the module doc). */
export function offlineIncrementScript(request: OfflineBackupRequest & { parentId: number }): ShellScript {
  const parent = checkpointName(request.vmId, request.parentId);
  const bitmap = checkpointName(request.vmId, request.backupId);
  const perDisk = request.disks.map((d) => {
    const dst = `${request.backupDir}/disk.${d.id}.${request.backupId}`;
    return sh`src=${d.path}
dst=${dst}
onestor_qcow2 "$src"
if ! onestor_bitmaps "$src" ${request.vmId} | grep -qx ${parent}; then
  echo "Disk $src has no changed-block bitmap ${parent}: the backup chain is broken, reset the VM's backups" >&2
  exit 1
fi
sock="$t/nbd.sock"
rm -f -- "$sock"
qemu-nbd -r -t -k "$sock" -f qcow2 -B ${parent} -- "$src" &
nbd=$!
i=0
while [ ! -S "$sock" ]; do
  i=$((i + 1))
  if [ "$i" -gt 100 ] || ! kill -0 "$nbd" 2>/dev/null; then echo "qemu-nbd did not start for $src" >&2; exit 1; fi
  sleep 0.1
done
# Dirty clusters read as "data": false through x-dirty-bitmap.
qemu-img map --output=json --image-opts \\
  "driver=nbd,server.type=unix,server.path=$sock,x-dirty-bitmap=qemu:dirty-bitmap:"${parent} >"$t/map" \\
  || { echo "Cannot read the changed blocks of $src" >&2; exit 1; }
grep '"data": false' "$t/map" | sed 's/.*"start": *\\([0-9]*\\), *"length": *\\([0-9]*\\).*/\\1 \\2/' |
  awk -v max=${MAX_READ} '{ s = $1; n = $2; while (n > 0) { l = n > max ? max : n; print "read -q " s " " l; s += l; n -= l } }' \\
  >"$t/reads"
rm -f -- "$dst"
qemu-img create -q -f qcow2 -b "nbd+unix:///?socket=$sock" -F raw -- "$dst" || exit 1
${request.wrap} qemu-io -C -f qcow2 "$dst" <"$t/reads" >"$t/io" 2>&1 || { cat "$t/io" >&2; exit 1; }
if grep -qi 'error\\|fail' "$t/io"; then cat "$t/io" >&2; exit 1; fi
qemu-img rebase -q -u -b '' -f qcow2 -- "$dst" || exit 1
kill "$nbd" && wait "$nbd" 2>/dev/null
nbd=""
for b in $(onestor_bitmaps "$src" ${request.vmId}); do
  [ "$b" = ${parent} ] || qemu-img bitmap --remove -- "$src" "$b" || exit 1
done
qemu-img bitmap --add -- "$src" ${bitmap} || exit 1`;
  });
  return sh`${bitmapsFunction()}
t=$(mktemp -d /tmp/onestor-nbd.XXXXXX) || exit 70
nbd=""
trap '[ -n "$nbd" ] && kill "$nbd" 2>/dev/null; rm -rf "$t"' EXIT
${joinScripts(perDisk)}`;
}

/** What {@linkcode checkpointsScript} prepares. */
export interface CheckpointRequest {
  /** libvirt URI. */
  uri: string;
  /** Domain name. */
  domain: string;
  /** VM id. */
  vmId: number;
  /** Target devices of the disks of the backup. */
  targets: string[];
  /** The disk files of the backup (all must be qcow2; the bitmaps are read from the first). */
  disks: string[];
  /** The backup about to be taken. */
  backupId: number;
  /** Its parent (-1: a full backup starting a new chain: every checkpoint goes). */
  parentId: number;
}

/**
 * Sets the live domain's checkpoints up for the next push backup: every `one-<vm>-<n>` bitmap of
 * the disk that libvirt does not know as a checkpoint (a domain restarted or started after an
 * offline backup) is redefined; then a full backup drops them all, and an incremental one drops a
 * stale checkpoint of its own number and requires its parent.
 */
export function checkpointsScript(request: CheckpointRequest): ShellScript {
  const own = checkpointName(request.vmId, request.backupId);
  const parent = checkpointName(request.vmId, request.parentId);
  const targets = request.targets.map(checkTarget);
  return sh`${virshPrelude(request.uri)}
${redefineFunction()}
${bitmapsFunction()}
dom=${request.domain}
# Checked before any checkpoint is touched: a backup that cannot run must not end the chain.
for d in ${request.disks}; do onestor_qcow2 "$d"; done
known=$(onestor_virsh checkpoint-list "$dom" --name) || exit 1
# Bitmaps of the chain that libvirt does not know as checkpoints (a domain started again after an
# offline backup) are redefined; libvirt wants a creation time, their order follows their numbers.
for b in $(onestor_bitmaps ${request.disks[0]} ${request.vmId}); do
  printf '%s\\n' "$known" | grep -qx "$b" && continue
  onestor_redefine "$dom" "$b" "$(( $(date +%s) - 100000 + \${b##*-} ))" no ${targets} || exit 1
done
drop() { onestor_virsh checkpoint-delete "$dom" "$1" >/dev/null 2>&1 || onestor_virsh checkpoint-delete "$dom" "$1" --metadata >/dev/null; }
known=$(onestor_virsh checkpoint-list "$dom" --name) || exit 1
if [ ${request.parentId} -lt 0 ]; then
  for c in $(printf '%s\\n' "$known" | grep "^one-${
    String(request.vmId)
  }-[0-9][0-9]*$"); do drop "$c" || exit 1; done
else
  if printf '%s\\n' "$known" | grep -qx ${own}; then drop ${own} || exit 1; fi
  if ! printf '%s\\n' "$known" | grep -qx ${parent}; then
    echo "Domain $dom has no checkpoint ${parent}: the backup chain is broken (e.g. after a live migration), reset the VM's backups" >&2
    exit 1
  fi
fi`;
}

/** After an incremental live backup: drops the checkpoints older than its parent. */
export function dropCheckpointsScript(
  uri: string,
  domain: string,
  vmId: number,
  parentId: number,
): ShellScript {
  return sh`${virshPrelude(uri)}
dom=${domain}
for c in $(onestor_virsh checkpoint-list "$dom" --name | grep "^one-${String(vmId)}-[0-9][0-9]*$"); do
  n=\${c##*-}
  if [ "$n" -lt ${parentId} ]; then
    onestor_virsh checkpoint-delete "$dom" "$c" >/dev/null 2>&1 || onestor_virsh checkpoint-delete "$dom" "$c" --metadata >/dev/null || exit 1
  fi
done`;
}
