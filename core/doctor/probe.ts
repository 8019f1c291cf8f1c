/**
 * One script per host that gathers, in one SSH round trip, everything the doctor asks of that host:
 * its clock, its programs and their versions, the datastore folders and their `.monitor` markers,
 * the probe scripts OpenNebula runs there, free space, the replica cache records and folders, the
 * temporary files onestor leaves while it works (with the time they were last touched, and
 * whether a process still has them open), the backing chains of the VM disks, and the SSH hops it
 * must be able to make (run in parallel from the host itself). Each fact is one marker line;
 * {@linkcode parseProbe} turns them into a {@linkcode HostFacts}.
 *
 * The script only reads. (It writes nothing, so it needs no confinement.)
 *
 * @module
 */

import { joinScripts, raw, sh, type ShellScript } from "../remote/shell.ts";
import { hopScript } from "../remote/ssh.ts";
import type { HostPlan } from "./plan.ts";

/** What one host told. */
export interface HostFacts {
  /** The host's clock (epoch seconds) when the script started. */
  clock: number | null;
  /** Programs: path ("" when missing) and first line of its version. */
  tools: Map<string, { path: string; version: string }>;
  /** Folders: exists, writable, `.monitor` content, number of VM folders. */
  dirs: Map<string, { exists: boolean; writable: boolean; marker: string; vms: number }>;
  /** Probe scripts found executable. */
  scripts: Map<string, boolean>;
  /** Filesystem of the datastore location: bytes. */
  df: { total: number; used: number; available: number } | null;
  /** Cache folders (replica). */
  caches: CacheFacts[];
  /** Temporary items: path, newest mtime of anything in them, allocated bytes. */
  temps: { path: string; newest: number; bytes: number }[];
  /** Paths under the datastore location that a process has open (or as its cwd). */
  open: string[];
  /** VM disks: path, qemu-img exit code, its JSON or message. */
  chains: { path: string; code: number; output: string }[];
  /** Hops: target address, exit code, last stderr lines. */
  hops: Map<string, { code: number; stderr: string }>;
}

/** One cache folder as the probe saw it. */
export interface CacheFacts {
  dir: string;
  marker: string;
  fs: { total: number; used: number; available: number };
  /** Record file name → text. */
  records: Map<string, string>;
  /** Top-level items: name, allocated bytes, mtime. */
  items: { name: string; allocated: number; mtime: number }[];
  /** `stat` lines of images and snapshot files (`%F|%s|%Y|%b|%B|%n`). */
  statLines: string[];
}

/** Temporary names onestor's writers use (copies, restores, imports, records, markers). */
export const TEMP_PATTERNS = [
  ".onestor-xfer-*",
  ".onestor-restore-*",
  ".*.onestor-part",
  ".*.onestor-tmp",
  "*.onestor-tmp",
  "*.onestor.json.tmp.*",
  "*.onestor-lease.json.tmp.*",
  ".monitor.tmp.*",
];

function toolsScript(tools: readonly string[]): ShellScript {
  // As onestor's scripts run them: mkfs.* live in the sbin folders, which a user's PATH may lack.
  return sh`PATH="$PATH:/usr/sbin:/sbin"; export PATH
for t in ${tools}; do
  p=$(command -v "$t" 2>/dev/null) || p=
  case "$p" in /*) { [ -f "$p" ] && [ -x "$p" ]; } || p= ;; esac
  v=
  if [ -n "$p" ]; then
    case "$t" in
    bash | mktemp | mkfifo | timeout | base64 | du | df | stat) ;; # present is enough: no process spent
    mkfs.*) v=$("$p" -V 2>&1 </dev/null | head -n1) ;;
    *) v=$("$p" --version 2>&1 </dev/null | head -n1) ;;
    esac
  fi
  printf 'ONESTOR_TOOL %s|%s|%s\\n' "$t" "$p" "$(printf '%s' "$v" | tr -d '|\\r')"
done`;
}

function dirScript(dirs: readonly string[]): ShellScript {
  return sh`for d in ${dirs}; do
  e=0; w=0; m=; n=0
  if [ -d "$d" ]; then e=1; [ -w "$d" ] && w=1; m=$(head -c 64 "$d/.monitor" 2>/dev/null | tr -d '|\\n'); n=$(ls -d "$d"/[0-9]* 2>/dev/null | wc -l); fi
  printf 'ONESTOR_DIR %s|%s|%s|%s|%s\\n' "$e" "$w" "$n" "$m" "$d"
done`;
}

