/**
 * virsh on the hypervisors, as script fragments. Every live operation is a shell script the
 * front-end sends to the host, where `virsh -c <LIBVIRT_URI>` talks to the local libvirtd as
 * oneadmin (OpenNebula's KVM nodes give oneadmin the read-write libvirt socket).
 *
 * The fragments here define shell functions that the larger scripts of this folder call:
 * `onestor_virsh` (virsh with the URI), `onestor_retry` (retry while stderr matches), and
 * `onestor_domstate` (a domain's state, or `absent`).
 *
 * @module
 */

import { sh, type ShellScript } from "../remote/shell.ts";

/** Error text of libvirt when a disk already runs a block job (blockcopy, blockcommit, backup). */
export const BUSY_BLOCK_JOB = "active block job";

/** States `virsh domstate` prints for a domain whose QEMU process exists. */
export const ACTIVE_STATES: readonly string[] = [
  "running",
  "idle",
  "paused",
  "in shutdown",
  "pmsuspended",
  "blocked",
];

/** Whether a state printed by {@linkcode domStateFunction} means the domain exists and runs (or is paused). */
export function isActiveState(state: string): boolean {
  return ACTIVE_STATES.includes(state.trim());
}

/**
 * Sets `onestor_uri` and defines `onestor_virsh ARGS...`: `virsh -q -c "$onestor_uri" ARGS...`
 * (commands run under `timeout`, which cannot call a function, use the variable).
 */
export function virshFunction(uri: string): ShellScript {
  return sh`onestor_uri=${uri}
onestor_virsh() { virsh -q -c "$onestor_uri" "$@"; }`;
}

/**
 * Defines `onestor_retry MATCH TRIES DELAY CMD...`: runs CMD, and while it fails with MATCH in its
 * standard error, runs it again after DELAY seconds, at most TRIES times in all (upstream's
 * `retry_if_no_error`). Other failures return at once with CMD's status and standard error.
 */
export function retryFunction(): ShellScript {
  return sh`onestor_retry() {
  _m=$1 _n=$2 _s=$3
  shift 3
  _e=$(mktemp) || return 70
  _i=1
  while :; do
    "$@" 2>"$_e"
    _rc=$?
    if [ "$_rc" -eq 0 ]; then cat "$_e" >&2; rm -f "$_e"; return 0; fi
    if [ "$_i" -ge "$_n" ] || ! grep -q -- "$_m" "$_e"; then cat "$_e" >&2; rm -f "$_e"; return "$_rc"; fi
    _i=$((_i + 1))
    sleep "$_s"
  done
}`;
}

/**
 * Defines `onestor_domstate DOMAIN`: prints the domain's state (`running`, `paused`, `shut off`,
 * ...) or `absent` when libvirt does not know it; fails (status of virsh) only when libvirt
 * cannot be asked. Needs {@linkcode virshFunction}.
 */
export function domStateFunction(): ShellScript {
  return sh`onestor_domstate() {
  _out=$(onestor_virsh domstate "$1" 2>&1)
  _rc=$?
  if [ "$_rc" -eq 0 ]; then printf '%s\\n' "$_out"; return 0; fi
  case $_out in
    *"ailed to get domain"*|*"omain not found"*|*"no domain with matching"*) echo absent; return 0 ;;
  esac
  printf '%s\\n' "$_out" >&2
  return "$_rc"
}`;
}

/**
 * Defines `onestor_target DOMAIN PATH`: prints the target device (`vda`) of the domain's disk whose
 * source is PATH, or resolves to the same file as PATH (a recovery-layout disk is a symlink the
 * domain may know under either name); prints nothing when no disk matches. Needs
 * {@linkcode virshFunction}.
 */
export function targetFunction(): ShellScript {
  return sh`onestor_target() {
  _want=$(readlink -f -- "$2" 2>/dev/null) || _want=$2
  onestor_virsh domblklist "$1" --details | while read -r _type _device _target _source; do
    [ -n "$_source" ] || continue
    if [ "$_source" = "$2" ] || [ "$(readlink -f -- "$_source" 2>/dev/null)" = "$_want" ]; then
      printf '%s\\n' "$_target"
      break
    fi
  done
}`;
}

/**
 * Defines `onestor_source DOMAIN TARGET`: prints the source file of the domain's disk TARGET as
 * libvirt sees it now (empty when there is no such disk). Needs {@linkcode virshFunction}.
 */
export function sourceFunction(): ShellScript {
  return sh`onestor_source() {
  onestor_virsh domblklist "$1" --details | while read -r _type _device _target _source; do
    if [ "$_target" = "$2" ]; then printf '%s\\n' "$_source"; break; fi
  done
}`;
}

/** The functions every live script of this folder starts with. */
export function virshPrelude(uri: string): ShellScript {
  return sh`${virshFunction(uri)}
${retryFunction()}
${domStateFunction()}
${targetFunction()}
${sourceFunction()}`;
}

/** One row of `virsh domblklist --details`. */
export interface BlockDevice {
  /** `file`, `block`, `network`. */
  type: string;
  /** `disk`, `cdrom`, `floppy`, `lun`. */
  device: string;
  /** Target device (`vda`). */
  target: string;
  /** Source path (`-` for an empty CD-ROM). */
  source: string;
}

/** Parses `virsh [-q] domblklist --details` output (header lines are skipped). */
export function parseBlockDevices(text: string): BlockDevice[] {
  const rows: BlockDevice[] = [];
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t === "" || /^-+$/.test(t) || /^Type\s+Device\s+Target\s+Source$/.test(t)) continue;
    const m = t.match(/^(\S+)\s+(\S+)\s+(\S+)\s+(.*)$/);
    if (!m) continue;
    rows.push({ type: m[1], device: m[2], target: m[3], source: m[4] });
  }
  return rows;
}
