/**
 * `onestor cache ls|warm|evict|verify`: what the administrator can see and do with the replica
 * caches. The command line is parsed in actions/admin/cache.ts; this is the work.
 *
 * @module
 */

import type { Config } from "../../config/load.ts";
import { InputError, oneLine, UsageError } from "../errors.ts";
import type { HostRunner } from "../remote/runner.ts";
import {
  type CacheEntry,
  entryName,
  filesProblem,
  leaseLive,
  leaseName,
  livePins,
  ownerId,
  parseEntry,
  parseLease,
  type Pin,
} from "./entry.ts";
import { type CacheLimits, cacheUsage, evictCandidates, makeRoom, removalOps } from "./eviction.ts";
import { statImage } from "./identity.ts";
import type { HashAlgorithm } from "../transfer/hashes.ts";
import { applyPendingInvalidations } from "./invalidate.ts";
import { obtainEntry } from "./obtain.ts";
import { ProgressReporter } from "../progress/reporter.ts";
import { watchFill } from "./progress.ts";
import { metrics } from "../metrics/metrics.ts";
import { cacheFolders, type FolderState, ReplicaFolder } from "./store.ts";
import type { CacheTopology, ReplicaTarget } from "./targets.ts";
import { verifyContent } from "./verify.ts";

/** What the command works on. */
export interface TargetSelection {
  /** `--replica` values. */
  replicas: string[];
  /** `--cluster` values. */
  clusters: number[];
}

/** Everything a subcommand needs. */
export interface AdminContext {
  runner: HostRunner;
  config: Config;
  topology: CacheTopology;
  /** Content checksum algorithm of entries (TRANSFER_CHECKSUM). */
  algorithm: HashAlgorithm;
  controlTimeoutMs: number;
  transferTimeoutMs: number;
  /** Writes a line of output. */
  print: (line: string) => void;
  /** Makes the progress reporter of one image (default: on stderr, bar on a terminal). */
  progress?: (label: string, total: number) => ProgressReporter;
}

/** The replicas selected by `--replica`/`--cluster`, or every replica. */
export function selectReplicas(topology: CacheTopology, selection: TargetSelection): ReplicaTarget[] {
  if (selection.replicas.length === 0 && selection.clusters.length === 0) {
    if (topology.replicas.length === 0) {
      throw new InputError(
        "No system datastore has REPLICA_HOST: there is no replica cache (or use --replica HOST)",
      );
    }
    return topology.replicas;
  }
  const out = new Map<string, ReplicaTarget>();
  for (const host of selection.replicas) {
    out.set(
      host,
      topology.replicas.find((r) => r.host === host) ?? { host, systemDatastores: [], clusters: [] },
    );
  }
  for (const cluster of selection.clusters) {
    const found = topology.replicas.filter((r) => r.clusters.includes(cluster));
    if (found.length === 0) {
      throw new InputError(`No system datastore of cluster ${cluster} has REPLICA_HOST`);
    }
    for (const r of found) out.set(r.host, r);
  }
  return [...out.values()];
}

/** Parent folders of the image datastores (where cache folders are looked for on a replica). */
function datastoreLocations(topology: CacheTopology): string[] {
  const parents = new Set(topology.imageDirs.map((d) => d.slice(0, d.lastIndexOf("/")) || "/"));
  if (parents.size === 0) parents.add("/var/lib/one/datastores");
  return [...parents];
}

/** Reads every cache folder of a replica. */
async function readReplica(ctx: AdminContext, replica: string): Promise<FolderState[]> {
  const dirs = new Set<string>();
  for (const location of datastoreLocations(ctx.topology)) {
    for (const d of await cacheFolders(ctx.runner, replica, location, { timeoutMs: ctx.controlTimeoutMs })) {
      dirs.add(d);
    }
  }
  return await Promise.all(
    [...dirs].sort().map((d) => new ReplicaFolder(ctx.runner, replica, d, ctx.controlTimeoutMs).folder()),
  );
}

/** One line of `onestor cache ls`. */
export interface CacheRow {
  replica: string;
  /** Image path (same on the front-end and the replica). */
  image: string;
  /** Apparent size of the image file. */
  size: number;
  /** Allocated bytes on the replica. */
  allocated: number;
  /** Replica epoch seconds, null for leftovers. */
  lastUse: number | null;
  /** Live pins. */
  pins: Pin[];
  /** `ready`, `filling`, `stale`, `broken`, `unreadable`, `leftover`. */
  state: string;
  /** Why, for stale/broken, or the fill's holder. */
  detail: string;
}