function cacheScript(dirs: readonly string[]): ShellScript {
  return sh`i=0
for d in ${dirs}; do
  i=$((i + 1))
  [ -d "$d" ] || continue
  printf 'ONESTOR_CACHE %s|%s|%s\\n' "$i" "$(head -c 32 "$d/.monitor" 2>/dev/null | tr -d '|\\n')" "$d"
  (
    cd -- "$d" || exit 0
    df -B1 -P . | { read -r _; read -r _ total used avail _ && echo "ONESTOR_CFS $i|$total|$used|$avail"; }
    for f in *.onestor.json *.onestor-lease.json *.onestor-pin.*; do
      case "$f" in *.tmp.* | *.tmp) continue ;; esac
      [ -f "$f" ] && printf 'ONESTOR_CREC %s|%s|%s\\n' "$i" "$f" "$(base64 -w0 <"$f")"
    done
    for f in * .onestor-fill-*; do
      [ -e "$f" ] || [ -L "$f" ] || continue
      case "$f" in *.onestor.json | *.onestor-lease.json | *.onestor-pin.* | *.tmp.* | *.onestor-tmp) continue ;; esac
      printf 'ONESTOR_CITEM %s|%s|%s|%s\\n' "$i" "$(du -sB1 -- "$f" | cut -f1)" "$(stat -c %Y -- "$f")" "$f"
      case "$f" in
      .onestor-fill-*) ;;
      *.snap) stat -c "ONESTOR_CSTAT $i|%F|%s|%Y|%b|%B|%n" -- "$f" "$f"/* "$f"/.[!.]* 2>/dev/null ;;
      *) stat -c "ONESTOR_CSTAT $i|%F|%s|%Y|%b|%B|%n" -- "$f" ;;
      esac
    done
  )
done`;
}

function tempScript(location: string): ShellScript {
  // TEMP_PATTERNS are constant text of this module: the globs are written out as such.
  const globs = TEMP_PATTERNS.flatMap((p) => [raw(`"$l"/*/${p}`), raw(`"$l"/*/*/${p}`)]);
  return sh`l=${location}
found=
for p in ${joinScripts(globs, " ")}; do
  [ -e "$p" ] || [ -L "$p" ] || continue
  found=1
  newest=$(find "$p" -printf '%T@\\n' 2>/dev/null | sort -n | tail -n1)
  printf 'ONESTOR_TEMP %s|%s|%s\\n' "\${newest%.*}" "$(du -sB1 -- "$p" 2>/dev/null | cut -f1)" "$p"
done
# Which of them a process has open or works in (only looked at when there are any).
if [ -n "$found" ]; then
  find /proc/[0-9]*/cwd /proc/[0-9]*/fd -maxdepth 1 -type l -printf '%l\\n' 2>/dev/null | grep -F -- "$l/" |
    sort -u | sed 's/^/ONESTOR_OPEN /'
fi`;
}

function chainScript(dirs: readonly string[]): ShellScript {
  return sh`command -v qemu-img >/dev/null 2>&1 || exit 0
for sd in ${dirs}; do
  for disk in "$sd"/[0-9]*/disk.[0-9]*; do
    case "\${disk##*/}" in disk.*[!0-9]*) continue ;; esac
    [ -e "$disk" ] || [ -L "$disk" ] || continue
    [ -d "$disk" ] && continue
    out=$(qemu-img info -U --backing-chain --output=json -- "$disk" 2>&1)
    printf 'ONESTOR_CHAIN %s|%s|%s\\n' "$?" "$(printf '%s' "$out" | base64 -w0)" "$disk"
  done
done`;
}

function hopsScript(plan: HostPlan, connectTimeout: number): ShellScript {
  if (plan.hops.length === 0) return sh`:`;
  const lines = plan.hops.map((hop, i) => {
    const ssh = hopScript(hop.address, sh`true`, { hopOptions: hop.options, connectTimeout });
    return sh`(${ssh} </dev/null >/dev/null 2>"$h/${String(i)}"; echo $? >"$h/${String(i)}.rc") &`;
  });
  const report = plan.hops.map((hop, i) =>
    sh`printf 'ONESTOR_HOP %s|%s|%s\\n' "$(cat "$h/${String(i)}.rc")" "$(tail -n 3 "$h/${
      String(i)
    }" | base64 -w0)" ${hop.address}`
  );
  return sh`h=$(mktemp -d) || exit 70
${joinScripts(lines)}
wait
${joinScripts(report)}
rm -rf "$h"`;
}

