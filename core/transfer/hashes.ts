/**
 * Content checksums of files, as every host computes them: which algorithms exist, the program of
 * each, and how the ends of a transfer agree on one.
 *
 * Where a checksum is computed (see docs/architecture.md, "Which check buys which guarantee"):
 * - the content identity of a replica cache entry: once per image version, on the front-end,
 *   while the fill streams (TRANSFER_CHECKSUM); re-read on the replica only for
 *   REPLICA_CACHE_VERIFY=checksum and `onestor cache verify`;
 * - with TRANSFER_VERIFY=content, the files of every copy on both ends.
 * The bytes of a stream are protected by SSH's MAC and checked for completeness by tar, the
 * sender's exit status and byte counts (copy.ts); no stream is hashed by default.
 *
 * Agreement when a host lacks xxhsum (package `xxhash`): every script that hashes on a host says
 * so on its output (`ONESTOR_NO_HASH <algorithm>`) when the program is missing, instead of
 * guessing. The front-end then remembers, per host, in its state folder, that the host lacks it
 * and uses blake2b (coreutils `b2sum`, on every host) for that host from then on, so it costs one
 * failed attempt per host, ever, and no extra round trip per action. `onestor doctor` reports a
 * missing xxhsum on any host beforehand.
 *
 * @module
 */

import { raw, type ShellScript } from "../remote/shell.ts";
import { frontendStateDir } from "../cache/state_dir.ts";

/** Content checksum algorithms, by their TRANSFER_CHECKSUM name. */
export type HashAlgorithm = "xxh128" | "blake2b" | "sha256" | "md5";

/** Every algorithm, fastest first. */
export const HASH_ALGORITHMS: readonly HashAlgorithm[] = ["xxh128", "blake2b", "sha256", "md5"];

/** The algorithm every host has (coreutils), used where the preferred one is missing. */
export const FALLBACK_ALGORITHM: HashAlgorithm = "blake2b";

/** The program (argv words) that prints `<hex>  <file>` lines for files, per algorithm. */
export const HASH_PROGRAMS: Readonly<Record<HashAlgorithm, readonly string[]>> = {
  xxh128: ["xxhsum", "-H128"],
  blake2b: ["b2sum"],
  sha256: ["sha256sum"],
  md5: ["md5sum"],
};

/** The Debian package of each program, for messages. */
export const HASH_PACKAGES: Readonly<Record<HashAlgorithm, string>> = {
  xxh128: "xxhash",
  blake2b: "coreutils",
  sha256: "coreutils",
  md5: "coreutils",
};

/** Whether `name` is a known algorithm. */
export function isHashAlgorithm(name: string): name is HashAlgorithm {
  return (HASH_ALGORITHMS as readonly string[]).includes(name);
}

/**
 * Shell function `onestor_sums ALGORITHM FILE...`: prints `<hex>  <file>` per file. When the
 * program is missing (or too old for the algorithm: xxhsum before 0.8 has no XXH128) it prints
 * `ONESTOR_NO_HASH <algorithm>` on stderr and returns 127.
 */
export function sumsFunction(): ShellScript {
  const cases = HASH_ALGORITHMS.map((a) => `  ${a}) set -- ${HASH_PROGRAMS[a].join(" ")} "$@" ;;`).join("\n");
  return raw(`onestor_sums() {
  _os_a=$1; shift
  case $_os_a in
${cases}
  *) echo "ONESTOR_NO_HASH $_os_a" >&2; return 127 ;;
  esac
  if ! command -v "$1" >/dev/null 2>&1 || { [ "$1" = xxhsum ] && ! xxhsum -H128 </dev/null >/dev/null 2>&1; }; then
    echo "ONESTOR_NO_HASH $_os_a" >&2
    return 127
  fi
  "$@"
}`);
}

/** The algorithm a `ONESTOR_NO_HASH` line in `text` names, or null. */
export function missingHash(text: string): HashAlgorithm | null {
  const m = text.match(/ONESTOR_NO_HASH (\S+)/);
  return m && isHashAlgorithm(m[1]) ? m[1] : null;
}

