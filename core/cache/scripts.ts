/**
 * The scripts a deployment runs on the replica: each does all the work of one step in one SSH
 * command, under the cache folder's lock where records change, so that a cache hit costs one
 * command (which also streams the disk to the hypervisor) and a miss two (look, then fill).
 *
 * - {@linkcode serveScript} ("serve"): makes the cache folder and its marker, applies pending
 *   invalidations, then checks the entry against the front-end image's identity and the promoted
 *   files' fingerprint; a valid entry is pinned and, in the same command, copied to the hypervisor
 *   (or left pinned for a hypervisor that pulls), then unpinned. While another process fills the
 *   entry it waits on that filler's wait lock (no polling from the front-end) and serves the entry
 *   the moment it is promoted. Otherwise it reports what it found (and, on a miss, the state of
 *   every cache folder of the replica, for eviction).
 * - {@linkcode fillScript} ("fill"): under the lock, checks that nothing changed since "serve"
 *   looked, applies the evictions the front-end planned, takes the lease; then receives the
 *   front-end's stream into the fill folder while forwarding it to the hypervisor (cut-through);
 *   then **promotes** the entry, still in the same command, only when the stream was complete
 *   (trailer, byte counts), the image did not change on the front-end while it was read, the lease
 *   is still this process's, and the record it replaces is still the one seen: the record is
 *   written from the content checksums the front-end computed while sending, and a fingerprint of
 *   the promoted files.
 *
 * Records are judged and written as text (entry.ts fixes their layout): no JSON parser is needed
 * on the replica.
 *
 * @module
 */

import { confine, type Confinement } from "../remote/confine.ts";
import { quote, raw, sh, type ShellScript } from "../remote/shell.ts";
import { readTrailerFunction, TAR_BLOCKING, TAR_RECORD, TRAILER } from "../transfer/copy.ts";
import { sumsFunction } from "../transfer/hashes.ts";
import { followFunction, teeFunction, widenPipes } from "../transfer/pipes.ts";
import { entryName, FILL_PREFIX, leaseName, LOCK_NAME, LOG_NAME, PIN_INFIX, waitLockName } from "./entry.ts";
import { changeScript, type StoreChange } from "./store.ts";

/**
 * Shell functions shared by the replica scripts (bash). They run on every deployment, so they read
 * files and the clock with the shell's own builtins: on a busy replica each process (a `cat`, a
 * `sed`, a `date`, the fork of a `$(...)`) costs ~5-10 ms of CPU, and a serve used to start dozens.
 * - `onestor_slurp VAR FILE`: the whole text of FILE (no trailing newline) into VAR ("" if unreadable);
 * - `onestor_lease_fields FILE`: `_f_exp` and `_f_owner` of a lease or pin record ("" if absent);
 * - `onestor_ffp IMAGE`: the promoted files' fingerprint into `fp`;
 * - `onestor_nap SECONDS`: sleeps without starting a process (a read that times out);
 * - `onestor_live_pins IMAGE`: whether a deployment still copies from IMAGE;
 * - `onestor_record FILE`: prints a record for the front-end.
 */
export function prelude(): ShellScript {
  return raw(
    `onestor_slurp() { printf -v "$1" ''; IFS= read -r -d '' "$1" 2>/dev/null <"$2"; printf -v "$1" '%s' "\${!1%$'\\n'}"; }
onestor_lease_fields() {
  local _t _re_exp='"expires_at":([0-9]*)[}]$' _re_own='^[{][^}]*"owner":"([^"]*)"'
  onestor_slurp _t "$1"
  _f_exp= _f_owner=
  [[ $_t =~ $_re_exp ]] && _f_exp=\${BASH_REMATCH[1]}
  [[ $_t =~ $_re_own ]] && _f_owner=\${BASH_REMATCH[1]}
  return 0
}
onestor_ffp() {
  # One file and no .snap: one line, which sorting would not change.
  if [ -e "$1.snap" ] || [ -L "$1.snap" ] || [ -d "$1" ]; then
    read -r fp _ < <(find "$1" "$1.snap" -printf '%y %s %Ts %p\\n' 2>/dev/null | LC_ALL=C sort | sha256sum)
  else
    read -r fp _ < <(find "$1" -printf '%y %s %Ts %p\\n' 2>/dev/null | sha256sum)
  fi
}
onestor_nap() {
  [ -n "\${_nap_fd:-}" ] || exec {_nap_fd}<> <(:) || { sleep "$1"; return 0; }
  read -r -t "$1" -u "$_nap_fd" _ 2>/dev/null
  return 0
}
onestor_record() { printf 'ONESTOR_RECORD %s %s %s\\n' "$1" "$(stat -c %Y -- "$1")" "$(base64 -w0 <"$1")"; }
onestor_live_pins() {
  printf -v _n '%(%s)T' -1
  for _p in "$1"${PIN_INFIX}*; do
    [ -f "$_p" ] || continue
    onestor_lease_fields "$_p"
    [ "\${_f_exp:-0}" -gt "$_n" ] 2>/dev/null && return 0
  done
  return 1
}`,
  );
}

