/**
 * `onestor cache ls|warm|evict|verify [--replica HOST]... [--cluster ID]... [IMAGE...]`: manage
 * the per-cluster replica caches (see docs/replica-cache.md). Thin: parsing and exit codes here,
 * the work in core/cache/admin.ts.
 *
 * @module
 */

import { UsageError } from "../../core/errors.ts";
import {
  type AdminContext,
  checkImagePaths,
  evictAll,
  evictImages,
  formatRows,
  listCache,
  selectReplicas,
  type TargetSelection,
  trimCache,
  verifyCache,
  warmImages,
} from "../../core/cache/admin.ts";
import { cacheTopology } from "../../core/cache/targets.ts";
import { OneClient } from "../../core/one/xmlrpc.ts";
import {
  contentAlgorithm,
  controlTimeoutMs,
  getConfig,
  getRunner,
  transferTimeoutMs,
} from "../../core/runtime.ts";

/** Usage text of the subcommand. */
export const CACHE_USAGE = `Usage:
  onestor cache ls     [TARGET] [--json]          list cached images: size, last use, pins, state
  onestor cache warm   [TARGET] IMAGE... [--from FILE]
                                                  fill the caches with these images (progress on a terminal)
  onestor cache evict  [TARGET] IMAGE...          remove these images from the caches (unless in use)
  onestor cache evict  [TARGET] --all | --trim    remove every unused entry | only what exceeds the limits
  onestor cache verify [TARGET] [IMAGE...]        re-read cached images, remove corrupt and stale ones

TARGET: --replica HOST or --cluster ID (repeatable); default: every REPLICA_HOST of every system datastore.
IMAGE: the image's SOURCE path on the front-end (oneimage show ID: SOURCE), e.g. /var/lib/one/datastores/1/<hash>.
Exit code: 0 when everything asked was done, 1 when some image could not be (kept, not cached, bad), 2 usage.`;

/** Parsed command line. */
export interface CacheArgs {
  command: "ls" | "warm" | "evict" | "verify";
  selection: TargetSelection;
  images: string[];
  from: string | null;
  json: boolean;
  all: boolean;
  trim: boolean;
}

/** Parses the arguments after `onestor cache`. @throws {UsageError} with a one-line reason. */
export function parseCacheArgs(args: readonly string[]): CacheArgs {
  const [command, ...rest] = args;
  if (command === undefined) {
    throw new UsageError("Missing cache command: onestor cache ls|warm|evict|verify (see --help)");
  }
  if (!["ls", "warm", "evict", "verify"].includes(command)) {
    throw new UsageError(`Unknown cache command '${command}' (expected ls, warm, evict or verify)`);
  }
  const parsed: CacheArgs = {
    command: command as CacheArgs["command"],
    selection: { replicas: [], clusters: [] },
    images: [],
    from: null,
    json: false,
    all: false,
    trim: false,
  };
  const allowed: Record<string, string[]> = {
    ls: ["--json"],
    warm: ["--from"],
    evict: ["--all", "--trim"],
    verify: [],
  };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    const [flag, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = () => {
      const v = inline ?? rest[++i];
      if (v === undefined || v === "") throw new UsageError(`${flag} needs a value`);
      return v;
    };
    if (flag === "--replica") parsed.selection.replicas.push(value());
    else if (flag === "--cluster") {
      const v = value();
      if (!/^[0-9]+$/.test(v)) throw new UsageError(`--cluster takes a cluster id, not '${v}'`);
      parsed.selection.clusters.push(Number(v));
    } else if (flag.startsWith("-")) {
      if (!allowed[command].includes(flag)) {
        throw new UsageError(`Unknown option ${flag} for onestor cache ${command}`);
      }
      if (flag === "--json") parsed.json = true;
      else if (flag === "--all") parsed.all = true;
      else if (flag === "--trim") parsed.trim = true;
      else if (flag === "--from") parsed.from = value();
    } else parsed.images.push(arg);
  }
  if (command === "ls" && parsed.images.length > 0) {
    throw new UsageError("onestor cache ls takes no image arguments");
  }
  if (command === "warm" && parsed.images.length === 0 && parsed.from === null) {
    throw new UsageError(
      "onestor cache warm needs images: IMAGE... or --from FILE (one SOURCE path per line)",
    );
  }
  if (command === "evict") {
    const modes = [parsed.images.length > 0, parsed.all, parsed.trim].filter(Boolean).length;
    if (modes !== 1) {
      throw new UsageError("onestor cache evict needs exactly one of: IMAGE..., --all, --trim");
    }
  }
  parsed.images = checkImagePaths(parsed.images);
  return parsed;
}

/** Runs `onestor cache ...`. */
export async function run(args: string[]): Promise<number> {
  if (args[0] === "-h" || args[0] === "--help" || args[0] === "help") {
    console.log(CACHE_USAGE);
    return 0;
  }
  const parsed = parseCacheArgs(args);
  if (parsed.from !== null) {
    const text = parsed.from === "-"
      ? await new Response(Deno.stdin.readable).text()
      : await Deno.readTextFile(parsed.from);
    parsed.images.push(
      ...checkImagePaths(text.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))),
    );
  }
  const topology = await cacheTopology(new OneClient());
  const targets = selectReplicas(topology, parsed.selection);
  const ctx: AdminContext = {
    runner: getRunner(),
    config: getConfig(),
    topology,
    algorithm: contentAlgorithm(),
    controlTimeoutMs: controlTimeoutMs(),
    transferTimeoutMs: transferTimeoutMs(),
    print: (line) => console.log(line),
  };
  switch (parsed.command) {
    case "ls": {
      const rows = await listCache(ctx, targets);
      if (parsed.json) console.log(JSON.stringify(rows, null, 2));
      else for (const line of formatRows(rows)) console.log(line);
      return 0;
    }
    case "warm":
      return (await warmImages(ctx, targets, parsed.images)) > 0 ? 1 : 0;
    case "evict":
      if (parsed.all) return (await evictAll(ctx, targets)) > 0 ? 1 : 0;
      if (parsed.trim) return (await trimCache(ctx, targets)) > 0 ? 1 : 0;
      return (await evictImages(ctx, targets, parsed.images)) > 0 ? 1 : 0;
    case "verify":
      return (await verifyCache(ctx, targets, parsed.images)) > 0 ? 1 : 0;
  }
}
