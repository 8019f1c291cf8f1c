/**
 * Holding a running domain still while a command reads its disk: through the guest agent
 * (`virsh domfsfreeze`, bounded by VIRSH_TIMEOUT, thawed by `domfsthaw`) or by pausing the vCPUs
 * (`virsh suspend` / `resume`). The release always runs, on success and on failure, so a domain
 * is never left frozen or paused by a failed copy. A domain the administrator had already paused
 * is neither suspended nor resumed.
 *
 * Without a guest agent (the lab's QEMU has no guest OS) `domfsfreeze` fails: callers then fall
 * back to suspending, or fail, as the operation demands.
 *
 * @module
 */

import { raw, sh, type ShellScript } from "../remote/shell.ts";
import { virshPrelude } from "./virsh.ts";

/**
 * How the domain is held still: guest agent freeze (required), guest agent freeze when the guest
 * has an agent (`agent-if-present`: without one the copy is crash-consistent), vCPU pause, or not
 * at all.
 */
export type PauseMode = "agent" | "agent-if-present" | "suspend" | "none";

/** Line printed by the `agent-if-present` fragment: `ONESTOR_QUIESCED=yes` or `=no`. */
export const QUIESCED_MARKER = "ONESTOR_QUIESCED";

/** Exit status when the domain could not be frozen or paused (nothing was run). */
export const EXIT_PAUSE_FAILED = 80;

/**
 * Script fragment (after {@linkcode virshPrelude}, with `$dom` set) that holds the domain still
 * and arms an EXIT trap releasing it; exits {@linkcode EXIT_PAUSE_FAILED} when it cannot.
 */
export function pauseFragment(mode: PauseMode, timeoutSeconds: number): ShellScript {
  switch (mode) {
    case "none":
      return raw("true");
    case "agent":
      // The thaw is armed before the freeze: a freeze that times out may still land in the guest.
      return sh`trap 'onestor_virsh domfsthaw "$dom" >/dev/null 2>&1' EXIT
if ! perr=$(timeout ${timeoutSeconds} virsh -q -c "$onestor_uri" domfsfreeze "$dom" 2>&1); then
  echo "Cannot freeze the file systems of domain $dom through the guest agent: $(printf '%s' "$perr" | tail -n 1)" >&2
  exit ${EXIT_PAUSE_FAILED}
fi`;
    case "agent-if-present":
      // No agent (or one that does not answer in time) is not an error: the copy is then
      // crash-consistent, as after a power cut, and the marker says so.
      return sh`trap 'onestor_virsh domfsthaw "$dom" >/dev/null 2>&1' EXIT
if timeout ${timeoutSeconds} virsh -q -c "$onestor_uri" domfsfreeze "$dom" >/dev/null 2>&1; then
  echo ${QUIESCED_MARKER}=yes
else
  echo ${QUIESCED_MARKER}=no
fi`;
    case "suspend":
      return sh`pstate=$(onestor_domstate "$dom") || exit ${EXIT_PAUSE_FAILED}
if [ "$pstate" != paused ]; then
  trap 'onestor_virsh resume "$dom" >/dev/null 2>&1' EXIT
  if ! perr=$(onestor_virsh suspend "$dom" 2>&1); then
    echo "Cannot suspend domain $dom: $(printf '%s' "$perr" | tail -n 1)" >&2
    exit ${EXIT_PAUSE_FAILED}
  fi
fi`;
  }
}

/** What {@linkcode pausedCopyScript} copies. */
export interface PausedCopyRequest {
  /** libvirt URI. */
  uri: string;
  /** Domain name. */
  domain: string;
  /** Disk file to read (absolute; a symlink is followed). */
  src: string;
  /** Destination file (absolute), written aside and renamed when complete. */
  dest: string;
  /** How the domain is held still while copying. */
  mode: Exclude<PauseMode, "none">;
  /** Seconds to wait for the guest agent's freeze (VIRSH_TIMEOUT). */
  freezeTimeoutSeconds: number;
}

/**
 * The fallback copies of a running disk (upstream's cpds): freeze or suspend the domain, copy the
 * file sparsely aside, rename it into place, release the domain.
 */
export function pausedCopyScript(request: PausedCopyRequest): ShellScript {
  const tmp = `${request.dest}.onestor-tmp`;
  return sh`${virshPrelude(request.uri)}
dom=${request.domain}
${pauseFragment(request.mode, request.freezeTimeoutSeconds)}
rm -f -- ${tmp}
if ! cp --sparse=always -L -- ${request.src} ${tmp}; then rm -f -- ${tmp}; exit 74; fi
mv -f -- ${tmp} ${request.dest}`;
}
