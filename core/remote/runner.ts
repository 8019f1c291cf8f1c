/**
 * Runs a script on a host, or locally when that host is the front-end itself: oned names the
 * front-end by its hostname in location arguments (`fe:/var/lib/one/...`), and onestor does the
 * front-end's part without an SSH round trip to itself (so no host needs a key to reach it).
 *
 * @module
 */

import { RemoteError } from "../errors.ts";
import { logDebug } from "../one/log.ts";
import { refusalIn } from "./confine.ts";
import { lastLines, runCommand, type RunResult } from "./process.ts";
import type { ShellScript } from "./shell.ts";
import { type RemoteShell, SshClient, type SshRunOptions } from "./ssh.ts";

/** Runs scripts on hosts through SSH and on the front-end directly. */
export class HostRunner {
  readonly ssh: SshClient;
  readonly #local: Set<string>;
  readonly #debug: boolean;

  /**
   * `localNames` are the names under which oned knows this front-end; with `debug` every command is
   * logged with its host, duration and exit code (LOG_LEVEL=debug).
   */
  constructor(ssh: SshClient, localNames: readonly string[], options: { debug?: boolean } = {}) {
    this.ssh = ssh;
    this.#local = new Set(localNames.map((n) => n.toLowerCase()));
    this.#debug = options.debug ?? false;
  }

  /** True when `host` is the front-end this process runs on. */
  isLocal(host: string | null): boolean {
    if (host === null || host === "") return true;
    const h = host.toLowerCase();
    return this.#local.has(h) || this.#local.has(h.split(".")[0]);
  }

  /**
   * Runs `script` on `host` (locally for the front-end); throws a RemoteError naming the host on
   * failure, and a ConfinementError when the script refused a path (core/remote/confine.ts), even
   * with `check: false`.
   */
  async run(host: string | null, script: ShellScript, options: SshRunOptions = {}): Promise<RunResult> {
    let result: RunResult;
    try {
      result = await this.#timed(host, script, options);
    } catch (error) {
      throw (error instanceof RemoteError && refusalIn(error.stderr)) || error;
    }
    // A refusal anywhere counts, whatever the exit code: a relay reports its forward hop's failure
    // in its output and exits 0.
    const refusal = refusalIn(result.stderr);
    if (refusal) throw refusal;
    return result;
  }

  async #timed(host: string | null, script: ShellScript, options: SshRunOptions): Promise<RunResult> {
    if (!this.#debug) return await this.#run(host, script, options);
    const started = performance.now();
    const first = script.text.split("\n").find((l) => l.trim() !== "")?.trim().slice(0, 120) ?? "";
    let outcome = "failed";
    try {
      const result = await this.#run(host, script, options);
      outcome = `exit ${result.code}`;
      return result;
    } finally {
      const ms = Math.round(performance.now() - started);
      // `what` is phrased for an error message ("Error copying ..."); the debug line names the step.
      const step = (options.what ?? first).replace(/^Error (\w)/, (_, c: string) => c.toUpperCase());
      logDebug(`${host ?? "front-end"}: ${step} (${ms} ms, ${outcome})`);
    }
  }

  async #run(host: string | null, script: ShellScript, options: SshRunOptions): Promise<RunResult> {
    if (!this.isLocal(host)) return await this.ssh.run(host!, script, options);
    const shell: RemoteShell = options.shell ?? "sh";
    const result = await runCommand([shell, "-c", script.text], {
      ...options,
      env: { LC_ALL: "C", LANG: "C" },
    });
    if (result.code === 0 || options.check === false) return result;
    const name = host ?? "front-end";
    const detail = lastLines(result.stderr);
    throw new RemoteError(
      result.timedOut
        ? `${options.what ?? "Command"} on host ${name} timed out`
        : `${options.what ?? "Command"} on host ${name} failed (exit ${result.code})${
          detail ? `: ${detail}` : ""
        }`,
      {
        host: name,
        kind: result.timedOut ? "timeout" : "command",
        status: result.code,
        stderr: result.stderr,
      },
    );
  }

  /** Runs `script` and returns its trimmed standard output. */
  async output(host: string | null, script: ShellScript, options: SshRunOptions = {}): Promise<string> {
    return (await this.run(host, script, options)).stdout.trim();
  }
}

/** Names under which this machine may appear in oned's location arguments. */
export function localHostNames(extra: readonly string[] = []): string[] {
  const names = new Set<string>(["localhost", "127.0.0.1", ...extra]);
  try {
    const h = Deno.hostname();
    names.add(h);
    names.add(h.split(".")[0]);
  } catch {
    // No hostname: only the explicit names apply.
  }
  return [...names];
}
