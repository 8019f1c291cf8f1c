/**
 * The scripts that run on the replica, in a protected disk's recovery folder (names.ts). Each
 * prints `ONESTOR_<KEY>=<value>` lines the front-end reads; each fails with one line on stderr.
 * Values are quoted by the `sh` template; file names are the record's own (checked by
 * record.ts), never free text.
 *
 * @module
 */

import { sh, type ShellScript } from "../remote/shell.ts";
import { failpoint } from "./failpoint.ts";
import { type Guard, guarded } from "./guard.ts";
import { BASE_FILE, LEASE_FILE, MERGED_FILE, RECORD_FILE } from "./names.ts";

/** Checksum programs a record may name. */
const SUM_PROGRAMS = ["b2sum", "sha256sum", "sha1sum", "md5sum"];

function sumProgram(algorithm: string): string {
  if (!SUM_PROGRAMS.includes(algorithm)) throw new TypeError(`Unknown checksum program ${algorithm}`);
  return algorithm;
}

/** Shell functions: `fail`, `fmt_of FILE`, `vsize_of FILE`, `data_of FILE` (allocated data of the file itself). */
const PRELUDE = sh`fail() { printf '%s\\n' "$1" >&2; exit 1; }
fmt_of() { qemu-img info -U --output=json -- "$1" | sed -n 's/^ *"format": *"\\([a-z0-9]*\\)".*/\\1/p' | head -n 1; }
vsize_of() { qemu-img info -U --output=json -- "$1" | sed -n 's/^ *"virtual-size": *\\([0-9][0-9]*\\).*/\\1/p' | head -n 1; }
data_of() {
  qemu-img map -U --output=json -f qcow2 -- "$1" | awk '/"depth": 0,/ && /"data": true/ {
    sub(/.*"length": */, ""); sub(/,.*/, ""); n += $0 } END { printf "%d\\n", n }'
}`;

/** Reads the record, the lease, the replica's clock and the folder's entries (ONESTOR_NODIR when absent). */
export function readScript(dir: string): ShellScript {
  return sh`echo "ONESTOR_NOW=$(date +%s)"
cd -- ${dir} 2>/dev/null || { echo ONESTOR_NODIR; exit 0; }
for f in ${RECORD_FILE} ${LEASE_FILE}; do
  if [ -f "$f" ]; then printf 'ONESTOR_TEXT %s %s\\n' "$f" "$(base64 -w0 <"$f")"; fi
done
for f in * .[!.]*; do
  if [ -e "$f" ] || [ -L "$f" ]; then printf 'ONESTOR_ENTRY %s\\n' "$f"; fi
done`;
}

/**
 * Reads the records of several disks at once (status, scheduling): one line per record or lease
 * found, naming the folder by its index in `dirs`.
 */
export function readRecordsScript(dirs: readonly string[]): ShellScript {
  return sh`echo "ONESTOR_NOW=$(date +%s)"
i=0
for d in ${dirs}; do
  if [ -f "$d/${RECORD_FILE}" ]; then printf 'ONESTOR_RECORD %s %s\\n' "$i" "$(base64 -w0 <"$d/${RECORD_FILE}")"; fi
  if [ -f "$d/${LEASE_FILE}" ]; then printf 'ONESTOR_LEASE %s %s\\n' "$i" "$(base64 -w0 <"$d/${LEASE_FILE}")"; fi
  i=$((i + 1))
done`;
}

/** Creates the folder (and its parents) so that transactions can run in it. */
export function ensureDirScript(guard: Guard, dir: string): ShellScript {
  return sh`${guarded(guard, { write: [dir] })}
mkdir -p -- ${dir} || exit 73`;
}

/**
 * Point 0 of a new protection: `base.new` becomes a hard link of the cached image (a copy when the
 * recovery folder is on another filesystem). Prints how (`link`, `copy`, `none`), the cache
 * entry's record read before and after the link (base64: the link is trusted only when both are
 * the same text), the link's size and mtime, and the image's format; a copy is also checksummed.
 */
