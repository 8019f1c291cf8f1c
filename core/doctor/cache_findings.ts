/**
 * Findings about a replica's cache: free space against REPLICA_MAX_USED_PERC and
 * REPLICA_MAX_SIZE_MB, the integrity of every record (and, with `--deep`, the content checksums of
 * a sample of entries), stale leases of dead fillers, and fill folders nobody owns.
 *
 * @module
 */

import {
  ENTRY_SUFFIX,
  entryName,
  filesProblem,
  LEASE_SUFFIX,
  leaseLive,
  livePins,
  parseEntry,
  parseLease,
  parsePin,
  type Pin,
  PIN_INFIX,
} from "../cache/entry.ts";
import { type CacheLimits, cacheUsage, planEviction } from "../cache/eviction.ts";
import { type FolderState, parseStatLines, ReplicaFolder } from "../cache/store.ts";
import { verifyContent } from "../cache/verify.ts";
import { metrics } from "../metrics/metrics.ts";
import type { HostRunner } from "../remote/runner.ts";
import { age, finding, type Result } from "./finding.ts";
import type { CacheFacts, HostFacts } from "./probe.ts";

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

/** The cache folders of a replica as the eviction code reads them. */
export function folderStates(facts: HostFacts, now: number): FolderState[] {
  return facts.caches.map((c: CacheFacts) => {
    const entries = new Map<string, string>();
    const leases = new Map<string, string>();
    const pins = new Map<string, Pin[]>();
    for (const [name, text] of c.records) {
      if (name.endsWith(ENTRY_SUFFIX)) entries.set(name.slice(0, -ENTRY_SUFFIX.length), text);
      else if (name.endsWith(LEASE_SUFFIX)) leases.set(name.slice(0, -LEASE_SUFFIX.length), text);
      else if (name.includes(PIN_INFIX)) {
        const image = name.slice(0, name.indexOf(PIN_INFIX));
        const pin = parsePin(text);
        if (pin) pins.set(image, [...(pins.get(image) ?? []), pin]);
      }
    }
    return {
      dir: c.dir,
      now,
      entries,
      leases,
      pins,
      items: c.items,
      files: parseStatLines(c.statLines),
      fs: c.fs,
    };
  });
}

/** Whether a process of this front-end with `pid` is a live onestor process. */
export type HolderCheck = (frontend: string, pid: number) => "alive" | "dead" | "unknown";

/** What the cache findings need to know. */
export interface CacheContext {
  replica: string;
  limits: CacheLimits;
  /** Items older than this (seconds) and unowned are garbage. */
  thresholdSeconds: number;
  holder: HolderCheck;
  /** Admin command prefix in fix lines. */
  command: string;
}

/** Space, records, leases and fill folders of one replica. */
export function cacheFindings(
  states: readonly FolderState[],
  ctx: CacheContext,
  df: HostFacts["df"],
): Result[] {
  const out: Result[] = [];
  const r = ctx.replica;
  metrics.cacheSizes(r, states);
  out.push(spaceFinding(states, ctx, df));
  for (const s of states) {
    let good = 0;
    for (const [image, text] of s.entries) {
      const path = `${s.dir}/${image}`;
      const subject = `${r}:${path}`;
      const entry = parseEntry(text, { pins: s.pins?.get(image) });
      if (!entry) {
        out.push(finding(
          "cache-record",
          subject,
          r,
          "warn",
          "unreadable cache record: the entry is never served, every deployment of the image fills it again",
          `${ctx.command} cache evict --replica ${r} ${path}`,
        ));
        continue;
      }
      const files = s.files.filter((f) =>
        f.name === image || f.name === `${image}.snap` || f.name.startsWith(`${image}.snap/`)
      );
      const problem = filesProblem(entry, files);
      if (problem === null) {
        good++;
        continue;
      }
      const lease = parseLease(s.leases.get(image) ?? null);
      const pinned = livePins(entry, s.now).length > 0;
      const noFiles = !files.some((f) => f.name === image);
      if (noFiles && !pinned && !leaseLive(lease, s.now)) {
        out.push(finding(
          "cache-record",
          subject,
          r,
          "warn",
          `cache record without its image file (${problem})`,
          "onestor doctor --fix removes the record",
          { garbage: { kind: "record", host: r, dir: s.dir, name: entryName(image), text } },
        ));
      } else {
        out.push(finding(
          "cache-record",
          subject,
          r,
          "warn",
          `the cached copy no longer matches its record (${problem}): it is not served, the next deployment fills it again`,
          `${ctx.command} cache verify --replica ${r} ${path} (removes it now)`,
        ));
      }
    }
    if (s.entries.size > 0 || s.items.length > 0) {
      out.push(finding(
        "cache-record",
        `${r}:${s.dir}`,
        r,
        "ok",
        `${good} of ${s.entries.size} entries match their records`,
      ));
    }
    out.push(...leaseFindings(s, ctx));
  }
  return out;
}

