/**
 * Content verification of a cached entry: the replica re-reads every regular file of the entry
 * and its checksums must equal those recorded at promotion (which equal the front-end image's).
 * Used on every hit when REPLICA_CACHE_VERIFY=checksum, and by `onestor cache verify`.
 *
 * @module
 */

import { sh } from "../remote/shell.ts";
import { isHashAlgorithm, missingHash, parseSumLines, sumsFunction } from "../transfer/hashes.ts";
import { type CacheEntry, sameSums } from "./entry.ts";
import type { ReplicaFolder } from "./store.ts";

/** Re-reads the entry's files on the replica; returns why they do not match, or null. */
export async function verifyContent(
  folder: ReplicaFolder,
  entry: CacheEntry,
  timeoutMs = 0,
): Promise<string | null> {
  const names = Object.keys(entry.source.sums).sort();
  if (names.length === 0) return "the entry records no checksums";
  const algorithm = entry.source.algorithm;
  if (!isHashAlgorithm(algorithm)) return `unknown checksum algorithm ${algorithm}`;
  const result = await folder.runner.run(
    folder.replica,
    sh`${sumsFunction()}
cd -- ${folder.dir} && onestor_sums ${algorithm} ${names}`,
    { shell: "bash", check: false, timeoutMs, what: `Error verifying ${folder.dir}/${names[0]}` },
  );
  const missing = missingHash(result.stderr);
  if (missing) {
    return `cannot verify: ${folder.replica} has no ${missing} program (install package xxhash there)`;
  }
  const sums = parseSumLines(result.stdout);
  if (result.code !== 0 && Object.keys(sums).length < names.length) {
    return `cannot read every file of the entry (${
      result.stderr.trim().split("\n").pop() ?? `exit ${result.code}`
    })`;
  }
  if (!sameSums(sums, entry.source.sums)) {
    const bad = names.filter((n) => sums[n] !== entry.source.sums[n]);
    return `content checksum mismatch on the replica (${bad.join(", ")})`;
  }
  return null;
}
