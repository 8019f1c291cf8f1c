/**
 * The scripts that run on the hypervisor for recovery points. The domain is never put on another
 * file: a point is a libvirt push-mode backup job (core/hypervisor/backup_job.ts) that copies the
 * disk as it was when the job started into a scratch qcow2 next to it, while the guest keeps
 * writing to its own disk. For a qcow2 disk the job copies only the clusters written since the
 * last point (its persistent bitmap `onestor-rec-<i>-<n>`, redefined as a libvirt checkpoint and
 * validated first) and starts the bitmap of the new point in the same transaction.
 *
 * Every script checks the domain's disks (`domblklist --details`) before and after and fails when
 * they differ; the scratch file and the new point's checkpoint are removed on every failure path
 * (the front-end runs {@linkcode abandonScript}), so a failed period leaves the domain exactly as
 * it was: its own disk, the bitmap of its last point recording.
 *
 * @module
 */

import { pushBackupScript } from "../hypervisor/backup_job.ts";
import { checkCheckpointName, checkTarget, redefineFunction } from "../hypervisor/checkpoint.ts";
import { type PauseMode, QUIESCED_MARKER } from "../hypervisor/pause.ts";
import { virshPrelude } from "../hypervisor/virsh.ts";
import { BITMAP_NAMES_AWK } from "../backup/restore.ts";
import { raw, sh, type ShellScript } from "../remote/shell.ts";
import { failpoint } from "./failpoint.ts";
import { type Guard, guarded } from "./guard.ts";
import { BITMAP_PREFIX, bitmapName, scratchPrefix, statusFileName } from "./names.ts";

/** Exit status when the domain does not run (nothing was done). */
export const EXIT_NOT_RUNNING = 3;
/** Exit status when the domain runs another job (a backup, a block job): nothing was done. */
export const EXIT_BUSY = 76;
/** Exit status when the domain's disks changed while the job ran. */
export const EXIT_DISKS_CHANGED = 75;

/**
 * Writes the monitoring line into `<vm_dir>/disk.<i>.recovery` (written aside, renamed). A VM
 * folder that no longer exists is left alone.
 */
export function statusFileScript(guard: Guard, vmDir: string, diskId: number, line: string): ShellScript {
  const file = `${vmDir}/${statusFileName(diskId)}`;
  return sh`${guarded(guard, { write: [file, `${file}.tmp`] })}
if [ -d ${vmDir} ]; then
  printf '%s\\n' ${line} >${`${file}.tmp`} && mv -f -- ${`${file}.tmp`} ${file}
fi`;
}

/** What {@linkcode protectDiskScript} prepares. */
export interface ProtectDiskRequest {
  vmDir: string;
  /** `<vm_dir>/disk.<i>`. */
  disk: string;
  diskId: number;
  /** The point the new bitmap starts from (0 for a new deployment, the restored point after a recreate). */
  pointId: number;
  /** The monitoring line to leave in the VM folder. */
  statusLine: string;
}

/**
 * Before the domain starts (clone/ln): drops the disk's old recovery bitmaps and, for a qcow2 disk
 * that can hold one (qcow2 v3), adds the bitmap of point `pointId`, enabled, so that it records
 * every write from the first boot. Prints the disk's format and virtual size and whether the
 * bitmap was added (`ONESTOR_BITMAP=yes`, or the reason it was not).
 */