function spaceFinding(states: readonly FolderState[], ctx: CacheContext, df: HostFacts["df"]): Result {
  const r = ctx.replica;
  const fs = states[0]?.fs ?? df ?? { total: 0, used: 0, available: 0 };
  const usage = cacheUsage(states);
  const pct = fs.total > 0 ? (fs.used * 100) / fs.total : 0;
  const limitText = `REPLICA_MAX_USED_PERC=${ctx.limits.maxUsedPercent}` +
    (ctx.limits.maxBytes !== null
      ? `, REPLICA_MAX_SIZE_MB=${Math.round(ctx.limits.maxBytes / 1048576)}`
      : "");
  const status = `${mib(usage.cacheBytes)} cached in ${
    usage.candidates.filter((c) => c.kind === "entry").length +
    usage.protectedKeys.length
  } entries, filesystem ${pct.toFixed(0)}% used (${limitText})`;
  if (fs.total === 0) {
    return finding(
      "replica-space",
      r,
      r,
      "warn",
      "the size of the replica's filesystem could not be read",
      "",
    );
  }
  // Room for one more byte: can the cache take anything at all, even after evicting all it may?
  const plan = planEviction(fs, usage, 1, ctx.limits);
  if (!plan.fits) {
    return finding(
      "replica-space",
      r,
      r,
      "fail",
      `the cache of ${r} is full: ${status}; nothing more can be cached, deployments copy straight from the front-end`,
      `free space on ${r}'s filesystem outside the cache, grow it, or raise REPLICA_MAX_USED_PERC / REPLICA_MAX_SIZE_MB in sshrc`,
    );
  }
  const fsLimit = Math.floor(fs.total * ctx.limits.maxUsedPercent / 100);
  if (
    fs.used > fsLimit || (ctx.limits.maxBytes !== null && usage.cacheBytes > ctx.limits.maxBytes)
  ) {
    return finding(
      "replica-space",
      r,
      r,
      "warn",
      `over its limits: ${status}; the next fill first evicts least recently used entries`,
      `${ctx.command} cache evict --trim --replica ${r}`,
    );
  }
  return finding("replica-space", r, r, "ok", status);
}

