/**
 * A protected disk's recovery folder on the replica, seen from the front-end: reading the record
 * and the lease, conditional writes of the record (core/cache/store.ts transactions: under an
 * flock on the replica, applied only when the record still has the text the change was computed
 * from), and the lease that makes one process at a time work on a disk (a period, a restore, a
 * point selection). A lease is renewed while its holder works and taken over once expired, so a
 * front-end that dies mid-period blocks the disk for REPLICA_LEASE_SECONDS at most.
 *
 * @module
 */

import { ownerId } from "../cache/entry.ts";
import { OneStorError } from "../errors.ts";
import type { HostRunner } from "../remote/runner.ts";
import { joinScripts, sh } from "../remote/shell.ts";
import type { TmServices } from "../tm/services.ts";
import { type Guard, guarded, replicaGuard } from "./guard.ts";
import { diskRecoveryDir } from "./names.ts";
import { type ChainFile, encodeRecord, parseRecord, type RecoveryRecord } from "./record.ts";
import { LEASE_FILE, RECORD_FILE } from "./names.ts";

/** One change of a record file: written (aside, then renamed) or removed. */
export type RecordOp = { op: "write"; name: string; text: string } | { op: "remove"; name: string };

/** Outcome of a conditional change. */
export type ChangeResult = "committed" | "conflict" | "busy";

const LOCK_FILE = ".onestor.lock";

function checkRecordName(name: string): string {
  if (name !== RECORD_FILE && name !== LEASE_FILE) throw new TypeError(`Not a record file: ${name}`);
  return name;
}
import { ensureDirScript, readRecordsScript, readScript, removeScript } from "./replica_scripts.ts";

/** What one process holding a disk's folder wrote in `lease.json`. */
export interface RecoveryLease {
  version: number;
  owner: string;
  /** `period`, `restore`, `select`, `protect`. */
  purpose: string;
  /** Front-end host name and pid of the holder. */
  frontend: string;
  pid: number;
  acquired_at: number;
  /** Replica time after which the lease is dead unless renewed. */
  expires_at: number;
}

/** A lease this process holds. */
export interface HeldRecoveryLease {
  lease: RecoveryLease;
  text: string;
  lost: boolean;
}

/** The folder as read. */
export interface FolderRead {
  /** Replica clock, epoch seconds. */
  now: number;
  exists: boolean;
  recordText: string | null;
  record: RecoveryRecord | null;
  leaseText: string | null;
  lease: RecoveryLease | null;
  /** Names in the folder. */
  entries: string[];
}

/** The record changed since it was read: another process got there first. */
export class RecordConflictError extends OneStorError {
  constructor(message: string) {
    super(message);
    this.name = "RecordConflictError";
  }
}

const b64decode = (text: string): string =>
  new TextDecoder().decode(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)));

function parseLeaseText(text: string | null): RecoveryLease | null {
  if (text === null) return null;
  try {
    const v = JSON.parse(text);
    return typeof v === "object" && v !== null && typeof v.owner === "string" &&
        typeof v.expires_at === "number"
      ? v as RecoveryLease
      : null;
  } catch {
    return null;
  }
}

/** Files of a folder that are neither the record, the lease, the lock nor one the record names. */
export function strayEntries(entries: readonly string[], record: RecoveryRecord | null): string[] {
  const keep = new Set([RECORD_FILE, LEASE_FILE, ".onestor.lock", ...Object.keys(record?.files ?? {})]);
  return entries.filter((e) => !keep.has(e)).sort();
}

/** One disk's recovery folder on a replica. */
export class DiskStore {
  readonly runner: HostRunner;
  readonly replica: string;
  readonly dir: string;
  readonly timeoutMs: number;
  #offset = 0;

  readonly guard: Guard;

  constructor(runner: HostRunner, replica: string, dir: string, guard: Guard, timeoutMs = 0) {
    this.runner = runner;
    this.replica = replica;
    this.dir = dir;
    this.guard = guard;
    this.timeoutMs = timeoutMs;
  }

