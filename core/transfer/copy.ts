/**
 * The one copy primitive. Every path that moves disk bytes between hosts (clone, ln, mv, mvds,
 * cpds, cache fills and hits, context ISOs, restores) goes through the stream built here, so
 * sparseness, per-hop SSH options, verification and write-then-rename hold everywhere.
 *
 * A copy is **one pass, one SSH command**:
 * - the sender archives the entries with GNU tar (`-S` keeps holes: a 1 GiB image with 100 MiB of
 *   data sends ~100 MiB; records of {@linkcode TAR_BLOCKING} blocks, far fewer system calls than
 *   tar's default 10 KiB) and, once tar is done, appends a second, tiny archive holding the
 *   **trailer**: tar's exit status, the byte count of the first archive and, when asked, the
 *   content checksums of the files it sent;
 * - the receiver runs the destination's preparation (folder, `.monitor` marker), unpacks both
 *   archives into a temporary folder next to the destination (same filesystem), and renames the
 *   entries into place only when the trailer arrived, says the sender succeeded, and the byte
 *   count it read matches the count sent; then it runs the destination's finishing step (growth
 *   to SIZE, QCOW2_OPTIONS, allocation for SPARSE=NO). Anything else removes the temporary folder:
 *   a failed copy leaves the destination as it was.
 *
 * Which check buys which guarantee: SSH's MAC authenticates every byte in transit (a corrupted
 * packet kills the connection); tar's own format checks, its exit status on both ends, pipefail
 * and the byte counts catch truncation and a sender that failed half-way (tar pads a file that
 * shrank while read and exits 1: the trailer carries that 1). A checksum of the stream on both ends
 * would add nothing to these but two extra copies of every byte through pipes (measured: +80 % CPU
 * per copy, docs/benchmarks.md), so by default no stream is hashed. With TRANSFER_VERIFY=content,
 * the files themselves are hashed on both ends (the sender while it sends, the receiver before the
 * rename) and must be equal.
 *
 * The pipeline runs on the front-end when one end is the front-end, and on the source host for
 * host-to-host copies (or on the destination when it pulls: {@linkcode CopyRoute}), so image
 * bytes never pass through the front-end needlessly and hosts never need a key to reach it.
 *
 * @module
 */

import { OneStorError } from "../errors.ts";
import { metrics } from "../metrics/metrics.ts";
import { confine, type Confinement } from "../remote/confine.ts";
import { lastLines } from "../remote/process.ts";
import type { HostRunner } from "../remote/runner.ts";
import { joinScripts, raw, sh, type ShellScript } from "../remote/shell.ts";
import { hopScript } from "../remote/ssh.ts";
import { frontendStateDir } from "../cache/state_dir.ts";
import { widenPipes } from "./pipes.ts";
import { logWarn } from "../one/log.ts";
import {
  agreedAlgorithm,
  FALLBACK_ALGORITHM,
  HASH_PACKAGES,
  type HashAlgorithm,
  isHashAlgorithm,
  missingHash,
  recordLack,
  sumsFunction,
} from "./hashes.ts";

/** Blocks (512 bytes) per tar record on both ends: 64 KiB records. */
export const TAR_BLOCKING = 128;
/** Bytes per tar record. */
export const TAR_RECORD = TAR_BLOCKING * 512;
/** Name of the trailer file inside the second archive of a stream. */
export const TRAILER = ".onestor-end";

/** One file or folder to copy, relative to the source folder. */
export interface CopyEntry {
  /** Name in the source folder. */
  name: string;
  /** Name in the destination folder (default: the same). */
  as?: string;
  /** Skip silently when absent at the source (e.g. a `.snap` folder). */
  optional?: boolean;
}

/** How the data connection of a host-to-host copy is made. */
export type CopyRoute =
  /** The source host connects to the destination at `address`. */
  | { mode: "push"; address: string }
  /** The destination host connects to the source at `address` and pulls. */
  | { mode: "pull"; address: string };