function sourceState(entry: CacheEntry): Promise<string | null> {
  return statImage(entry.source.path).then(
    (stat) =>
      stat.size === entry.source.size && stat.mtime_ms === entry.source.mtime_ms
        ? null
        : "the image changed on the front-end",
    () => "the image is gone from the front-end",
  );
}

/** The rows of one folder. */
export async function folderRows(replica: string, state: FolderState): Promise<CacheRow[]> {
  const rows: CacheRow[] = [];
  const items = new Map(state.items.map((i) => [i.name, i]));
  const alloc = (image: string) =>
    [image, `${image}.snap`, `${image}.md5sum`].reduce((sum, n) => sum + (items.get(n)?.allocated ?? 0), 0);
  const seen = new Set<string>();
  for (const [image, text] of state.entries) {
    seen.add(image);
    const entry = parseEntry(text, { lastUse: state.entryMtimes?.get(image), pins: state.pins?.get(image) });
    const lease = parseLease(state.leases.get(image) ?? null);
    const path = `${state.dir}/${image}`;
    if (!entry) {
      rows.push({
        replica,
        image: path,
        size: 0,
        allocated: alloc(image),
        lastUse: null,
        pins: [],
        state: "unreadable",
        detail: "",
      });
      continue;
    }
    const prefix = `${image}.snap/`;
    const files = state.files.filter((f) =>
      f.name === image || f.name === `${image}.snap` || f.name.startsWith(prefix)
    );
    let rowState = "ready";
    let detail = filesProblem(entry, files) ?? "";
    if (detail !== "") rowState = "broken";
    else {
      const stale = await sourceState(entry);
      if (stale) [rowState, detail] = ["stale", stale];
    }
    if (leaseLive(lease, state.now)) [rowState, detail] = ["filling", `refilled by ${lease!.owner}`];
    rows.push({
      replica,
      image: path,
      size: entry.size,
      allocated: alloc(image),
      lastUse: entry.last_use,
      pins: livePins(entry, state.now),
      state: rowState,
      detail,
    });
  }
  for (const [image, text] of state.leases) {
    if (seen.has(image)) continue;
    const lease = parseLease(text);
    if (!leaseLive(lease, state.now)) continue;
    seen.add(image);
    const written = items.get(lease!.fill)?.allocated ?? 0;
    const pct = lease!.reserve > 0 ? Math.min(100, Math.floor((written * 100) / lease!.reserve)) : 0;
    rows.push({
      replica,
      image: `${state.dir}/${image}`,
      size: lease!.reserve,
      allocated: written,
      lastUse: null,
      pins: [],
      state: "filling",
      detail: `${pct}% by ${lease!.owner}`,
    });
  }
  const usage = cacheUsage([state]);
  for (const c of usage.candidates) {
    if (c.kind === "entry") continue;
    rows.push({
      replica,
      image: `${state.dir}/${c.key}`,
      size: 0,
      allocated: c.allocated,
      lastUse: null,
      pins: [],
      state: "leftover",
      detail: c.kind === "stale-fill"
        ? "fill folder of a dead process"
        : "image files without a cache record",
    });
  }
  return rows;
}

