/**
 * The identity of a front-end image: what a replica cache entry must match to be served. It is
 * the image's path, size and mtime plus a content checksum over the image file and every file in
 * its `.snap` folder (persistent-image snapshots: upstream left them out of its key).
 *
 * The checksum costs a full read of the image, so the front-end computes it once per version of
 * the image and keeps it in a sidecar in its state folder, keyed by size, mtime, inode and the
 * listing of the `.snap` folder: any change of those makes the sidecar stale. A fill computes it
 * from the very stream it sends (no extra read); a front-end that finds an entry filled by another
 * front-end computes it once, under a local lock so that parallel deployments read the image once.
 *
 * @module
 */

import { InputError } from "../errors.ts";
import { logDebug } from "../one/log.ts";
import type { HostRunner } from "../remote/runner.ts";
import { sh } from "../remote/shell.ts";
import { type HashAlgorithm, parseSumLines, sumsFunction } from "../transfer/hashes.ts";
import { fingerprintFunction, type KnownSums } from "../transfer/copy.ts";
import { contentDigest, type ImageIdentity, type SourceFile } from "./entry.ts";
import { frontendStateDir, keyFileName } from "./state_dir.ts";

/** What the front-end sees of an image without reading it. */
export interface ImageStat {
  /** Full path (the SOURCE). */
  path: string;
  /** Folder of the image. */
  dir: string;
  /** File name of the image (`<hash>`). */
  name: string;
  /** Size of the image file. */
  size: number;
  /** mtime of the image file in milliseconds. */
  mtime_ms: number;
  /** Inode of the image file. */
  inode: number;
  /** Allocated bytes of the image and its snapshots. */
  allocated: number;
  /** The image file, its `.snap` folder and what is in it. */
  files: SourceFile[];
}

/** The sidecar the front-end keeps per image. */
interface Sidecar {
  path: string;
  size: number;
  mtime_ms: number;
  inode: number;
  files: SourceFile[];
  algorithm: string;
  checksum: string;
  sums: Record<string, string>;
  /** The files' fingerprint (`onestor_fp`) when the sums were computed, when known. */
  fingerprint?: string;
}

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new InputError(`Cannot read image ${path}: ${(error as Error).message}`);
  }
}

function fileOf(name: string, info: Deno.FileInfo): SourceFile {
  return {
    name,
    type: info.isSymlink ? "l" : info.isDirectory ? "d" : "f",
    size: info.isFile ? info.size : 0,
    mtime_ms: info.mtime?.getTime() ?? 0,
  };
}

/** Stats an image and its `.snap` folder on this front-end. @throws {InputError} when the image is missing. */
export async function statImage(path: string): Promise<ImageStat> {
  const slash = path.lastIndexOf("/");
  const dir = slash <= 0 ? "/" : path.slice(0, slash);
  const name = path.slice(slash + 1);
  const info = await lstatOrNull(path);
  if (!info) throw new InputError(`Image ${path} does not exist on the front-end`);
  if (!info.isFile) throw new InputError(`Image ${path} is not a regular file`);
  const files: SourceFile[] = [fileOf(name, info)];
  let allocated = (info.blocks ?? 0) * 512;
  const snap = `${path}.snap`;
  const snapInfo = await lstatOrNull(snap);
  if (snapInfo) {
    files.push(fileOf(`${name}.snap`, snapInfo));
    // Walked without following symlinks (a recovery layout holds a link to its own folder).
    const walk = async (rel: string): Promise<void> => {
      for await (const e of Deno.readDir(`${dir}/${rel}`)) {
        const child = `${rel}/${e.name}`;
        const i = await lstatOrNull(`${dir}/${child}`);
        if (!i) continue;
        files.push(fileOf(child, i));
        if (i.isFile) allocated += (i.blocks ?? 0) * 512;
        if (i.isDirectory) await walk(child);
      }
    };
    if (snapInfo.isDirectory) await walk(`${name}.snap`);
  }
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    path,
    dir,
    name,
    size: info.size,
    mtime_ms: info.mtime?.getTime() ?? 0,
    inode: info.ino ?? 0,
    allocated,
    files,
  };
}

/** Whether two stats describe the same version of an image. */
export function sameStat(a: ImageStat, b: ImageStat): boolean {
  return a.path === b.path && a.size === b.size && a.mtime_ms === b.mtime_ms && a.inode === b.inode &&
    JSON.stringify(a.files) === JSON.stringify(b.files);
}

async function sidecarPath(path: string, algorithm: string): Promise<string> {
  // One sidecar per algorithm: entries filled with another one (by another front-end, or before
  // a change of TRANSFER_CHECKSUM) are compared with a checksum of their own algorithm.
  return `${frontendStateDir()}/sums/${await keyFileName(path)}${
    algorithm === "xxh128" ? "" : `.${algorithm}`
  }.json`;
}

/** The identity recorded in the sidecar when it still matches `stat`, else null. */
export async function cachedIdentity(stat: ImageStat, algorithm: string): Promise<ImageIdentity | null> {
  let sidecar: Sidecar;
  try {
    sidecar = JSON.parse(await Deno.readTextFile(await sidecarPath(stat.path, algorithm)));
  } catch {
    return null;
  }
  const asStat: ImageStat = {
    ...stat,
    size: sidecar.size,
    mtime_ms: sidecar.mtime_ms,
    inode: sidecar.inode,
    files: sidecar.files,
  };
  if (sidecar.path !== stat.path || sidecar.algorithm !== algorithm || !sameStat(asStat, stat)) return null;
  return {
    path: stat.path,
    size: stat.size,
    mtime_ms: stat.mtime_ms,
    algorithm,
    checksum: sidecar.checksum,
    sums: sidecar.sums,
  };
}

