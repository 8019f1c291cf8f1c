/**
 * Scripts that OpenNebula runs on the hypervisors themselves (through its monitoring probes), laid
 * by `install` as plain POSIX shell files: hosts need nothing of onestor's.
 *
 * @module
 */

/**
 * `monitor_ds <DS_LOC>/<sys_ds>`: per VM, the allocated size of each disk and of each of its
 * snapshots (spec §6.3), and for a disk with recovery points the `DISK_RECOVERY_SNAPSHOT` line its
 * last period left in `disk.<i>.recovery` (spec §5.3's format, so `onevm show` has it in the VM's
 * monitoring as with upstream's probe). Unlike upstream, snapshot ids of any length are reported.
 */
export function monitorDsScript(driver: string): string {
  return `#!/bin/sh
# onestor ${driver}/monitor_ds, laid by 'onestor install'. Runs on the hypervisors (OpenNebula's
# monitor_ds_vm.rb probe calls it for every system datastore folder whose .monitor names this
# driver) and prints, per VM, the allocated size in MiB of each disk and of each disk snapshot.
DS_DIR=\${1%/}
cd "$DS_DIR" 2>/dev/null || exit 0
for vm in *; do
  case $vm in ''|*[!0-9]*) continue ;; esac
  [ -d "$vm" ] || continue
  out=""
  for disk in "$vm"/disk.*; do
    name=\${disk##*/}
    id=\${name#disk.}
    case $id in ''|*[!0-9]*) continue ;; esac
    [ -e "$disk" ] || continue
    size=$(du -mL "$disk" 2>/dev/null | cut -f1)
    out="$out
DISK_SIZE = [ ID=$id, SIZE=\${size:-0} ]"
    # The line onestor's last recovery period left beside the disk (docs/recovery.md).
    if [ -f "$disk.recovery" ]; then
      line=$(head -n 1 "$disk.recovery")
      case $line in
        "DISK_RECOVERY_SNAPSHOT = [ ID=$id, "*" ]") out="$out
$line" ;;
      esac
    fi
    [ -d "$disk.snap" ] || continue
    for snap in "$disk.snap"/*; do
      sid=\${snap##*/}
      case $sid in ''|*[!0-9]*) continue ;; esac
      [ -f "$snap" ] || continue
      ssize=$(du -mL "$snap" 2>/dev/null | cut -f1)
      out="$out
SNAPSHOT_SIZE = [ ID=$sid, DISK_ID=$id, SIZE=\${ssize:-0} ]"
    done
  done
  [ -n "$out" ] || continue
  printf 'VM = [ ID = %s, MONITOR = "%s"]\\n' "$vm" "$(printf '%s\\n' "$out" | base64 -w0)"
done
exit 0
`;
}

/** The content of a host-side action file, by action name. */
export function hostScriptFor(action: string, driver: string): string {
  switch (action) {
    case "monitor_ds":
      return monitorDsScript(driver);
    default:
      throw new Error(`No host-side script for ${action}`);
  }
}
