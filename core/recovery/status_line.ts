/**
 * The line a period leaves beside the disk (`<vm_dir>/disk.<i>.recovery`) for OpenNebula's
 * monitoring: the host-side `monitor_ds` script adds it to the VM's MONITOR payload, so `onevm
 * show` shows it as upstream's probe did (spec §5.3):
 * ```
 * DISK_RECOVERY_SNAPSHOT = [ ID=0, TIMESTAMP="1700000000" ]
 * DISK_RECOVERY_SNAPSHOT = [ ID=0, TIMESTAMP="1700000000", MSG="ERROR <why the last period failed>" ]
 * ```
 * TIMESTAMP is the time of the newest point (absent while there is none); MSG is present when the
 * last period failed (upstream then dropped the TIMESTAMP).
 *
 * @module
 */

/** Makes a message safe inside a double-quoted template value, on one line. */
export function templateText(text: string, max = 240): string {
  const clean = text.replace(/[\\"]/g, "'").replace(/[\r\n\t]+/g, " ").replace(/[^\x20-\x7e]/g, "?").trim();
  return clean.length > max ? `${clean.slice(0, max - 3)}...` : clean;
}

/** The monitoring line of disk `diskId`. */
export function statusLine(diskId: number, lastPointTime: number | null, error: string | null): string {
  const parts = [`ID=${diskId}`];
  if (lastPointTime !== null) parts.push(`TIMESTAMP="${lastPointTime}"`);
  if (error !== null) parts.push(`MSG="ERROR ${templateText(error)}"`);
  return `DISK_RECOVERY_SNAPSHOT = [ ${parts.join(", ")} ]`;
}