/** Parses `<hex>  <name>` lines (also `<hex> <name>`, and coreutils' `\` prefix for odd names). */
export function parseSumLines(text: string): Record<string, string> {
  const sums: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = line.match(/^\\?([0-9a-f]+) [ *]?(.+)$/);
    if (m) sums[m[2]] = m[1];
  }
  return sums;
}

/** What this process learned of the front-end's programs, by state folder and program file. */
const localCache = new Map<string, boolean>();

/** The program's path, size, mtime and inode on PATH, or null when it is not there (no process). */
function programStamp(program: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    if (!dir) continue;
    try {
      const info = Deno.statSync(`${dir}/${program}`);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) {
        return `${dir}/${program}:${info.size}:${info.mtime?.getTime() ?? 0}:${info.ino ?? 0}`;
      }
    } catch { /* not in this folder */ }
  }
  return null;
}

/**
 * Whether this machine (the front-end) can compute `algorithm`. The answer of running the program
 * once is remembered in the state folder for the program file it ran (path, size, mtime, inode), so
 * an action pays a stat of PATH instead of a process; installing or upgrading the program changes
 * the file and asks again.
 */
export function hasLocally(algorithm: HashAlgorithm, stateDir: string = frontendStateDir()): boolean {
  const [program, ...args] = HASH_PROGRAMS[algorithm];
  const stamp = programStamp(program);
  if (stamp === null) return false;
  const memo = `${stateDir}\0${stamp}`;
  const known = localCache.get(memo);
  if (known !== undefined) return known;
  // Not under hosts/, whose files are named after hosts.
  const file = `${stateDir}/programs/${algorithm}.json`;
  try {
    const seen = JSON.parse(Deno.readTextFileSync(file));
    if (seen.stamp === stamp && typeof seen.ok === "boolean") {
      localCache.set(memo, seen.ok);
      return seen.ok;
    }
  } catch { /* not asked yet */ }
  let ok = false;
  try {
    ok = new Deno.Command(program, { args, stdin: "null", stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    ok = false;
  }
  localCache.set(memo, ok);
  try {
    Deno.mkdirSync(`${stateDir}/programs`, { recursive: true });
    const tmp = `${file}.${Deno.pid}.tmp`;
    Deno.writeTextFileSync(tmp, JSON.stringify({ stamp, ok }));
    Deno.renameSync(tmp, file);
  } catch {
    // Not remembered: the next action runs the program again.
  }
  return ok;
}

/** Where the front-end remembers which hosts lack which algorithm. */
function lacksFile(stateDir: string, host: string): string {
  return `${stateDir}/hosts/${encodeURIComponent(host)}.json`;
}

/** Algorithms `host` was seen to lack (from this front-end's state folder). */
export function hostLacks(stateDir: string, host: string): HashAlgorithm[] {
  try {
    const value = JSON.parse(Deno.readTextFileSync(lacksFile(stateDir, host)));
    return Array.isArray(value.lacks) ? value.lacks.filter(isHashAlgorithm) : [];
  } catch {
    return [];
  }
}

/** Remembers that `host` lacks `algorithm` (best effort). */
export function recordLack(stateDir: string, host: string, algorithm: HashAlgorithm): void {
  const lacks = new Set(hostLacks(stateDir, host));
  lacks.add(algorithm);
  const file = lacksFile(stateDir, host);
  try {
    Deno.mkdirSync(file.slice(0, file.lastIndexOf("/")), { recursive: true });
    const tmp = `${file}.${Deno.pid}.tmp`;
    Deno.writeTextFileSync(tmp, JSON.stringify({ host, lacks: [...lacks], at: Date.now() }));
    Deno.renameSync(tmp, file);
  } catch {
    // Not remembered: the next action learns it again (one failed attempt).
  }
}

/**
 * The algorithm to use on a set of hosts (null = this front-end): `preferred` unless one of them
 * lacks it (the front-end by looking, hosts by what was learned), then blake2b.
 */
export function agreedAlgorithm(
  preferred: HashAlgorithm,
  hosts: readonly (string | null)[],
  stateDir: string,
): HashAlgorithm {
  for (const host of hosts) {
    const lacking = host === null
      ? !hasLocally(preferred, stateDir)
      : hostLacks(stateDir, host).includes(preferred);
    if (lacking) return FALLBACK_ALGORITHM;
  }
  return preferred;
}
