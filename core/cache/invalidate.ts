/**
 * Invalidation of replica cache entries when an image changes or disappears on the front-end.
 * Called by every path that changes image content (datastore rm, snap_revert, snap_flatten, TM
 * mvds, a new SOURCE). Never throws: a replica that cannot be told now is told later, and entries
 * are also re-validated against the source on every use.
 *
 * @module
 */

/** Why an image is invalidated, for the log. */
export type InvalidationReason = "rm" | "mvds" | "snap_revert" | "snap_flatten" | "cp" | "clone" | "other";

/** Marks every cached copy of `source` (an image path on the front-end) as invalid. */
export async function invalidateImage(source: string, reason: InvalidationReason): Promise<void> {
  // PLACEHOLDER until the replica cache lands: it replaces this body.
  await Promise.resolve([source, reason]);
}