  /** The replica's clock now, estimated from the last read. */
  now(): number {
    return Math.floor(Date.now() / 1000 + this.#offset);
  }

  /** Reads record, lease and listing. */
  async read(): Promise<FolderRead> {
    const out = await this.runner.output(this.replica, readScript(this.dir), {
      what: `Error reading the recovery folder ${this.dir}`,
      timeoutMs: this.timeoutMs,
    });
    const now = Number(out.match(/^ONESTOR_NOW=([0-9]+)$/m)?.[1] ?? Math.floor(Date.now() / 1000));
    this.#offset = now - Date.now() / 1000;
    const texts = new Map<string, string>();
    for (const m of out.matchAll(/^ONESTOR_TEXT (\S+) (\S*)$/gm)) texts.set(m[1], b64decode(m[2]));
    const entries = [...out.matchAll(/^ONESTOR_ENTRY (.+)$/gm)].map((m) => m[1]);
    const recordText = texts.get(RECORD_FILE) ?? null;
    const leaseText = texts.get(LEASE_FILE) ?? null;
    return {
      now,
      exists: !/^ONESTOR_NODIR$/m.test(out),
      recordText,
      record: parseRecord(recordText),
      leaseText,
      lease: parseLeaseText(leaseText),
      entries,
    };
  }

  /** Creates the folder. */
  async ensure(): Promise<void> {
    await this.runner.run(this.replica, ensureDirScript(this.guard, this.dir), {
      what: `Error creating the recovery folder ${this.dir}`,
      timeoutMs: this.timeoutMs,
    });
  }

  /**
   * A conditional change of the record or the lease, under an flock of the folder on the replica:
   * applied only when every file in `expect` still has the given text (null: absent). Written
   * aside and renamed, so a reader without the lock sees a whole file or none.
   */
  async transact(expect: Record<string, string | null>, ops: RecordOp[]): Promise<ChangeResult> {
    const b64 = (text: string) => btoa(String.fromCharCode(...new TextEncoder().encode(text)));
    const checks = Object.entries(expect).map(([name, text]) =>
      text === null
        ? sh`if [ -e ${checkRecordName(name)} ]; then echo ONESTOR_CONFLICT; exit 0; fi`
        : sh`if [ ! -f ${checkRecordName(name)} ] || [ "$(base64 -w0 <${name})" != ${
          b64(text)
        } ]; then echo ONESTOR_CONFLICT; exit 0; fi`
    );
    const changes = ops.map((o) =>
      o.op === "write"
        ? sh`printf '%s' ${o.text} >${
          checkRecordName(o.name)
        }.tmp.$$ && mv -f -- ${o.name}.tmp.$$ ${o.name} || exit 74`
        : sh`rm -f -- ${checkRecordName(o.name)} || exit 74`
    );
    const targets = [...new Set(ops.map((o) => `${this.dir}/${o.name}`))];
    const out = await this.runner.output(
      this.replica,
      sh`${
        guarded(this.guard, {
          write: [
            ...targets,
            ...targets.map((t) => `${t}.tmp`),
            `${this.dir}/${LOCK_FILE}`,
          ],
        })
      }
cd -- ${this.dir} || exit 73
exec 9>>${LOCK_FILE} || exit 73
flock -w 30 9 || { echo ONESTOR_BUSY; exit 0; }
${joinScripts(checks)}
${joinScripts(changes)}
echo ONESTOR_COMMITTED`,
      { what: `Error changing the recovery record in ${this.dir}`, timeoutMs: this.timeoutMs },
    );
    if (/^ONESTOR_COMMITTED$/m.test(out)) return "committed";
    if (/^ONESTOR_BUSY$/m.test(out)) return "busy";
    return "conflict";
  }

  /**
   * Takes the disk's lease for `purpose`, taking over an expired one. Waits up to `waitSeconds`
   * while another process holds a live lease; returns null when it is still held then.
   */
  async acquire(purpose: string, leaseSeconds: number, waitSeconds = 0): Promise<HeldRecoveryLease | null> {
    await this.ensure();
    const deadline = Date.now() + waitSeconds * 1000;
    const owner = ownerId();
    for (;;) {
      const state = await this.read();
      const live = state.lease !== null && state.lease.expires_at > state.now;
      if (!live) {
        let frontend = "frontend";
        try {
          frontend = Deno.hostname();
        } catch {
          // Keep the generic name.
        }
        const lease: RecoveryLease = {
          version: 1,
          owner,
          purpose,
          frontend,
          pid: Deno.pid,
          acquired_at: state.now,
          expires_at: state.now + leaseSeconds,
        };
        const text = JSON.stringify(lease);
        const result = await this.transact({ [LEASE_FILE]: state.leaseText }, [{
          op: "write",
          name: LEASE_FILE,
          text,
        }]);
        if (result === "committed") return { lease, text, lost: false };
      }
      if (Date.now() >= deadline) return null;
      await new Promise((r) => setTimeout(r, 500 + Math.random() * 500));
    }
  }

  /** Who holds the lease now (for messages), or null. */
  async holder(): Promise<RecoveryLease | null> {
    const state = await this.read();
    return state.lease !== null && state.lease.expires_at > state.now ? state.lease : null;
  }

  /** Extends a held lease; marks it lost when it was taken over. */
  async renew(held: HeldRecoveryLease, leaseSeconds: number): Promise<void> {
    if (held.lost) return;
    const lease = { ...held.lease, expires_at: this.now() + leaseSeconds };
    const text = JSON.stringify(lease);
    const result = await this.transact({ [LEASE_FILE]: held.text }, [{
      op: "write",
      name: LEASE_FILE,
      text,
    }]);
    if (result === "committed") {
      held.lease = lease;
      held.text = text;
    } else if (result === "conflict") {
      held.lost = true;
    }
  }

  /** Gives the lease up (best effort: an unreleased lease expires). */
  async release(held: HeldRecoveryLease): Promise<void> {
    if (held.lost) return;
    await this.transact({ [LEASE_FILE]: held.text }, [{ op: "remove", name: LEASE_FILE }]).catch(() => {});
    held.lost = true;
  }

  /**
   * Writes `record` if the stored record is still `oldText` (null: absent); returns the new text.
   * When the call itself failed (connection lost), the record is read again: a write that landed
   * counts as done.
   * @throws {RecordConflictError} when the record changed meanwhile.
   */
  async writeRecord(oldText: string | null, record: RecoveryRecord): Promise<string> {
    const text = encodeRecord(record);
    let result: string;
    try {
      result = await this.transact({ [RECORD_FILE]: oldText }, [{ op: "write", name: RECORD_FILE, text }]);
    } catch (error) {
      const again = await this.read().catch(() => null);
      if (again?.recordText === text) return text;
      throw error;
    }
    if (result === "committed") return text;
    if (result === "busy") {
      throw new RecordConflictError(`The record in ${this.replica}:${this.dir} is locked`);
    }
    throw new RecordConflictError(`The record in ${this.replica}:${this.dir} changed meanwhile`);
  }

  /** Removes files of the folder. */
  async remove(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    await this.runner.run(this.replica, removeScript(this.guard, this.dir, names), {
      what: `Error removing ${names.join(", ")} in ${this.dir}`,
      timeoutMs: this.timeoutMs,
    });
  }
}

/** The recovery folder of disk `diskId` of VM `vmId` on `replica`. */
export function diskStore(services: TmServices, replica: string, vmId: number, diskId: number): DiskStore {
  return new DiskStore(
    services.runner,
    replica,
    diskRecoveryDir(services.config.replicaRecoverySnapsDir, vmId, diskId),
    replicaGuard(services.config, replica),
    services.controlTimeoutMs,
  );
}

/** Starts renewing `held` every third of the lease; stop() ends it. */
export function renewEvery(
  store: DiskStore,
  held: HeldRecoveryLease,
  leaseSeconds: number,
): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  let stopped = false;
  const timer = setInterval(() => {
    if (running || stopped) return;
    running = store.renew(held, leaseSeconds).catch(() => {}).finally(() => running = null);
  }, Math.max(1000, (leaseSeconds * 1000) / 3));
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      if (running) await running;
    },
  };
}

