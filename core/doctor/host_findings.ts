/**
 * Findings about one host from what its probe told: programs and versions, the datastore
 * location and system datastore folders, `.monitor` markers, OpenNebula's probe scripts, clock
 * skew, onestor's temporary files left behind, and the backing chains of the VM disks.
 *
 * @module
 */

import { age, finding, type Result } from "./finding.ts";
import type { HostPlan } from "./plan.ts";
import type { HostFacts } from "./probe.ts";

/** Debian packages of the programs the doctor asks for. */
const PACKAGES: Record<string, string> = {
  "qemu-img": "qemu-utils",
  virsh: "libvirt-clients",
  flock: "util-linux",
  tar: "tar",
  bash: "bash",
  zstd: "zstd",
  gzip: "gzip",
  xz: "xz-utils",
  "mkfs.ext2": "e2fsprogs",
  "mkfs.ext3": "e2fsprogs",
  "mkfs.ext4": "e2fsprogs",
  "mkfs.xfs": "xfsprogs",
  "mkfs.vfat": "dosfstools",
  "mkfs.btrfs": "btrfs-progs",
  xorriso: "xorriso",
  genisoimage: "genisoimage",
  ssh: "openssh-client",
  xxhsum: "xxhash",
  fallocate: "util-linux",
  find: "findutils",
};

/** The Debian package of a program (coreutils for the rest). */
export function packageOf(tool: string): string {
  return PACKAGES[tool] ?? "coreutils";
}

/** What a missing program breaks: fail for what every action needs, warn for the rest. */
function toolImpact(tool: string): { level: "fail" | "warn"; breaks: string } {
  if (tool === "virsh") {
    return { level: "warn", breaks: "live snapshots, live backups and migration checks fail" };
  }
  if (tool.startsWith("mkfs.")) {
    return { level: "warn", breaks: `volatile disks and datablocks with FS ${tool.slice(5)} cannot be made` };
  }
  if (["zstd", "gzip", "xz"].includes(tool)) {
    return { level: "fail", breaks: "every copy (TRANSFER_COMPRESSION)" };
  }
  if (tool === "xxhsum") {
    return { level: "warn", breaks: "image checksums fall back to blake2b there (several times slower)" };
  }
  if (tool === "qemu-img") {
    return { level: "fail", breaks: "clones, snapshots, resizes and disk checks fail" };
  }
  return { level: "fail", breaks: "onestor's scripts fail" };
}

/** Short `name version` of a version line (`qemu-img version 7.2.15 (...)` → `qemu-img 7.2.15`). */
export function shortVersion(tool: string, line: string): string {
  const v = line.match(/(\d+\.\d+(?:\.\d+)?)/)?.[1];
  return v ? `${tool} ${v}` : tool;
}

/** Programs: one finding per missing program, one summary with the versions. */
export function toolFindings(host: string | null, tools: readonly string[], facts: HostFacts): Result[] {
  const out: Result[] = [];
  const where = host ?? "the front-end";
  const versions: string[] = [];
  for (const tool of tools) {
    const seen = facts.tools.get(tool);
    if (seen && seen.path !== "") {
      versions.push(shortVersion(tool, seen.version));
      continue;
    }
    const impact = toolImpact(tool);
    out.push(finding(
      host === null ? "frontend-tools" : "host-tools",
      `${host ?? "front-end"}: ${tool}`,
      host,
      impact.level,
      `${tool} is not found on ${where}: ${impact.breaks}`,
      `install ${packageOf(tool)} on ${where} (apt-get install ${packageOf(tool)})`,
    ));
  }
  out.push(finding(
    host === null ? "frontend-tools" : "host-tools",
    `${host ?? "front-end"}: programs`,
    host,
    "ok",
    versions.join(", "),
  ));
  return out;
}

/** Datastore location, system datastore folders, markers and probe scripts of a host. */
export function folderFindings(plan: HostPlan, location: string, facts: HostFacts, user: string): Result[] {
  const out: Result[] = [];
  const host = plan.name;
  const own = `chown ${user}: `;
  const loc = facts.dirs.get(location);
  if (!loc?.exists) {
    out.push(finding(
      "datastore-location",
      `${host}: ${location}`,
      host,
      "fail",
      `DATASTORE_LOCATION ${location} does not exist on ${host}`,
      `on ${host}: mkdir -p ${location} && ${own}${location}`,
    ));
  } else if (!loc.writable) {
    out.push(finding(
      "datastore-location",
      `${host}: ${location}`,
      host,
      "fail",
      `${user} cannot write in DATASTORE_LOCATION ${location} on ${host}`,
      `on ${host}: ${own}${location} (or make the filesystem writable)`,
    ));
  } else {
    out.push(finding("datastore-location", `${host}: ${location}`, host, "ok", "present and writable"));
  }
  for (const sd of plan.systemDirs) {
    const d = facts.dirs.get(sd.dir);
    if (!d?.exists) continue; // created by the first deployment there
    if (!d.writable) {
      out.push(finding(
        "datastore-location",
        `${host}: ${sd.dir}`,
        host,
        "fail",
        `${user} cannot write in system datastore ${sd.id}'s folder on ${host}`,
        `on ${host}: ${own}${sd.dir}`,
      ));
    }
    if (d.vms > 0 && d.marker !== sd.tm) {
      out.push(finding(
        "monitor-marker",
        `${host}: ${sd.dir}/.monitor`,
        host,
        "warn",
        `${d.vms} VM folder(s) but .monitor holds ${
          d.marker ? `'${d.marker}'` : "nothing"
        }, not '${sd.tm}': ` +
          `oned gets no disk usage of these VMs`,
        `on ${host}: printf '${sd.tm}\\n' >${sd.dir}/.monitor (the next deployment there writes it too)`,
      ));
    } else if (d.vms > 0) {
      out.push(
        finding("monitor-marker", `${host}: ${sd.dir}/.monitor`, host, "ok", `'${sd.tm}', ${d.vms} VM(s)`),
      );
    }
  }
  for (const [script, present] of facts.scripts) {
    out.push(
      present ? finding("probe-script", `${host}: ${script}`, host, "ok", "present") : finding(
        "probe-script",
        `${host}: ${script}`,
        host,
        "warn",
        `OpenNebula's host probe cannot run ${script} on ${host}: VM disk sizes are not reported`,
        `onehost sync --force (as ${user} on the front-end) copies the remotes to the hosts`,
      ),
    );
  }
  return out;
}