export function linkBaseScript(
  guard: Guard,
  dir: string,
  cacheDir: string,
  image: string,
  algorithm: string,
): ShellScript {
  const entry = `${cacheDir}/${image}.onestor.json`;
  const cached = `${cacheDir}/${image}`;
  return sh`${guarded(guard, { write: [dir, `${dir}/base.new`] })}
${PRELUDE}
mkdir -p -- ${dir} && cd -- ${dir} || exit 73
rm -f -- base.new
e1=""
[ -f ${entry} ] && e1=$(base64 -w0 <${entry})
how=none
if [ -f ${cached} ] && [ -n "$e1" ]; then
  if ln -- ${cached} base.new 2>/dev/null; then how=link
  elif cp --sparse=always -- ${cached} base.new; then how=copy
  else rm -f -- base.new
  fi
fi
e2=""
[ -f ${entry} ] && e2=$(base64 -w0 <${entry})
echo "ONESTOR_HOW=$how"
echo "ONESTOR_ENTRY1=$e1"
echo "ONESTOR_ENTRY2=$e2"
[ "$how" = none ] && exit 0
stat -c 'ONESTOR_STAT=%s,%Y' -- base.new
echo "ONESTOR_FORMAT=$(fmt_of base.new)"
if [ "$how" = copy ]; then echo "ONESTOR_SUM=$(${sumProgram(algorithm)} <base.new | cut -d' ' -f1)"; fi`;
}

/**
 * Makes `base.new` point 0: renamed to `base`, with the empty overlay `merged` (qcow2, the disk's
 * virtual size, backing `base`) on it; prints the overlay's checksum and size. With `keep` false
 * `base.new` is removed instead (the link could not be trusted).
 */
export function makeBaseScript(
  guard: Guard,
  dir: string,
  keep: boolean,
  baseFormat: string,
  virtualSize: number,
  algorithm: string,
): ShellScript {
  if (!keep) {
    return sh`${guarded(guard, { remove: [`${dir}/base.new`] })}
cd -- ${dir} && rm -f -- base.new`;
  }
  return sh`${
    guarded(guard, { write: [`${dir}/${BASE_FILE}`, `${dir}/${MERGED_FILE}`], remove: [`${dir}/base.new`] })
  }
${PRELUDE}
cd -- ${dir} || exit 73
mv -f -- base.new ${BASE_FILE} || fail 'Cannot rename base.new'
rm -f -- ${MERGED_FILE}
qemu-img create -q -f qcow2 -b ${BASE_FILE} -F ${baseFormat} -- ${MERGED_FILE} ${virtualSize} ||
  fail 'Cannot create the overlay of the base'
echo "ONESTOR_SIZE=$(stat -c %s -- ${MERGED_FILE})"
echo "ONESTOR_SUM=$(${sumProgram(algorithm)} <${MERGED_FILE} | cut -d' ' -f1)"`;
}

/** What {@linkcode finalizeScript} checks. */
export interface FinalizeRequest {
  dir: string;
  /** The received point file. */
  file: string;
  /** The file it is an increment on (null: standalone). */
  parent: string | null;
  /** Format of the parent. */
  parentFormat: string;
  algorithm: string;
}

/**
 * A received point file made part of the chain: its backing set to `parent` (metadata only, the
 * file came without one), checked by `qemu-img check`, then measured (virtual size, own data) and
 * checksummed. Nothing else changes: the record is written by the front-end afterwards.
 */
export function finalizeScript(guard: Guard, request: FinalizeRequest): ShellScript {
  const rebase = request.parent === null
    ? sh`:`
    : sh`qemu-img rebase -q -u -f qcow2 -b ${request.parent} -F ${request.parentFormat} -- "$f" ||
  fail "Cannot chain $f to ${request.parent}"`;
  return sh`${guarded(guard, { write: [`${request.dir}/${request.file}`] })}
${PRELUDE}
cd -- ${request.dir} || exit 73
f=${request.file}
[ -f "$f" ] || fail "The received file $f is missing"
[ "$(fmt_of "$f")" = qcow2 ] || fail "The received file $f is not a qcow2 image"
${rebase}
qemu-img check -q -f qcow2 -- "$f" >/dev/null 2>&1 || fail "The received file $f is not a consistent qcow2 image"
echo "ONESTOR_VSIZE=$(vsize_of "$f")"
echo "ONESTOR_DATA=$(data_of "$f")"
echo "ONESTOR_SIZE=$(stat -c %s -- "$f")"
echo "ONESTOR_SUM=$(${sumProgram(request.algorithm)} <"$f" | cut -d' ' -f1)"
${failpoint("commit")}`;
}

/**
 * One merge step: the increment `from` committed into its backing file `into` (only `from`'s
 * clusters are written; `-d` keeps `from` whole, so the chains above read the same bytes until it
 * is removed), `above` re-chained onto `into` (its header changes: it is checksummed again too),
 * `into` checked and checksummed. Safe to run again
 * after an interruption: committing the same clusters twice gives the same file.
 */
