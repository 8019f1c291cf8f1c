/**
 * VM states as oned names them, and a recorder that polls oned (`one.vm.info`, every 0.1 s by default)
 * and keeps every state change it sees with a sub-second time stamp. oned's own logs (vm.log) have
 * whole seconds only; the recorder gives the timeline and catches states a test did not wait for.
 *
 * @module
 */

import type { OneClient } from "../../core/one/xmlrpc.ts";
import { childText, parseXml, type XmlElement } from "../../core/one/xml.ts";

/** VM `STATE` names by number (VirtualMachine.h, as the Ruby CLI prints them). */
export const VM_STATE_NAMES: readonly string[] = [
  "INIT",
  "PENDING",
  "HOLD",
  "ACTIVE",
  "STOPPED",
  "SUSPENDED",
  "DONE",
  "FAILED",
  "POWEROFF",
  "UNDEPLOYED",
  "CLONING",
  "CLONING_FAILURE",
];

/** VM `LCM_STATE` names by number (VirtualMachine.h, as the Ruby CLI prints them). */
export const LCM_STATE_NAMES: readonly string[] = [
  "LCM_INIT",
  "PROLOG",
  "BOOT",
  "RUNNING",
  "MIGRATE",
  "SAVE_STOP",
  "SAVE_SUSPEND",
  "SAVE_MIGRATE",
  "PROLOG_MIGRATE",
  "PROLOG_RESUME",
  "EPILOG_STOP",
  "EPILOG",
  "SHUTDOWN",
  "CANCEL",
  "FAILURE",
  "CLEANUP_RESUBMIT",
  "UNKNOWN",
  "HOTPLUG",
  "SHUTDOWN_POWEROFF",
  "BOOT_UNKNOWN",
  "BOOT_POWEROFF",
  "BOOT_SUSPENDED",
  "BOOT_STOPPED",
  "CLEANUP_DELETE",
  "HOTPLUG_SNAPSHOT",
  "HOTPLUG_NIC",
  "HOTPLUG_SAVEAS",
  "HOTPLUG_SAVEAS_POWEROFF",
  "HOTPLUG_SAVEAS_SUSPENDED",
  "SHUTDOWN_UNDEPLOY",
  "EPILOG_UNDEPLOY",
  "PROLOG_UNDEPLOY",
  "BOOT_UNDEPLOY",
  "HOTPLUG_PROLOG_POWEROFF",
  "HOTPLUG_EPILOG_POWEROFF",
  "BOOT_MIGRATE",
  "BOOT_FAILURE",
  "BOOT_MIGRATE_FAILURE",
  "PROLOG_MIGRATE_FAILURE",
  "PROLOG_FAILURE",
  "EPILOG_FAILURE",
  "EPILOG_STOP_FAILURE",
  "EPILOG_UNDEPLOY_FAILURE",
  "PROLOG_MIGRATE_POWEROFF",
  "PROLOG_MIGRATE_POWEROFF_FAILURE",
  "PROLOG_MIGRATE_SUSPEND",
  "PROLOG_MIGRATE_SUSPEND_FAILURE",
  "BOOT_UNDEPLOY_FAILURE",
  "BOOT_STOPPED_FAILURE",
  "PROLOG_RESUME_FAILURE",
  "PROLOG_UNDEPLOY_FAILURE",
  "DISK_SNAPSHOT_POWEROFF",
  "DISK_SNAPSHOT_REVERT_POWEROFF",
  "DISK_SNAPSHOT_DELETE_POWEROFF",
  "DISK_SNAPSHOT_SUSPENDED",
  "DISK_SNAPSHOT_REVERT_SUSPENDED",
  "DISK_SNAPSHOT_DELETE_SUSPENDED",
  "DISK_SNAPSHOT",
  "DISK_SNAPSHOT_REVERT",
  "DISK_SNAPSHOT_DELETE",
  "PROLOG_MIGRATE_UNKNOWN",
  "PROLOG_MIGRATE_UNKNOWN_FAILURE",
  "DISK_RESIZE",
  "DISK_RESIZE_POWEROFF",
  "DISK_RESIZE_UNDEPLOYED",
  "HOTPLUG_NIC_POWEROFF",
  "HOTPLUG_RESIZE",
  "HOTPLUG_SAVEAS_UNDEPLOYED",
  "HOTPLUG_SAVEAS_STOPPED",
  "BACKUP",
  "BACKUP_POWEROFF",
  "RESTORE",
];

/** A VM's state as one name: the LCM state while ACTIVE (`RUNNING`, `PROLOG`, ...), else the VM state. */
export function stateName(state: number, lcm: number): string {
  if (state === 3) return LCM_STATE_NAMES[lcm] ?? `LCM_${lcm}`;
  return VM_STATE_NAMES[state] ?? `STATE_${state}`;
}

/** Whether a state name is one of oned's failure states (`PROLOG_FAILURE`, `CLONING_FAILURE`, ...). */
export function isFailure(name: string): boolean {
  return /FAILURE|^FAILED$/.test(name);
}

/** One state change seen by a {@linkcode StateRecorder}. */
export interface SeenState {
  /** Milliseconds since the epoch, sub-second (the poll that first saw it). */
  at: number;
  /** {@linkcode stateName} of the VM. */
  name: string;
  /** Host of the last history record ("" before the first placement). */
  host: string;
}

