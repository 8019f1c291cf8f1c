/**
 * Real hypervisors for lab tests: one `libvirtd` per hypervisor host of a {@link Lab}, each in that
 * host's mount namespace with private libvirt directories, running QEMU in TCG (no KVM, no guest
 * OS). A 64 MiB domain with virtio disks from the VM directory is a real running VM for storage
 * purposes: live block jobs, disk-only snapshots, checkpoints, backups and live migration with
 * storage copy all work on it, and "guest writes" are issued through QEMU's monitor (`qemu-io`).
 *
 * Set-up, as OpenNebula's KVM nodes have it: QEMU runs as oneadmin without dynamic ownership, so it
 * opens the disks oned's drivers lay under /var/lib/one/datastores; the read-write socket belongs to
 * the oneadmin group, so the actions (which ssh to hosts as oneadmin) can run
 * `virsh -c qemu:///system`. Hosts reach each other's libvirtd over ssh by name
 * (`qemu+ssh://hv2/system`), as OpenNebula's live migration does.
 *
 * The first libvirtd of the machine probes QEMU's capabilities (several seconds of CPU); the probed
 * cache is kept under the lab base and copied into every later host, which then starts in a fraction
 * of a second.
 *
 * @example
 * ```ts
 * await using world = await World.start({ extraDirs: LIBVIRT_DIRS });
 * const hv = await LibvirtLab.start(world.lab);
 * await hv.create("hv1", domainXml({ vmId: 7, disks: [{ path: `${vmDir}/disk.0`, target: "vda" }] }));
 * await hv.guestWrite("hv1", "one-7", "vda", 0xab, 0, 1 << 20);
 * ```
 *
 * @module
 */

import { type ExecOptions, type ExecResult, type Lab, LAB_BASE } from "./lab.ts";
import { type BlockDevice, parseBlockDevices } from "../../core/hypervisor/virsh.ts";

/** Directories every host of a lab with libvirt must have privately (pass them as `extraDirs`). */
export const LIBVIRT_DIRS: readonly string[] = [
  "/etc/libvirt",
  "/run/libvirt",
  "/var/lib/libvirt",
  "/var/log/libvirt",
  "/var/cache/libvirt",
];

/** Hosts that run libvirtd by default. */
export const HYPERVISORS: readonly string[] = ["hv1", "hv2"];

/** The URI the drivers and tests use on every hypervisor. */
export const LIBVIRT_URI = "qemu:///system";

const CAPS_CACHE = `${LAB_BASE}/.libvirt-qemu-caps`;
const PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const LIBVIRTD_CONF = `# onestor lab: the read-write socket for the oneadmin group, no authentication
unix_sock_group = "oneadmin"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
`;

const QEMU_CONF = `# onestor lab: QEMU as oneadmin (like OpenNebula's KVM nodes), no virtlogd, no cgroups, no
# per-domain /dev namespace (the host is already a mount namespace), no security driver.
user = "oneadmin"
group = "oneadmin"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
namespaces = [ ]
`;

/** Pattern byte of each `chunk`-sized piece of `bytes`, or -1 when a piece is not uniform. */
export function chunkPatterns(bytes: Uint8Array, chunk: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const piece = bytes.subarray(i * chunk, (i + 1) * chunk);
    const first = piece[0];
    out.push(piece.every((b) => b === first) ? first : -1);
  }
  return out;
}

/** A disk of a lab domain. */
export interface DomainDisk {
  /** File path on the host (the VM directory's `disk.<i>`). */
  path: string;
  /** Target device (`vda`, `vdb`, `hda` for a CD-ROM). */
  target: string;
  /** Image format (default qcow2; raw for a CD-ROM). */
  format?: string;
  /** A read-only CD-ROM (the context ISO) instead of a virtio disk. */
  cdrom?: boolean;
}

/** What {@link domainXml} builds. */
export interface DomainSpec {
  /** OpenNebula VM id: the domain is `one-<vmId>`. */
  vmId: number;
  /** Disks in bus order. */
  disks: DomainDisk[];
  /** Memory in MiB (default 64). */
  memoryMib?: number;
  /** The domain's UUID (default: libvirt makes one up); OpenNebula's KVM driver reports it as DEPLOY_ID. */
  uuid?: string;
}

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll(
    "'",
    "&apos;",
  )
    .replaceAll('"', "&quot;");
}

/**
 * A TCG domain without OS, as OpenNebula's KVM driver would define it for storage purposes: name
 * `one-<id>`, virtio disks (`virtio-disk<n>` device ids), an IDE CD-ROM for the context ISO.
 */