/** Where a copy lands and what runs there around it. */
export interface CopyDestination {
  /** Host (null: the front-end itself). */
  host: string | null;
  /** Folder of the entries. */
  dir: string;
  /** Where the copy may write on the destination host (checked there, at the top of the receiver). */
  confine: Confinement;
  /** More paths the receiver's `prepare` and `finish` write (e.g. the `.monitor` marker), confined too. */
  writes?: readonly string[];
  /** Runs on the destination before anything is received (e.g. the `.monitor` marker). */
  prepare?: ShellScript;
  /**
   * Runs on the destination once the entries are in place (e.g. growth to SIZE); its standard
   * output is returned in {@linkcode CopyResult.finishOutput}, a failure fails the copy with
   * `finishWhat` (the entries stay in place: they are verified).
   */
  finish?: ShellScript;
  /** Error text of a failed `finish`, e.g. "Resizing image hv1:/.../disk.0". */
  finishWhat?: string;
}

/** A copy between two hosts. A host of null means the front-end itself. */
export interface CopyRequest {
  from: { host: string | null; dir: string; entries: CopyEntry[] };
  to: CopyDestination;
  /** Keep holes (default true); false allocates every block at the destination, for SPARSE=NO. */
  sparse?: boolean;
  /** Copy what symlinks point to instead of the links. */
  dereference?: boolean;
  /** Optional entries absent at the source remove a stale copy at the destination (a `.snap` folder). */
  mirror?: boolean;
  /** SSH options of the hop into the destination host (e.g. REPLICA_SSH_OPTS). */
  toHopOptions?: readonly string[];
  /** SSH options of the hop into the source host, when the front-end reaches it. */
  fromHopOptions?: readonly string[];
  /** How a host-to-host copy connects (default: the source pushes to the destination's name). */
  route?: CopyRoute;
  /**
   * Content verification: an algorithm (xxh128, blake2b, sha256, md5) hashes the copied files on
   * both ends, compared before the rename; "none" relies on the transport checks. Default from
   * TRANSFER_VERIFY and TRANSFER_CHECKSUM.
   */
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
  /** Bytes of the tar stream that crossed the wire (before compression). */
  streamBytes: number;
  /** Content checksums of the files sent (`name` at the source → hex), when they were computed. */
  sums: Record<string, string> | null;
  /** Standard output of the destination's `finish` step. */
  finishOutput: string;
  /** Wall time in seconds. */
  seconds: number;
}

/** Wire compression of a copy's stream. */
export type Compression = "none" | "gzip" | "zstd" | "xz";

/** Defaults of every copy, set once per process from the configuration (core/runtime.ts). */
export const transferDefaults: { checksum: string; compression: Compression } = {
  checksum: "none",
  compression: "none",
};

const COMPRESS: Record<Compression, [string, string]> = {
  none: ["", ""],
  gzip: ["gzip -1 -c", "gzip -dc"],
  zstd: ["zstd -1 -q -c", "zstd -dcq"],
  xz: ["xz -1 -T0 -c", "xz -dc"],
};

function compressionOf(request: CopyRequest): Compression {
  const c = request.compression ?? transferDefaults.compression;
  if (!(c in COMPRESS)) throw new TypeError(`Unknown compression ${c}`);
  return c;
}

function checksumOf(request: CopyRequest): HashAlgorithm | null {
  const c = request.checksum ?? transferDefaults.checksum;
  if (c === "none" || c === "") return null;
  if (!isHashAlgorithm(c)) throw new TypeError(`Unknown checksum algorithm ${c}`);
  return c;
}

/** A copy failed; nothing at the destination was replaced. */
export class CopyError extends OneStorError {
  constructor(message: string) {
    super(message);
    this.name = "CopyError";
  }
}

/** A copy is in place but the destination's finishing step (growth, QCOW2_OPTIONS) failed. */
export class FinishError extends OneStorError {
  constructor(message: string) {
    super(message);
    this.name = "FinishError";
  }
}