function leaseFindings(s: FolderState, ctx: CacheContext): Result[] {
  const out: Result[] = [];
  const r = ctx.replica;
  const liveFills = new Set<string>();
  for (const [image, text] of s.leases) {
    const lease = parseLease(text);
    const subject = `${r}:${s.dir}/${image}${LEASE_SUFFIX}`;
    if (lease && leaseLive(lease, s.now)) {
      liveFills.add(lease.fill);
      out.push(finding("lease", subject, r, "ok", `being filled by ${lease.owner}`));
      continue;
    }
    const expired = lease ? Math.max(0, s.now - lease.expires_at) : 0;
    const holder = lease ? ctx.holder(lease.frontend, lease.pid) : "unknown";
    const dead = holder === "dead" || !lease || expired > ctx.thresholdSeconds;
    const who = lease ? `${lease.owner} (filling ${lease.source})` : "an unreadable lease";
    const state = holder === "dead"
      ? "is no longer running"
      : holder === "alive"
      ? "still runs but stopped renewing it"
      : "stopped renewing it";
    out.push(finding(
      "lease",
      subject,
      r,
      "warn",
      `stale lease: its filler ${who} ${state}; expired ${age(expired)} ago`,
      dead
        ? "onestor doctor --fix removes it and its fill folder (the next deployment of the image would take it over)"
        : "the next deployment of the image takes it over; if the filler hangs, stop that process",
      {
        age_seconds: expired,
        garbage: dead
          ? { kind: "lease", host: r, dir: s.dir, name: `${image}${LEASE_SUFFIX}`, text, fill: lease?.fill }
          : undefined,
      },
    ));
  }
  for (const item of s.items) {
    if (!item.name.startsWith(".onestor-fill-") || liveFills.has(item.name)) continue;
    // A fill folder named by an expired lease is removed with that lease.
    if ([...s.leases.values()].some((t) => parseLease(t)?.fill === item.name)) continue;
    const seconds = Math.max(0, s.now - item.mtime);
    const old = seconds >= ctx.thresholdSeconds;
    out.push(finding(
      "temporary",
      `${r}:${s.dir}/${item.name}`,
      r,
      old ? "warn" : "ok",
      old
        ? `fill folder without a lease (a dead filler's), untouched for ${age(seconds)}, ${
          mib(item.allocated)
        }`
        : `fill folder without a lease, ${age(seconds)} old: left alone until older than ${
          age(ctx.thresholdSeconds)
        }`,
      old ? "onestor doctor --fix removes it" : "",
      {
        age_seconds: seconds,
        garbage: old
          ? { kind: "temporary", host: r, dir: s.dir, name: item.name, minAgeSeconds: ctx.thresholdSeconds }
          : undefined,
      },
    ));
  }
  return out;
}

/**
 * `--deep`: re-reads the files of up to `sample` valid entries per replica (most recently used
 * first: the ones the next deployments copy) and compares their checksums with the records.
 */
export async function deepFindings(
  runner: HostRunner,
  replica: string,
  states: readonly FolderState[],
  sample: number,
  timeoutMs: number,
  command: string,
): Promise<Result[]> {
  const candidates: { dir: string; image: string; entry: NonNullable<ReturnType<typeof parseEntry>> }[] = [];
  for (const s of states) {
    for (const [image, text] of s.entries) {
      const entry = parseEntry(text);
      if (!entry || leaseLive(parseLease(s.leases.get(image) ?? null), s.now)) continue;
      const files = s.files.filter((f) =>
        f.name === image || f.name === `${image}.snap` || f.name.startsWith(`${image}.snap/`)
      );
      if (filesProblem(entry, files) === null) candidates.push({ dir: s.dir, image, entry });
    }
  }
  candidates.sort((a, b) => b.entry.last_use - a.entry.last_use);
  const chosen = candidates.slice(0, sample);
  const out: Result[] = [];
  let good = 0;
  for (const c of chosen) {
    const folder = new ReplicaFolder(runner, replica, c.dir, timeoutMs);
    const problem = await verifyContent(folder, c.entry, timeoutMs).catch((e) =>
      `cannot read it: ${e instanceof Error ? e.message : String(e)}`
    );
    if (problem === null) {
      good++;
      continue;
    }
    const path = `${c.dir}/${c.image}`;
    out.push(finding(
      "cache-content",
      `${replica}:${path}`,
      replica,
      "fail",
      `the cached copy of ${c.entry.source.path} is corrupt (${problem}) and still looks valid by size and ` +
        `mtime: deployments would copy it`,
      `${command} cache verify --replica ${replica} ${path} (removes it; the next deployment fills it again)`,
    ));
  }
  if (chosen.length > 0) {
    out.push(finding(
      "cache-content",
      `${replica}: sampled entries`,
      replica,
      "ok",
      `${good} of ${chosen.length} checked (of ${candidates.length} valid entries) match their checksums`,
    ));
  }
  return out;
}