export function domainXml(spec: DomainSpec): string {
  const disks = spec.disks.map((d) => {
    if (d.cdrom) {
      return `    <disk type='file' device='cdrom'>
      <driver name='qemu' type='${escapeXml(d.format ?? "raw")}'/>
      <source file='${escapeXml(d.path)}'/>
      <target dev='${escapeXml(d.target)}' bus='ide'/>
      <readonly/>
    </disk>`;
    }
    return `    <disk type='file' device='disk'>
      <driver name='qemu' type='${escapeXml(d.format ?? "qcow2")}' cache='none' io='native' discard='unmap'/>
      <source file='${escapeXml(d.path)}'/>
      <target dev='${escapeXml(d.target)}' bus='virtio'/>
    </disk>`;
  });
  return `<domain type='qemu'>
  <name>one-${spec.vmId}</name>${spec.uuid ? `\n  <uuid>${escapeXml(spec.uuid)}</uuid>` : ""}
  <memory unit='MiB'>${spec.memoryMib ?? 64}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
${disks.join("\n")}
    <controller type='usb' model='none'/>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

/** libvirtd on the hypervisor hosts of a lab. */
export class LibvirtLab {
  readonly lab: Lab;
  readonly hosts: readonly string[];

  private constructor(lab: Lab, hosts: readonly string[]) {
    this.lab = lab;
    this.hosts = hosts;
  }

  /**
   * Configures and starts libvirtd on `hosts` of a lab started with {@link LIBVIRT_DIRS} as
   * `extraDirs`, and waits until each answers as oneadmin.
   */
  static async start(lab: Lab, hosts: readonly string[] = HYPERVISORS): Promise<LibvirtLab> {
    for (const tool of ["/usr/sbin/libvirtd", "/usr/bin/virsh", "/usr/bin/qemu-system-x86_64"]) {
      try {
        Deno.statSync(tool);
      } catch {
        throw new Error(
          `Lab needs ${tool} (apt-get install --no-install-recommends qemu-system-x86 libvirt-daemon ` +
            "libvirt-daemon-driver-qemu libvirt-clients, or scripts/setup.sh)",
        );
      }
    }
    await ensureQemuAccount();
    const hv = new LibvirtLab(lab, hosts);
    const cached = await hasCapsCache();
    if (cached) {
      await Promise.all(hosts.map((h) => hv.#startHost(h, true)));
    } else {
      // The first host probes QEMU and fills the machine's cache; the others copy it.
      await hv.#startHost(hosts[0], false);
      await saveCapsCache(lab.path(hosts[0], "/var/cache/libvirt/qemu"));
      await Promise.all(hosts.slice(1).map((h) => hv.#startHost(h, true)));
    }
    return hv;
  }

  async #startHost(host: string, useCache: boolean): Promise<void> {
    const lab = this.lab;
    for (const d of LIBVIRT_DIRS) {
      try {
        const st = Deno.statSync(lab.path(host, d));
        if (!st.isDirectory || lab.path(host, d) === d) throw new Error("not private");
      } catch {
        throw new Error(`Lab host ${host} lacks a private ${d}: start the lab with extraDirs: LIBVIRT_DIRS`);
      }
    }
    await Deno.writeTextFile(lab.path(host, "/etc/libvirt/libvirtd.conf"), LIBVIRTD_CONF);
    await Deno.writeTextFile(lab.path(host, "/etc/libvirt/qemu.conf"), QEMU_CONF);
    if (useCache) {
      const caps = lab.path(host, "/var/cache/libvirt/qemu/capabilities");
      await Deno.mkdir(caps, { recursive: true });
      for await (const e of Deno.readDir(CAPS_CACHE)) {
        if (e.isFile) await Deno.copyFile(`${CAPS_CACHE}/${e.name}`, `${caps}/${e.name}`);
      }
    }
    // QEMU runs as oneadmin, who cannot open the machine's /dev/kvm: libvirt would probe with KVM
    // (as root) and then find the probe stale at every domain start (8 s each). Hiding /dev/kvm in
    // this host keeps the probe TCG-only and cacheable; the domains are TCG anyway.
    // libvirtd is daemonised (the host's init adopts it) with stdio closed so that exec returns.
    const started = await lab.sh(
      host,
      "mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu /run/libvirt && " +
        "if [ -e /dev/kvm ]; then : >/run/libvirt/.no-kvm && mount --bind /run/libvirt/.no-kvm /dev/kvm; fi && " +
        "libvirtd -d -p /run/libvirt/libvirtd.pid </dev/null >/dev/null 2>&1",
    );
    if (started.code !== 0) throw new Error(`libvirtd did not start on ${host}: ${started.stderr}`);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const r = await this.virsh(host, ["version"], { timeoutMs: 30_000 });
      if (r.code === 0) return;
      if (Date.now() > deadline) {
        const log = await Deno.readTextFile(lab.path(host, "/var/log/libvirt/libvirtd.log")).catch(() => "");
        throw new Error(`libvirtd on ${host} does not answer: ${r.stderr.trim()} ${log.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Runs `virsh -c qemu:///system ARGS` on a host as oneadmin (as the drivers do). */
  virsh(host: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return this.lab.exec(host, ["virsh", "-q", "-c", LIBVIRT_URI, ...args], {
      user: "oneadmin",
      timeoutMs: 120_000,
      ...opts,
    });
  }

  /** Like {@link virsh}, throwing when it fails; returns stdout. */
  async mustVirsh(host: string, args: string[], opts: ExecOptions = {}): Promise<string> {
    const r = await this.virsh(host, args, opts);
    if (r.code !== 0) {
      throw new Error(`virsh ${args.join(" ")} on ${host} failed (${r.code}): ${r.stderr.trim()}`);
    }
    return r.stdout;
  }

  /** The block job running on a disk (`Block Copy: [100 %]`), `""` when none (virsh prints it on stderr). */
  async blockJob(host: string, domain: string, target: string): Promise<string> {
    const r = await this.virsh(host, ["blockjob", domain, target, "--info"]);
    if (r.code !== 0) throw new Error(`virsh blockjob ${domain} ${target} on ${host}: ${r.stderr.trim()}`);
    return (r.stdout + r.stderr).replace(/\r/g, "").trim();
  }

  /** Starts a transient domain from XML on a host (`virsh create`, as OpenNebula deploys). */
  async create(host: string, xml: string): Promise<void> {
    const r = await this.lab.exec(host, [
      "sh",
      "-c",
      'f=$(mktemp) && cat >"$f" && virsh -q -c "$1" create "$f"; rc=$?; rm -f "$f"; exit $rc',
      "sh",
      LIBVIRT_URI,
    ], {
      user: "oneadmin",
      stdin: xml,
      timeoutMs: 60_000,
    });
    if (r.code !== 0) throw new Error(`virsh create on ${host} failed: ${r.stderr.trim()}`);
  }

  /** The domain's state word (`running`, `paused`, ...) or null when the host does not know it. */
  async domState(host: string, domain: string): Promise<string | null> {
    const r = await this.virsh(host, ["domstate", domain]);
    return r.code === 0 ? r.stdout.trim() : null;
  }

  /** Names of the domains running on a host. */
  async domains(host: string): Promise<string[]> {
    const out = await this.mustVirsh(host, ["list", "--name"]);
    return out.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  }

  /** `domblklist --details` rows. */
  async blockDevices(host: string, domain: string): Promise<BlockDevice[]> {
    return parseBlockDevices(await this.mustVirsh(host, ["domblklist", domain, "--details"]));
  }

  /** Runs a qemu-io command against a virtio disk of a running domain, through QEMU's monitor. */
  async qemuIo(host: string, domain: string, target: string, command: string): Promise<string> {
    const device = await this.#qdevId(host, domain, target);
    const hmp = `qemu-io -d ${device} "${command}"`;
    const out = await this.mustVirsh(host, ["qemu-monitor-command", domain, "--hmp", hmp]);
    if (/error|fail|invalid/i.test(out)) {
      throw new Error(`qemu-io '${command}' on ${domain}/${target}: ${out.trim()}`);
    }
    return out;
  }

  /** A guest write: `length` bytes of `pattern` at `offset` of the disk `target`, then a flush. */
  async guestWrite(
    host: string,
    domain: string,
    target: string,
    pattern: number,
    offset: number,
    length: number,
  ) {
    await this.qemuIo(host, domain, target, `write -P ${pattern} ${offset} ${length}`);
    await this.qemuIo(host, domain, target, "flush");
  }

  /** Reads through the running guest's view and checks the pattern (qemu-io `read -P`). */
  async guestRead(
    host: string,
    domain: string,
    target: string,
    pattern: number,
    offset: number,
    length: number,
  ) {
    await this.qemuIo(host, domain, target, `read -P ${pattern} ${offset} ${length}`);
  }

  async #qdevId(host: string, domain: string, target: string): Promise<string> {
    const xml = await this.mustVirsh(host, ["dumpxml", domain]);
    for (const disk of xml.split("<disk ").slice(1)) {
      const t = disk.match(/<target dev='([^']+)'/)?.[1];
      const alias = disk.match(/<alias name='([^']+)'/)?.[1];
      if (t === target && alias) return `/machine/peripheral/${alias}/virtio-backend`;
    }
    throw new Error(`Domain ${domain} on ${host} has no disk ${target}`);
  }

  /**
   * The guest-visible bytes of an image file on a host (any format, any backing chain; `-U` so a
   * running domain's disk can be read too): converted to raw on the host, read from the machine.
   */
  async readImage(host: string, path: string): Promise<Uint8Array> {
    const tmp = `/var/tmp/one/.read-${crypto.randomUUID()}.raw`;
    try {
      const r = await this.lab.exec(host, ["qemu-img", "convert", "-U", "-O", "raw", path, tmp], {
        user: "oneadmin",
      });
      if (r.code !== 0) throw new Error(`cannot read image ${host}:${path}: ${r.stderr.trim()}`);
      return await Deno.readFile(this.lab.path(host, tmp));
    } finally {
      await Deno.remove(this.lab.path(host, tmp)).catch(() => {});
    }
  }

  /** Stops a domain hard (`virsh destroy`); a domain that is not there is fine. */
  async destroy(host: string, domain: string): Promise<void> {
    if ((await this.domState(host, domain)) === null) return;
    await this.mustVirsh(host, ["destroy", domain]);
  }

  /**
   * Plays OpenNebula's KVM driver in a live migration on local storage (vmm/kvm/migrate): creates
   * empty target files on the destination for every writable file disk (same format and virtual
   * size), then `virsh migrate --live --suspend --copy-storage-all` over ssh to the destination's
   * libvirtd, and resumes the domain there.
   */
  async migrate(domain: string, from: string, to: string): Promise<ExecResult> {
    const devs = (await this.blockDevices(from, domain)).filter((d) =>
      d.type === "file" && d.device === "disk"
    );
    for (const d of devs) {
      const info = await this.lab.exec(from, ["qemu-img", "info", "-U", "--output=json", d.source], {
        user: "oneadmin",
      });
      if (info.code !== 0) throw new Error(`qemu-img info ${d.source} on ${from}: ${info.stderr}`);
      const j = JSON.parse(info.stdout) as { format: string; "virtual-size": number };
      const made = await this.lab.exec(to, [
        "sh",
        "-c",
        'mkdir -p "$(dirname "$1")" && qemu-img create -q -f "$2" "$1" "$3"',
        "sh",
        d.source,
        j.format,
        String(j["virtual-size"]),
      ], { user: "oneadmin" });
      if (made.code !== 0) throw new Error(`cannot create ${d.source} on ${to}: ${made.stderr}`);
    }
    // As kvm/migrate: the domain stays transient, arrives paused (--suspend) and is resumed there.
    const migrated = await this.virsh(from, [
      "migrate",
      "--live",
      "--suspend",
      "--copy-storage-all",
      "--migrate-disks",
      devs.map((d) => d.target).join(","),
      domain,
      `qemu+ssh://${to}/system`,
    ], { timeoutMs: 120_000 });
    if (migrated.code !== 0) return migrated;
    return await this.virsh(to, ["resume", domain]);
  }
}

