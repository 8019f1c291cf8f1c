/**
 * What the live operations need to know about a VM's domain on its hypervisor: its libvirt name
 * (`DEPLOY_ID`) and whether its VMM driver is one whose domains libvirt runs (kvm, qemu).
 *
 * @module
 */

import { InputError } from "../errors.ts";
import type { VmView } from "../one/objects.ts";

/** VMM drivers whose domains run under libvirt/QEMU on the host. */
export const LIBVIRT_VMMS: readonly string[] = ["kvm", "qemu"];

/** The VMM driver of the VM's current placement (`HISTORY[last()]/VM_MAD`). */
export function vmMadOf(vm: VmView): string {
  return vm.historyLast("VM_MAD").trim();
}

/**
 * The domain name of a VM that runs under libvirt, checked: the VMM must be kvm/qemu and the
 * VM must have been deployed (`DEPLOY_ID` set).
 *
 * @throws {InputError} naming the operation when the VM cannot be operated live.
 */
export function liveDomain(vm: VmView, operation: string): string {
  const mad = vmMadOf(vm);
  if (!LIBVIRT_VMMS.includes(mad)) {
    throw new InputError(`${operation}: live operation not supported on ${mad || "an unknown hypervisor"}`);
  }
  const domain = vm.deployId.trim();
  if (domain === "") throw new InputError(`${operation}: VM ${vm.id} has no DEPLOY_ID (never deployed)`);
  return domain;
}