/**
 * Polls oned every `intervalMs` for the VMs it watches and records each change of state: one
 * `one.vm.info` per tick while one VM is watched, one `one.vmpool.info` over the watched ids while
 * several are (so 8 parallel deployments cost oned one call per tick, not eight). Waiting reads
 * what the poll saw; it adds no calls of its own.
 */
export class StateRecorder {
  readonly #client: OneClient;
  readonly #intervalMs: number;
  readonly #seen = new Map<number, SeenState[]>();
  readonly #latest = new Map<number, SeenState>();
  readonly #active = new Set<number>();
  #tick: Promise<void> = Promise.resolve();
  #tickDone: () => void = () => {};
  #loop: Promise<void> | null = null;
  #stopped = false;
  /** XML-RPC calls made so far (to tell what the observation costs oned). */
  calls = 0;

  constructor(client: OneClient, intervalMs = 100) {
    this.#client = client;
    this.#intervalMs = intervalMs;
    this.#nextTick();
  }

  #nextTick(): void {
    this.#tick = new Promise((resolve) => this.#tickDone = resolve);
  }

  /** Starts recording `vm` (and the background poll, once). */
  watch(vm: number): void {
    if (!this.#seen.has(vm)) this.#seen.set(vm, []);
    this.#active.add(vm);
    this.#loop ??= this.#run();
  }

  /** Stops recording `vm` (its record is kept). */
  unwatch(vm: number): void {
    this.#active.delete(vm);
  }

  /** Every state change seen for `vm`, oldest first. */
  seen(vm: number): SeenState[] {
    return [...(this.#seen.get(vm) ?? [])];
  }

  #record(vm: number, xml: XmlElement, at: number): SeenState {
    const state = Number(childText(xml, "STATE"));
    const lcm = Number(childText(xml, "LCM_STATE"));
    const records = xml.children.find((c) => c.name === "HISTORY_RECORDS");
    const last = records?.children.filter((c) => c.name === "HISTORY").at(-1);
    const now: SeenState = { at, name: stateName(state, lcm), host: last ? childText(last, "HOSTNAME") : "" };
    this.#latest.set(vm, now);
    const list = this.#seen.get(vm);
    if (list && this.#active.has(vm) && list.at(-1)?.name !== now.name) list.push(now);
    return now;
  }

  /** Polls `vm` once (`one.vm.info`), records a change, and returns its current state. */
  async poll(vm: number): Promise<SeenState> {
    this.calls++;
    const xml = await this.#client.vmInfo(vm);
    return this.#record(vm, xml, performance.timeOrigin + performance.now());
  }

  /**
   * Waits until `vm` is in state `name` (see {@linkcode stateName}); throws when it enters a failure
   * state first or the time is up, naming the states seen.
   */
  async waitFor(
    vm: number,
    name: string | ((s: string) => boolean),
    timeoutMs = 120_000,
  ): Promise<SeenState> {
    this.watch(vm);
    const want = typeof name === "string" ? (s: string) => s === name : name;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#stopped) throw new Error(`Stopped recording while waiting for VM ${vm}`);
      await this.#tick;
      const now = this.#latest.get(vm);
      if (now && want(now.name)) return now;
      if (now && isFailure(now.name)) {
        throw new Error(`VM ${vm} entered ${now.name} while waiting; states seen: ${this.trail(vm)}`);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `VM ${vm} not ${typeof name === "string" ? name : "there"} after ${timeoutMs} ms; ` +
            `states seen: ${this.trail(vm)}`,
        );
      }
    }
  }

  /** The states seen for `vm` as `NAME@host +seconds` text, for messages. */
  trail(vm: number): string {
    const seen = this.seen(vm);
    const t0 = seen[0]?.at ?? 0;
    return seen.map((s) => `${s.name}${s.host ? `@${s.host}` : ""} +${((s.at - t0) / 1000).toFixed(1)}s`)
      .join(", ");
  }

  /** Stops the background poll. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  async #pollAll(): Promise<void> {
    const vms = [...this.#active];
    if (vms.length === 0) return;
    if (vms.length === 1) {
      await this.poll(vms[0]);
      return;
    }
    this.calls++;
    const body = await this.#client.call("one.vmpool.info", [-2, Math.min(...vms), Math.max(...vms), -2]);
    const at = performance.timeOrigin + performance.now();
    for (const xml of parseXml(String(body)).children) {
      const id = Number(childText(xml, "ID"));
      if (xml.name === "VM" && this.#active.has(id)) this.#record(id, xml, at);
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const started = performance.now();
      await this.#pollAll().catch(() => {/* oned busy or a VM gone: the next tick tells */});
      const done = this.#tickDone;
      this.#nextTick();
      done();
      const wait = this.#intervalMs - (performance.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    this.#tickDone();
  }
}

/** The states oned wrote into a VM's vm.log (`New state is X`, `New LCM state is X`), in order. */
export function statesInVmLog(log: string): string[] {
  const out: string[] = [];
  for (const m of log.matchAll(/New (?:LCM )?state is (\w+)/g)) out.push(m[1]);
  return out;
}

/**
 * The VM's state by oned's vm.log after its last state line (the {@linkcode stateName} form), or null
 * when the log has none. oned writes the line when it changes the state, before the change is
 * visible through `one.vm.info`.
 */
export function lastStateInVmLog(log: string): string | null {
  let state: string | null = null;
  let lcm = "LCM_INIT";
  for (const m of log.matchAll(/New (LCM )?state is (\w+)/g)) {
    if (m[1]) lcm = m[2];
    else state = m[2];
  }
  if (state === null) return null;
  return state === "ACTIVE" ? lcm : state;
}