/** The machine needs the libvirt-qemu account the Debian QEMU driver names by default. */
async function ensureQemuAccount(): Promise<void> {
  const has = (file: string) =>
    Deno.readTextFileSync(file).split("\n").some((l) => l.split(":")[0] === "libvirt-qemu");
  const run = (cmd: string, args: string[]) =>
    new Deno.Command(cmd, { args, env: { PATH: PATH_ENV }, stdout: "null", stderr: "piped" }).output();
  if (!has("/etc/group")) await run("groupadd", ["--system", "libvirt-qemu"]);
  if (!has("/etc/passwd")) {
    await run("useradd", [
      "--system",
      "--gid",
      "libvirt-qemu",
      "--home-dir",
      "/var/lib/libvirt",
      "--no-create-home",
      "--shell",
      "/usr/sbin/nologin",
      "libvirt-qemu",
    ]);
  }
  if (!has("/etc/group") || !has("/etc/passwd")) throw new Error("Cannot create the libvirt-qemu account");
}

/** Key of the capabilities cache: it is only valid for these libvirtd and QEMU binaries. */
function binariesKey(): string {
  const st = (p: string) => {
    const s = Deno.statSync(p);
    return `${p}:${s.size}:${s.mtime?.getTime()}`;
  };
  return [st("/usr/sbin/libvirtd"), st("/usr/bin/qemu-system-x86_64")].join("\n");
}

async function hasCapsCache(): Promise<boolean> {
  try {
    return (await Deno.readTextFile(`${CAPS_CACHE}/.key`)) === binariesKey();
  } catch {
    return false;
  }
}

async function saveCapsCache(hostCacheDir: string): Promise<void> {
  const tmp = `${CAPS_CACHE}.${Deno.pid}.tmp`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  for await (const e of Deno.readDir(`${hostCacheDir}/capabilities`)) {
    if (e.isFile) await Deno.copyFile(`${hostCacheDir}/capabilities/${e.name}`, `${tmp}/${e.name}`);
  }
  await Deno.writeTextFile(`${tmp}/.key`, binariesKey());
  await Deno.remove(CAPS_CACHE, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, CAPS_CACHE).catch(() => {}); // a concurrent lab may have won: same content
}