/** The script of one host (see the module doc). */
export function probeScript(plan: HostPlan, location: string, connectTimeout: number): ShellScript {
  const parts: ShellScript[] = [sh`printf 'ONESTOR_CLOCK %s\\n' "$(date +%s.%N)" >&2`];
  if (plan.full) {
    parts.push(toolsScript(plan.tools));
    parts.push(dirScript([location, ...plan.systemDirs.map((d) => d.dir)]));
    parts.push(
      sh`df -B1 -P ${location} 2>/dev/null | { read -r _; read -r _ total used avail _ && echo "ONESTOR_DF $total|$used|$avail"; }`,
    );
    for (const s of plan.probeScripts) {
      parts.push(
        sh`if [ -x ${s} ]; then echo ${`ONESTOR_SCRIPT 1|${s}`}; else echo ${`ONESTOR_SCRIPT 0|${s}`}; fi`,
      );
    }
    if (plan.cacheDirs.length) parts.push(cacheScript(plan.cacheDirs));
    parts.push(tempScript(location));
    if (plan.systemDirs.length) parts.push(sh`(${chainScript(plan.systemDirs.map((d) => d.dir))})`);
  }
  parts.push(hopsScript(plan, connectTimeout));
  return joinScripts(parts);
}

const b64 = (text: string): string => {
  try {
    return new TextDecoder().decode(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)));
  } catch {
    return "";
  }
};

function fields(line: string, count: number): string[] {
  const parts = line.split("|");
  return [...parts.slice(0, count - 1), parts.slice(count - 1).join("|")];
}

/** Parses the probe's output (stdout and stderr). */
export function parseProbe(stdout: string, stderr: string, cacheDirs: readonly string[]): HostFacts {
  const facts: HostFacts = {
    clock: null,
    tools: new Map(),
    dirs: new Map(),
    scripts: new Map(),
    df: null,
    caches: [],
    temps: [],
    open: [],
    chains: [],
    hops: new Map(),
  };
  const clock = stderr.match(/^ONESTOR_CLOCK (\S+)$/m);
  if (clock) facts.clock = Number(clock[1]);
  const caches = new Map<string, CacheFacts>();
  for (const line of stdout.split("\n")) {
    const space = line.indexOf(" ");
    if (!line.startsWith("ONESTOR_") || space < 0) continue;
    const tag = line.slice(8, space);
    const rest = line.slice(space + 1);
    switch (tag) {
      case "TOOL": {
        const [name, path, version] = fields(rest, 3);
        facts.tools.set(name, { path, version: version.trim() });
        break;
      }
      case "DIR": {
        const [e, w, n, marker, dir] = fields(rest, 5);
        facts.dirs.set(dir, { exists: e === "1", writable: w === "1", vms: Number(n) || 0, marker });
        break;
      }
      case "DF": {
        const [total, used, available] = rest.split("|").map(Number);
        facts.df = { total, used, available };
        break;
      }
      case "SCRIPT": {
        const [ok, path] = fields(rest, 2);
        facts.scripts.set(path, ok === "1");
        break;
      }
      case "CACHE": {
        const [i, marker, dir] = fields(rest, 3);
        const c: CacheFacts = {
          dir: cacheDirs[Number(i) - 1] ?? dir,
          marker,
          fs: { total: 0, used: 0, available: 0 },
          records: new Map(),
          items: [],
          statLines: [],
        };
        caches.set(i, c);
        facts.caches.push(c);
        break;
      }
      case "CFS": {
        const [i, total, used, available] = rest.split("|");
        const c = caches.get(i);
        if (c) c.fs = { total: Number(total), used: Number(used), available: Number(available) };
        break;
      }
      case "CREC": {
        const [i, name, data] = fields(rest, 3);
        caches.get(i)?.records.set(name, b64(data));
        break;
      }
      case "CITEM": {
        const [i, allocated, mtime, name] = fields(rest, 4);
        caches.get(i)?.items.push({ name, allocated: Number(allocated) || 0, mtime: Number(mtime) || 0 });
        break;
      }
      case "CSTAT": {
        const bar = rest.indexOf("|");
        caches.get(rest.slice(0, bar))?.statLines.push(rest.slice(bar + 1));
        break;
      }
      case "TEMP": {
        const [newest, bytes, path] = fields(rest, 3);
        facts.temps.push({ path, newest: Number(newest) || 0, bytes: Number(bytes) || 0 });
        break;
      }
      case "OPEN":
        facts.open.push(rest);
        break;
      case "CHAIN": {
        const [code, data, path] = fields(rest, 3);
        facts.chains.push({ path, code: Number(code), output: b64(data) });
        break;
      }
      case "HOP": {
        const [code, data, address] = fields(rest, 3);
        facts.hops.set(address, { code: Number(code), stderr: b64(data) });
        break;
      }
    }
  }
  return facts;
}
