/**
 * A real OpenNebula front-end in the lab, for end-to-end tests and benchmarks: the lab's `frontend`
 * host runs OpenNebula 7.3.80 (oned, the scheduler, monitord, the Ruby drivers and CLI, from
 * `../shared/oned`) as oneadmin with the lab's keys, inside its own mount namespace, so oned's
 * DATASTORE_LOCATION is the front-end's own /var/lib/one/datastores and its name in location
 * arguments is `frontend`. onestor is laid into oned's remotes with `onestor install`; hosts
 * (dummy IM and VMM) and datastores are created with the CLI, as an administrator does.
 *
 * Tests drive oned through the CLI only (`onevm`, `oneimage`, ...: {@linkcode OnedWorld.cli}) and
 * watch states through XML-RPC (`one.vm.info` every 0.1 s: {@linkcode OnedWorld.states}), which
 * also keeps every state a VM went through. Helpers compose the steps a recovery test needs: create
 * a VM with given disks, deploy it on a host and datastore, wait for states, take a host offline,
 * recover.
 *
 * ```ts
 * onedTest("a VM comes up", async () => {
 *   await using one = await OnedWorld.start();
 *   const ds = await one.createDatastore({ NAME: "sys", TM_MAD: "onestor", TYPE: "SYSTEM_DS" });
 *   const vm = await one.createVm({ name: "a", disks: [{ volatile: "fs", size: 8, fs: "ext4" }] });
 *   await one.deploy(vm, "hv1", ds);
 *   await one.states.waitFor(vm, "RUNNING");
 *   await one.assertNeverFailed(vm);
 * });
 * ```
 *
 * The oned port is free and random per run (several labs with oned may run at once). oned dies with
 * the lab (its namespace is killed), so nothing outlives a test.
 *
 * @module
 */

import { type ExecOptions, type ExecResult, Lab, labSupport, labTest } from "./lab.ts";
import { LIBVIRT_DIRS, LibvirtLab } from "./libvirt_lab.ts";
import { MAIN } from "./run_onestor.ts";
import { OneClient } from "../../core/one/xmlrpc.ts";
import { childText, parseXml, type XmlElement } from "../../core/one/xml.ts";
import { isFailure, lastStateInVmLog, StateRecorder, statesInVmLog } from "./vm_states.ts";

/** Where the OpenNebula front-end build and `oned.sh` are: `../shared/oned` beside the checkout. */
export const ONED_DIR: string = Deno.env.get("ONESTOR_ONED_DIR") ??
  new URL("../../../shared/oned", import.meta.url).pathname;
/** `ONE_LOCATION` of the lab's oned (a private folder of the front-end host). */
export const ONE_LOCATION = "/opt/one";
/** oned's remotes, where `onestor install` lays the drivers. */
export const ONED_REMOTES = `${ONE_LOCATION}/var/remotes`;
/** DATASTORE_LOCATION of the lab's oned (and of every host). */
export const ONED_DATASTORES = "/var/lib/one/datastores";
/** Hosts of the default world: the front-end, the cluster's replica and two hypervisors. */
export const ONED_HOSTS = ["frontend", "replica", "hv1", "hv2"] as const;
/** The installed launcher of onestor in oned's remotes (what the systemd unit runs). */
export const ONED_LAUNCHER = `${ONED_REMOTES}/tm/onestor/.onestor`;
/** VM_MAD of the hypervisors of a world with libvirt (OpenNebula's name for KVM without acceleration). */
export const LIBVIRT_VM_MAD = "qemu";

/**
 * The UUID the lab's `qemu` VMM reports as DEPLOY_ID of VM `vm` (OpenNebula's KVM driver reports the
 * domain's UUID): a test that starts the VM's libvirt domain itself gives it this UUID
 * (`domainXml({ uuid })`), so that whatever looks the domain up by DEPLOY_ID finds it.
 */
export function domainUuid(vm: number): string {
  return `${DOMAIN_UUID_PREFIX}${String(vm).padStart(12, "0")}`;
}
const DOMAIN_UUID_PREFIX = "0e570000-0000-4000-8000-";

const PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const IMAGE_STATES = [
  "INIT",
  "READY",
  "USED",
  "DISABLED",
  "LOCKED",
  "ERROR",
  "CLONE",
  "DELETE",
  "USED_PERS",
  "LOCKED_USED",
  "LOCKED_USED_PERS",
];
const HOST_MONITORED = 2;

/** The Debian packages `oned.sh deps` installs, read from oned.sh itself. */
function onedPackages(script: string): string[] {
  const deps = script.match(/^deps\(\) \{([\s\S]*?)^\}/m)?.[1] ?? "";
  const line = deps.replace(/\\\n/g, " ").match(/--no-install-recommends([^>]*)/)?.[1] ?? "";
  return line.split(/\s+/).filter((p) => /^[a-z0-9][a-z0-9.+-]+$/.test(p));
}

let supportCache: { ok: boolean; reason: string } | null = null;

/**
 * Whether end-to-end tests can run here: `../shared/oned` (oned.sh and the tarball) present and its
 * run-time packages installed (`bash ../shared/oned/oned.sh deps`, which scripts/setup.sh runs as
 * root). Lab support (root, namespaces) is checked by {@linkcode labTest}.
 */
export function onedSupport(): { ok: boolean; reason: string } {
  if (supportCache) return supportCache;
  const check = () => {
    let script: string;
    try {
      script = Deno.readTextFileSync(`${ONED_DIR}/oned.sh`);
    } catch {
      return { ok: false, reason: `needs the OpenNebula front-end build in ${ONED_DIR} (oned.sh not found)` };
    }
    const tarball = [...Deno.readDirSync(ONED_DIR)].find((e) => /^opennebula-.*\.tar\.xz$/.test(e.name));
    if (!tarball) return { ok: false, reason: `needs the OpenNebula tarball in ${ONED_DIR}` };
    const packages = onedPackages(script);
    if (packages.length === 0) {
      return { ok: false, reason: `cannot read the package list of ${ONED_DIR}/oned.sh` };
    }
    const out = new Deno.Command("dpkg-query", {
      args: ["-W", "-f", "${Package} ${Status}\n", ...packages],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const installed = new Set(
      new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.endsWith(" install ok installed"))
        .map((l) => l.split(" ")[0]),
    );
    const missing = packages.filter((p) => !installed.has(p));
    if (missing.length) {
      return {
        ok: false,
        reason: `needs OpenNebula's run-time packages (${missing.join(" ")}): bash ${ONED_DIR}/oned.sh deps`,
      };
    }
    return { ok: true, reason: "" };
  };
  return supportCache = check();
}

/**
 * Registers an end-to-end test: like {@linkcode labTest}, and also needs {@linkcode onedSupport}.
 * Elsewhere a missing oned skips the test with a line naming what is missing; with
 * ONESTOR_LAB=require (CI) it fails instead.
 */
export function onedTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  const oned = onedSupport();
  if (!oned.ok) {
    if (Deno.env.get("ONESTOR_LAB") === "require") {
      Deno.test(name, () => {
        throw new Error(`End-to-end tests are required but cannot run: ${oned.reason}`);
      });
      return;
    }
    const lab = labSupport();
    const reason = lab.ok ? oned.reason : `${oned.reason}; ${lab.reason}`;
    console.log(`e2e test "${name}" skipped: ${reason}`);
    Deno.test({ name: `${name} (skipped: ${reason})`, ignore: true, fn() {} });
    return;
  }
  // The state poll and oned's HTTP keep-alive outlive single steps; the lab is torn down anyway.
  labTest(name, fn, { sanitizeResources: false, sanitizeOps: false });
}

/** A disk of a VM template: from an image, or volatile. */
export type DiskSpec =
  | { image: number; size?: number; attrs?: Record<string, string | number> }
  | { volatile: "fs" | "swap"; size: number; format?: string; fs?: string };

