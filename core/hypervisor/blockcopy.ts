/**
 * A point-in-time copy of a running domain's disk, made by the hypervisor: `virsh blockcopy --wait
 * --finish` mirrors the disk into a new file while the guest keeps writing and ends the job without
 * pivoting, so the copy holds the disk as it was when the job finished (crash-consistent) and the
 * domain keeps its own disk.
 *
 * The script around it makes the copy safe to retry and safe to fail:
 * - the copy is written under a temporary name next to its destination and renamed only once the
 *   job finished, so the destination never holds a half-written copy;
 * - a copy job this driver left behind on the same disk (a lost connection during an earlier try)
 *   is aborted first; a job of anybody else is never touched: libvirt's "active block job" answer is
 *   retried like upstream (3 tries, 5 s apart), then reported;
 * - on any failure the temporary file is removed and, if our job still runs, it is aborted without
 *   pivot;
 * - in every case the disk's source in the domain is checked before and after: if it ever changes,
 *   the script fails loudly instead of reporting success (upstream #5920 left a VM on a temporary
 *   overlay).
 *
 * @module
 */

import { InputError } from "../errors.ts";
import { basenameOf, dirnameOf } from "../one/location.ts";
import { raw, sh, type ShellScript } from "../remote/shell.ts";
import { BUSY_BLOCK_JOB, virshPrelude } from "./virsh.ts";

/** Exit status of the script when the disk is not attached to the domain. */
export const EXIT_NOT_ATTACHED = 3;
/** Exit status when the domain's disk source changed during the operation. */
export const EXIT_SOURCE_CHANGED = 75;

/** Marker in the name of every temporary blockcopy target (finds leftovers of earlier tries). */
export const BLOCKCOPY_TMP_MARK = ".onestor-blockcopy-";

/** What {@linkcode blockCopyScript} copies. */
export interface BlockCopyRequest {
  /** libvirt URI (`qemu:///system`). */
  uri: string;
  /** Domain name (`one-7`). */
  domain: string;
  /** The disk as the VM directory names it (`<vmdir>/disk.0`, possibly a symlink). */
  disk: string;
  /** Final path of the copy (absolute); replaced atomically when the copy is complete. */
  dest: string;
  /** Format of the copy (`raw`, `qcow2`); absent: the format of the disk's active layer. */
  format?: string;
  /** Tries while libvirt answers "active block job" (default 3). */
  tries?: number;
  /** Seconds between tries (default 5). */
  delaySeconds?: number;
  /** Abort the job after this many seconds (0 or absent: no limit). */
  timeoutSeconds?: number;
  /** Random token for the temporary name (tests pass a fixed one). */
  token?: string;
}

function token(): string {
  return [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The temporary name the copy is written under, next to `dest`. */
export function blockCopyTmpPath(dest: string, disk: string, tok: string): string {
  return `${dirnameOf(dest)}/${BLOCKCOPY_TMP_MARK}${basenameOf(disk)}-${tok}`;
}

/**
 * Defines `onestor_mirror DOMAIN TARGET`: prints the file a copy job of disk TARGET currently
 * mirrors into (from the live domain XML), or nothing.
 */
function mirrorFunction(): ShellScript {
  return raw(`onestor_mirror() {
  onestor_virsh dumpxml "$1" | awk -v t="$2" -v q="'" '
    /<disk /            { inside = 1; m = "" }
    inside && /<mirror / {
      i = index($0, "file=" q)
      if (i > 0) { rest = substr($0, i + 6); m = substr(rest, 1, index(rest, q) - 1) }
    }
    inside && /<target / && index($0, "dev=" q t q) > 0 { found = m }
    /<\\/disk>/          { inside = 0 }
    END                 { if (found != "") print found }'
}`);
}

/**
 * The host-side script: blockcopy of `disk` into `dest` with the guarantees of the module doc.
 * Prints nothing on success; fails with a one-line reason on stderr.
 */
export function blockCopyScript(request: BlockCopyRequest): ShellScript {
  for (const p of [request.disk, request.dest]) {
    if (!p.startsWith("/")) throw new InputError(`blockcopy needs absolute paths, got ${p}`);
  }
  const tmp = blockCopyTmpPath(request.dest, request.disk, request.token ?? token());
  const format = request.format ? sh`--format ${request.format}` : raw("");
  const timeout = request.timeoutSeconds && request.timeoutSeconds > 0
    ? sh`--timeout ${request.timeoutSeconds}`
    : raw("");
  return sh`${virshPrelude(request.uri)}
${mirrorFunction()}
dom=${request.domain}
disk=${request.disk}
dest=${request.dest}
tmp=${tmp}
mark=${`${BLOCKCOPY_TMP_MARK}${basenameOf(request.disk)}-`}
state=$(onestor_domstate "$dom") || exit 1
if [ "$state" = absent ]; then echo "Domain $dom does not exist on this host" >&2; exit 1; fi
target=$(onestor_target "$dom" "$disk")
if [ -z "$target" ]; then echo "Disk $disk is not attached to domain $dom" >&2; exit ${EXIT_NOT_ATTACHED}; fi
before=$(onestor_source "$dom" "$target")
# A copy job of ours left by an earlier try (its mirror file carries our marker): abort it.
old=$(onestor_mirror "$dom" "$target")
case $old in
  */"$mark"*)
    onestor_virsh blockjob "$dom" "$target" --abort >/dev/null 2>&1
    rm -f -- "$old"
    ;;
esac
mkdir -p -- "$(dirname -- "$dest")" || exit 73
# Created here, by oneadmin, so that QEMU (running as oneadmin, no dynamic ownership) can open it.
rm -f -- "$tmp" && : >"$tmp" || exit 73
err=$(mktemp) || exit 70
onestor_retry ${BUSY_BLOCK_JOB} ${request.tries ?? 3} ${request.delaySeconds ?? 5} \\
  onestor_virsh blockcopy "$dom" "$target" "$tmp" --wait --finish ${format} ${timeout} >/dev/null 2>"$err"
rc=$?
if [ "$rc" -ne 0 ] && grep -q 'not transient' "$err"; then
  # A persistent domain (not one OpenNebula started): a copy job that is not kept in its definition.
  onestor_retry ${BUSY_BLOCK_JOB} ${request.tries ?? 3} ${request.delaySeconds ?? 5} \\
    onestor_virsh blockcopy "$dom" "$target" "$tmp" --wait --finish --transient-job ${format} ${timeout} \\
    >/dev/null 2>"$err"
  rc=$?
fi
if [ "$rc" -ne 0 ]; then
  if [ "$(onestor_mirror "$dom" "$target")" = "$tmp" ]; then
    onestor_virsh blockjob "$dom" "$target" --abort >/dev/null 2>&1
  fi
  rm -f -- "$tmp"
fi
after=$(onestor_source "$dom" "$target")
if [ "$after" != "$before" ]; then
  echo "Domain $dom disk $target now uses $after instead of $before: check the domain before anything else" >&2
  exit ${EXIT_SOURCE_CHANGED}
fi
if [ "$rc" -ne 0 ]; then
  msg=$(grep -v '^$' "$err" | tail -n 1)
  rm -f -- "$err"
  echo "blockcopy of $disk (domain $dom, disk $target) failed: \${msg:-exit code $rc}" >&2
  exit "$rc"
fi
rm -f -- "$err"
mv -f -- "$tmp" "$dest" || { rm -f -- "$tmp"; exit 74; }`;
}