/** Records (and leases) of several disk folders on one replica, read in one call. */
export async function readRecords(
  runner: HostRunner,
  replica: string,
  dirs: readonly string[],
  timeoutMs = 0,
): Promise<{ now: number; records: Map<string, RecoveryRecord | null>; leases: Map<string, RecoveryLease> }> {
  const out = dirs.length === 0 ? "" : await runner.output(replica, readRecordsScript(dirs), {
    what: `Error reading the recovery records on ${replica}`,
    timeoutMs,
  });
  const now = Number(out.match(/^ONESTOR_NOW=([0-9]+)$/m)?.[1] ?? Math.floor(Date.now() / 1000));
  const records = new Map<string, RecoveryRecord | null>();
  const leases = new Map<string, RecoveryLease>();
  for (const m of out.matchAll(/^ONESTOR_RECORD ([0-9]+) (\S*)$/gm)) {
    const dir = dirs[Number(m[1])];
    if (dir !== undefined) records.set(dir, parseRecord(b64decode(m[2])));
  }
  for (const m of out.matchAll(/^ONESTOR_LEASE ([0-9]+) (\S*)$/gm)) {
    const lease = parseLeaseText(b64decode(m[2]));
    const dir = dirs[Number(m[1])];
    if (lease && dir !== undefined) leases.set(dir, lease);
  }
  return { now, records, leases };
}

/** A file entry of the record from what a replica script measured. */
export function chainFile(sum: string, size: number, backing: string | null, format: string): ChainFile {
  return { sum, size, backing, format };
}