/** Options of {@linkcode OnedWorld.start}. */
export interface OnedWorldOptions {
  /** Lab hosts (default {@linkcode ONED_HOSTS}); all but `frontend` become oned hosts. */
  hosts?: string[];
  /** onestor's LOG_LEVEL (default `debug`: every remote command with its duration in oned.log). */
  logLevel?: "info" | "debug";
  /** Set REPLICA_STORAGE_IP on these hosts to their own address (default: hv1 and hv2 when present). */
  replicaStorageIp?: string[];
  /**
   * Hypervisors with libvirt: libvirtd (QEMU TCG) runs on hv1 and hv2 ({@linkcode OnedWorld.libvirt})
   * and they are oned hosts with VM_MAD `qemu` (dummy IM). That VMM is a copy of the dummy VMM that
   * reports {@linkcode domainUuid} as DEPLOY_ID, as OpenNebula's KVM driver reports the domain's
   * UUID; like the dummy it runs no domain: a test starts the domain itself where it needs one
   * (recovery points need a running domain). Default false: every host has the dummy VMM.
   */
  libvirt?: boolean;
  /** More lines for onestor.conf (after LOG_LEVEL). */
  config?: string;
}

/** A lab whose front-end runs a real oned, with onestor installed. */
export class OnedWorld {
  /** The lab (frontend runs oned). */
  readonly lab: Lab;
  /** oned's XML-RPC port on 127.0.0.1. */
  readonly port: number;
  /** XML-RPC client of oneadmin. */
  readonly one: OneClient;
  /** Records every VM state seen (polls `one.vm.info` every 0.1 s). */
  readonly states: StateRecorder;
  /** oned host ids by name. */
  readonly hostIds = new Map<string, number>();
  /** Folder on the machine for templates and image sources, readable by oneadmin. */
  readonly files: string;
  /** libvirtd on hv1 and hv2 when started with `libvirt: true`. */
  libvirt: LibvirtLab | null = null;
  readonly #cliEnv: Record<string, string>;
  readonly #controlDir: string;
  #templates = 0;

