/**
 * A small OpenNebula world for lab tests: the lab hosts (frontend, replica, hv1, hv2), a fake oned
 * answering XML-RPC on 127.0.0.1, and onestor installed in the frontend's remotes, so tests call
 * the installed symlinks with oned's exact arguments, as oneadmin, on the frontend.
 *
 * @module
 */

import { type ExecOptions, type ExecResult, Lab, type LabOptions } from "./lab.ts";
import { FakeOned } from "./fake_oned.ts";
import { MAIN } from "./run_onestor.ts";

/** Where OpenNebula keeps the remotes on the front-end. */
export const REMOTES = "/var/lib/one/remotes";
/** The datastore location, as oned passes it by default (with its double slash). */
export const DATASTORES = "/var/lib/one/datastores";

/** Options of {@linkcode World.start}. */
export interface WorldOptions extends LabOptions {
  /** Driver names to install as (default onestor / onestor). */
  tmName?: string;
  dsName?: string;
}

/** Lab + fake oned + installed onestor. */
export class World {
  readonly lab: Lab;
  readonly oned: FakeOned;
  readonly tmName: string;
  readonly dsName: string;
  readonly #env: Record<string, string>;

  private constructor(lab: Lab, oned: FakeOned, env: Record<string, string>, tmName: string, dsName: string) {
    this.lab = lab;
    this.oned = oned;
    this.#env = env;
    this.tmName = tmName;
    this.dsName = dsName;
  }

  /** Starts the lab and oned, installs onestor on the frontend. */
  static async start(options: WorldOptions = {}): Promise<World> {
    const lab = await Lab.start(options);
    let oned: FakeOned | undefined;
    try {
      oned = await FakeOned.start();
      const authDir = `${lab.dir}/oned-auth`;
      await Deno.mkdir(authDir, { recursive: true });
      const env = await oned.envFor({ dir: authDir });
      // Labs share the machine's /tmp: without a control folder of its own, an action could reuse
      // an ssh master connection another lab opened to its own host of the same name. (The SSH
      // layer turns this long name into a short folder of its own under /tmp.)
      env.ONESTOR_SSH_CONTROL_DIR = `${lab.dir}/ssh-control-sockets`;
      await Deno.chmod(authDir, 0o755);
      await Deno.chmod(env.ONE_AUTH, 0o644);
      const world = new World(lab, oned, env, options.tmName ?? "onestor", options.dsName ?? "onestor");
      await world.installOn("frontend");
      return world;
    } catch (error) {
      await oned?.close();
      await lab.stop();
      throw error;
    }
  }

  /** Installs onestor into the remotes of `host`, which can then run actions as a front-end too. */
  async installOn(host: string): Promise<void> {
    const install = await this.lab.exec(host, [
      Deno.execPath(),
      "run",
      "-A",
      "--no-check",
      "--quiet",
      MAIN,
      "install",
      "--quiet",
      "--remotes",
      REMOTES,
      "--tm-name",
      this.tmName,
      "--ds-name",
      this.dsName,
    ], { user: "oneadmin" });
    if (install.code !== 0) throw new Error(`onestor install failed on ${host}: ${install.stderr}`);
  }

  /** Environment every action gets (oned endpoint and credentials). */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return { ...this.#env, ...extra };
  }

  /**
   * Runs the installed TM action `<remotes>/tm/<name>/<action> ARGS` as oneadmin on the frontend,
   * or on `options.frontend` (a host onestor was installed on with {@link installOn}).
   */
  tm(
    action: string,
    args: (string | number)[],
    options: ExecOptions & { frontend?: string } = {},
  ): Promise<ExecResult> {
    const host = options.frontend ?? "frontend";
    return this.lab.exec(host, [`${REMOTES}/tm/${this.tmName}/${action}`, ...args.map(String)], {
      user: "oneadmin",
      timeoutMs: 300_000,
      ...options,
      env: this.env(options.env),
    });
  }

  /** Runs the installed datastore action with the base64 DS_DRIVER_ACTION_DATA on stdin. */
  ds(
    action: string,
    id: number | string,
    driverActionBase64: string,
    options: ExecOptions = {},
  ): Promise<ExecResult> {
    return this.lab.exec("frontend", [`${REMOTES}/datastore/${this.dsName}/${action}`, String(id)], {
      user: "oneadmin",
      timeoutMs: 300_000,
      ...options,
      stdin: driverActionBase64,
      env: this.env(options.env),
    });
  }

  /** Runs a shell script on a lab host (as root unless told otherwise); throws when it fails. */
  async sh(host: string, script: string, options: ExecOptions = {}): Promise<string> {
    const result = await this.lab.sh(host, script, options);
    if (result.code !== 0) {
      throw new Error(`script on ${host} failed (${result.code}): ${script}\n${result.stderr}`);
    }
    return result.stdout;
  }

  /** Writes a configuration file on a host (path inside the host, e.g. /var/lib/one/remotes/etc/...). */
  async writeFile(host: string, path: string, content: string): Promise<void> {
    const machinePath = this.lab.path(host, path);
    await Deno.mkdir(machinePath.slice(0, machinePath.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(machinePath, content);
  }

  /** Stops everything. */
  async stop(): Promise<void> {
    await this.oned.close();
    await this.lab.stop();
  }

  /** Stops everything. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Throws with the action's stderr when it did not exit 0; returns its stdout. */
export function ok(result: ExecResult, what = "action"): string {
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}): ${result.stderr}`);
  return result.stdout;
}

/** What oned shows the user of a failed action: the stderr lines that are not log lines. */
export function failureInfo(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.trim() !== "" && !/^(ERROR|INFO|WARN|DEBUG):/.test(l));
}
