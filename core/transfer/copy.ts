/**
 * The one copy primitive. Every path that moves disk bytes between hosts (clone, ln, mv, mvds,
 * cpds, cache fills, context ISOs) goes through {@linkcode copyEntries}, so sparseness, checksums,
 * SSH options per hop and write-verify-rename hold everywhere.
 *
 * How a copy runs:
 * - the sender archives the entries with GNU tar (`-S` keeps holes: a 1 GiB image with 100 MiB of
 *   data sends ~100 MiB) and hashes the stream as it leaves;
 * - the receiver hashes the stream as it arrives and unpacks it into a temporary folder next to the
 *   destination (same filesystem);
 * - only when both hashes match are the entries renamed into place; otherwise the temporary
 *   folder is removed and the destination is left as it was.
 * The pipeline runs on the front-end when one end is the front-end, and on the source host for
 * host-to-host copies, so image bytes never pass through the front-end needlessly and hosts never
 * need a key to reach the front-end.
 *
 * @module
 */

import { OneStorError } from "../errors.ts";
import { confine, type Confinement } from "../remote/confine.ts";
import { lastLines } from "../remote/process.ts";
import type { HostRunner } from "../remote/runner.ts";
import { joinScripts, raw, sh, type ShellScript } from "../remote/shell.ts";
import { hopScript } from "../remote/ssh.ts";
import { metrics } from "../metrics/metrics.ts";

/** One file or folder to copy, relative to the source folder. */
export interface CopyEntry {
  /** Name in the source folder. */
  name: string;
  /** Name in the destination folder (default: the same). */
  as?: string;
  /** Skip silently when absent at the source (e.g. a `.snap` folder). */
  optional?: boolean;
}

/** A copy between two hosts. A host of null means the front-end itself. */
export interface CopyRequest {
  from: { host: string | null; dir: string; entries: CopyEntry[] };
  /** Where the entries land; `confine` says where that may be (checked on the destination host). */
  to: { host: string | null; dir: string; confine: Confinement };
  /** Keep holes (default true); false writes every zero, for SPARSE=NO. */
  sparse?: boolean;
  /** Copy what symlinks point to instead of the links. */
  dereference?: boolean;
  /** SSH options of the hop into the destination host (e.g. REPLICA_SSH_OPTS). */
  toHopOptions?: readonly string[];
  /** SSH options of the hop into the source host, when the front-end reaches it. */
  fromHopOptions?: readonly string[];
  /** Checksum program for the stream (b2sum, sha256sum, md5sum) or "none"; default from TRANSFER_CHECKSUM. */
  checksum?: string;
  /** Wire compression (none, gzip, zstd, xz); default from TRANSFER_COMPRESSION. */
  compression?: Compression;
  /** Timeout in milliseconds (0: none). */
  timeoutMs?: number;
  /** Human description for errors, e.g. "Error copying fe:/x to hv1:/y". */
  what?: string;
  /** The `hop` label of its transfer metrics when the ends alone do not tell (e.g. `replica_to_host`). */
  hop?: string;
}

/** What a finished copy moved. */
export interface CopyResult {
  /** Bytes of the tar stream that crossed the wire. */
  streamBytes: number;
  /** Checksum of that stream (same on both ends), or "" when checksums are off. */
  streamChecksum: string;
  /** Wall time in seconds. */
  seconds: number;
}

/** Wire compression of a copy's stream. */
export type Compression = "none" | "gzip" | "zstd" | "xz";

/** Defaults of every copy, set once per process from the configuration (core/runtime.ts). */
export const transferDefaults: { checksum: string; compression: Compression } = {
  checksum: "b2sum",
  compression: "none",
};

const COMPRESS: Record<Compression, [string, string]> = {
  none: ["", ""],
  gzip: ["gzip -1 -c | ", "gzip -dc | "],
  zstd: ["zstd -1 -q -c | ", "zstd -dcq | "],
  xz: ["xz -1 -T0 -c | ", "xz -dc | "],
};

function compressionOf(request: CopyRequest): Compression {
  const c = request.compression ?? transferDefaults.compression;
  if (!(c in COMPRESS)) throw new TypeError(`Unknown compression ${c}`);
  return c;
}

function checksumOf(request: CopyRequest): string {
  return request.checksum ?? transferDefaults.checksum;
}

