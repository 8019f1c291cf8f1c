/**
 * Host-to-host copies whose data connection does not use the destination's name: the replica
 * pushing a disk to a hypervisor's storage-network address, or a hypervisor pulling it from the
 * replica's storage-network address (REPLICA_STORAGE_IP, see docs/replica-cache.md). Control
 * commands (commit, cleanup) still go to the hosts by name from the front-end.
 *
 * Same sender, receiver, checksums and commit as {@link ./copy.ts}; without a route, or with a
 * push to the destination's own name, this is exactly {@linkcode copyEntries}. `toHopOptions` are
 * the options of the data hop between the two hosts, whichever of them opens it.
 *
 * @module
 */

import { lastLines } from "../remote/process.ts";
import type { HostRunner } from "../remote/runner.ts";
import { raw, sh, type ShellScript } from "../remote/shell.ts";
import { hopScript } from "../remote/ssh.ts";
import {
  cleanupScript,
  commitScript,
  copyEntries,
  CopyError,
  type CopyRequest,
  type CopyResult,
  receiverScript,
  senderScript,
} from "./copy.ts";
import { metrics } from "../metrics/metrics.ts";

/** How the data connection of a host-to-host copy is made. */
export type CopyRoute =
  /** The source host connects to the destination at `address`. */
  | { mode: "push"; address: string }
  /** The destination host connects to the source at `address` and pulls. */
  | { mode: "pull"; address: string };

function token(): string {
  return [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function marker(text: string, key: string): string | undefined {
  return text.match(new RegExp(`${key}=(\\S*)`))?.[1];
}

/** Copies between two remote hosts over `route` (see the module doc). */
export async function routedCopy(
  runner: HostRunner,
  request: CopyRequest,
  route?: CopyRoute,
): Promise<CopyResult> {
  const from = request.from.host;
  const to = request.to.host;
  if (!route || from === null || to === null || (route.mode === "push" && route.address === to)) {
    return await copyEntries(runner, request);
  }
  const started = performance.now();
  const tmp = `.onestor-xfer-${token()}`;
  const first = request.from.entries[0];
  const what = request.what ??
    `Error copying ${from}:${request.from.dir}/${first?.name ?? ""} to ${to}:${request.to.dir}/${
      first?.as ?? first?.name ?? ""
    }`;
  const checksum = request.checksum ?? "b2sum";
  const hop = { connectTimeout: runner.ssh.settings.connectTimeout, shell: "bash" as const };
  let pipeline: ShellScript;
  let runOn: string;
  if (route.mode === "push") {
    pipeline = senderScript(
      request,
      hopScript(route.address, receiverScript(request, tmp), { ...hop, hopOptions: request.toHopOptions }),
    );
    runOn = from;
  } else {
    const pull = hopScript(route.address, senderScript(request, raw("cat")), {
      ...hop,
      hopOptions: request.toHopOptions,
    });
    pipeline = sh`set -o pipefail
${pull} | bash -c ${receiverScript(request, tmp).text}`;
    runOn = to;
  }
  const fail = async (message: string): Promise<never> => {
    await runner.run(to, cleanupScript(request, tmp), { check: false }).catch(() => {});
    throw new CopyError(message);
  };
  const result = await runner.run(runOn, pipeline, {
    shell: "bash",
    check: false,
    timeoutMs: request.timeoutMs ?? 0,
    what,
  }).catch(async (error) => {
    await runner.run(to, cleanupScript(request, tmp), { check: false }).catch(() => {});
    throw error;
  });
  const both = `${result.stdout}\n${result.stderr}`;
  const srcSum = marker(both, "ONESTOR_SRC_SUM");
  const dstSum = marker(both, "ONESTOR_DST_SUM");
  if (result.code !== 0) {
    const detail = lastLines(result.stderr.replace(/^ONESTOR_\S+.*$/gm, ""));
    await fail(`${what}: ${detail || `exit code ${result.code}`}`);
  }
  if (checksum !== "none" && (!srcSum || srcSum !== dstSum)) {
    await fail(
      `${what}: checksum mismatch (sent ${srcSum || "?"}, received ${dstSum || "?"}); nothing was replaced`,
    );
  }
  await runner.run(to, commitScript(request, tmp), { what: `${what}: cannot move the copy into place` });
  metrics.copied(request, runner, Number(marker(both, "ONESTOR_SRC_BYTES") || "0"), started);
  return {
    streamBytes: Number(marker(both, "ONESTOR_SRC_BYTES") || "0"),
    streamChecksum: srcSum ?? "",
    seconds: (performance.now() - started) / 1000,
  };
}