export function mergeScript(
  guard: Guard,
  dir: string,
  from: string,
  into: string,
  above: string,
  intoFormat: string,
  algorithm: string,
): ShellScript {
  const grow = sh`want=$(vsize_of ${from}); have=$(vsize_of ${into})
if [ -n "$want" ] && [ -n "$have" ] && [ "$have" -lt "$want" ]; then
  qemu-img resize -q -f ${intoFormat} -- ${into} "$want" || fail ${`Cannot grow ${into}`}
fi`;
  const check = intoFormat === "qcow2"
    ? sh`qemu-img check -q -f qcow2 -- ${into} >/dev/null 2>&1 || fail ${`${into} is not consistent after the merge`}`
    : sh`:`;
  return sh`${guarded(guard, { write: [`${dir}/${into}`, `${dir}/${above}`] })}
${PRELUDE}
cd -- ${dir} || exit 73
${failpoint("merge")}
if [ -f ${from} ]; then
  ${grow}
  qemu-img commit -q -d -f qcow2 -- ${from} || fail ${`Cannot merge ${from} into ${into}`}
fi
qemu-img rebase -q -u -f qcow2 -b ${into} -F ${intoFormat} -- ${above} || fail ${`Cannot chain ${above} to ${into}`}
${check}
echo "ONESTOR_SIZE=$(stat -c %s -- ${into})"
echo "ONESTOR_SUM=$(${sumProgram(algorithm)} <${into} | cut -d' ' -f1)"
echo "ONESTOR_ABOVE_SIZE=$(stat -c %s -- ${above})"
echo "ONESTOR_ABOVE_SUM=$(${sumProgram(algorithm)} <${above} | cut -d' ' -f1)"`;
}

/** Removes files of the folder (names from the record or its listing). */
export function removeScript(guard: Guard, dir: string, names: readonly string[]): ShellScript {
  if (names.length === 0) return sh`:`;
  return sh`${guarded(guard, { remove: names.map((n) => `${dir}/${n}`) })}
cd -- ${dir} || exit 0
rm -rf -- ${names}`;
}

/** A file of a chain with the checksum the record holds for it. */
export interface ChainSum {
  name: string;
  sum: string;
}

/** What {@linkcode rebuildScript} rebuilds. */
export interface RebuildRequest {
  dir: string;
  /** The point's chain, bottom first, with the recorded checksums. */
  chain: ChainSum[];
  algorithm: string;
  /** Folder (inside `dir`) the rebuilt disk is written to, and its file name. */
  outDir: string;
  outName: string;
  /** Format to write (the disk's). */
  format: string;
}

/**
 * A point rebuilt as one standalone disk in the disk's format: every file of its chain is checked
 * against its recorded checksum first, the chain is converted (holes stay holes), and the result
 * is compared with the chain by `qemu-img compare` before anyone gets it.
 */
export function rebuildScript(guard: Guard, request: RebuildRequest): ShellScript {
  const top = request.chain[request.chain.length - 1].name;
  const sums = request.chain.map((c) => `${c.sum}  ${c.name}`).join("\n") + "\n";
  const out = `${request.outDir}/${request.outName}`;
  return sh`${guarded(guard, { write: [`${request.dir}/${request.outDir}`] })}
${PRELUDE}
cd -- ${request.dir} || fail ${`The recovery folder ${request.dir} does not exist`}
if ! bad=$(printf '%s' ${sums} | ${sumProgram(request.algorithm)} -c --quiet 2>&1); then
  fail "Recovery files do not match their recorded checksums: $(printf '%s' "$bad" | tr '\\n' ' ')"
fi
rm -rf -- ${request.outDir} && mkdir -- ${request.outDir} || exit 73
topfmt=$(fmt_of ${top})
qemu-img convert -q -f "$topfmt" -O ${request.format} -- ${top} ${out} ||
  { rm -rf -- ${request.outDir}; fail 'Cannot rebuild the disk from its recovery files'; }
qemu-img compare -q -f "$topfmt" -F ${request.format} -- ${top} ${out} ||
  { rm -rf -- ${request.outDir}; fail 'The rebuilt disk differs from its recovery point'; }
echo "ONESTOR_VSIZE=$(vsize_of ${out})"
echo "ONESTOR_ALLOCATED=$(du -B1 -- ${out} | cut -f1)"
${failpoint("restore")}`;
}

/** Only the checksum check of a chain (`onestor recovery restore --point` checks the point it selects). */
export function verifyChainScript(dir: string, chain: ChainSum[], algorithm: string): ShellScript {
  const sums = chain.map((c) => `${c.sum}  ${c.name}`).join("\n") + "\n";
  return sh`cd -- ${dir} || { echo ${`The recovery folder ${dir} does not exist`} >&2; exit 1; }
if ! bad=$(printf '%s' ${sums} | ${sumProgram(algorithm)} -c --quiet 2>&1); then
  echo "Recovery files do not match their recorded checksums: $(printf '%s' "$bad" | tr '\\n' ' ')" >&2
  exit 1
fi`;
}
