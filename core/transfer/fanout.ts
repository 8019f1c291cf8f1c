/**
 * One stream from the front-end to a relay host that both keeps a copy and forwards the bytes to a
 * second receiver while they arrive: the replica cache's cut-through. A cold deployment then
 * costs about one hop (front-end -> replica -> hypervisor, pipelined), not two sequential copies.
 *
 * It is built from the script builders of {@link ./copy.ts} (same sender, same receiver and commit
 * on the forward host, same stream checksums) and adds, on both ends of the first hop, a per-file
 * content checksum computed from the stream itself (`tar --to-command`), so that the relay's copy
 * can be proved equal to the front-end's files without reading either again.
 *
 * On the relay, `tee -p` splits the stream: if the local copy fails (disk full) the forward goes
 * on, and if the forward fails the local copy still completes. The caller decides from
 * {@linkcode FanoutResult} what to promote; the relay's copy is left in its fill folder.
 *
 * @module
 */

import { RemoteError } from "../errors.ts";
import { confine, type Confinement } from "../remote/confine.ts";
import { lastLines } from "../remote/process.ts";
import type { HostRunner } from "../remote/runner.ts";
import { quote, raw, sh, type ShellScript } from "../remote/shell.ts";
import { classifySshFailure, describeSshFailure, hopScript } from "../remote/ssh.ts";
import {
  cleanupScript,
  commitScript,
  type CopyEntry,
  CopyError,
  type CopyRequest,
  receiverScript,
  senderScript,
} from "./copy.ts";
import { metrics } from "../metrics/metrics.ts";

/** A cut-through copy (see the module doc). */
export interface FanoutRequest {
  /** Folder and entries on the front-end; the relay keeps their names. */
  from: { dir: string; entries: CopyEntry[] };
  /** The relay host; its copy lands in `<dir>/<fill>/`, which `confine` must allow. */
  relay: { host: string; dir: string; fill: string; confine: Confinement; hopOptions?: readonly string[] };
  /**
   * Where the relay forwards the stream: `host` names it for the front-end (commit), `address` is
   * what the relay connects to (default `host`); entries are renamed with their `as` at commit.
   */
  forward?: {
    host: string;
    address?: string;
    dir: string;
    entries: CopyEntry[];
    /** Where the forward may write (checked on the forward host). */
    confine: Confinement;
    hopOptions?: readonly string[];
  };
  /** Keep holes (default true). */
  sparse?: boolean;
  /** Stream checksum program (b2sum, sha256sum, md5sum, none). */
  checksum?: string;
  /** Per-file content checksum program (b2sum, sha256sum, md5sum). */
  contentChecksum: string;
  /** A line appended to the relay folder's event log when the stream starts (JSON). */
  startLog?: string;
  /** Timeout in milliseconds (0: none). */
  timeoutMs?: number;
  /** Error text prefix. */
  what?: string;
  /** Process whose death stops the stream (default: this process). */
  ownerPid?: number;
}

/** What happened on each branch. */
export interface FanoutResult {
  /** Bytes of the tar stream sent by the front-end. */
  streamBytes: number;
  /** Checksum of that stream ("" without checksums). */
  streamChecksum: string;
  /** Wall time in seconds. */
  seconds: number;
  /** Per-file checksums computed on the front-end from the stream, null if that failed. */
  sourceSums: Record<string, string> | null;
  /** The relay's copy: received whole and unpacked (`ok`), its per-file checksums and stat lines. */
  relay: { ok: boolean; problem: string | null; sums: Record<string, string>; statLines: string[] };
  /** The forward: committed into place on its host (`ok`); null when there was none. */
  forward: { ok: boolean; problem: string | null } | null;
}

const PROGRAMS = /^(b2sum|sha256sum|sha1sum|md5sum)$/;

/** The `tar --to-command` text that prints `<sum> <member name>` for each regular file. */
export function perFileCommand(program: string): string {
  if (!PROGRAMS.test(program)) throw new TypeError(`Unknown checksum program ${program}`);
  return `printf '%s %s\\n' "$(${program} | cut -d' ' -f1)" "$TAR_FILENAME"`;
}

function streamHashLine(checksum: string): ShellScript {
  if (checksum === "none") return raw('cat <"$t/h" >/dev/null &');
  if (!PROGRAMS.test(checksum)) throw new TypeError(`Unknown checksum program ${checksum}`);
  return raw(`${checksum} <"$t/h" | cut -d' ' -f1 >"$t/sum" &`);
}

function marker(text: string, key: string): string | undefined {
  return text.match(new RegExp(`(?:^|\\s)${key}=(\\S*)`))?.[1];
}

function lines(text: string, prefix: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(`${prefix} `)).map((l) => l.slice(prefix.length + 1));
}

/** Parses `<sum> <name>` lines. */
export function parseManifest(manifest: readonly string[]): Record<string, string> {
  const sums: Record<string, string> = {};
  for (const l of manifest) {
    const space = l.indexOf(" ");
    if (space > 0) sums[l.slice(space + 1)] = l.slice(0, space);
  }
  return sums;
}