export function protectDiskScript(guard: Guard, request: ProtectDiskRequest): ShellScript {
  const bitmap = checkCheckpointName(bitmapName(request.diskId, request.pointId));
  return sh`${guarded(guard, { write: [request.disk] })}
disk=${request.disk}
[ -f "$disk" ] || { echo "Disk $disk does not exist" >&2; exit 1; }
fmt=$(qemu-img info --output=json -- "$disk" | sed -n 's/^ *"format": *"\\([a-z0-9]*\\)".*/\\1/p' | head -n 1)
size=$(qemu-img info --output=json -- "$disk" | sed -n 's/^ *"virtual-size": *\\([0-9][0-9]*\\).*/\\1/p' | head -n 1)
echo "ONESTOR_FORMAT=$fmt"
echo "ONESTOR_VSIZE=$size"
if [ "$fmt" = qcow2 ]; then
  for b in $(qemu-img info --output=json -- "$disk" | awk ${BITMAP_NAMES_AWK} | grep ${`^${BITMAP_PREFIX}${request.diskId}-`}); do
    qemu-img bitmap --remove -- "$disk" "$b" || { echo "Cannot remove bitmap $b from $disk" >&2; exit 1; }
  done
  if err=$(qemu-img bitmap --add --enable -- "$disk" ${bitmap} 2>&1); then
    echo ONESTOR_BITMAP=yes
  else
    echo "ONESTOR_BITMAP=$(printf '%s' "$err" | tail -n 1 | sed 's/^qemu-img: //')"
  fi
else
  echo "ONESTOR_BITMAP=a $fmt disk holds no bitmap"
fi
${statusFileScript(guard, request.vmDir, request.diskId, request.statusLine)}`;
}

/**
 * Removes every recovery bitmap from a disk that no domain runs on (mvds before the disk goes back
 * to its image, snap_revert after the disk changed under the chain). Not an error when there is
 * none or the disk is not qcow2.
 */
export function dropBitmapsScript(guard: Guard, disk: string): ShellScript {
  return sh`${guarded(guard, { write: [disk] })}
disk=${disk}
[ -f "$disk" ] || exit 0
qemu-img info --output=json -- "$disk" 2>/dev/null | grep -q '"format": "qcow2"' || exit 0
for b in $(qemu-img info --output=json -- "$disk" | awk ${BITMAP_NAMES_AWK} | grep ${`^${BITMAP_PREFIX}`}); do
  qemu-img bitmap --remove -- "$disk" "$b" || { echo "Cannot remove bitmap $b from $disk" >&2; exit 1; }
done`;
}

/** What {@linkcode periodJobScript} does. */
export interface PeriodJobRequest {
  uri: string;
  domain: string;
  vmDir: string;
  /** `<vm_dir>/disk.<i>`. */
  disk: string;
  diskId: number;
  /** The last point the disk's bitmap refers to, and when it was taken; null: none (full copy). */
  head: { id: number; time: number } | null;
  /** Id of the point this period makes. */
  newId: number;
  /** Scratch file name in the VM folder. */
  scratch: string;
  /** How the guest is held still while the job starts. */
  pause: PauseMode;
  freezeTimeoutSeconds: number;
  /** Seconds the job may take (0: no limit). */
  timeoutSeconds: number;
}

/** `ONESTOR_<KEY>=` values printed by {@linkcode periodJobScript}. */
export interface PeriodJobResult {
  /** Point time: epoch seconds on the hypervisor right before the job started. */
  time: number;
  mode: "incremental" | "full";
  /** Why a full copy (empty for an increment). */
  reason: string;
  quiesced: boolean | null;
  /** The disk's format and the target device. */
  format: string;
  target: string;
  /** Virtual size of the disk (and of the scratch). */
  vsize: number;
  /** Bytes of data in the scratch file. */
  data: number;
}

/**
 * One period's job: checks the domain and finds the disk's target; removes scratch files and
 * checkpoints of this disk that interrupted periods left; decides between an increment (the head
 * bitmap exists and libvirt validates it) and a full copy (raw disk, no head, or a bitmap that did
 * not survive: the reason is printed); runs the push-mode job into the scratch file, creating the
 * new point's checkpoint for a qcow2 disk; checks the domain's disks did not change.
 */
