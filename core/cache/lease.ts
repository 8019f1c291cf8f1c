/**
 * Leases and pins on the replica, and how they are kept.
 *
 * A **lease** (`<hash>.onestor-lease.json`) says "this process is filling this entry": the "fill"
 * script (scripts.ts) creates it under the folder's lock only where none lives, or replaces an
 * expired one stating the exact text it saw (so of several processes exactly one wins), renews it
 * every third of REPLICA_LEASE_SECONDS while its stream runs (rewriting only a lease that still
 * starts with its own owner and acquisition time, so a takeover is never undone), and removes it
 * when it promotes or gives up. A lease not renewed for REPLICA_LEASE_SECONDS belongs to a dead
 * process (killed, host down, network gone) and the next deployment takes it over.
 *
 * A **pin** (`<hash>.onestor-pin.<tag>`, one file per deployment) says "this deployment is
 * copying from this entry": eviction, invalidation and promotion leave a pinned entry's files
 * alone. The "serve" script creates it in the same locked step that validated the entry (so a pin
 * is only ever taken on what was checked), renews it while the copy runs and removes it at the
 * end. Pins expire like leases, so a deployment killed mid-copy cannot keep an entry forever.
 *
 * Both run on the replica inside the command that does the work, so keeping them alive costs no
 * round trip from the front-end.
 *
 * @module
 */

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A short random pause, so that processes that collided do not collide again. */
export function jitter(minMs = 20, maxMs = 120): Promise<void> {
  return sleep(minMs + Math.random() * (maxMs - minMs));
}