/** The script the relay runs: unpack into the fill folder, hash each file, forward the stream. */
export function relayScript(request: FanoutRequest, forward: ShellScript): ShellScript {
  const { dir, fill } = request.relay;
  const names = request.from.entries.map((e) => e.name);
  const written = [`${dir}/${fill}`, ...(request.startLog ? [`${dir}/.onestor-cache.log`] : [])];
  return sh`set -o pipefail
${confine(request.relay.confine, request.relay.host, { write: written })}
mkdir -p -- ${dir} && cd -- ${dir} || exit 73
rm -rf -- ${fill} && mkdir -- ${fill} || exit 73
${request.startLog ? sh`printf '%s\\n' ${request.startLog} >>.onestor-cache.log 2>/dev/null` : raw(":")}
t=$(mktemp -d) || exit 70
trap 'rm -rf "$t"' EXIT
mkfifo "$t/h" "$t/c" "$t/m" || exit 70
${streamHashLine(request.checksum ?? "b2sum")}
hp=$!
tar -xf - --to-command=${perFileCommand(request.contentChecksum)} <"$t/m" >"$t/man" 2>"$t/merr" &
mp=$!
{ tee -p "$t/m" <"$t/c" | tar -C ${fill} -xf -; echo "\${PIPESTATUS[1]}" >"$t/crc"; } 2>"$t/cerr" &
cp=$!
tee -p "$t/h" "$t/c" | ${forward} >"$t/fout" 2>"$t/ferr"
frc=$?
wait $hp
wait $cp
wait $mp
mrc=$?
echo "ONESTOR_RELAY_SUM=$(cat "$t/sum" 2>/dev/null)"
echo "ONESTOR_RELAY_RC=$(cat "$t/crc" 2>/dev/null || echo 1)"
echo "ONESTOR_MANIFEST_RC=$mrc"
echo "ONESTOR_FORWARD_RC=$frc"
sed -n 's/^ONESTOR_DST_SUM=/ONESTOR_FORWARD_SUM=/p' "$t/fout"
sed 's/^/ONESTOR_FILE /' "$t/man"
cd -- ${fill} && for f in ${names} ${names.map((n) => raw(`${quote(n)}/*`))}; do
  if [ -e "$f" ] || [ -L "$f" ]; then stat -c 'ONESTOR_STAT %F|%s|%Y|%b|%B|%n' -- "$f"; fi
done
{ sed 's/^/relay copy: /' "$t/cerr" "$t/merr"; sed 's/^/forward: /' "$t/ferr"; } | tail -n 6 >&2
exit 0`;
}

/**
 * The front-end end of the first hop: hash each file of the stream, send it to the relay. While
 * it sends, a watchdog checks that process `ownerPid` (the onestor process) is alive: if it was
 * killed, the stream stops instead of going on as an orphan nobody will commit.
 */
export function frontendSinkScript(
  request: FanoutRequest,
  sshArgv: readonly string[],
  ownerPid: number,
): ShellScript {
  return sh`set -o pipefail
t=$(mktemp -d) || exit 70
trap 'rm -rf "$t"' EXIT
mkfifo "$t/m" "$t/s" || exit 70
tar -xf - --to-command=${perFileCommand(request.contentChecksum)} <"$t/m" >"$t/man" 2>/dev/null &
mp=$!
${sshArgv} <"$t/s" &
sp=$!
tee -p "$t/m" >"$t/s" <&0 &
tp=$!
( while kill -0 ${ownerPid} 2>/dev/null && kill -0 $sp 2>/dev/null; do sleep 1; done
  kill -0 ${ownerPid} 2>/dev/null || kill $sp $tp ) >/dev/null 2>&1 &
wp=$!
wait $sp
rc=$?
# A relay that ended badly, or a killed owner: stop reading and hashing (they may wait on a fifo).
[ $rc -eq 0 ] || kill $tp $mp 2>/dev/null
wait $tp
kill $wp 2>/dev/null
wait $mp
mrc=$?
sed 's/^/ONESTOR_SRC_FILE /' "$t/man" >&2
echo "ONESTOR_SRC_MANIFEST_RC=$mrc" >&2
exit $rc`;
}

function token(): string {
  return [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Runs a cut-through copy (see the module doc). Throws only when the relay could not be used at all. */
export async function fanoutCopy(runner: HostRunner, request: FanoutRequest): Promise<FanoutResult> {
  const started = performance.now();
  const what = request.what ?? `Error copying ${request.from.dir} through ${request.relay.host}`;
  const checksum = request.checksum ?? "b2sum";
  const forward = request.forward;
  const fwdTmp = `.onestor-xfer-${token()}`;
  const fwdRequest: CopyRequest | null = forward
    ? {
      from: { host: request.relay.host, dir: request.relay.dir, entries: forward.entries },
      to: { host: forward.host, dir: forward.dir, confine: forward.confine },
      sparse: request.sparse,
      checksum,
      // The relay reads the tar stream itself, so this hop is never compressed.
      compression: "none",
    }
    : null;
  let forwardScript: ShellScript = raw("cat >/dev/null");
  if (forward && fwdRequest) {
    const receiver = receiverScript(fwdRequest, fwdTmp);
    const address = forward.address ?? forward.host;
    forwardScript = address === request.relay.host
      ? sh`bash -c ${receiver.text}`
      : hopScript(address, receiver, {
        hopOptions: forward.hopOptions,
        connectTimeout: runner.ssh.settings.connectTimeout,
        shell: "bash",
      });
  }
  const relay = relayScript(request, forwardScript);
  const sshArgv = runner.ssh.argv(request.relay.host, relay, request.relay.hopOptions, "bash");
  const sender: CopyRequest = {
    from: { host: null, dir: request.from.dir, entries: request.from.entries },
    to: { host: request.relay.host, dir: request.relay.dir, confine: request.relay.confine },
    sparse: request.sparse,
    checksum,
    compression: "none",
  };
  const pipeline = senderScript(
    sender,
    sh`bash -c ${frontendSinkScript(request, sshArgv, request.ownerPid ?? Deno.pid).text}`,
  );
  const cleanupForward = async () => {
    if (forward && fwdRequest) {
      await runner.run(forward.host, cleanupScript(fwdRequest, fwdTmp), { check: false }).catch(() => {});
    }
  };
  let result;
  try {
    result = await runner.run(null, pipeline, {
      shell: "bash",
      check: false,
      timeoutMs: request.timeoutMs ?? 0,
      what,
    });
  } catch (error) {
    await cleanupForward();
    throw error;
  }
  const out = result.stdout;
  const err = result.stderr;
  if (result.code !== 0) {
    await cleanupForward();
    const detail = lastLines(err.replace(/^ONESTOR_\S+.*$/gm, ""));
    const kind = classifySshFailure(result.code, err, result.timedOut);
    if (kind !== "command") {
      throw new RemoteError(describeSshFailure(request.relay.host, kind, result, what, request.timeoutMs), {
        host: request.relay.host,
        kind,
        status: result.code,
        stderr: err,
      });
    }
    throw new CopyError(`${what}: ${detail || `exit code ${result.code}`}`);
  }
  const srcSum = marker(err, "ONESTOR_SRC_SUM") ?? "";
  const bytes = Number(marker(err, "ONESTOR_SRC_BYTES") || "0");
  const sourceSums = marker(err, "ONESTOR_SRC_MANIFEST_RC") === "0"
    ? parseManifest(lines(err, "ONESTOR_SRC_FILE"))
    : null;
  const sumOk = (sum: string | undefined) => checksum === "none" || (srcSum !== "" && sum === srcSum);
  const detail = lastLines(err.replace(/^ONESTOR_\S+.*$/gm, ""));

  const relaySum = marker(out, "ONESTOR_RELAY_SUM");
  let relayProblem: string | null = null;
  if (marker(out, "ONESTOR_RELAY_RC") !== "0") {
    relayProblem = `unpacking failed${detail ? `: ${detail}` : ""}`;
  } else if (marker(out, "ONESTOR_MANIFEST_RC") !== "0") relayProblem = "hashing the received files failed";
  else if (!sumOk(relaySum)) {
    relayProblem = `stream checksum mismatch (sent ${srcSum || "?"}, received ${relaySum || "?"})`;
  }

  let forwardResult: FanoutResult["forward"] = null;
  if (forward && fwdRequest) {
    const fwdSum = marker(out, "ONESTOR_FORWARD_SUM");
    let problem: string | null = null;
    if (marker(out, "ONESTOR_FORWARD_RC") !== "0") {
      problem = `forwarding failed${detail ? `: ${detail}` : ""}`;
    } else if (!sumOk(fwdSum)) {
      problem = `stream checksum mismatch (sent ${srcSum || "?"}, received ${fwdSum || "?"})`;
    }
    if (problem === null) {
      try {
        await runner.run(forward.host, commitScript(fwdRequest, fwdTmp), {
          what: `${what}: cannot move the copy into place`,
        });
      } catch (error) {
        problem = error instanceof Error ? error.message : String(error);
      }
    }
    if (problem !== null) await cleanupForward();
    forwardResult = { ok: problem === null, problem };
  }
  const seconds = (performance.now() - started) / 1000;
  metrics.transfer("frontend_to_replica", request.relay.host, bytes, seconds);
  if (forwardResult?.ok) metrics.transfer("replica_to_host", request.forward!.host, bytes, seconds);
  return {
    streamBytes: bytes,
    streamChecksum: srcSum,
    seconds: (performance.now() - started) / 1000,
    sourceSums,
    relay: {
      ok: relayProblem === null,
      problem: relayProblem,
      sums: parseManifest(lines(out, "ONESTOR_FILE")),
      statLines: lines(out, "ONESTOR_STAT"),
    },
    forward: forwardResult,
  };
}