/** Clock skew of a host against the front-end (leases and pins are stamped in replica time). */
export function clockFinding(host: string, skewSeconds: number | null): Result {
  if (skewSeconds === null) {
    return finding(
      "clock",
      host,
      host,
      "warn",
      "the host did not print its clock",
      "check that date(1) works there",
    );
  }
  const s = Math.abs(skewSeconds);
  const text = `${skewSeconds >= 0 ? "+" : "-"}${s.toFixed(1)} s from the front-end`;
  if (s < 2) return finding("clock", host, host, "ok", text);
  return finding(
    "clock",
    host,
    host,
    s >= 30 ? "fail" : "warn",
    `clock of ${host} is ${text}: lease and pin expiry times are misjudged across hosts`,
    `run an NTP client (chrony, systemd-timesyncd) on ${host} and on the front-end`,
  );
}

/**
 * onestor's temporary files: recent or still open ones are left alone; one untouched for longer
 * than `thresholdSeconds` (the longest timeout) and open by no process is provably garbage.
 */
export function tempFindings(
  host: string | null,
  facts: HostFacts,
  now: number,
  thresholdSeconds: number,
): Result[] {
  const out: Result[] = [];
  const where = host ?? "front-end";
  for (const t of facts.temps) {
    const busy = facts.open.some((p) => p === t.path || p.startsWith(`${t.path}/`));
    const seconds = Math.max(0, Math.round(now - t.newest));
    const subject = `${where}:${t.path}`;
    const size = `${(t.bytes / 1048576).toFixed(1)} MiB`;
    if (busy) {
      out.push(
        finding("temporary", subject, host, "ok", `in use by a running copy (${size}, ${age(seconds)})`, "", {
          age_seconds: seconds,
        }),
      );
    } else if (seconds < thresholdSeconds) {
      out.push(finding(
        "temporary",
        subject,
        host,
        "ok",
        `recent (${age(seconds)} old, ${size}): left alone until older than ${age(thresholdSeconds)}`,
        "",
        { age_seconds: seconds },
      ));
    } else {
      const slash = t.path.lastIndexOf("/");
      out.push(finding(
        "temporary",
        subject,
        host,
        "warn",
        `orphaned temporary file of an interrupted copy: untouched for ${
          age(seconds)
        }, open by no process, ${size}`,
        "onestor doctor --fix removes it",
        {
          age_seconds: seconds,
          garbage: {
            kind: "temporary",
            host,
            dir: t.path.slice(0, slash),
            name: t.path.slice(slash + 1),
            minAgeSeconds: thresholdSeconds,
          },
        },
      ));
    }
  }
  return out;
}

interface ChainImage {
  filename?: string;
  format?: string;
  "backing-filename"?: string;
  "full-backing-filename"?: string;
  "format-specific"?: { data?: { corrupt?: boolean } };
}

/** Backing chains of the VM disks: a disk qemu-img cannot open with its chain fails. */
export function chainFindings(host: string, facts: HostFacts): Result[] {
  const out: Result[] = [];
  let good = 0;
  for (const c of facts.chains) {
    const m = c.path.match(/\/(\d+)\/(disk\.\d+)$/);
    const subject = m ? `${host}: VM ${m[1]} ${m[2]}` : `${host}: ${c.path}`;
    if (c.code !== 0) {
      const message = c.output.trim().split("\n").pop()?.replace(/^qemu-img: /, "") ?? "";
      const missing = message.match(/Could not open '([^']+)': No such file or directory/)?.[1];
      out.push(finding(
        "backing-chain",
        subject,
        host,
        "fail",
        missing && missing !== c.path
          ? `${c.path} cannot be opened: its backing file ${missing} is missing`
          : `${c.path} cannot be opened: ${message || `qemu-img exit ${c.code}`}`,
        missing && missing !== c.path
          ? `put ${missing} back on ${host} (from the image or a backup of this VM); the VM cannot start or migrate until then`
          : `inspect it with qemu-img check ${c.path} on ${host}; recover the VM from a backup if it is damaged`,
      ));
      continue;
    }
    let chain: ChainImage[] = [];
    try {
      const parsed = JSON.parse(c.output);
      chain = Array.isArray(parsed) ? parsed : [parsed];
    } catch {
      // Unparsable output of a successful run: nothing more to say.
    }
    const corrupt = chain.find((i) => i["format-specific"]?.data?.corrupt === true);
    if (corrupt) {
      out.push(finding(
        "backing-chain",
        subject,
        host,
        "fail",
        `${corrupt.filename ?? c.path} is marked corrupt by QEMU`,
        `qemu-img check -r leaks ${
          corrupt.filename ?? c.path
        } on ${host} while the VM is off, or restore it from a backup`,
      ));
      continue;
    }
    good++;
  }
  if (facts.chains.length > 0 && good > 0) {
    out.push(
      finding(
        "backing-chain",
        `${host}: VM disks`,
        host,
        "ok",
        `${good} disk(s), every backing file present`,
      ),
    );
  }
  return out;
}