/** A random token for temporary names. */
export function token(): string {
  return [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Options of the sender that only the replica cache uses. */
export interface SenderOptions {
  /**
   * Content checksums computed while the entries are sent (the files are read a second time, in
   * parallel, mostly from the page cache) and shipped in the trailer (`sum` lines): of `names`
   * in that order, or of every regular file of the entries.
   */
  sums?: { algorithm: HashAlgorithm; names?: readonly string[]; known?: KnownSums } | null;
  /**
   * Compare a fingerprint of the entries (type, size, inode, mtime of every file) before and after
   * they are read; the trailer says `changed=1` when the source changed meanwhile. The fingerprint
   * is printed on stderr (`ONESTOR_SRC_FP <base64>`) when it did not change.
   */
  fingerprint?: boolean;
}

/**
 * Checksums of the entries known from an earlier read of the same version (the front-end's
 * sidecar): sent in the trailer instead of reading the files again, and only for the version
 * whose fingerprint ({@linkcode fingerprintFunction}) they were computed for. A source whose
 * fingerprint differs when the send starts is reported as changed, so nothing is promoted with
 * them.
 */
export interface KnownSums {
  /** Checksum of each regular file, by name. */
  sums: Readonly<Record<string, string>>;
  /** The entries' fingerprint when the sums were computed. */
  fingerprint: string;
}

/**
 * Shell function `onestor_fp NAME...`: type, size, inode, mtime (ns) and name of every file of
 * the entries, sorted: equal output means the same version of the files.
 */
export function fingerprintFunction(): ShellScript {
  return raw(`onestor_fp() { find "$@" -printf '%y %s %i %T@ %p\\n' 2>&1 | LC_ALL=C sort; }`);
}

/** Shell lines selecting the entries into "$@" (a missing required entry fails with exit 66). */
function pickEntries(request: CopyRequest): ShellScript {
  return joinScripts(
    request.from.entries.map((e) =>
      e.optional
        ? sh`if [ -e ${e.name} ] || [ -L ${e.name} ]; then set -- "$@" ${e.name}; fi`
        : sh`if [ -e ${e.name} ] || [ -L ${e.name} ]; then set -- "$@" ${e.name}; else
  echo ${`Source ${request.from.dir}/${e.name} does not exist`} >&2; exit 66; fi`
    ),
  );
}

/**
 * The sender: tar the entries and append the trailer archive, into `sink`. Prints
 * `ONESTOR_SRC_BYTES=` (and `ONESTOR_SRC_SUM <hex>  <name>` lines, `ONESTOR_SRC_CHANGED=`) on
 * stderr for the caller.
 */
export function senderScript(
  request: CopyRequest,
  sink: ShellScript,
  options: SenderOptions = {},
): ShellScript {
  // Holes always travel as holes; SPARSE=NO allocates them at the destination (receiverScript).
  const flags = `-cS${request.dereference ? "h" : ""}f`;
  const verify = checksumOf(request);
  const sums = options.sums ?? (verify ? { algorithm: verify } : null);
  const compress = COMPRESS[compressionOf(request)][0];
  const find = request.dereference ? "find -L" : "find";
  return sh`set -o pipefail
cd -- ${request.from.dir} || exit 66
set --
${pickEntries(request)}
t=$(mktemp -d) || exit 70
trap 'rm -rf "$t"' EXIT
trap 'exit 143' TERM INT HUP
${
    options.fingerprint || sums?.known
      ? sh`${fingerprintFunction()}
fp0=$(onestor_fp "$@")
stale=`
      : raw(":")
  }
${sums && !sums.known ? sumsFunction() : raw(":")}
{
  ${widenPipes("STDOUT")}
  ${
    sums?.known
      ? sh`printf '%s  %s\\n' ${
        (sums.names ?? Object.keys(sums.known.sums)).flatMap((name) => [sums.known!.sums[name] ?? "", name])
      } >"$t/sums"
  [ "$fp0" = ${sums.known.fingerprint} ] || stale=1`
      : sums
      ? sh`${
        sums.names
          ? sh`files=(${sums.names})`
          : sh`mapfile -d '' files < <(${raw(find)} "$@" -type f -print0)`
      }
  onestor_sums ${sums.algorithm} "\${files[@]}" >"$t/sums" 2>"$t/sumerr" &
  sp=$!`
      : raw(":")
  }
  tar -b ${TAR_BLOCKING} ${flags} - --totals -- "$@" 2>"$t/err"
  rc=$?
  {
    echo "rc=$rc"
    b=
    while IFS= read -r l; do case $l in 'Total bytes written: '*) b=\${l#Total bytes written: }; b=\${b%% *} ;; esac; done <"$t/err"
    echo "bytes=$b"
    ${
    sums
      ? sh`${
        sums.known ? raw(`echo "sums_rc=0"`) : raw(`wait $sp
    echo "sums_rc=$?"`)
      }
    echo ${`alg=${sums?.algorithm}`}
    while IFS= read -r l; do printf 'sum %s\\n' "$l"; done <"$t/sums"`
      : raw(":")
  }
    ${
    options.fingerprint || sums?.known
      ? raw(
        `if [ -z "$stale" ] && [ "$fp0" = "$(onestor_fp "$@")" ]; then echo changed=0; else echo changed=1; fi`,
      )
      : raw(":")
  }
  } >"$t/${TRAILER}"
  tar -b ${TAR_BLOCKING} -cf - -C "$t" ${TRAILER}
} ${compress ? raw(`| ${compress} `) : raw("")}| ${sink}
rc=$?
# What the caller reads from stderr, with the shell's own read (no process per line kind).
while IFS= read -r l; do case $l in 'Total bytes written'*) ;; *) printf '%s\\n' "$l" ;; esac; done <"$t/err" >&2
[ -s "$t/sumerr" ] && cat "$t/sumerr" >&2
unchanged=
while IFS= read -r l; do
  case $l in
  bytes=*) printf 'ONESTOR_SRC_BYTES=%s\\n' "\${l#bytes=}" ;;
  changed=*) printf 'ONESTOR_SRC_CHANGED=%s\\n' "\${l#changed=}"; [ "$l" = changed=0 ] && unchanged=1 ;;
  sums_rc=*) printf 'ONESTOR_SRC_SUMS_RC=%s\\n' "\${l#sums_rc=}" ;;
  'sum '*) printf 'ONESTOR_SRC_SUM %s\\n' "\${l#sum }" ;;
  esac
done >&2 2>/dev/null <"$t/${TRAILER}"
${
    options.fingerprint || sums?.known
      ? raw(
        `[ -n "$unchanged" ] && printf 'ONESTOR_SRC_FP %s\\n' "$(printf '%s' "$fp0" | base64 -w0)" >&2`,
      )
      : raw(":")
  }
exit $rc`;
}

/**
 * Bash function `onestor_read_trailer END ERR`: reads a stream's trailer file END and tar's totals in
 * ERR with the shell's own `read` (no process), into `t_rc`, `t_changed`, `t_sums_rc`, `t_alg`,
 * `t_bytes` (what the sender's tar wrote), `t_sums` (the `sum` lines without their prefix), `t_got`
 * (what the receiving tar read) and `t_tb` (the bytes the trailer's own archive takes in the stream:
 * header, data blocks and end-of-archive blocks padded to a record; every trailer line ends with a
 * newline, so its size is the sum of its lines).
 */
export function readTrailerFunction(): ShellScript {
  return raw(`onestor_read_trailer() {
  local l size=0 LC_ALL=C
  t_rc= t_changed= t_sums_rc= t_alg= t_bytes= t_got= t_sums=()
  while IFS= read -r l; do
    size=$((size + \${#l} + 1))
    case $l in
    rc=*) t_rc=\${l#rc=} ;;
    changed=*) t_changed=\${l#changed=} ;;
    sums_rc=*) t_sums_rc=\${l#sums_rc=} ;;
    alg=*) t_alg=\${l#alg=} ;;
    bytes=*) t_bytes=\${l#bytes=} ;;
    'sum '*) t_sums+=("\${l#sum }") ;;
    esac
  done 2>/dev/null <"$1"
  while IFS= read -r l; do
    case $l in 'Total bytes read: '*) t_got=\${l#Total bytes read: }; t_got=\${t_got%% *} ;; esac
  done 2>/dev/null <"$2"
  t_tb=$(( (1536 + (size + 511) / 512 * 512 + ${TAR_RECORD} - 1) / ${TAR_RECORD} * ${TAR_RECORD} ))
}`);
}

/**
 * The receiver: prepare the destination, unpack the stream into the temporary folder `tmp` inside
 * it, check the trailer, commit (rename into place), finish. Prints `ONESTOR_RECV_OK bytes=N` or
 * `ONESTOR_RECV_FAIL <reason>` (exit 75); a failing finish prints `ONESTOR_FINISH_FAIL` (exit 76).
 */
export function receiverScript(request: CopyRequest, tmp: string): ShellScript {
  const dir = request.to.dir;
  const decompress = COMPRESS[compressionOf(request)][1];
  const verify = checksumOf(request);
  const moves = request.from.entries.map((e) => {
    const final = e.as ?? e.name;
    const staged = `${tmp}/${e.name}`;
    return sh`if [ -e ${staged} ] || [ -L ${staged} ]; then
  if [ -d ${final} ] && [ ! -L ${final} ]; then rm -rf -- ${final}; fi
  mv -f -- ${staged} ${final} || fail ${`cannot move ${final} into place`}
${
      e.optional && request.mirror
        ? sh`elif [ -e ${final} ] || [ -L ${final} ]; then
  rm -rf -- ${final} || fail ${`cannot remove the stale ${final}`}`
        : raw("")
    }
fi`;
  });
  const finish = request.to.finish;
  const finals = request.from.entries.map((e) => `${dir}/${e.as ?? e.name}`);
  // Few processes: on a busy host every fork costs ~5-10 ms of CPU, and a deployment runs this once
  // per disk. The trailer and tar's totals are read with the shell's own `read`.
  return sh`set -o pipefail
export LC_ALL=C
${
    confine(request.to.confine, request.to.host, {
      write: [`${dir}/${tmp}`, ...finals, ...(request.to.writes ?? [])],
    })
  }
${widenPipes("STDIN")}
cd -- ${dir} 2>/dev/null || { mkdir -p -- ${dir} && cd -- ${dir}; } || exit 73
${request.to.prepare ?? raw(":")}
staged=${`${dir}/${tmp}`}
mkdir -- "$staged" 2>/dev/null || { rm -rf -- "$staged" && mkdir -- "$staged"; } || exit 73
# The scratch folder is not on the destination's file system: a full disk must not lose tar's
# error messages.
t=$(mktemp -d) || { rm -rf -- "$staged"; exit 70; }
trap 'rm -rf "$t" "$staged"' EXIT
trap 'exit 143' TERM INT HUP
onestor_lines() { while IFS= read -r _l || [ -n "$_l" ]; do printf '%s\\n' "$_l"; done; }
fail() {
  printf 'ONESTOR_RECV_FAIL %s\\n' "$*"
  local e=() from _l
  while IFS= read -r _l; do case $_l in 'Total bytes read'*) ;; *) e+=("$_l") ;; esac; done 2>/dev/null <"$t/err"
  from=$(( \${#e[@]} > 3 ? \${#e[@]} - 3 : 0 ))
  [ \${#e[@]} -eq 0 ] || printf '%s\\n' "\${e[@]:from}" >&2
  exit 75
}
${readTrailerFunction()}
${verify ? sumsFunction() : raw(":")}
${
    decompress
      ? raw(`${decompress} | `)
      : raw("")
  }tar -b ${TAR_BLOCKING} -x -i -f - --totals -C ${tmp} 2>"$t/err"
rc=$?
end=${`${tmp}/${TRAILER}`}
[ -f "$end" ] || fail "the stream ended before the sender finished (unpacking exit $rc)"
onestor_read_trailer "$end" "$t/err"
sent=$t_bytes got=$t_got alg=$t_alg tb=$t_tb
[ "$t_rc" = 0 ] || fail "the sender failed (tar exit \${t_rc:-?})"
[ "$rc" = 0 ] || fail "unpacking failed (tar exit $rc)"
# tar -i may count one more (empty) record than it read.
case "$sent:$got" in *[!0-9:]* | :* | *:) fail "no byte count (sent '$sent', read '$got')" ;; esac
[ "$got" -ge $((sent + tb)) ] && [ "$got" -le $((sent + tb + ${TAR_RECORD})) ] ||
  fail "read $got bytes for $sent sent"
${
    verify
      ? sh`[ "$t_sums_rc" = 0 ] || fail "the sender could not checksum its files ($alg)"
{ [ \${#t_sums[@]} -eq 0 ] || printf '%s\\n' "\${t_sums[@]}"; } | sort >"$t/want"
mapfile -t names < <(sed 's/^[0-9a-f]*  //' "$t/want")
( cd -- ${tmp} && onestor_sums "$alg" "\${names[@]}" ) 2>"$t/sumerr" | sort >"$t/got"
if grep -q ONESTOR_NO_HASH "$t/sumerr"; then fail "no-hash $alg"; fi
cmp -s "$t/want" "$t/got" || fail "content checksum mismatch ($alg)"`
      : raw(":")
  }
${
    request.sparse === false
      ? sh`rm -f -- "$end"
find ${tmp} -type f -print0 | while IFS= read -r -d '' f; do
  fallocate -l "$(stat -c %s -- "$f")" -- "$f" || fail "cannot allocate $f (SPARSE=NO)"
done || exit 75`
      : raw(":")
  }
${joinScripts(moves)}
echo "ONESTOR_RECV_OK bytes=$sent"
${
    finish
      ? sh`if ! ( ${finish}
) 2>"$t/finerr"; then
  m=()
  while IFS= read -r _l; do case $_l in ONESTOR_*) ;; *) m+=("$_l") ;; esac; done <"$t/finerr"
  # The last two lines (a negative offset past the start would give none).
  from=$(( \${#m[@]} > 2 ? \${#m[@]} - 2 : 0 ))
  printf 'ONESTOR_FINISH_FAIL %s\\n' "\${m[*]:from}"
  onestor_lines <"$t/finerr" >&2
  exit 76
fi
onestor_lines <"$t/finerr" >&2`
      : raw(":")
  }
exit 0`;
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
  return text.match(new RegExp(`(?:^|\\s)${key}=(\\S*)`))?.[1];
}

/** `ONESTOR_SRC_SUM <hex>  <name>` lines of a sender's stderr. */
export function sourceSums(stderr: string): Record<string, string> | null {
  const lines = stderr.split("\n").filter((l) => l.startsWith("ONESTOR_SRC_SUM "));
  if (marker(stderr, "ONESTOR_SRC_SUMS_RC") !== "0") return null;
  const sums: Record<string, string> = {};
  for (const l of lines) {
    const m = l.slice("ONESTOR_SRC_SUM ".length).match(/^\\?([0-9a-f]+) [ *]?(.+)$/);
    if (m) sums[m[2]] = m[1];
  }
  return sums;
}

/** How a pipeline that runs a receiver ended, from its output. */
export interface ReceiverOutcome {
  /** Received and in place. */
  ok: boolean;
  /** Why not (the receiver's reason), or null. */
  reason: string | null;
  /** The finishing step failed (the entries are in place). */
  finishFailed: boolean;
  /** What the finishing step said when it failed. */
  finishError: string;
  /** Byte count the receiver confirmed. */
  bytes: number;
  /** The receiver's standard output after its OK line (the finishing step's output). */
  finishOutput: string;
}

/** Reads a receiver's markers from the output it printed (maybe prefixed, as a relay does). */
export function receiverOutcome(stdout: string, prefix = ""): ReceiverOutcome {
  const lines = stdout.split("\n").filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));
  const okAt = lines.findIndex((l) => l.startsWith("ONESTOR_RECV_OK"));
  const failLine = lines.find((l) => l.startsWith("ONESTOR_RECV_FAIL "));
  const finishLine = lines.find((l) => l.startsWith("ONESTOR_FINISH_FAIL"));
  const finishFailed = finishLine !== undefined;
  return {
    ok: okAt >= 0,
    reason: failLine ? failLine.slice("ONESTOR_RECV_FAIL ".length) : null,
    finishFailed,
    finishError: finishLine?.slice("ONESTOR_FINISH_FAIL".length).trim() ?? "",
    bytes: okAt >= 0 ? Number(lines[okAt].match(/bytes=(\d+)/)?.[1] ?? 0) : 0,
    finishOutput: okAt >= 0 ? lines.slice(okAt + 1).filter((l) => !l.startsWith("ONESTOR_")).join("\n") : "",
  };
}

/** The command that runs a copy, and where. */
export interface CopyPipeline {
  /** Host that runs `script` (null: the front-end). */
  runOn: string | null;
  /** Options of the SSH hop into `runOn`. */
  hopOptions?: readonly string[];
  script: ShellScript;
}

/**
 * The pipeline of a copy (see the module doc): same host, front-end ↔ host, or host → host,
 * pushed by the source or pulled by the destination.
 */
export function copyPipeline(
  runner: HostRunner,
  request: CopyRequest,
  tmp: string,
  options: SenderOptions & { wrapSender?: (sender: ShellScript) => ShellScript } = {},
): CopyPipeline {
  const fromLocal = runner.isLocal(request.from.host);
  const toLocal = runner.isLocal(request.to.host);
  const receiver = receiverScript(request, tmp);
  const hop = { connectTimeout: runner.ssh.settings.connectTimeout, shell: "bash" as const };
  if ((fromLocal && toLocal) || (!fromLocal && !toLocal && request.from.host === request.to.host)) {
    return {
      runOn: fromLocal ? null : request.from.host,
      hopOptions: request.fromHopOptions,
      script: senderScript(request, sh`bash -c ${receiver.text}`, options),
    };
  }
  if (toLocal) {
    // Into the front-end: pull from the source host, so no host needs a key to the front-end.
    const sender = senderScript(request, raw("cat"), options);
    const ssh = runner.ssh.argv(
      request.from.host!,
      options.wrapSender ? options.wrapSender(sender) : sender,
      request.fromHopOptions,
      "bash",
    );
    return {
      runOn: null,
      script: sh`set -o pipefail
${ssh} | bash -c ${receiver.text}`,
    };
  }
  if (fromLocal) {
    const ssh = runner.ssh.argv(request.to.host!, receiver, request.toHopOptions, "bash");
    return { runOn: null, script: senderScript(request, sh`${ssh}`, options) };
  }
  const route = request.route ?? { mode: "push", address: request.to.host! };
  if (route.mode === "pull") {
    const sender = senderScript(request, raw("cat"), options);
    const pull = hopScript(route.address, options.wrapSender ? options.wrapSender(sender) : sender, {
      ...hop,
      hopOptions: request.toHopOptions,
    });
    return {
      runOn: request.to.host,
      script: sh`set -o pipefail
${pull} | bash -c ${receiver.text}`,
    };
  }
  return {
    runOn: request.from.host,
    hopOptions: request.fromHopOptions,
    script: senderScript(
      request,
      hopScript(route.address, receiver, { ...hop, hopOptions: request.toHopOptions }),
      options,
    ),
  };
}

/**
 * Copies entries between hosts with write-then-rename semantics (see the module doc). With content
 * verification, both ends must have the algorithm: a host found without it is remembered and the
 * copy is made once more with blake2b (hashes.ts).
 */
export async function copyEntries(runner: HostRunner, request: CopyRequest): Promise<CopyResult> {
  const preferred = checksumOf(request);
  if (!preferred) return await copyOnce(runner, request);
  const stateDir = frontendStateDir();
  const hosts = [request.from.host, request.to.host].map((h) => runner.isLocal(h) ? null : h);
  const agreed = agreedAlgorithm(preferred, hosts, stateDir);
  try {
    return await copyOnce(runner, { ...request, checksum: agreed });
  } catch (error) {
    if (!(error instanceof MissingHashError) || agreed === FALLBACK_ALGORITHM) throw error;
    if (error.host !== null) recordLack(stateDir, error.host, error.algorithm);
    logWarn(`${error.host ?? "A host"} has no ${error.algorithm} program: using ${FALLBACK_ALGORITHM} there`);
    return await copyOnce(runner, { ...request, checksum: FALLBACK_ALGORITHM });
  }
}

async function copyOnce(runner: HostRunner, request: CopyRequest): Promise<CopyResult> {
  const started = performance.now();
  const tmp = `.onestor-xfer-${token()}`;
  const what = describe(request);
  const pipeline = copyPipeline(runner, request, tmp);
  const result = await runner.run(pipeline.runOn, pipeline.script, {
    shell: "bash",
    check: false,
    timeoutMs: request.timeoutMs ?? 0,
    hopOptions: pipeline.hopOptions,
    what,
  });
  const outcome = receiverOutcome(result.stdout);
  const detail = lastLines(result.stderr.replace(/^ONESTOR_\S+.*$/gm, ""));
  if (!outcome.ok) {
    const missing = missingHash(
      `${outcome.reason?.replace(/^no-hash /, "ONESTOR_NO_HASH ") ?? ""}\n${result.stderr}`,
    );
    if (missing) {
      const atReceiver = outcome.reason?.startsWith("no-hash ") ?? false;
      const host = atReceiver ? request.to.host : request.from.host;
      throw new MissingHashError(
        `${what}: ${host ?? "the front-end"} cannot compute ${missing} checksums (install package ` +
          `${HASH_PACKAGES[missing]} there)`,
        missing,
        runner.isLocal(host) ? null : host,
      );
    }
    if (result.timedOut) {
      const hosts = [...new Set([request.from.host ?? "front-end", request.to.host ?? "front-end"])];
      throw new CopyError(
        `${what}: not finished after ${Math.round((request.timeoutMs ?? 0) / 1000)} s ` +
          `(SSH_TRANSFER_TIMEOUT); check that ${hosts.join(" and ")} can be reached`,
      );
    }
    const reason = outcome.reason ?? (detail || `exit code ${result.code}`);
    const text = `${reason}${outcome.reason && detail ? ` (${detail})` : ""}`;
    throw new CopyError(`${what}: ${explainFailure(text, request)}`);
  }
  if (outcome.finishFailed) {
    throw new FinishError(
      `${request.to.finishWhat ?? `${what}: finishing failed`}: ${outcome.finishError || detail || "failed"}`,
    );
  }
  metrics.copied(request, runner, outcome.bytes, started);
  return {
    streamBytes: outcome.bytes,
    sums: sourceSums(result.stderr),
    finishOutput: outcome.finishOutput,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * The detail of a failed copy, with a full destination said in plain words: tar reports it as
 * "Wrote only N of M bytes", which does not tell an administrator that a disk is full.
 */
export function explainFailure(detail: string, request: CopyRequest): string {
  if (!/No space left on device|Wrote only \d+ of \d+ bytes|Disk quota exceeded/.test(detail)) return detail;
  return `no space left on ${request.to.host ?? "front-end"}:${request.to.dir} (${detail})`;
}

/** A copy asked for content checksums one of its hosts cannot compute. */
export class MissingHashError extends CopyError {
  /** The algorithm that is missing. */
  readonly algorithm: HashAlgorithm;
  /** The host that lacks it (null: the front-end). */
  readonly host: string | null;
  constructor(message: string, algorithm: HashAlgorithm, host: string | null) {
    super(message);
    this.name = "MissingHashError";
    this.algorithm = algorithm;
    this.host = host;
  }
}