/** The lines that print the state of every cache folder under `parent` (for eviction). */
export function folderScanScript(parent: string): ShellScript {
  return sh`for d in ${raw(`${quote(parent.replace(/\/+$/, "") || "/")}/*/`)}; do
  [ "$(cat "$d.monitor" 2>/dev/null)" = replica ] || continue
  ( cd -- "$d" || exit 0
    printf 'ONESTOR_FOLDER %s\\n' "\${d%/}"
    echo "ONESTOR_NOW=$(date +%s)"
    df -B1 -P . | { read -r _; read -r _ total used avail _ && echo "ONESTOR_FS=$total,$used,$avail"; }
    for f in * .onestor-fill-*; do
      [ -e "$f" ] || [ -L "$f" ] || continue
      case "$f" in
      *.tmp.*) ;;
      *.onestor.json | *.onestor-lease.json | *${raw(PIN_INFIX)}*) onestor_record "$f" ;;
      *)
        printf 'ONESTOR_ITEM %s|%s|%s\\n' "$(du -sB1 -- "$f" | cut -f1)" "$(stat -c %Y -- "$f")" "$f"
        case "$f" in
        .onestor-fill-*) ;;
        *.snap) stat -c 'ONESTOR_STAT %F|%s|%Y|%b|%B|%n' -- "$f" "$f"/* "$f"/.[!.]* 2>/dev/null ;;
        *) stat -c 'ONESTOR_STAT %F|%s|%Y|%b|%B|%n' -- "$f" ;;
        esac
        ;;
      esac
    done )
done`;
}

/** A pending invalidation to apply on the replica. */
export interface PendingInvalidation {
  /** The image path (its folder and name on the replica). */
  source: string;
  reason: string;
}

/**
 * Lines that remove the entries of `invalidations` (their files too, unless a deployment copies
 * from them: those are left to their reader and removed later as leftovers). Prints
 * `ONESTOR_INVALIDATED <source>` per image done (also when it was not cached).
 */
export function invalidationsScript(invalidations: readonly PendingInvalidation[]): ShellScript {
  if (invalidations.length === 0) return raw(":");
  const blocks = invalidations.map((inv) => {
    const slash = inv.source.lastIndexOf("/");
    const dir = inv.source.slice(0, slash) || "/";
    const image = inv.source.slice(slash + 1);
    return sh`( cd -- ${dir} 2>/dev/null || { echo ${`ONESTOR_INVALIDATED ${inv.source}`}; exit 0; }
  exec 7>>${LOCK_NAME} && flock -w 30 7 || exit 0
  pinned=false
  onestor_live_pins ${image} && pinned=true
  printf '{"at":%s,"event":"invalidate","image":%s,"source":%s,"reason":%s,"pinned":%s}\\n' "$(date +%s)" \\
    ${JSON.stringify(image)} ${JSON.stringify(inv.source)} ${
      JSON.stringify(inv.reason)
    } "$pinned" >>${LOG_NAME}
  rm -f -- ${entryName(image)}
  if [ "$pinned" = false ]; then rm -rf -- ${image} ${`${image}.snap`} ${`${image}.md5sum`}; fi
  echo ${`ONESTOR_INVALIDATED ${inv.source}`} )`;
  });
  return sh`${raw(blocks.map((b) => b.text).join("\n"))}`;
}

/** What {@linkcode serveScript} is asked to do. */
export interface ServeParams {
  /** The replica (named in a refusal) and where scripts may write there. */
  host: string;
  confine: Confinement;
  /** Cache folder on the replica. */
  dir: string;
  /** Image name (`<hash>`). */
  image: string;
  /** The record prefix of the front-end image's identity (recordPrefix), or null when unknown. */
  expect: string | null;
  /** The record head of the image version (recordHead): a record with it but another checksum needs the identity. */
  head: string;
  /**
   * The front-end already compared its identity in the record's algorithm: a record with the head
   * but not `expect` holds other content (a miss), not a question.
   */
  identityChecked?: boolean;
  /** This process's owner id (its own lease is not waited for). */
  owner: string;
  /** Pin: file name and text up to `expires_at`; null to only look (no pin, no copy). */
  pin: { name: string; prefix: string } | null;
  leaseSeconds: number;
  /** Longest wait in this command for a live lease of another process (seconds). */
  waitSeconds: number;
  /**
   * The entry's content sums (the front-end image's identity): the pinned entry's files are re-read
   * and compared with them on every use when `verifyEveryUse`, else on the first use after each
   * start of the replica (see {@linkcode rebootedScript}). Null: never.
   */
  verify: { algorithm: string; sums: Record<string, string> } | null;
  /** REPLICA_CACHE_VERIFY=checksum: compare on every use. */
  verifyEveryUse?: boolean;
  /** The copy to run while the entry is pinned (a sender piped into the hypervisor); null: leave it pinned. */
  copy: ShellScript | null;
  /** Invalidations of this front-end's journal for this replica. */
  invalidations: readonly PendingInvalidation[];
  /** Parent of the cache folders, scanned on a miss for eviction (null: no scan). */
  scan: string | null;
  /**
   * On a miss with no live lease of another process, take the fill lease (its text up to
   * `acquired_at`), so that of many deployments that miss at once exactly one fills and the
   * others wait; null: do not (a look only).
   */
  lease: { prefix: string } | null;
  /**
   * Follow a fill of the same image by another deployment of the same front-end instead of waiting
   * for its end: the stream is read from the fill's spool as it arrives and piped into `script`
   * (the hop into the hypervisor's receiver). Null: wait.
   */
  join: { script: ShellScript; frontend: string; source: string } | null;
}

/**
 * The lines of the serve loop that follow another deployment's fill (see ServeParams.join): taken
 * when the lease is this front-end's and for the same source and its spool is there (the follower
 * asks the filler to keep its spool, and waits for a filler that has not started its fill yet
 * while that filler's lease runs, at most 30 s: a filler slowed down by a busy front-end still
 * finds the request when its tee starts); else the deployment waits for the fill's end as without
 * a spool.
 */
function joinScript(join: { script: ShellScript; frontend: string; source: string }): ShellScript {
  return sh`onestor_slurp ltext "$lease"
    if [[ $lowner == ${`${join.frontend}:`}* ]] && [[ $ltext == *${`"source":${
    JSON.stringify(join.source)
  },`}* ]]; then
      lfill=
      [[ $ltext =~ $re_fill ]] && lfill=\${BASH_REMATCH[1]}
      spool=.onestor-spool-\${lfill#.onestor-fill-}
      # Once per command: wait for a filler that has not started its fill yet (it makes its spool,
      # then its fill folder) while its lease runs (renewed only once the fill runs), at most 30 s.
      # Without the folder lock: the filler renews its lease under it.
      if [ -n "$lfill" ] && [ -z "$joinwaited" ]; then
        joinwaited=1
        # Ask the filler to keep its spool (it drops one nobody asked for in its first seconds).
        onestor_confine write "$PWD/$spool.want"
        : >"$spool.want" 2>/dev/null
        i=0
        while [ ! -e "$spool.pid" ] && [ ! -d "$lfill" ] && [ $i -lt 300 ] && [ -e "$lease" ]; do
          printf -v jnow '%(%s)T' -1
          [ "$jnow" -lt "\${lexp:-0}" ] || break
          onestor_nap 0.1
          i=$((i + 1))
        done
      fi
      spid=
      [ -z "$lfill" ] || onestor_slurp spid "$spool.pid"
      if [ -n "$spid" ] && { exec 7<"$spool"; } 2>/dev/null; then
        # Ask again: another follower that gave up may have taken the request back.
        [ -e "$spool.want" ] || { onestor_confine write "$PWD/$spool.want"; : >"$spool.want"; } 2>/dev/null
        echo "ONESTOR_NOW=$now"
        echo "ONESTOR_JOINED $lowner"
        ( onestor_follow "$spid" <&7 | ${join.script} )
        joinrc=$?
        exec 7<&-
        # A filler already gone left no one to remove the request.
        [ -e "$spool.pid" ] || rm -f -- "$spool.want"
        echo "ONESTOR_SERVE joined rc=$joinrc"
        exit 0
      fi
      rm -f -- "$spool.want"
    fi`;
}

/** Keeps this process's pin alive while a command runs, then removes it (the entry's last use is touched). */
export function pinnedScript(
  params: { image: string; pin: { name: string; prefix: string }; leaseSeconds: number },
  body: ShellScript,
): ShellScript {
  const renew = Math.max(1, Math.floor(params.leaseSeconds / 3));
  return sh`pin=${params.pin.name}
pinp=${params.pin.prefix}
# The renewer keeps no descriptor of the script: its sleeping would hold the command's output
# open (and the lock descriptors' locks) after it is killed.
( exec 8>&- 9>&- </dev/null >/dev/null 2>&1
  while sleep ${renew}; do
    { flock -w 10 9 || continue
      printf -v rnow '%(%s)T' -1
      [ -f "$pin" ] && printf '%s%s}' "$pinp" "$((rnow + ${params.leaseSeconds}))" >"$pin.tmp" && mv -f "$pin.tmp" "$pin"
    } 9>>${LOCK_NAME}
  done ) &
renewer=$!
( ${body}
)
copyrc=$?
kill "$renewer" 2>/dev/null
{ flock -w 30 9; rm -f -- "$pin"; touch -c -- ${entryName(params.image)}; } 9>>${LOCK_NAME}`;
}

/** Reads the replica's boot id into `$boot` (empty when it cannot be read): no process is started. */
const READ_BOOT = `boot=; read -r boot </proc/sys/kernel/random/boot_id 2>/dev/null || :`;
/**
 * Sets `$newboot` when the record text in `$text` was written or last verified in another boot
 * than this one (`$boot`), so the serve script tests it once.
 */
const SET_NEW_BOOT = `newboot=; [ -n "$boot" ] && [[ $text != *'"boot":"'"$boot"'"'* ]] && newboot=1`;

/**
 * After a successful content check, the record of an entry written or verified in an earlier boot
 * of the replica is stamped with this boot's id (`"boot"`, its last key), so that the entry is
 * re-read only once per boot.
 *
 * Why: a promotion renames files whose data may still be in the page cache. After a crash of the
 * replica, such a file can have its size and mtime but not its bytes (ext4 leaves unwritten blocks
 * reading as zeros), and the size-and-mtime check of a hit would serve it. Forcing every fill to
 * disk before its promotion would put the disk's write time into every cold deployment; a content
 * check on the first use after each start of the replica costs one read per entry per restart and
 * nothing on the way of a deployment otherwise.
 */
function rebootedScript(): ShellScript {
  return sh`if [ -n "$newboot" ]; then
  if flock -w 30 9; then
    onestor_slurp cur "$rec"
    if [ "$cur" = "$text" ]; then
      new=\${text%\\}}
      new=\${new%,'"boot":"'*'"'}
      printf '%s,"boot":"%s"}' "$new" "$boot" >"$rec.tmp.$$" && mv -f -- "$rec.tmp.$$" "$rec"
      printf '{"at":%(%s)T,"event":"reverify","image":"%s"}\\n' -1 "$img" >>${LOG_NAME}
    fi
    flock -u 9
  fi
fi`;
}

/** The "serve" script (see the module doc). Prints `ONESTOR_SERVE <outcome> ...` lines. */
export function serveScript(p: ServeParams): ShellScript {
  const sumsText = p.verify
    ? Object.keys(p.verify.sums).sort().map((n) => `${p.verify!.sums[n]}  ${n}\n`).join("")
    : "";
  const pinWrite = p.pin
    ? sh`printf '%s%s}' ${p.pin.prefix} "$((now + ${p.leaseSeconds}))" >${`${p.pin.name}.tmp`} &&
      mv -f -- ${`${p.pin.name}.tmp`} ${p.pin.name} || exit 74
    touch -c -- "$rec"
    flock -u 9
    break`
    : sh`flock -u 9
    echo "ONESTOR_SERVE hit"
    exit 0`;
  const afterPin = p.pin === null ? raw(":") : sh`${
    p.verify
      ? sh`${raw(SET_NEW_BOOT)}
if ${p.verifyEveryUse ? raw("true") : raw(`[ -n "$newboot" ]`)}; then
${sumsFunction()}
t=$(mktemp -d) || exit 70
trap 'rm -rf "$t"' EXIT
got=$(onestor_sums ${p.verify.algorithm} ${Object.keys(p.verify.sums).sort()} 2>"$t/sumerr" | LC_ALL=C sort)
want=${sumsText.trimEnd()}
verdict=
if grep -q ONESTOR_NO_HASH "$t/sumerr"; then verdict=${`nohash ${p.verify.algorithm}`}
elif [ "$got" != "$(printf '%s\n' "$want" | LC_ALL=C sort)" ]; then
  verdict="bad content checksum mismatch on the replica"
  [ -z "$newboot" ] || verdict="$verdict (first use since the replica started)"
fi
if [ -n "$verdict" ]; then
  flock -w 30 9 || true
  rm -f -- ${p.pin!.name}
  if ! onestor_live_pins "$img"; then
    printf '{"at":%(%s)T,"event":"drop","image":"%s","why":"%s"}\n' -1 "$img" "$verdict" >>${LOG_NAME}
    rm -rf -- "$rec" "$img" "$img.snap"
  fi
  flock -u 9
  echo "ONESTOR_SERVE $verdict"
  exit 0
fi
${rebootedScript()}
fi`
      : raw(":")
  }
${
    p.copy
      ? sh`${pinnedScript({ image: p.image, pin: p.pin!, leaseSeconds: p.leaseSeconds }, p.copy)}
echo "ONESTOR_SERVE hit rc=$copyrc"
exit 0`
      : sh`echo "ONESTOR_SERVE pinned"
exit 0`
  }`;
  const writes = [`${p.dir}/.monitor`, `${p.dir}/${entryName(p.image)}`, `${p.dir}/${leaseName(p.image)}`];
  if (p.pin) writes.push(`${p.dir}/${p.pin.name}`);
  const removes = p.invalidations.map((i) => i.source);
  return sh`set -o pipefail
${confine(p.confine, p.host, { write: writes, remove: removes })}
${prelude()}
${p.join ? followFunction() : raw(":")}
img=${p.image}
rec=${entryName(p.image)}
lease=${leaseName(p.image)}
expect=${p.expect ?? ""}
head=${p.head}
${raw(READ_BOOT)}
cd -- ${p.dir} 2>/dev/null || { mkdir -p -- ${p.dir} && cd -- ${p.dir}; } || exit 73
onestor_slurp mark .monitor
if [ "$mark" != replica ]; then
  printf 'replica\\n' >.monitor.tmp.$$ && mv -f .monitor.tmp.$$ .monitor || exit 73
fi
${invalidationsScript(p.invalidations)}
exec 9>>${LOCK_NAME} || exit 73
exec 8>>${waitLockName(p.image)} || exit 73
printf -v now '%(%s)T' -1
deadline=$((now + ${p.waitSeconds}))
re_fill='"fill":"(\\.onestor-fill-[^"/]*)"'
waited=
while :; do
  flock -w 30 9 || { echo "ONESTOR_SERVE busy"; exit 0; }
  printf -v now '%(%s)T' -1
  state=absent
  if [ -f "$rec" ]; then
    onestor_slurp text "$rec"
    if [ -n "$expect" ] && [[ $text == "$expect"* ]]; then
      onestor_ffp "$img"
      if [[ $text == *"\\"files_fp\\":\\"$fp\\""* ]]; then state=valid; else state=broken; fi
    elif [[ $text == "$head"* ]]; then state=${p.identityChecked ? raw("changed") : raw("identity")}
    else state=changed
    fi
  fi
  if [ $state = valid ]; then
    ${pinWrite}
  fi
  if [ $state = identity ]; then
    echo "ONESTOR_NOW=$now"
    echo "ONESTOR_SERVE identity"
    onestor_record "$rec"
    flock -u 9
    exit 0
  fi
  lexp=0
  lowner=
  if [ -f "$lease" ]; then onestor_lease_fields "$lease"; lexp=$_f_exp lowner=$_f_owner; fi
  if [ "\${lexp:-0}" -gt "$now" ] && [ "$lowner" != ${p.owner} ]; then
    flock -u 9
    ${p.join ? joinScript(p.join) : raw(":")}
    if [ "$now" -ge "$deadline" ]; then
      echo "ONESTOR_NOW=$now"
      echo "ONESTOR_SERVE wait $lowner"
      exit 0
    fi
    [ -n "$waited" ] || { echo "ONESTOR_WAITING $lowner"; waited=$now; }
    # Woken when the filler ends (it holds the wait lock while it fills); a filler that is not
    # holding it (starting, or dead with its lease still running) is looked at again shortly.
    flock -s -w "$((deadline - now))" 8 && flock -u 8
    onestor_nap 0.2
    continue
  fi
  echo "ONESTOR_NOW=$now"
  echo "ONESTOR_SERVE miss $state"
  [ -f "$rec" ] && onestor_record "$rec"
  [ -f "$lease" ] && onestor_record "$lease"
  ${
    p.lease
      ? sh`oldfill=
  if [ -f "$lease" ]; then
    onestor_slurp ltext "$lease"
    [[ $ltext =~ $re_fill ]] && oldfill=\${BASH_REMATCH[1]}
    printf '{"at":%s,"event":"lease-takeover","image":"%s","owner":%s,"from":"%s"}\\n' "$now" "$img" \\
      ${JSON.stringify(p.owner)} "$lowner" >>${LOG_NAME}
  fi
  printf '%s%s,"expires_at":%s}' ${p.lease.prefix} "$now" "$((now + ${p.leaseSeconds}))" >"$lease.tmp.$$" &&
    mv -f -- "$lease.tmp.$$" "$lease" || exit 74
  [ -z "$oldfill" ] || rm -rf -- "$oldfill"
  echo "ONESTOR_LEASE $now"`
      : raw(":")
  }
  flock -u 9
  ${p.scan === null ? raw(":") : folderScanScript(p.scan)}
  exit 0
done
printf -v end '%(%s)T' -1
[ -z "$waited" ] || echo "ONESTOR_WAITED $((end - waited))"
${afterPin}`;
}

/** A forward of the fill stream to the hypervisor. */
export type FillForward =
  /** The replica connects to the hypervisor and runs this (a receiver behind a hop). */
  | { kind: "push"; script: ShellScript }
  /** The hypervisor pulls through a named pipe in the cache folder (REPLICA_STORAGE_IP of the replica). */
  | { kind: "pull"; fifo: string; connectSeconds: number };

/** What {@linkcode fillScript} is asked to do. */
export interface FillParams {
  /** The replica (named in a refusal) and where scripts may write there. */
  host: string;
  confine: Confinement;
  dir: string;
  image: string;
  /** Fill folder name. */
  fill: string;
  /** When "serve" took the lease for this process: nothing is done unless it is still ours. */
  acquired: number;
  /** The record text seen by "serve" (null: absent): nothing is done if it changed. */
  expectRecord: string | null;
  /** Lease text up to its `acquired_at` value (leasePrefix). */
  leasePrefix: string;
  leaseSeconds: number;
  /** Evictions planned by the front-end, each a conditional change in its own folder. */
  evictions: readonly { dir: string; change: StoreChange }[];
  /** Event log line of the fill start (JSON). */
  startLog: string;
  /** The record to write: head with the algorithm, who filled it, the image size, sorted names. */
  record: {
    /** The image path (for the event log). */
    source: string;
    head: string;
    algorithm: string;
    filledBy: string;
    size: number;
    /** Regular files, sorted as their sums arrive from the front-end. */
    sumNames: readonly string[];
    /** Every file of the entry (image, `.snap`, what it holds), sorted. */
    files: readonly string[];
  };
  forward: FillForward | null;
  /** Decompression of the incoming stream ("" when none). */
  decompress: string;
  /**
   * Bytes the entry will take: with a forward, the stream is also kept in a spool file (for other
   * deployments of this front-end to follow, see {@linkcode serveScript}) when the folder has room
   * for twice this and 256 MiB more. 0: never.
   */
  spoolBytes: number;
}

/** The spool of a fill folder: the stream as it arrives, for followers. */
export function spoolName(fill: string): string {
  return `.onestor-spool-${fill.slice(FILL_PREFIX.length)}`;
}

/** The "fill" script (see the module doc). Reads the front-end's stream on stdin. */
export function fillScript(p: FillParams): ShellScript {
  const json = (s: string) => JSON.stringify(s);
  const sumKeys = p.record.sumNames.map(json);
  const fileKeys = p.record.files.map(json);
  // An eviction in this folder runs under the lock this script holds; one in another cache folder
  // of the replica takes that folder's lock.
  const evictions = p.evictions.map((e) =>
    e.dir === p.dir
      ? sh`( ${changeScript(e.change, sh`exit 3`)} ) ||
  { flock -u 9; echo "ONESTOR_FILL conflict an evicted entry changed"; exit 0; }`
      : sh`( cd -- ${e.dir} || exit 3
  exec 7>>${LOCK_NAME} && flock -w 30 7 || exit 3
  ${
        changeScript(e.change, sh`exit 3`)
      } ) || { flock -u 9; echo "ONESTOR_FILL conflict an evicted entry changed"; exit 0; }`
  );
  const forward = p.forward;
  let branch: ShellScript;
  if (forward?.kind === "push") {
    branch = sh`mkfifo "$t/f" || exit 70
( bash -c ${forward.script.text} <"$t/f" >"$t/fout" 2>"$t/ferr"; echo $? >"$t/frc" ) &
fwd=$!
onestor_tee "$t/f" $spool | ${
      raw(p.decompress ? `${p.decompress} | ` : "")
    }tar -b ${TAR_BLOCKING} -x -i -f - --totals -C "$fill" 2>"$t/err"
xrc=$?
wait $fwd`;
  } else if (forward?.kind === "pull") {
    branch = sh`fifo=${forward.fifo}
rm -f -- "$fifo" "$fifo.connected" && mkfifo -- "$fifo" || exit 70
# A hypervisor that never comes would block the stream: after the connect time, drain it here.
( exec 8>&- 9>&- </dev/null >/dev/null 2>&1
  sleep ${forward.connectSeconds}; [ -e "$fifo.connected" ] || { echo never >"$t/fnever"; cat -- "$fifo" >/dev/null; } ) &
wd=$!
onestor_tee "$fifo" $spool | ${
      raw(p.decompress ? `${p.decompress} | ` : "")
    }tar -b ${TAR_BLOCKING} -x -i -f - --totals -C "$fill" 2>"$t/err"
xrc=$?
kill "$wd" 2>/dev/null
rm -f -- "$fifo" "$fifo.connected"
[ -e "$t/fnever" ] && echo "ONESTOR_FORWARD never connected"`;
  } else {
    branch = sh`${
      raw(p.decompress ? `${p.decompress} | ` : "")
    }tar -b ${TAR_BLOCKING} -x -i -f - --totals -C "$fill" 2>"$t/err"
xrc=$?`;
  }
  const spool = spoolName(p.fill);
  const writes = [
    p.fill,
    p.image,
    `${p.image}.snap`,
    entryName(p.image),
    leaseName(p.image),
    spool,
    `${spool}.pid`,
    `${spool}.want`,
  ].map((n) => `${p.dir}/${n}`);
  const removes = p.evictions.flatMap((e) =>
    e.change.ops.flatMap((o) => o.op === "remove" ? [`${e.dir}/${o.name}`] : [])
  );
  return sh`set -o pipefail
${confine(p.confine, p.host, { write: writes, remove: removes })}
${prelude()}
${readTrailerFunction()}
${teeFunction()}
${widenPipes("STDIN")}
img=${p.image}
rec=${entryName(p.image)}
lease=${leaseName(p.image)}
fill=${p.fill}
leasep=${p.leasePrefix}
cd -- ${p.dir} || exit 73
spool=
${
    p.forward && p.spoolBytes > 0
      ? sh`if command -v perl >/dev/null 2>&1; then
  avail=$(df -B1 -P . | awk 'NR == 2 { print $4 }')
  [ "\${avail:-0}" -gt ${2 * p.spoolBytes + 268435456} ] 2>/dev/null && spool=${spool}
fi`
      : raw(":")
  }
t=$(mktemp -d) || exit 70
trap 'rm -rf "$t"; [ -z "$spool" ] || rm -f -- "$spool" "$spool.pid" "$spool.want"' EXIT
trap 'exit 143' TERM INT HUP
exec 9>>${LOCK_NAME} || exit 73
exec 8>>${waitLockName(p.image)} || exit 73
flock -w 30 9 || { echo "ONESTOR_FILL conflict the cache lock stayed busy"; exit 0; }
acq=${p.acquired}
ours() { onestor_slurp ltext "$lease"; [[ $ltext == "$leasep$acq,"* ]]; }
ours || { flock -u 9; echo "ONESTOR_FILL conflict the lease is no longer this process's"; exit 0; }
${
    p.expectRecord === null
      ? sh`[ ! -e "$rec" ] || { flock -u 9; echo "ONESTOR_FILL conflict the record changed"; exit 0; }`
      : sh`onestor_slurp rtext "$rec"
[ -f "$rec" ] && [ "$rtext" = ${p.expectRecord} ] ||
  { flock -u 9; echo "ONESTOR_FILL conflict the record changed"; exit 0; }`
  }
${raw(evictions.map((e) => e.text).join("\n"))}
printf -v now '%(%s)T' -1
printf '%s' "$leasep$acq,\\"expires_at\\":$((now + ${p.leaseSeconds}))}" >"$lease.tmp.$$" &&
  mv -f -- "$lease.tmp.$$" "$lease" || exit 74
rm -rf -- "$fill"
printf '%s\\n' ${p.startLog} >>${LOG_NAME} 2>/dev/null
flock -u 9
flock -w 30 8 || true
echo "ONESTOR_FILL started"
( exec 8>&- 9>&- </dev/null >/dev/null 2>&1
  while sleep ${Math.max(1, Math.floor(p.leaseSeconds / 3))}; do
    { flock -w 10 9 || continue
      printf -v rnow '%(%s)T' -1
      ours && printf '%s' "$leasep$acq,\\"expires_at\\":$((rnow + ${p.leaseSeconds}))}" >"$lease.tmp.r" &&
        mv -f -- "$lease.tmp.r" "$lease"
    } 9>>${LOCK_NAME}
  done ) &
renewer=$!
# The spool and its writer's pid exist before the fill folder: a follower that finds the folder
# without them knows this fill keeps no spool.
if [ -n "$spool" ]; then { : >"$spool" && echo $$ >"$spool.pid"; } 2>/dev/null || spool=; fi
mkdir -- "$fill" || exit 73
${branch}
kill "$renewer" 2>/dev/null
problem=
end="$fill/${TRAILER}"
onestor_read_trailer "$end" "$t/err"
sent=$t_bytes got=$t_got tb=$t_tb
sums=("\${t_sums[@]%%  *}")
names=("\${t_sums[@]#*  }")
if [ ! -f "$end" ]; then problem="the stream ended before the front-end finished (unpacking exit $xrc)"
elif [ "$t_rc" != 0 ]; then problem="the front-end's tar failed"
elif [ "$xrc" != 0 ]; then problem="unpacking failed (tar exit $xrc)"
elif [ "$t_changed" != 0 ]; then problem="the image changed on the front-end while it was copied"
elif [ "$t_sums_rc" != 0 ]; then problem="the front-end could not checksum the files it sent"
elif [ "$t_alg" != ${p.record.algorithm} ]; then problem="unexpected checksum algorithm"
else
  if [ -z "$sent" ] || [ -z "$got" ] || [ "$got" -lt $((sent + tb)) ] || [ "$got" -gt $((sent + tb + ${TAR_RECORD})) ]; then
    problem="read $got bytes for $sent sent"
  fi
fi
if [ -z "$problem" ]; then
  want=(${p.record.sumNames})
  keys=(${sumKeys})
  if [ "\${names[*]}" != "\${want[*]}" ] || [ \${#sums[@]} -ne \${#want[@]} ]; then
    problem="the front-end's checksums do not list the image's files"
  else
    sj=
    for i in "\${!keys[@]}"; do sj="$sj\${sj:+,}\${keys[$i]}:\\"\${sums[$i]}\\""; done
    read -r checksum _ < <({ printf '%s\\n' ${p.record.algorithm}; printf '%s\\n' "\${t_sums[@]}"; } | sha256sum)
    files=
    alloc=0
    fnames=(${p.record.files})
    fkeys=(${fileKeys})
    for i in "\${!fnames[@]}"; do
      f="$fill/\${fnames[$i]}"
      if ! [ -e "$f" ] && ! [ -L "$f" ]; then problem="\${fnames[$i]} is missing from the fill folder"; break; fi
      IFS='|' read -r kind size mtime blocks unit < <(stat -c '%F|%s|%Y|%b|%B' -- "$f")
      case $kind in regular*) ty=f ;; directory) ty=d ;; "symbolic link") ty=l ;; *) ty=f ;; esac
      a=$((blocks * unit))
      alloc=$((alloc + a))
      files="$files\${files:+,}{\\"name\\":\${fkeys[$i]},\\"type\\":\\"$ty\\",\\"size\\":$size,\\"mtime\\":$mtime,\\"allocated\\":$a}"
    done
  fi
fi
promoted=
if [ -z "$problem" ]; then
  flock -w 60 9 || problem="the cache lock stayed busy"
  if [ -z "$problem" ]; then
    if ! ours; then problem="another process took the fill lease over"
    elif ${
    p.expectRecord === null
      ? sh`[ -e "$rec" ]`
      : sh`! { onestor_slurp rtext "$rec"; [ -f "$rec" ] && [ "$rtext" = ${p.expectRecord} ]; }`
  }; then problem="the cache records changed meanwhile"
    elif onestor_live_pins "$img"; then problem="the previous entry is still being copied by a deployment"
    else
      printf -v now '%(%s)T' -1
      printf '{"at":%s,"event":"promote","image":"%s","source":%s,"owner":%s,"bytes":%s}\\n' "$now" "$img" \\
        ${json(p.record.source)} ${json(p.record.filledBy)} "$sent" >>${LOG_NAME} 2>/dev/null
      rm -rf -- "$rec" "$img" "$img.md5sum" "$img.snap" && mv -f -- "$fill/$img" "$img" &&
        { [ ! -e "$fill/$img.snap" ] || mv -f -- "$fill/$img.snap" "$img.snap"; } || exit 74
      onestor_ffp "$img"
      # The boot this entry was written in: its first use in another boot checks its content.
      ${raw(READ_BOOT)}
      bootkey=
      [ -z "$boot" ] || bootkey=",\\"boot\\":\\"$boot\\""
      record=${p.record.head}"\\"algorithm\\":\\"${
    raw(p.record.algorithm)
  }\\",\\"checksum\\":\\"$checksum\\",\\"sums\\":{$sj}},\\"files\\":[$files],\\"size\\":${p.record.size},\\"allocated\\":$alloc,\\"created_at\\":$now,\\"filled_by\\":"${
    json(p.record.filledBy)
  }",\\"files_fp\\":\\"$fp\\"$bootkey}"
      printf '%s' "$record" >"$rec.tmp.$$" && mv -f -- "$rec.tmp.$$" "$rec" || exit 74
      rm -f -- "$lease"
      rm -rf -- "$fill"
      promoted=1
    fi
    flock -u 9
  fi
fi
if [ -n "$promoted" ]; then
  echo "ONESTOR_FILL promoted bytes=$sent"
else
  echo "ONESTOR_FILL not-promoted $problem"
  { flock -w 30 9 && { ! ours || { rm -f -- "$lease"; rm -rf -- "$fill"; }; }; flock -u 9; } 2>/dev/null
fi
${
    forward?.kind === "push"
      ? raw(`cat "$t/fout"
echo "ONESTOR_FORWARD rc=$(cat "$t/frc" 2>/dev/null)"
sed 's/^/forward: /' "$t/ferr" | tail -n 4 >&2`)
      : raw(":")
  }
grep -v '^Total bytes read' "$t/err" | tail -n 3 | sed 's/^/replica: /' >&2
exit 0`;
}

/**
 * The command a pulling hypervisor runs on the replica (through its own SSH hop) to read the
 * cut-through stream: waits for the named pipe of the fill, marks itself connected, reads it.
 */
export function pullFifoScript(dir: string, fifo: string, waitSeconds: number): ShellScript {
  return sh`cd -- ${dir} || exit 66
i=0
while [ ! -p ${fifo} ]; do
  i=$((i + 1)); [ $i -le ${
    waitSeconds * 10
  } ] || { echo ${`No cut-through stream ${fifo} on the replica`} >&2; exit 66; }
  sleep 0.1
done
: >${`${fifo}.connected`}
exec <${fifo}
${widenPipes("STDIN", "STDOUT")}
exec cat`;
}
