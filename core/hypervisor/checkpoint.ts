/**
 * libvirt checkpoints from a disk's persistent dirty bitmaps. A checkpoint is libvirt's name for a
 * bitmap that QEMU keeps in a qcow2 disk: the bitmap travels with the disk (it is stored in the
 * qcow2 file and moved by a live migration with `--copy-storage-all`), the checkpoint metadata
 * does not (a transient domain loses it with libvirtd, the migration destination never has it).
 * Before a backup job can use a bitmap, its checkpoint is therefore redefined from it.
 *
 * Facts measured with libvirt 9.0 / QEMU 7.2 (see docs/recovery.md):
 * - `checkpoint-create --redefine` needs `<creationTime>`; without it libvirt answers "missing
 *   creationTime from existing checkpoint";
 * - `--redefine-validate` makes libvirt check that the bitmap exists in the running QEMU and is
 *   consistent ("checkpoint inconsistent: missing or broken bitmap"): the test that a chain of
 *   increments can go on;
 * - `checkpoint-delete NAME --metadata` forgets the checkpoint and keeps the bitmap recording, so a
 *   domain can carry bitmaps without checkpoints between backups.
 *
 * @module
 */

import { InputError } from "../errors.ts";
import { sh, type ShellScript } from "../remote/shell.ts";

/** Characters allowed in the checkpoint and bitmap names onestor makes. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** A target device name (`vda`, `sdb`). */
const TARGET = /^[a-z]+[0-9a-z]*$/;

/** Checks a checkpoint (= bitmap) name before it is written into XML or a script. */
export function checkCheckpointName(name: string): string {
  if (!NAME.test(name)) throw new InputError(`Invalid checkpoint name '${name}'`);
  return name;
}

/** Checks a target device name. */
export function checkTarget(target: string): string {
  if (!TARGET.test(target)) throw new InputError(`Invalid disk target '${target}'`);
  return target;
}

/**
 * Defines `onestor_redefine DOMAIN NAME TIME VALIDATE TARGET...`: redefines checkpoint NAME from the
 * bitmap NAME of each TARGET disk, created at TIME (epoch seconds); with VALIDATE `yes` libvirt
 * checks that the bitmaps exist and are consistent and the call fails when they are not. Names and
 * targets are checked by the caller ({@linkcode checkCheckpointName}, {@linkcode checkTarget}).
 * Needs `onestor_virsh` (core/hypervisor/virsh.ts).
 */
export function redefineFunction(): ShellScript {
  return sh`onestor_redefine() {
  _d=$1 _n=$2 _t=$3 _v=$4
  shift 4
  _x=$(mktemp) || return 70
  {
    printf '<domaincheckpoint><name>%s</name><creationTime>%s</creationTime><disks>' "$_n" "$_t"
    for _g in "$@"; do printf '<disk name="%s" checkpoint="bitmap" bitmap="%s"/>' "$_g" "$_n"; done
    printf '</disks></domaincheckpoint>'
  } >"$_x"
  if [ "$_v" = yes ]; then
    onestor_virsh checkpoint-create "$_d" "$_x" --redefine --redefine-validate >/dev/null
  else
    onestor_virsh checkpoint-create "$_d" "$_x" --redefine >/dev/null
  fi
  _r=$?
  rm -f -- "$_x"
  return "$_r"
}
onestor_forget() { onestor_virsh checkpoint-delete "$1" "$2" --metadata >/dev/null 2>&1; }
onestor_drop() {
  onestor_virsh checkpoint-delete "$1" "$2" >/dev/null 2>&1 || onestor_virsh checkpoint-delete "$1" "$2" --metadata >/dev/null 2>&1
}`;
}