export function periodJobScript(guard: Guard, request: PeriodJobRequest): ShellScript {
  const scratch = `${request.vmDir}/${request.scratch}`;
  const newName = checkCheckpointName(bitmapName(request.diskId, request.newId));
  const headName = request.head ? checkCheckpointName(bitmapName(request.diskId, request.head.id)) : "";
  const prefix = `${BITMAP_PREFIX}${request.diskId}-`;
  const job = (incremental: boolean, checkpoint: boolean) =>
    pushBackupScript({
      uri: request.uri,
      domain: request.domain,
      disks: [{ target: "TARGET_PLACEHOLDER", file: scratch }],
      incrementalFrom: incremental ? headName : undefined,
      checkpoint: checkpoint ? newName : undefined,
      pause: request.pause,
      freezeTimeoutSeconds: request.freezeTimeoutSeconds,
      timeoutSeconds: request.timeoutSeconds,
    });
  // The target device is only known on the host: the job scripts are built for a placeholder and
  // the script substitutes the real (checked) name before running them.
  return sh`${guarded(guard, { write: [request.vmDir, scratch] })}
${virshPrelude(request.uri)}
${redefineFunction()}
dom=${request.domain}
disk=${request.disk}
state=$(onestor_domstate "$dom") || exit 1
case $state in
  running|paused|idle|blocked) ;;
  *) echo "Domain $dom does not run on this host ($state)" >&2; exit ${EXIT_NOT_RUNNING} ;;
esac
target=$(onestor_target "$dom" "$disk")
[ -n "$target" ] || { echo "Domain $dom has no disk $disk" >&2; exit ${EXIT_NOT_RUNNING}; }
case $target in *[!a-z0-9]*|'') echo "Unexpected target name $target" >&2; exit 1 ;; esac
src=$(onestor_source "$dom" "$target")
fmt=$(qemu-img info -U --output=json -- "$disk" | sed -n 's/^ *"format": *"\\([a-z0-9]*\\)".*/\\1/p' | head -n 1)
before=$(onestor_virsh domblklist "$dom" --details) || exit 1
# libvirt runs one job per domain; a second backup-begin would wait 30 s for its lock, then fail.
jinfo=$(onestor_virsh domjobinfo "$dom" 2>/dev/null)
jtype=$(printf '%s\n' "$jinfo" | awk -F: '/^Job type/ { gsub(/ /, "", $2); print $2 }')
case $jtype in
  Bounded|Unbounded)
    jop=$(printf '%s\n' "$jinfo" | awk -F: '/^Operation/ { gsub(/^ +| +$/, "", $2); print $2 }')
    echo "Domain $dom runs another job (\${jop:-unknown}, e.g. a backup): the point is taken at a next period" >&2
    exit ${EXIT_BUSY}
    ;;
esac
for f in ${request.vmDir}/${raw(scratchPrefix(request.diskId))}*; do [ -e "$f" ] && rm -f -- "$f"; done
for c in $(onestor_virsh checkpoint-list "$dom" --name | grep ${`^${prefix}[0-9][0-9]*$`}); do
  [ "$c" = ${headName} ] || onestor_drop "$dom" "$c"
done
mode=full
reason=""
if [ "$fmt" != qcow2 ]; then
  reason="a \${fmt:-non-qcow2} disk has no changed-block bitmap: each point copies the whole disk"
elif [ -z ${headName} ]; then
  reason="no earlier point to build on"
elif onestor_virsh checkpoint-list "$dom" --name | grep -qx ${headName}; then
  mode=incremental
elif err=$(onestor_redefine "$dom" ${headName} ${String(request.head?.time ?? 0)} yes "$target" 2>&1); then
  mode=incremental
else
  reason="the disk's bitmap ${headName} of the last point is missing or broken ($(printf '%s' "$err" | tail -n 1 | sed 's/^error: //'))"
fi
if [ "$fmt" = qcow2 ]; then
  # A bitmap of the new point's name, left by an interrupted period and unknown to libvirt.
  if onestor_redefine "$dom" ${newName} "$(date +%s)" no "$target" 2>/dev/null; then onestor_drop "$dom" ${newName}; fi
fi
echo "ONESTOR_MODE=$mode"
echo "ONESTOR_REASON=$reason"
echo "ONESTOR_FORMAT=$fmt"
echo "ONESTOR_TARGET=$target"
echo "ONESTOR_TIME=$(date +%s)"
if [ "$mode" = incremental ]; then
  job=${job(true, true).text}
elif [ "$fmt" = qcow2 ]; then
  job=${job(false, true).text}
else
  job=${job(false, false).text}
fi
job=$(printf '%s' "$job" | sed "s/TARGET_PLACEHOLDER/$target/g")
bash -c "$job" || exit $?
after=$(onestor_virsh domblklist "$dom" --details) || exit 1
if [ "$after" != "$before" ] || [ "$(onestor_source "$dom" "$target")" != "$src" ]; then
  echo "The disks of domain $dom changed while the job ran: before [$before], after [$after]" >&2
  exit ${EXIT_DISKS_CHANGED}
fi
echo "ONESTOR_VSIZE=$(qemu-img info -U --output=json -- ${scratch} | sed -n 's/^ *"virtual-size": *\\([0-9][0-9]*\\).*/\\1/p' | head -n 1)"
echo "ONESTOR_DATA=$(qemu-img map -U --output=json -f qcow2 -- ${scratch} | awk '/"data": true/ { sub(/.*"length": */, ""); sub(/,.*/, ""); n += $0 } END { printf "%d\\n", n }')"`;
}

