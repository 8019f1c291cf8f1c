/**
 * What the front-end remembers of each protected disk's periods, in its state folder
 * (`<state>/recovery/<vm>.<disk>.json`): the last attempt, the last success and the last error.
 * The replica's record holds the points; this file holds what the replica cannot tell when it is
 * down (the error of a period that never reached it). Written aside and renamed.
 *
 * @module
 */

import { frontendStateDir } from "../cache/state_dir.ts";

/** The last period of a disk as the front-end saw it. */
export interface PeriodSummary {
  /** Point id made, null when the period failed. */
  point: number | null;
  /** `incremental`, `full`, or null when it failed before the job. */
  kind: "incremental" | "full" | null;
  /** Why a full copy was made. */
  reason: string;
  /** Bytes that crossed the wire. */
  bytes: number;
  /** Data bytes of the point's file. */
  data: number;
  /** Seconds the period took. */
  seconds: number;
  /** Host the disk ran on. */
  host: string;
}

/** The front-end's memory of one protected disk. */
export interface DiskRunState {
  vm: number;
  disk: number;
  /** Epoch seconds (front-end clock) of the last attempt and of the last success. */
  last_attempt: number | null;
  last_success: number | null;
  /** The error of the last attempt, null when it succeeded. */
  last_error: { time: number; message: string } | null;
  /** A warning of the last successful period (a merge or clean-up left for later). */
  last_warning: string | null;
  /** Time of the newest point this front-end made or saw (kept when the replica cannot be read). */
  last_point_time?: number | null;
  last_period: PeriodSummary | null;
}

function stateDir(): string {
  return `${frontendStateDir()}/recovery`;
}

function statePath(vm: number, disk: number): string {
  return `${stateDir()}/${vm}.${disk}.json`;
}

/** Reads the state of a disk (an empty one when there is none). */
export async function readRunState(vm: number, disk: number): Promise<DiskRunState> {
  try {
    const v = JSON.parse(await Deno.readTextFile(statePath(vm, disk)));
    if (v && v.vm === vm && v.disk === disk) return v as DiskRunState;
  } catch {
    // None yet, or unreadable: start afresh.
  }
  return {
    vm,
    disk,
    last_attempt: null,
    last_success: null,
    last_error: null,
    last_warning: null,
    last_period: null,
  };
}

/** Writes the state of a disk (best effort: a front-end whose state folder is not writable only loses history). */
export async function writeRunState(state: DiskRunState): Promise<void> {
  try {
    await Deno.mkdir(stateDir(), { recursive: true });
    const path = statePath(state.vm, state.disk);
    const tmp = `${path}.${Deno.pid}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(state));
    await Deno.rename(tmp, path);
  } catch {
    // Status is then read from the replica only.
  }
}

/** Forgets the state of every disk of a VM (the VM is gone). */
export async function forgetRunStates(vm: number): Promise<void> {
  try {
    for await (const e of Deno.readDir(stateDir())) {
      if (e.name.startsWith(`${vm}.`) && e.name.endsWith(".json")) {
        await Deno.remove(`${stateDir()}/${e.name}`).catch(() => {});
      }
    }
  } catch {
    // No state folder.
  }
}
