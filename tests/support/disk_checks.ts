/**
 * Disk helpers for TM lab tests: images with known data patterns on the front-end's image
 * datastore, and checks of what ended up on each host (file kind, format, backing chain, data
 * patterns, allocation), read straight from the hosts' private folders on the machine.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ExecOptions, Lab } from "./lab.ts";

/** What the checks need of a test world: the lab (machine paths of host files) and a shell on hosts. */
export interface LabAccess {
  /** The lab whose hosts are checked. */
  readonly lab: Lab;
  /** Runs a script on a host; throws when it fails. */
  sh(host: string, script: string, options?: ExecOptions): Promise<string>;
}

/** A run of bytes of one value written at an offset (qemu-io `write -P`). */
export interface Pattern {
  /** Byte value. */
  byte: number;
  /** Offset in bytes. */
  offset: number;
  /** Length in bytes. */
  length: number;
}

/** The machine's normalised form of a host path (oned's double slashes removed). */
export function normal(path: string): string {
  return path.replace(/\/+/g, "/");
}

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = await new Deno.Command(argv[0], { args: argv.slice(1), stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout), err: dec.decode(out.stderr) };
}

/**
 * Creates an image file on `host` (as oneadmin) of `sizeMb` MiB in `format`, with `patterns`
 * written into it.
 */
export async function makeImage(
  world: LabAccess,
  host: string,
  path: string,
  options: { format: string; sizeMb: number; patterns?: Pattern[] },
): Promise<void> {
  const p = normal(path);
  const writes = (options.patterns ?? []).map((w) => `-c 'write -P ${w.byte} ${w.offset} ${w.length}'`).join(
    " ",
  );
  await world.sh(
    host,
    `set -e; mkdir -p "$(dirname ${p})"; qemu-img create -q -f ${options.format} ${p} ${options.sizeMb}M` +
      (writes ? `; qemu-io -f ${options.format} ${writes} ${p} >/dev/null` : ""),
    { user: "oneadmin" },
  );
}

/** Whether `path` on `host` holds `pattern` (read through qemu-io with `format`, or probed). */
export async function hasPattern(
  world: LabAccess,
  host: string,
  path: string,
  pattern: Pattern,
  format?: string,
): Promise<boolean> {
  const file = world.lab.path(host, normal(path));
  const argv = ["qemu-io", "-r", ...(format ? ["-f", format] : []), "-c"];
  argv.push(`read -P ${pattern.byte} ${pattern.offset} ${pattern.length}`, file);
  const r = await run(argv);
  if (r.code !== 0 && !/Pattern verification failed/.test(r.out + r.err)) {
    throw new Error(`qemu-io cannot read ${host}:${path}: ${r.err || r.out}`);
  }
  return r.code === 0 && !/Pattern verification failed/.test(r.out);
}

/** Asserts every pattern is in the disk. */
export async function assertPatterns(
  world: LabAccess,
  host: string,
  path: string,
  patterns: Pattern[],
  format?: string,
): Promise<void> {
  for (const p of patterns) {
    assert.ok(
      await hasPattern(world, host, path, p, format),
      `${host}:${path} should hold 0x${p.byte.toString(16)} at ${p.offset} (${p.length} bytes)`,
    );
  }
}

/** One image of a backing chain, as `qemu-img info --backing-chain --output=json` tells. */
export interface ChainLink {
  filename: string;
  format: string;
  virtualSize: number;
  actualSize: number;
  backingFilename?: string;
  compat?: string;
}

/** The backing chain of `path` on `host` (first element: the file itself). */
export async function backingChain(world: LabAccess, host: string, path: string): Promise<ChainLink[]> {
  const r = await run([
    "qemu-img",
    "info",
    "-U",
    "--backing-chain",
    "--output=json",
    world.lab.path(host, normal(path)),
  ]);
  if (r.code !== 0) throw new Error(`qemu-img info ${host}:${path}: ${r.err}`);
  const list = JSON.parse(r.out) as Record<string, unknown>[];
  return list.map((i) => ({
    filename: String(i["filename"]),
    format: String(i["format"]),
    virtualSize: Number(i["virtual-size"]),
    actualSize: Number(i["actual-size"]),
    backingFilename: i["backing-filename"] === undefined ? undefined : String(i["backing-filename"]),
    compat: ((i["format-specific"] as Record<string, Record<string, unknown>> | undefined)?.data?.compat) as
      | string
      | undefined,
  }));
}

/** Asserts `path` is a standalone image (no backing file) of `format` and `sizeMb` MiB. */
export async function assertStandalone(
  world: LabAccess,
  host: string,
  path: string,
  format: string,
  sizeMb?: number,
): Promise<ChainLink> {
  const chain = await backingChain(world, host, path);
  assert.equal(chain.length, 1, `${host}:${path} should have no backing file: ${JSON.stringify(chain)}`);
  assert.equal(chain[0].format, format, `${host}:${path} format`);
  if (sizeMb !== undefined) {
    assert.equal(chain[0].virtualSize, sizeMb * 1048576, `${host}:${path} virtual size`);
  }
  return chain[0];
}

/** What kind of file `path` is on `host`: missing, file, dir or link (with its target). */
export async function fileKind(
  world: LabAccess,
  host: string,
  path: string,
): Promise<
  { kind: "missing" | "file" | "dir" | "link"; target?: string; size?: number; allocated?: number }
> {
  const file = world.lab.path(host, normal(path));
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(file);
  } catch {
    return { kind: "missing" };
  }
  if (info.isSymlink) return { kind: "link", target: await Deno.readLink(file) };
  if (info.isDirectory) return { kind: "dir" };
  return { kind: "file", size: info.size, allocated: (info.blocks ?? 0) * 512 };
}

/** Asserts the kind of each path on `host`. */
export async function assertKinds(
  world: LabAccess,
  host: string,
  expected: Record<string, "missing" | "file" | "dir" | "link">,
): Promise<void> {
  for (const [path, kind] of Object.entries(expected)) {
    assert.equal((await fileKind(world, host, path)).kind, kind, `${host}:${path}`);
  }
}

/** Names in a folder on `host` (sorted), `[]` when it does not exist. */
export async function listDir(world: LabAccess, host: string, path: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(world.lab.path(host, normal(path)))) names.push(e.name);
  } catch {
    return [];
  }
  return names.sort();
}