/** `onestor cache ls`: every entry of the selected replicas. */
export async function listCache(ctx: AdminContext, targets: readonly ReplicaTarget[]): Promise<CacheRow[]> {
  const rows: CacheRow[] = [];
  for (const target of targets) {
    await applyPendingInvalidations(ctx.runner, target.host).catch(() => 0);
    const states = await readReplica(ctx, target.host);
    metrics.cacheSizes(target.host, states);
    for (const state of states) {
      rows.push(...await folderRows(target.host, state));
    }
  }
  return rows;
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

/** Human text for a replica time relative to `now`. */
export function ago(then: number | null, now: number): string {
  if (then === null) return "-";
  const s = Math.max(0, now - then);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** Formats rows as an aligned table. */
export function formatRows(rows: readonly CacheRow[], now = Math.floor(Date.now() / 1000)): string[] {
  const head = ["REPLICA", "IMAGE", "SIZE", "ON DISK", "LAST USE", "PINS", "STATE"];
  const body = rows.map((r) => [
    r.replica,
    r.image,
    mib(r.size),
    mib(r.allocated),
    ago(r.lastUse, now),
    r.pins.length === 0 ? "-" : r.pins.map((p) => p.vm === null ? p.owner : `vm ${p.vm}`).join(","),
    r.detail ? `${r.state} (${r.detail})` : r.state,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [head, ...body].map((cols) =>
    cols.map((c, i) => i === cols.length - 1 ? c : c.padEnd(widths[i])).join("  ")
  );
}

function limitsOf(config: Config): CacheLimits {
  return {
    maxBytes: config.replicaMaxSizeMb === null ? null : config.replicaMaxSizeMb * 1024 * 1024,
    maxUsedPercent: config.replicaMaxUsedPerc,
  };
}

/** `onestor cache warm`: fills the caches with images; returns how many failed. */
export async function warmImages(
  ctx: AdminContext,
  targets: readonly ReplicaTarget[],
  images: readonly string[],
): Promise<number> {
  let failed = 0;
  const owner = ownerId();
  for (const target of targets) {
    await applyPendingInvalidations(ctx.runner, target.host).catch(() => 0);
    for (const path of images) {
      const label = `${target.host}: ${path}`;
      let progress: ProgressReporter | null = null;
      const report = (line: string) => (progress ??= new ProgressReporter({ label })).finish(line);
      try {
        const stat = await statImage(path);
        const reporter = ctx.progress?.(label, stat.allocated) ??
          new ProgressReporter({ label, total: stat.allocated });
        progress = reporter;
        const folder = new ReplicaFolder(ctx.runner, target.host, stat.dir, ctx.controlTimeoutMs);
        await folder.ensure();
        const watch = reporter.mode === "off"
          ? null
          : watchFill(folder, stat.name, (bytes) => reporter.set(bytes));
        let outcome;
        try {
          outcome = await obtainEntry(ctx.runner, {
            folder,
            stat,
            owner,
            algorithm: ctx.algorithm,
            leaseSeconds: ctx.config.replicaLeaseSeconds,
            lockTimeoutSeconds: 0,
            verify: ctx.config.replicaCacheVerify,
            limits: limitsOf(ctx.config),
            frontendHopOptions: ctx.config.replicaSshFeOpts,
            compression: ctx.config.transferCompression,
            transferTimeoutMs: ctx.transferTimeoutMs,
            log: {
              info: (m: string) => reporter.note(m),
              warn: (m: string) => reporter.note(`Warning: ${m}`),
            },
          });
        } finally {
          await watch?.stop();
        }
        switch (outcome.kind) {
          case "hit":
            report(`${label}: cached`);
            break;
          case "filled":
            if (outcome.fill.promoted) {
              report(
                `${label}: filled ${mib(outcome.fill.streamBytes)} in ${outcome.fill.seconds.toFixed(1)} s`,
              );
            } else {
              failed++;
              report(`${label}: not cached: ${outcome.fill.problem}`);
            }
            break;
          case "no-room":
            failed++;
            report(`${label}: not cached: ${outcome.reason}`);
            break;
          case "timeout":
            failed++;
            report(`${label}: gave up waiting for ${outcome.holder}`);
            break;
        }
      } catch (error) {
        failed++;
        report(`${label}: failed: ${oneLine(error)}`);
      }
    }
  }
  return failed;
}

/** `onestor cache evict IMAGE...`: removes these entries where no deployment uses them; returns how many were kept. */
export async function evictImages(
  ctx: AdminContext,
  targets: readonly ReplicaTarget[],
  images: readonly string[],
): Promise<number> {
  let kept = 0;
  for (const target of targets) {
    for (const path of images) {
      const slash = path.lastIndexOf("/");
      const folder = new ReplicaFolder(ctx.runner, target.host, path.slice(0, slash), ctx.controlTimeoutMs);
      const image = path.slice(slash + 1);
      const state = await folder.image(image);
      if (state.entryText === null && state.files.length === 0) {
        ctx.print(`${target.host}: ${path}: not cached`);
        continue;
      }
      if (state.pins.some((p) => p.expires_at > state.now)) {
        kept++;
        ctx.print(`${target.host}: ${path}: kept, a deployment is copying from it`);
        continue;
      }
      if (leaseLive(parseLease(state.leaseText), state.now)) {
        kept++;
        ctx.print(`${target.host}: ${path}: kept, it is being filled`);
        continue;
      }
      const result = await folder.transact({
        expect: { [entryName(image)]: state.entryText, [leaseName(image)]: state.leaseText },
        unpinned: [image],
        ops: removalOps(
          {
            dir: folder.dir,
            key: image,
            kind: "entry",
            names: [entryName(image), image, `${image}.snap`, `${image}.md5sum`],
            allocated: 0,
            lastUse: 0,
            expect: {},
          },
          state.now,
          "onestor cache evict",
        ),
      });
      if (result === "committed") metrics.evicted(target.host, "entry", 0);
      if (result === "committed") ctx.print(`${target.host}: ${path}: evicted`);
      else {
        kept++;
        ctx.print(`${target.host}: ${path}: kept, it changed meanwhile (try again)`);
      }
    }
  }
  return kept;
}

/** `onestor cache evict --all`: every entry and leftover no deployment uses. */
export async function evictAll(ctx: AdminContext, targets: readonly ReplicaTarget[]): Promise<number> {
  let kept = 0;
  for (const target of targets) {
    const states = await readReplica(ctx, target.host);
    if (states.length === 0) continue;
    const folder = new ReplicaFolder(ctx.runner, target.host, states[0].dir, ctx.controlTimeoutMs);
    const usage = cacheUsage(states);
    const done = await evictCandidates(folder, usage.candidates, "onestor cache evict --all");
    kept += usage.protectedKeys.length + usage.candidates.length - done.length;
    const freed = done.reduce((sum, c) => sum + c.allocated, 0);
    ctx.print(
      `${target.host}: evicted ${done.length} (${mib(freed)}), kept ${usage.protectedKeys.length} in use` +
        (done.length < usage.candidates.length
          ? `, ${usage.candidates.length - done.length} changed meanwhile`
          : ""),
    );
  }
  return kept;
}

/** `onestor cache evict --trim`: evicts least recently used entries until the limits hold. */
export async function trimCache(ctx: AdminContext, targets: readonly ReplicaTarget[]): Promise<number> {
  let failed = 0;
  for (const target of targets) {
    const states = await readReplica(ctx, target.host);
    if (states.length === 0) {
      ctx.print(`${target.host}: no cache folders`);
      continue;
    }
    const folder = new ReplicaFolder(ctx.runner, target.host, states[0].dir, ctx.controlTimeoutMs);
    const room = await makeRoom(folder, 0, limitsOf(ctx.config), null);
    const freed = room.evicted.reduce((sum, c) => sum + c.allocated, 0);
    if (!room.ok) failed++;
    ctx.print(
      `${target.host}: evicted ${room.evicted.length} (${mib(freed)})` +
        (room.ok ? ", within the limits" : `; still over the limits: ${room.reason}`),
    );
  }
  return failed;
}

/** `onestor cache verify`: re-reads entries; corrupt and stale ones are removed. Returns how many were bad. */
export async function verifyCache(
  ctx: AdminContext,
  targets: readonly ReplicaTarget[],
  images: readonly string[],
): Promise<number> {
  let bad = 0;
  for (const target of targets) {
    await applyPendingInvalidations(ctx.runner, target.host).catch(() => 0);
    const states = await readReplica(ctx, target.host);
    for (const state of states) {
      const folder = new ReplicaFolder(ctx.runner, target.host, state.dir, ctx.controlTimeoutMs);
      for (const [image, text] of state.entries) {
        const path = `${state.dir}/${image}`;
        if (images.length > 0 && !images.includes(path)) continue;
        const entry = parseEntry(text, {
          lastUse: state.entryMtimes?.get(image),
          pins: state.pins?.get(image),
        });
        if (leaseLive(parseLease(state.leases.get(image) ?? null), state.now)) {
          ctx.print(`${target.host}: ${path}: being filled, skipped`);
          continue;
        }
        let problem: string | null;
        if (!entry) problem = "unreadable cache record";
        else {
          const prefix = `${image}.snap/`;
          const files = state.files.filter((f) =>
            f.name === image || f.name === `${image}.snap` || f.name.startsWith(prefix)
          );
          problem = filesProblem(entry, files) ?? await sourceState(entry) ??
            await verifyContent(folder, entry, ctx.transferTimeoutMs);
        }
        if (problem === null) {
          ctx.print(`${target.host}: ${path}: ok`);
          continue;
        }
        bad++;
        if (entry && livePins(entry, state.now).length > 0) {
          ctx.print(`${target.host}: ${path}: BAD (${problem}); in use, removed at the next fill`);
          continue;
        }
        const result = await folder.transact({
          expect: { [entryName(image)]: text },
          unpinned: [image],
          ops: removalOps(
            {
              dir: state.dir,
              key: image,
              kind: "entry",
              names: [entryName(image), image, `${image}.snap`],
              allocated: 0,
              lastUse: 0,
              expect: {},
            },
            state.now,
            `verify: ${problem}`,
          ),
        });
        ctx.print(
          `${target.host}: ${path}: BAD (${problem}); ${
            result === "committed" ? "removed" : "changed meanwhile, kept"
          }`,
        );
      }
      for (const path of images) {
        if (path.startsWith(`${state.dir}/`) && !state.entries.has(path.slice(state.dir.length + 1))) {
          ctx.print(`${target.host}: ${path}: not cached`);
        }
      }
    }
  }
  return bad;
}

/** Checks image arguments: absolute paths of images on this front-end. */
export function checkImagePaths(images: readonly string[]): string[] {
  return images.map((p) => {
    if (!p.startsWith("/")) throw new UsageError(`Image '${p}' must be the image's SOURCE path (absolute)`);
    return p.replace(/\/{2,}/g, "/").replace(/\/$/, "");
  });
}