  private constructor(lab: Lab, port: number, session: string, controlDir: string) {
    this.lab = lab;
    this.port = port;
    this.one = new OneClient({ endpoint: `http://127.0.0.1:${port}/RPC2`, session });
    this.states = new StateRecorder(this.one);
    this.files = `${lab.dir}/oned-files`;
    this.#controlDir = controlDir;
    this.#cliEnv = {
      ONE_LOCATION,
      ONE_AUTH: `${ONE_LOCATION}/one_auth`,
      ONE_XMLRPC: `http://127.0.0.1:${port}/RPC2`,
      RUBYLIB: `${ONE_LOCATION}/lib/ruby`,
      PATH: `${ONE_LOCATION}/bin:${PATH_ENV}`,
      HOME: "/var/lib/one",
      // oned answers slowly on a busy machine (image registration waits for the datastore's stat).
      ONE_XMLRPC_TIMEOUT: "300",
    };
  }

  /**
   * Starts the lab, oned on the front-end (as oneadmin, on a free port), installs onestor into oned's
   * remotes and creates the hosts (dummy IM/VMM) through the CLI; returns once they are monitored.
   */
  static async start(options: OnedWorldOptions = {}): Promise<OnedWorld> {
    const support = onedSupport();
    if (!support.ok) throw new Error(`Cannot start oned: ${support.reason}`);
    const hosts: string[] = options.hosts ?? [...ONED_HOSTS];
    const hypervisors: string[] = hosts.filter((h) => h === "hv1" || h === "hv2");
    const lab = await Lab.start({
      hosts,
      extraDirs: [ONE_LOCATION, ...(options.libvirt ? LIBVIRT_DIRS : [])],
    });
    let world: OnedWorld | undefined;
    try {
      // Short: a socket path must fit in 108 bytes. Owned by oneadmin, who runs the drivers.
      const controlDir = `/tmp/onestor-e2e-${lab.name}`;
      await Deno.mkdir(controlDir, { mode: 0o700 });
      await Deno.chown(controlDir, ONEADMIN_UID, ONEADMIN_UID);
      await unpack(lab);
      if (options.libvirt) await libvirtVmm(lab);
      let port = 0;
      let session = "";
      for (let attempt = 1;; attempt++) {
        port = await freePort();
        const up = await lab.exec(
          "frontend",
          ["bash", `${ONED_DIR}/oned.sh`, "up", ONE_LOCATION, "onestor"],
          {
            timeoutMs: 180_000,
            env: {
              ONED_PORT: String(port),
              ONED_HOSTNAME: "frontend",
              ONED_USER: "oneadmin",
              ONED_DATASTORE_LOCATION: ONED_DATASTORES,
              // oned's environment is every driver's: oneadmin's home and onestor's own ssh control folder.
              HOME: "/var/lib/one",
              USER: "oneadmin",
              LOGNAME: "oneadmin",
              ONESTOR_SSH_CONTROL_DIR: controlDir,
            },
          },
        );
        if (up.code === 0) {
          session = (await Deno.readTextFile(lab.path("frontend", `${ONE_LOCATION}/one_auth`))).trim();
          break;
        }
        // Another oned may have taken the port between the check and the bind: try another.
        if (attempt >= 3) throw new Error(`oned did not come up: ${up.stderr}${up.stdout}`);
        await lab.exec("frontend", ["bash", `${ONED_DIR}/oned.sh`, "down", ONE_LOCATION]);
      }
      world = new OnedWorld(lab, port, session, controlDir);
      await Deno.mkdir(world.files, { mode: 0o755 });
      await Deno.chmod(world.files, 0o755);
      const install = await lab.exec("frontend", [
        Deno.execPath(),
        "run",
        "-A",
        "--no-check",
        "--quiet",
        MAIN,
        "install",
        "--quiet",
        "--remotes",
        ONED_REMOTES,
      ], { user: "oneadmin", env: world.#cliEnv });
      if (install.code !== 0) throw new Error(`onestor install failed: ${install.stderr}`);
      await world.writeFile(
        "frontend",
        `${ONED_REMOTES}/etc/onestor/onestor.conf`,
        `LOG_LEVEL=${options.logLevel ?? "debug"}\n${options.config ?? ""}\n`,
      );
      if (options.libvirt) world.libvirt = await LibvirtLab.start(lab, hypervisors);
      const storageIp = options.replicaStorageIp ?? hypervisors;
      for (const name of hosts.filter((h) => h !== "frontend")) {
        const vmm = options.libvirt && hypervisors.includes(name) ? LIBVIRT_VM_MAD : "dummy";
        const id = await world.cliId(["onehost", "create", name, "-i", "dummy", "-v", vmm]);
        world.hostIds.set(name, id);
        if (storageIp.includes(name)) {
          await world.cli([
            "onehost",
            "update",
            id,
            "--append",
            await world.template("host", `REPLICA_STORAGE_IP = "${lab.host(name).address}"\n`),
          ]);
        }
      }
      await world.waitHostsMonitored();
      return world;
    } catch (error) {
      await world?.stop().catch(() => {});
      await lab.stop();
      throw error;
    }
  }

  /** Environment of the CLI (and of anything else run against this oned on the front-end). */
  get cliEnv(): Record<string, string> {
    return { ...this.#cliEnv };
  }

  /**
   * Runs an OpenNebula CLI command on the front-end as oneadmin (`onevm`, `oneimage`, ...) and returns
   * its output; throws with its output when it fails.
   */
  async cli(argv: (string | number)[], options: { timeoutMs?: number } = {}): Promise<string> {
    const r = await this.lab.exec("frontend", argv.map(String), {
      user: "oneadmin",
      env: this.#cliEnv,
      timeoutMs: options.timeoutMs ?? 120_000,
    });
    if (r.code !== 0) {
      throw new Error(`${argv.join(" ")} failed (exit ${r.code}): ${(r.stderr + r.stdout).trim()}`);
    }
    return r.stdout;
  }

  /**
   * Runs onestor's installed launcher on the front-end as oneadmin, as the systemd unit does (e.g.
   * `recovery run`), with the CLI's environment: ONE_XMLRPC and ONE_AUTH name this oned.
   */
  async onestor(argv: string[], options: { timeoutMs?: number } = {}): Promise<ExecResult> {
    return await this.lab.exec("frontend", [ONED_LAUNCHER, ...argv], {
      user: "oneadmin",
      env: { ...this.#cliEnv, ONESTOR_SSH_CONTROL_DIR: this.#controlDir },
      timeoutMs: options.timeoutMs ?? 300_000,
    });
  }

  /** Runs a CLI command that prints `ID: N` (create, allocate) and returns N. */
  async cliId(argv: (string | number)[]): Promise<number> {
    const out = await this.cli(argv);
    const m = out.match(/ID:\s*(\d+)/);
    if (!m) throw new Error(`${argv.join(" ")} printed no ID: ${out}`);
    return Number(m[1]);
  }

  /** Writes a template file readable by oneadmin and returns its path (the CLI reads it). */
  async template(kind: string, text: string): Promise<string> {
    const path = `${this.files}/${kind}-${++this.#templates}.tmpl`;
    await Deno.writeTextFile(path, text, { mode: 0o644 });
    return path;
  }

  /** Runs a shell script on a lab host (root unless told otherwise); throws when it fails. */
  async sh(host: string, script: string, options: ExecOptions = {}): Promise<string> {
    const r = await this.lab.sh(host, script, options);
    if (r.code !== 0) throw new Error(`script on ${host} failed (${r.code}): ${script}\n${r.stderr}`);
    return r.stdout;
  }

  /** Writes a file on a host (path inside the host), owned by oneadmin. */
  async writeFile(host: string, path: string, content: string): Promise<void> {
    const machinePath = this.lab.path(host, path);
    const dir = machinePath.slice(0, machinePath.lastIndexOf("/"));
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(machinePath, content);
    await Deno.chown(dir, ONEADMIN_UID, ONEADMIN_UID);
    await Deno.chown(machinePath, ONEADMIN_UID, ONEADMIN_UID);
  }

  /** Creates a datastore from template attributes (strings are quoted) and returns its id. */
  async createDatastore(attrs: Record<string, string | number>): Promise<number> {
    return await this.cliId(["onedatastore", "create", await this.template("ds", templateText(attrs))]);
  }

  /**
   * Registers an image in datastore `ds` from `attrs` (NAME, PATH, TYPE, PERSISTENT, ...) and waits
   * until it is READY; returns its id.
   */
  async createImage(
    ds: number,
    attrs: Record<string, string | number>,
    timeoutMs = 300_000,
  ): Promise<number> {
    const id = await this.cliId([
      "oneimage",
      "create",
      "-d",
      ds,
      await this.template("image", templateText(attrs)),
    ]);
    await this.waitImage(id, "READY", timeoutMs);
    return id;
  }

  /** The `<IMAGE>` of image `id`. */
  async imageInfo(id: number): Promise<XmlElement> {
    return parseXml(String(await this.one.call("one.image.info", [id, false], `image ${id}`)));
  }

  /** Waits until image `id` is in `state` (READY, USED, ...); throws on ERROR with oned's message. */
  async waitImage(id: number, state: string, timeoutMs = 300_000): Promise<XmlElement> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const xml = await this.imageInfo(id);
      const now = IMAGE_STATES[Number(childText(xml, "STATE"))];
      if (now === state) return xml;
      if (now === "ERROR") {
        const template = xml.children.find((c) => c.name === "TEMPLATE");
        throw new Error(`Image ${id} is in ERROR: ${template ? childText(template, "ERROR") : ""}`);
      }
      if (Date.now() > deadline) throw new Error(`Image ${id} not ${state} after ${timeoutMs} ms (${now})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Waits until image `id` no longer exists (after `oneimage delete`). */
  async waitImageGone(id: number, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        await this.imageInfo(id);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`Image ${id} still exists after ${timeoutMs} ms`);
  }

  /**
   * Creates a VM on hold (`onevm create --hold`) with `disks` and returns its id. `sched` pins later
   * scheduling (after a resume or a recreate) to a host and a system datastore.
   */
  async createVm(options: {
    name: string;
    disks: DiskSpec[];
    sched?: { host?: string; ds?: number };
    attrs?: Record<string, string | number>;
  }): Promise<number> {
    const lines = [`NAME = "${options.name}"`, `CPU = "0.1"`, `MEMORY = "64"`];
    for (const d of options.disks) {
      const attrs: Record<string, string | number> = "image" in d
        ? { IMAGE_ID: d.image, ...(d.size ? { SIZE: d.size } : {}), ...d.attrs }
        : {
          TYPE: d.volatile,
          SIZE: d.size,
          ...(d.format ? { FORMAT: d.format } : {}),
          ...(d.fs ? { FS: d.fs } : {}),
        };
      lines.push(`DISK = [ ${Object.entries(attrs).map(([k, v]) => `${k} = "${v}"`).join(", ")} ]`);
    }
    if (options.sched?.host) lines.push(`SCHED_REQUIREMENTS = "NAME = \\"${options.sched.host}\\""`);
    if (options.sched?.ds !== undefined) lines.push(`SCHED_DS_REQUIREMENTS = "ID = ${options.sched.ds}"`);
    for (const [k, v] of Object.entries(options.attrs ?? {})) lines.push(`${k} = "${v}"`);
    const id = await this.cliId([
      "onevm",
      "create",
      "--hold",
      await this.template("vm", lines.join("\n") + "\n"),
    ]);
    this.states.watch(id);
    return id;
  }

  /**
   * Creates a VM with `disks` (image disks may carry attributes such as RECOVERY_SNAPSHOT_FREQ),
   * deploys it on `host` and system datastore `ds`, waits until it is RUNNING and returns its id.
   * Later scheduling (a resume, a recreate) is pinned to `ds` and, when given, to `schedHost`.
   */
  async deployVm(options: {
    name: string;
    disks: DiskSpec[];
    host: string;
    ds: number;
    schedHost?: string;
    timeoutMs?: number;
  }): Promise<number> {
    const vm = await this.createVm({
      name: options.name,
      disks: options.disks,
      sched: { host: options.schedHost, ds: options.ds },
    });
    await this.deploy(vm, options.host, options.ds);
    await this.waitVm(vm, "RUNNING", options.timeoutMs);
    return vm;
  }

  /** `onevm deploy VM HOST DS`: places a held (or pending) VM on a host and system datastore. */
  async deploy(vm: number, host: string, ds: number): Promise<void> {
    this.states.watch(vm);
    await this.cli(["onevm", "deploy", vm, host, ds]);
  }

  /**
   * Runs `onevm ACTION VM ARGS...` and waits until oned has changed the VM's state since (by its
   * vm.log) and the VM is in state `until`: a VM that ends where it started (POWEROFF, a snapshot,
   * POWEROFF) is not taken for done before the action ran.
   */
  async vmAction(vm: number, args: (string | number)[], until: string, timeoutMs = 180_000): Promise<void> {
    this.states.watch(vm);
    const before = statesInVmLog(await this.vmLog(vm)).length;
    await this.cli(["onevm", args[0], vm, ...args.slice(1)]);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // The state at the next poll of the recorder (every 0.1 s).
      const now = await this.states.waitFor(vm, () => true);
      if (isFailure(now.name)) {
        throw new Error(`VM ${vm} entered ${now.name} after onevm ${args.join(" ")}; ${await this.#why(vm)}`);
      }
      // Both oned's log and its API must agree: the log line comes first, the API a moment later.
      const log = await this.vmLog(vm);
      if (now.name === until && statesInVmLog(log).length > before && lastStateInVmLog(log) === until) {
        if ((await this.states.waitFor(vm, () => true)).name === until) return;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `VM ${vm} not ${until} ${timeoutMs} ms after onevm ${args.join(" ")}; ${await this.#why(vm)}`,
        );
      }
    }
  }

  /** Waits until `vm` is in state `until` (throws on a failure state, with the VM's log). */
  async waitVm(vm: number, until: string, timeoutMs = 180_000): Promise<void> {
    try {
      await this.states.waitFor(vm, until, timeoutMs);
    } catch (error) {
      throw new Error(`${(error as Error).message}; ${await this.#why(vm)}`);
    }
  }

  async #why(vm: number): Promise<string> {
    return `states seen: ${this.states.trail(vm)}; vm.log:\n${
      (await this.vmLog(vm)).trim().split("\n").slice(-15).join("\n")
    }`;
  }

  /** Where the VM is placed now: host name, system datastore id and its folder on that host. */
  async placement(vm: number): Promise<{ host: string; ds: number; dir: string }> {
    const xml = await this.one.vmInfo(vm);
    const records = xml.children.find((c) => c.name === "HISTORY_RECORDS");
    const last = records?.children.filter((c) => c.name === "HISTORY").at(-1);
    if (!last) throw new Error(`VM ${vm} has no history record`);
    const ds = Number(childText(last, "DS_ID"));
    return { host: childText(last, "HOSTNAME"), ds, dir: `${ONED_DATASTORES}/${ds}/${vm}` };
  }

  /** oned's log of a VM (`var/vms/<id>/vm.log` on the front-end). */
  async vmLog(vm: number): Promise<string> {
    return await Deno.readTextFile(this.lab.path("frontend", `${ONE_LOCATION}/var/vms/${vm}/vm.log`))
      .catch(() => "");
  }

  /** oned's own log (`var/oned.log`). */
  async onedLog(): Promise<string> {
    return await Deno.readTextFile(this.lab.path("frontend", `${ONE_LOCATION}/var/oned.log`)).catch(() => "");
  }

  /**
   * Throws when the VM ever entered a failure state: by oned's vm.log (every state it entered) and by
   * the states polled, with the VM's log in the message.
   */
  async assertNeverFailed(vm: number): Promise<void> {
    const log = await this.vmLog(vm);
    const bad = [...statesInVmLog(log), ...this.states.seen(vm).map((s) => s.name)].filter(isFailure);
    if (bad.length) {
      throw new Error(
        `VM ${vm} entered ${[...new Set(bad)].join(", ")}; states seen: ${this.states.trail(vm)}\n${log}`,
      );
    }
  }

  /**
   * Closes the SSH master connections onestor's actions left open on the front-end (ControlPersist),
   * so that the next action connects anew (e.g. through a {@linkcode WireMeter} started since).
   */
  async closeSshMasters(): Promise<void> {
    await this.sh(
      "frontend",
      `for s in ${this.#controlDir}/*; do [ -S "$s" ] && ssh -o ControlPath="$s" -O exit master >/dev/null 2>&1; done; true`,
      { user: "oneadmin" },
    );
  }

  /** `onehost offline HOST`: the host takes no VM and its VMs can be recovered elsewhere. */
  async hostOffline(host: string): Promise<void> {
    await this.cli(["onehost", "offline", host]);
  }

  /** `onehost enable HOST`. */
  async hostEnable(host: string): Promise<void> {
    await this.cli(["onehost", "enable", host]);
  }

  /** `onevm recover --<how> VM` (`recreate`, `delete`, `success`, `failure`, `retry`). */
  async recover(vm: number, how: "recreate" | "delete" | "success" | "failure" | "retry"): Promise<void> {
    this.states.watch(vm);
    await this.cli(["onevm", "recover", `--${how}`, vm]);
  }

  /** Waits until every host of the world is MONITORED (the scheduler places VMs only there). */
  async waitHostsMonitored(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pool = await this.one.hostPoolInfo();
      const states = pool.children.filter((h) => h.name === "HOST").map((h) => Number(childText(h, "STATE")));
      if (states.length === this.hostIds.size && states.every((s) => s === HOST_MONITORED)) return;
      if (Date.now() > deadline) throw new Error(`Hosts not monitored after ${timeoutMs} ms: ${states}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Stops the state poll and the lab (oned dies with the front-end's namespace). */
  async stop(): Promise<void> {
    await this.states.stop();
    await this.lab.stop();
    await Deno.remove(this.#controlDir, { recursive: true }).catch(() => {});
  }

  /** Stops everything, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** oneadmin's uid/gid in the lab (tests/support/lab.ts creates the user with it when missing). */
const ONEADMIN_UID = (() => {
  try {
    const line = Deno.readTextFileSync("/etc/passwd").split("\n").find((l) => l.startsWith("oneadmin:"));
    return line ? Number(line.split(":")[2]) : 9869;
  } catch {
    return 9869;
  }
})();

/** Template text from attributes: `KEY = "value"` lines (values quoted, quotes escaped). */
export function templateText(attrs: Record<string, string | number>): string {
  return Object.entries(attrs).map(([k, v]) => `${k} = "${String(v).replaceAll('"', '\\"')}"`).join("\n") +
    "\n";
}

/**
 * Replaces the stock `qemu` VMM of the unpacked oned.conf (OpenNebula's KVM driver, whose host side
 * the lab does not have) by a copy of the dummy VMM whose deploy reports {@linkcode domainUuid} as
 * DEPLOY_ID instead of the dummy's `host:name:dummy`. Everything else is the dummy's: every action
 * succeeds and no domain is started.
 */
async function libvirtVmm(lab: Lab): Promise<void> {
  const mads = lab.path("frontend", `${ONE_LOCATION}/lib/mads`);
  const ruby = await Deno.readTextFile(`${mads}/one_vmm_dummy.rb`);
  const deployId = '"#{host}:#{name}:dummy"';
  if (!ruby.includes(deployId)) throw new Error(`one_vmm_dummy.rb no longer reports ${deployId}`);
  await Deno.writeTextFile(
    `${mads}/one_vmm_lab_libvirt.rb`,
    ruby.replace(deployId, `format('${DOMAIN_UUID_PREFIX}%012d', id.to_i)`),
    { mode: 0o755 },
  );
  await Deno.copyFile(`${mads}/one_vmm_dummy`, `${mads}/one_vmm_lab_libvirt`);
  const conf = lab.path("frontend", `${ONE_LOCATION}/etc/oned.conf`);
  const text = await Deno.readTextFile(conf);
  const stock = /^VM_MAD = \[\s*NAME\s*= "qemu",[^\]]*\]/m;
  if (!stock.test(text)) throw new Error(`${conf} has no VM_MAD named qemu`);
  await Deno.writeTextFile(
    conf,
    text.replace(
      stock,
      `VM_MAD = [ NAME = "${LIBVIRT_VM_MAD}", SUNSTONE_NAME = "QEMU (lab: dummy, DEPLOY_ID = domain UUID)",\n` +
        `  EXECUTABLE = "one_vmm_lab_libvirt", TYPE = "xml" ]`,
    ),
  );
}

/** A TCP port free on 127.0.0.1 right now. */
async function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await Promise.resolve();
  return port;
}

/**
 * Unpacks the front-end build into the front-end's private ONE_LOCATION (oned.sh would do it too)
 * and slows the dummy VM probes down: on a real cluster they run on the hypervisors, here they would
 * run in Ruby on the front-end every 5 s per host and take CPU from what is being measured.
 */
async function unpack(lab: Lab): Promise<void> {
  const dir = lab.path("frontend", ONE_LOCATION);
  const tarball = [...Deno.readDirSync(ONED_DIR)].find((e) => /^opennebula-.*\.tar\.xz$/.test(e.name))!.name;
  const out = await new Deno.Command("tar", {
    args: ["-xJf", `${ONED_DIR}/${tarball}`, "-C", dir],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`Cannot unpack ${tarball}: ${new TextDecoder().decode(out.stderr)}`);
  const conf = `${dir}/etc/monitord.conf`;
  const text = await Deno.readTextFile(conf);
  await Deno.writeTextFile(
    conf,
    text.replace(/STATE_VM\s*=\s*\d+/, "STATE_VM       = 600").replace(
      /EXEC_VM\s*=\s*\d+/,
      "EXEC_VM        = 600",
    )
      .replace(/MONITOR_VM\s*=\s*\d+/, "MONITOR_VM     = 600"),
  );
}