/**
 * The sums of the version of the image described by `stat` with the fingerprint they were
 * computed for, when the sidecar has both: a fill sends them instead of reading the image again.
 */
export async function knownSums(stat: ImageStat, algorithm: string): Promise<KnownSums | null> {
  const identity = await cachedIdentity(stat, algorithm);
  if (!identity) return null;
  try {
    const sidecar: Sidecar = JSON.parse(await Deno.readTextFile(await sidecarPath(stat.path, algorithm)));
    if (!sidecar.fingerprint || sidecar.checksum !== identity.checksum) return null;
    return { sums: identity.sums, fingerprint: sidecar.fingerprint };
  } catch {
    return null;
  }
}

/** The fingerprint a sender printed (`ONESTOR_SRC_FP <base64>`), or undefined. */
export function senderFingerprint(stderr: string): string | undefined {
  // A line of its own, though a progress line ending in "\r" may come first (xxhsum prints one).
  const b64 = stderr.match(/(?:^|\r)ONESTOR_SRC_FP ([A-Za-z0-9+/=]+)$/m)?.[1];
  if (!b64) return undefined;
  try {
    return new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
}

/** Records the identity of the version of the image described by `stat` (atomically; best effort). */
export async function recordIdentity(
  stat: ImageStat,
  identity: ImageIdentity,
  fingerprint?: string,
): Promise<void> {
  const file = await sidecarPath(stat.path, identity.algorithm);
  const sidecar: Sidecar = {
    path: stat.path,
    size: stat.size,
    mtime_ms: stat.mtime_ms,
    inode: stat.inode,
    files: stat.files,
    algorithm: identity.algorithm,
    checksum: identity.checksum,
    sums: identity.sums,
    ...(fingerprint ? { fingerprint } : {}),
  };
  try {
    await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true });
    const tmp = `${file}.${Deno.pid}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(sidecar));
    await Deno.rename(tmp, file);
  } catch {
    // Without a sidecar the next use computes the checksum again: slower, never wrong.
  }
}

/** Forgets the sidecars of an image (it changed or was deleted). */
export async function forgetIdentity(path: string): Promise<void> {
  for (const algorithm of ["xxh128", "blake2b", "sha256", "md5"]) {
    await Deno.remove(await sidecarPath(path, algorithm)).catch(() => {});
  }
}

/** Builds an identity from per-file checksums. */
export async function identityFrom(
  stat: ImageStat,
  algorithm: string,
  sums: Record<string, string>,
): Promise<ImageIdentity> {
  return {
    path: stat.path,
    size: stat.size,
    mtime_ms: stat.mtime_ms,
    algorithm,
    checksum: await contentDigest(algorithm, sums),
    sums,
  };
}

export { parseSumLines };

/**
 * The identity of the image, from the sidecar or else by reading it (once: parallel callers on
 * this front-end wait for the first and use its result). @throws {InputError} when it changes
 * while it is read.
 */
export async function imageIdentity(
  runner: HostRunner,
  stat: ImageStat,
  algorithm: HashAlgorithm,
): Promise<ImageIdentity> {
  const known = await cachedIdentity(stat, algorithm);
  if (known) return known;
  const lockPath = `${(await sidecarPath(stat.path, algorithm)).slice(0, -".json".length)}.lock`;
  await Deno.mkdir(lockPath.slice(0, lockPath.lastIndexOf("/")), { recursive: true });
  using lock = await Deno.open(lockPath, { create: true, write: true });
  await lock.lock(true);
  const again = await cachedIdentity(stat, algorithm);
  if (again) return again;
  const regular = stat.files.filter((f) => f.type === "f").map((f) => f.name);
  const snap = `${stat.name}.snap`;
  // The fingerprint as a fill's sender takes it (same folder, same entries in the same order).
  const out = await runner.output(
    null,
    sh`${sumsFunction()}
${fingerprintFunction()}
cd -- ${stat.dir} || exit 66
set -- ${stat.name}
if [ -e ${snap} ] || [ -L ${snap} ]; then set -- "$@" ${snap}; fi
fp0=$(onestor_fp "$@")
onestor_sums ${algorithm} ${regular} || exit
[ "$fp0" = "$(onestor_fp "$@")" ] && printf 'ONESTOR_SRC_FP %s\\n' "$(printf '%s' "$fp0" | base64 -w0)"
exit 0`,
    {
      shell: "bash",
      what: `Error computing the ${algorithm} checksum of ${stat.path}`,
    },
  );
  const after = await statImage(stat.path);
  if (!sameStat(after, stat)) {
    throw new InputError(`Image ${stat.path} changed while its checksum was computed`);
  }
  const identity = await identityFrom(stat, algorithm, parseSumLines(out));
  await recordIdentity(stat, identity, senderFingerprint(out));
  return identity;
}

/**
 * Computes and records the identity of an image the datastore driver just wrote on this
 * front-end, while it is still in the page cache: the image's first deployment through a replica
 * then sends it without reading it a second time (a hole is as costly to read as data). Best
 * effort: without it the first fill computes the checksum as it sends.
 */
export async function learnIdentity(
  runner: HostRunner,
  path: string,
  algorithm: HashAlgorithm,
): Promise<void> {
  try {
    await imageIdentity(runner, await statImage(path), algorithm);
  } catch (error) {
    logDebug(
      `The ${algorithm} checksum of ${path} is left for its first deployment: ${(error as Error).message}`,
    );
  }
}
