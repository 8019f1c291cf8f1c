/**
 * Progress of a cache fill, for `onestor cache warm`: the replica's fill folders of an image are
 * measured every second (whoever fills them: this process or another one it waits for) and
 * handed to the progress reporter (core/progress).
 *
 * @module
 */

import { allocatedBytes, pollBytes } from "../progress/poll.ts";
import { FILL_PREFIX } from "./entry.ts";
import type { ReplicaFolder } from "./store.ts";

/** Bytes written so far into the fill folders of `image` on the replica. */
export function filledBytes(folder: ReplicaFolder, image: string): Promise<number> {
  return allocatedBytes(folder.runner, folder.replica, folder.dir, `${FILL_PREFIX}${image}-`);
}

/** Polls {@linkcode filledBytes} every `intervalMs` and reports it, until stopped. */
export function watchFill(
  folder: ReplicaFolder,
  image: string,
  onBytes: (bytes: number) => void,
  intervalMs = 1000,
): { stop(): Promise<void> } {
  return pollBytes(() => filledBytes(folder, image), onBytes, intervalMs);
}