/** Parses the output of {@linkcode periodJobScript}. */
export function parseJobOutput(stdout: string): PeriodJobResult {
  const v = (key: string) => stdout.match(new RegExp(`^ONESTOR_${key}=(.*)$`, "m"))?.[1] ?? "";
  const quiesced = stdout.match(new RegExp(`^${QUIESCED_MARKER}=(yes|no)$`, "m"))?.[1];
  return {
    time: Number(v("TIME")) || Math.floor(Date.now() / 1000),
    mode: v("MODE") === "incremental" ? "incremental" : "full",
    reason: v("REASON"),
    quiesced: quiesced === undefined ? null : quiesced === "yes",
    format: v("FORMAT"),
    target: v("TARGET"),
    vsize: Number(v("VSIZE")) || 0,
    data: Number(v("DATA")) || 0,
  };
}

/** What the after-period scripts clean. */
export interface PeriodCleanRequest {
  uri: string;
  domain: string;
  vmDir: string;
  diskId: number;
  scratch: string;
  /** The point the disk's bitmap referred to before the period (null: none). */
  oldHead: number | null;
  /** The point this period made. */
  newId: number;
  /** The target device, when the job found it. */
  target: string;
  statusLine: string;
}

/**
 * After the new point was committed on the replica: the scratch file goes, the old point's
 * checkpoint goes with its bitmap, the new point's checkpoint is forgotten by libvirt (metadata
 * only: its bitmap keeps recording for the next period, and a domain without recovery checkpoints
 * never stands in the way of a migration), and the monitoring line is written.
 */
export function periodDoneScript(guard: Guard, request: PeriodCleanRequest): ShellScript {
  const newName = checkCheckpointName(bitmapName(request.diskId, request.newId));
  const old = request.oldHead === null || request.oldHead === request.newId
    ? sh`:`
    : sh`old=${checkCheckpointName(bitmapName(request.diskId, request.oldHead))}
if ! onestor_virsh checkpoint-list "$dom" --name | grep -qx "$old"; then
  onestor_redefine "$dom" "$old" "$(date +%s)" no ${checkTarget(request.target)} 2>/dev/null || true
fi
onestor_drop "$dom" "$old"`;
  return sh`${failpoint("cleanup")}
${guarded(guard, { remove: [`${request.vmDir}/${request.scratch}`] })}
${virshPrelude(request.uri)}
${redefineFunction()}
dom=${request.domain}
rm -f -- ${`${request.vmDir}/${request.scratch}`}
state=$(onestor_domstate "$dom") || state=unknown
case $state in
  running|paused|idle|blocked)
    ${old}
    onestor_forget "$dom" ${newName}
    ;;
esac
${statusFileScript(guard, request.vmDir, request.diskId, request.statusLine)}`;
}

