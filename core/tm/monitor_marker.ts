/**
 * The `.monitor` marker of a system datastore folder on a host. OpenNebula's host probe
 * (`monitor_ds_vm.rb`) runs `/var/tmp/one/tm/<marker content>/monitor_ds <ds folder>` for every
 * datastore folder holding one, so a host reports its VM disk sizes only once a marker naming the
 * installed driver sits in `<DS_LOC>/<sys_ds>/.monitor`.
 *
 * Upstream's mv wrote the marker one level too high (`<DS_LOC>/.monitor`); here every caller passes
 * the system datastore folder itself.
 *
 * @module
 */

import { sh, type ShellScript } from "../remote/shell.ts";

/**
 * Script fragment that creates `dsDir` and writes `driver` into `dsDir/.monitor` when its content
 * differs (a rename, so the probe never reads a half-written marker). The temporary name carries
 * the shell's pid: deployments and migrations to one host write the marker at the same moment, and a
 * shared name let one rename take the other's file away.
 */
export function markerScript(dsDir: string, driver: string): ShellScript {
  const marker = `${dsDir}/.monitor`;
  // Read with the shell's own `read` (no process when the marker is already right, as it is for
  // every deployment but a host's first).
  return sh`[ -d ${dsDir} ] || mkdir -p -- ${dsDir} || exit 1
_mk=
{ IFS= read -r _mk || :; } 2>/dev/null <${marker}
if [ "$_mk" != ${driver} ]; then
  printf '%s\\n' ${driver} >${marker}.tmp.$$ && mv -f -- ${marker}.tmp.$$ ${marker} ||
    { rm -f -- ${marker}.tmp.$$; [ "$(cat -- ${marker} 2>/dev/null)" = ${driver} ] || exit 1; }
fi`;
}
