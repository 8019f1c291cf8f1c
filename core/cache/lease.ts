/**
 * Leases and pins on the replica.
 *
 * A **lease** (`<hash>.onestor-lease.json`) says "this process is filling this entry": it is
 * created only where none lives, renewed every third of REPLICA_LEASE_SECONDS while the fill
 * runs, and taken over by a waiter once it has expired (its holder died or lost its network). A
 * takeover is the same conditional write as a creation, stating the expired text it replaces, so
 * of several waiters exactly one wins, and a holder that renews in time invalidates a takeover
 * based on the old text.
 *
 * A **pin** (in the entry's `pins`) says "this deployment is copying from this entry": eviction
 * and promotion leave a pinned entry alone. Pins expire like leases and are renewed the same way,
 * so a deployment killed mid-copy cannot keep an entry forever.
 *
 * @module
 */

import {
  type CacheEntry,
  encodeRecord,
  entryName,
  type Lease,
  leaseLive,
  leaseName,
  livePins,
  parseEntry,
  parseLease,
  type Pin,
  RECORD_VERSION,
} from "./entry.ts";
import type { ReplicaFolder } from "./store.ts";

/** A lease this process holds. */
export interface HeldLease {
  /** Image name (`<hash>`). */
  image: string;
  /** The lease as last written. */
  lease: Lease;
  /** Its exact text on the replica. */
  text: string;
  /** Set when a renewal found that another process has taken it over. */
  lost: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A short random pause, so that processes that collided do not collide again. */
export function jitter(minMs = 20, maxMs = 120): Promise<void> {
  return sleep(minMs + Math.random() * (maxMs - minMs));
}

/**
 * Takes the lease of `image` if nobody holds a live one: `current` is the lease text last read
 * (null: none). An expired lease is replaced and its fill folder removed. Returns null when
 * another process got there first.
 */
export async function acquireLease(
  folder: ReplicaFolder,
  image: string,
  current: string | null,
  holder: { owner: string; source: string; fill: string; reserve: number; leaseSeconds: number },
): Promise<HeldLease | null> {
  const old = parseLease(current);
  const now = folder.now();
  if (current !== null && leaseLive(old, now)) return null;
  const [frontend = "", pid = "0"] = holder.owner.split(":");
  const lease: Lease = {
    version: RECORD_VERSION,
    owner: holder.owner,
    frontend,
    pid: Number(pid),
    source: holder.source,
    fill: holder.fill,
    reserve: holder.reserve,
    acquired_at: now,
    expires_at: now + holder.leaseSeconds,
  };
  const text = encodeRecord(lease);
  const ops = [];
  if (old?.fill && old.fill !== holder.fill) ops.push({ op: "remove" as const, name: old.fill });
  ops.push({ op: "remove" as const, name: holder.fill });
  ops.push({ op: "write" as const, name: leaseName(image), text });
  if (current !== null) {
    ops.push({
      op: "log" as const,
      event: { at: now, event: "lease-takeover", image, owner: holder.owner, from: old?.owner ?? "?" },
    });
  }
  const result = await folder.transact({ expect: { [leaseName(image)]: current }, ops });
  return result === "committed" ? { image, lease, text, lost: false } : null;
}

/** Extends a held lease; marks it lost when another process has replaced it. */
export async function renewLease(
  folder: ReplicaFolder,
  held: HeldLease,
  leaseSeconds: number,
): Promise<void> {
  if (held.lost) return;
  const lease = { ...held.lease, expires_at: folder.now() + leaseSeconds };
  const text = encodeRecord(lease);
  const result = await folder.transact({
    expect: { [leaseName(held.image)]: held.text },
    ops: [{ op: "write", name: leaseName(held.image), text }],
  });
  if (result === "committed") {
    held.lease = lease;
    held.text = text;
  } else if (result === "conflict") {
    held.lost = true;
  }
}

/** Gives a lease up and removes its fill folder (if it is still ours). */
export async function releaseLease(folder: ReplicaFolder, held: HeldLease): Promise<void> {
  if (held.lost) return;
  await folder.transact({
    expect: { [leaseName(held.image)]: held.text },
    ops: [{ op: "remove", name: leaseName(held.image) }, { op: "remove", name: held.lease.fill }],
  });
  held.lost = true;
}

/**
 * Changes the entry of `image` with `change` (applied to a fresh read each try) until the
 * conditional write succeeds; returns the new text, or null when `change` returns null (nothing
 * to do) or the entry vanished.
 */
export async function updateEntry(
  folder: ReplicaFolder,
  image: string,
  change: (entry: CacheEntry, now: number) => CacheEntry | null,
  tries = 20,
): Promise<string | null> {
  for (let i = 0; i < tries; i++) {
    const state = await folder.image(image);
    const entry = parseEntry(state.entryText);
    if (!entry) return null;
    const next = change(structuredClone(entry), state.now);
    if (!next) return null;
    const text = encodeRecord(next);
    const result = await folder.transact({
      expect: { [entryName(image)]: state.entryText },
      ops: [{ op: "write", name: entryName(image), text }],
    });
    if (result === "committed") return text;
    await jitter();
  }
  return null;
}

/**
 * Pins the entry whose text is `entryText` (the one that was validated): fails (null) when the
 * entry changed since, so a pin is only ever taken on what was checked. Also records the use.
 */
export async function pinEntry(
  folder: ReplicaFolder,
  image: string,
  entryText: string,
  pin: Omit<Pin, "expires_at">,
  leaseSeconds: number,
): Promise<string | null> {
  const entry = parseEntry(entryText);
  if (!entry) return null;
  const now = folder.now();
  entry.pins = [...livePins(entry, now).filter((p) => p.owner !== pin.owner), {
    ...pin,
    expires_at: now + leaseSeconds,
  }];
  entry.last_use = Math.max(entry.last_use, now);
  const text = encodeRecord(entry);
  const result = await folder.transact({
    expect: { [entryName(image)]: entryText },
    ops: [{ op: "write", name: entryName(image), text }],
  });
  return result === "committed" ? text : null;
}

/** Extends this process's pin on an entry (no-op when the pin or the entry is gone). */
export async function renewPin(
  folder: ReplicaFolder,
  image: string,
  owner: string,
  leaseSeconds: number,
): Promise<void> {
  await updateEntry(folder, image, (entry, now) => {
    const mine = entry.pins.find((p) => p.owner === owner);
    if (!mine) return null;
    entry.pins = livePins(entry, now).filter((p) => p.owner !== owner);
    entry.pins.push({ ...mine, expires_at: now + leaseSeconds });
    return entry;
  });
}

/** Removes this process's pin from an entry (best effort: an unremoved pin expires). */
export async function unpinEntry(folder: ReplicaFolder, image: string, owner: string): Promise<void> {
  await updateEntry(folder, image, (entry, now) => {
    if (!entry.pins.some((p) => p.owner === owner)) return null;
    entry.pins = livePins(entry, now).filter((p) => p.owner !== owner);
    entry.last_use = Math.max(entry.last_use, now);
    return entry;
  });
}

/**
 * Runs `task` every `intervalMs` until stopped, one run at a time, swallowing its errors (a
 * missed renewal is retried at the next tick; the lease is sized to survive two misses).
 */
export function startRenewal(intervalMs: number, task: () => Promise<void>): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  let stopped = false;
  const timer = setInterval(() => {
    if (running || stopped) return;
    running = task().catch(() => {}).finally(() => running = null);
  }, intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      if (running) await running;
    },
  };
}