/**
 * After a failed period: the scratch file goes, the new point's checkpoint (if the job created it)
 * goes with its bitmap, the head's checkpoint is forgotten (its bitmap stays: the next period
 * builds on it), and the error is written into the monitoring line.
 */
export function abandonScript(guard: Guard, request: Omit<PeriodCleanRequest, "target">): ShellScript {
  const newName = checkCheckpointName(bitmapName(request.diskId, request.newId));
  const head = request.oldHead === null
    ? sh`:`
    : sh`onestor_forget "$dom" ${checkCheckpointName(bitmapName(request.diskId, request.oldHead))}`;
  return sh`${guarded(guard, { write: [request.vmDir] })}
${virshPrelude(request.uri)}
${redefineFunction()}
dom=${request.domain}
for f in ${request.vmDir}/${raw(scratchPrefix(request.diskId))}*; do [ -e "$f" ] && rm -f -- "$f"; done
state=$(onestor_domstate "$dom") || state=unknown
case $state in
  running|paused|idle|blocked)
    if onestor_virsh checkpoint-list "$dom" --name | grep -qx ${newName}; then onestor_drop "$dom" ${newName}; fi
    ${head}
    ;;
esac
${statusFileScript(guard, request.vmDir, request.diskId, request.statusLine)}`;
}

/**
 * Aborts a recovery backup job running on the domain (premigrate: a migration cannot start while
 * a block job runs). Only a job whose target is one of onestor's scratch files is aborted, never
 * an OpenNebula backup. Prints `ONESTOR_ABORTED=1` when it aborted one.
 */
export function abortRecoveryJobScript(uri: string, domain: string): ShellScript {
  return sh`${virshPrelude(uri)}
dom=${domain}
state=$(onestor_domstate "$dom") || exit 0
[ "$state" = absent ] && exit 0
xml=$(onestor_virsh backup-dumpxml "$dom" 2>/dev/null) || exit 0
case $xml in
  *"/.onestor-rec-"*)
    onestor_virsh domjobabort "$dom" >/dev/null 2>&1 && echo ONESTOR_ABORTED=1
    ;;
esac
exit 0`;
}

/**
 * Whether the recovery chain of a disk goes on after a live migration: the checkpoint of the head
 * point is redefined from the bitmap that travelled with the disk and validated by libvirt, then
 * forgotten again. Prints `ONESTOR_CHAIN=ok` or `ONESTOR_CHAIN=<why not>`.
 */
export function probeChainScript(
  uri: string,
  domain: string,
  disk: string,
  diskId: number,
  head: number,
): ShellScript {
  const name = checkCheckpointName(bitmapName(diskId, head));
  return sh`${virshPrelude(uri)}
${redefineFunction()}
dom=${domain}
target=$(onestor_target "$dom" ${disk})
[ -n "$target" ] || { echo "ONESTOR_CHAIN=the domain has no disk ${disk}"; exit 0; }
if onestor_virsh checkpoint-list "$dom" --name | grep -qx ${name}; then echo ONESTOR_CHAIN=ok; exit 0; fi
if err=$(onestor_redefine "$dom" ${name} "$(date +%s)" yes "$target" 2>&1); then
  onestor_forget "$dom" ${name}
  echo ONESTOR_CHAIN=ok
else
  echo "ONESTOR_CHAIN=$(printf '%s' "$err" | tail -n 1 | sed 's/^error: //')"
fi`;
}