/** A copy failed; nothing at the destination was replaced. */
export class CopyError extends OneStorError {
  constructor(message: string) {
    super(message);
    this.name = "CopyError";
  }
}

function token(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The shell line that hashes what is written into the fifo `$t/h`, in the background. */
function hashLine(checksum: string): ShellScript {
  if (!/^(none|b2sum|sha256sum|sha1sum|md5sum)$/.test(checksum)) {
    throw new TypeError(`Unknown checksum program ${checksum}`);
  }
  return raw(
    checksum === "none" ? 'cat <"$t/h" >/dev/null &' : `${checksum} <"$t/h" | cut -d' ' -f1 >"$t/sum" &`,
  );
}

/** The sender: tar the entries, hash and count the stream, pipe it into `sink`. */
export function senderScript(request: CopyRequest, sink: ShellScript): ShellScript {
  const flags = `-c${request.sparse === false ? "" : "S"}${request.dereference ? "h" : ""}f`;
  const pick = request.from.entries.map((e) =>
    e.optional
      ? sh`if [ -e ${e.name} ] || [ -L ${e.name} ]; then set -- "$@" ${e.name}; fi`
      : sh`if [ -e ${e.name} ] || [ -L ${e.name} ]; then set -- "$@" ${e.name}; else
  echo ${`Source ${request.from.dir}/${e.name} does not exist`} >&2; exit 66; fi`
  );
  return sh`set -o pipefail
cd -- ${request.from.dir} || exit 66
set --
${joinScripts(pick)}
t=$(mktemp -d) || exit 70
trap 'rm -rf "$t"' EXIT
mkfifo "$t/h" || exit 70
${hashLine(checksumOf(request))}
hp=$!
tar ${flags} - --totals -- "$@" 2>"$t/err" | ${raw(COMPRESS[compressionOf(request)][0])}tee "$t/h" | ${sink}
rc=$?
wait $hp
grep -v '^Total bytes written' "$t/err" >&2
printf 'ONESTOR_SRC_SUM=%s ONESTOR_SRC_BYTES=%s\\n' "$(cat "$t/sum" 2>/dev/null)" \\
  "$(sed -n 's/^Total bytes written: \\([0-9]*\\).*/\\1/p' "$t/err")" >&2
exit $rc`;
}

/** The receiver: hash the stream and unpack it into the temporary folder `tmp` inside the destination. */
export function receiverScript(request: CopyRequest, tmp: string): ShellScript {
  const checksum = checksumOf(request);
  return sh`set -o pipefail
${confineDestination(request, tmp)}
mkdir -p -- ${request.to.dir} && cd -- ${request.to.dir} || exit 73
rm -rf -- ${tmp} && mkdir -- ${tmp} || exit 73
t=$(mktemp -d) || exit 70
trap 'rm -rf "$t"' EXIT
mkfifo "$t/h" || exit 70
${hashLine(checksum)}
hp=$!
tee "$t/h" | ${raw(COMPRESS[compressionOf(request)][1])}tar -C ${tmp} -xf -
rc=$?
wait $hp
printf 'ONESTOR_DST_SUM=%s\\n' "$(cat "$t/sum" 2>/dev/null)"
exit $rc`;
}

/** Moves the received entries into place (atomic rename for files) and removes the temporary folder. */
export function commitScript(request: CopyRequest, tmp: string): ShellScript {
  const moves = request.from.entries.map((e) => {
    const final = e.as ?? e.name;
    return sh`if [ -e ${`${tmp}/${e.name}`} ] || [ -L ${`${tmp}/${e.name}`} ]; then
  if [ -d ${final} ] && [ ! -L ${final} ]; then rm -rf -- ${final}; fi
  mv -f -- ${`${tmp}/${e.name}`} ${final} || exit 74
fi`.text;
  });
  return sh`${confineDestination(request, tmp)}
cd -- ${request.to.dir} || exit 74
${raw(moves.join("\n"))}
rm -rf -- ${tmp}`;
}

/** Removes the temporary folder after a failed copy. */
export function cleanupScript(request: CopyRequest, tmp: string): ShellScript {
  return sh`${confine(request.to.confine, request.to.host, { remove: [`${request.to.dir}/${tmp}`] })}
cd -- ${request.to.dir} 2>/dev/null && rm -rf -- ${tmp}; true`;
}

/**
 * Confinement of what a copy writes at its destination: the temporary folder and the entries (so
 * also the folder holding them, which may be a root itself, e.g. a datastore's BASE_PATH).
 */
function confineDestination(request: CopyRequest, tmp: string): ShellScript {
  const dir = request.to.dir;
  const finals = request.from.entries.map((e) => `${dir}/${e.as ?? e.name}`);
  return confine(request.to.confine, request.to.host, { write: [`${dir}/${tmp}`, ...finals] });
}

function describe(request: CopyRequest): string {
  const name = (h: string | null) => h ?? "front-end";
  const first = request.from.entries[0];
  return request.what ??
    `Error copying ${name(request.from.host)}:${request.from.dir}/${first?.name ?? ""} to ${
      name(request.to.host)
    }:${request.to.dir}/${first?.as ?? first?.name ?? ""}`;
}

function marker(text: string, key: string): string | undefined {
  const m = text.match(new RegExp(`${key}=(\\S*)`));
  return m?.[1];
}

/** Copies entries between hosts with write-verify-rename semantics (see the module doc). */
export async function copyEntries(runner: HostRunner, request: CopyRequest): Promise<CopyResult> {
  const started = performance.now();
  const tmp = `.onestor-xfer-${token()}`;
  const what = describe(request);
  const fromLocal = runner.isLocal(request.from.host);
  const toLocal = runner.isLocal(request.to.host);
  const sameHost = fromLocal && toLocal ||
    (!fromLocal && !toLocal && request.from.host === request.to.host);
  const receiver = receiverScript(request, tmp);
  const timeoutMs = request.timeoutMs ?? 0;
  let pipeline: ShellScript;
  let runOn: string | null;
  if (sameHost) {
    pipeline = senderScript(request, sh`bash -c ${receiver.text}`);
    runOn = fromLocal ? null : request.from.host;
  } else if (toLocal) {
    // Into the front-end: pull from the source host, so no host needs a key to the front-end.
    const ssh = runner.ssh.argv(
      request.from.host!,
      senderScript(request, raw("cat")),
      request.fromHopOptions,
      "bash",
    );
    pipeline = sh`set -o pipefail
${ssh} | bash -c ${receiver.text}`;
    runOn = null;
  } else if (fromLocal) {
    const ssh = runner.ssh.argv(request.to.host!, receiver, request.toHopOptions, "bash");
    pipeline = senderScript(request, sh`${ssh}`);
    runOn = null;
  } else {
    // Host to host: the source host pushes straight to the destination host.
    pipeline = senderScript(
      request,
      hopScript(request.to.host!, receiver, {
        hopOptions: request.toHopOptions,
        connectTimeout: runner.ssh.settings.connectTimeout,
        shell: "bash",
      }),
    );
    runOn = request.from.host;
  }
  const result = await runner.run(runOn, pipeline, {
    shell: "bash",
    check: false,
    timeoutMs,
    hopOptions: runOn === request.from.host ? request.fromHopOptions : undefined,
    what,
  }).catch(async (error) => {
    await runner.run(request.to.host, cleanupScript(request, tmp), { check: false }).catch(() => {});
    throw error;
  });
  const srcSum = marker(result.stderr, "ONESTOR_SRC_SUM");
  const dstSum = marker(result.stdout, "ONESTOR_DST_SUM");
  const bytes = Number(marker(result.stderr, "ONESTOR_SRC_BYTES") ?? "0");
  const fail = async (message: string): Promise<never> => {
    await runner.run(request.to.host, cleanupScript(request, tmp), { check: false }).catch(() => {});
    throw new CopyError(message);
  };
  if (result.code !== 0) {
    const detail = lastLines(result.stderr.replace(/^ONESTOR_\S+.*$/gm, ""));
    await fail(`${what}: ${detail || `exit code ${result.code}`}`);
  }
  if (checksumOf(request) !== "none" && (!srcSum || srcSum !== dstSum)) {
    await fail(
      `${what}: checksum mismatch (sent ${srcSum || "?"}, received ${dstSum || "?"}); nothing was replaced`,
    );
  }
  await runner.run(request.to.host, commitScript(request, tmp), {
    what: `${what}: cannot move the copy into place`,
  });
  metrics.copied(request, runner, bytes, started);
  return {
    streamBytes: bytes,
    streamChecksum: srcSum ?? "",
    seconds: (performance.now() - started) / 1000,
  };
}
