/**
 * Wide pipes for the data path. Every byte of a copy crosses pipes: tar → ssh on the sender,
 * sshd → tar on the receiver, and on the replica's cut-through also a tee to the cache and to the
 * next hop. A Linux pipe holds 64 KiB by default, and its reader here takes 8 KiB (tee) or 64 KiB
 * (tar) at a time, so sshd, which keeps up to its 2 MiB channel window buffered, writes into the
 * pipe in small pieces and compacts its buffer after each: measured on this kind of machine, the
 * receiving end of a 1 GiB stream (sshd and tar) spent 2.9 s of CPU with a 64 KiB pipe and 1.9 s
 * with a 1 MiB one,
 * and a replica's cut-through (sshd → tee → tar and → ssh) took 18.6 CPU s with coreutils' tee
 * against 9.2 with the wide tee below (docs/benchmarks.md).
 *
 * Both need only perl (Essential on Debian, present on every OpenNebula host package set); a host
 * without it gets the default pipes and coreutils' `tee -p`, with the same results, only slower.
 *
 * @module
 */

import { raw, type ShellScript } from "../remote/shell.ts";

/** Linux's F_SETPIPE_SZ. */
const F_SETPIPE_SZ = 1031;
/**
 * Pipe size asked for: the default `/proc/sys/fs/pipe-max-size` (1 MiB), the most an unprivileged
 * user may ask; 256 KiB when that is refused (a lower maximum, or the user's pipe budget spent).
 */
const SIZES = "1048576, 262144";

const WIDEN = `sub w { my $h = shift; for my $s (${SIZES}) { last if fcntl($h, ${F_SETPIPE_SZ}, $s) } }`;

/**
 * Shell lines that widen the pipes on the named standard streams of the script that runs them
 * (a stream that is not a pipe is left alone). Never fails.
 */
export function widenPipes(...streams: ("STDIN" | "STDOUT")[]): ShellScript {
  const code = `${WIDEN} w(\\*${streams.join("); w(\\*")});`;
  return raw(`perl -e '${code}' 2>/dev/null || :`);
}

/**
 * A bash function `onestor_tee FIFO [SPOOL]` that copies its standard input to FIFO and to its
 * standard output like `tee -p`: an output that closes early is dropped and the rest continue; it
 * ends when its input ends or no output is left. With perl it moves 1 MiB per system call through
 * widened pipes; without, it is coreutils' `tee -p` and SPOOL is ignored.
 *
 * SPOOL (perl only) is a file that gets the same bytes, for other deployments to follow while the
 * stream arrives ({@linkcode followFunction}): the tee makes it read-only once it holds the whole
 * input. It is kept only when a follower asks for it (a file `SPOOL.want`) within the first 2 to 3
 * seconds; else it is dropped and removed with `SPOOL.pid`, so a deployment nobody follows writes
 * no second copy. A spool that cannot be written (a full disk) is dropped and never marked
 * complete; the other outputs go on.
 */
export function teeFunction(): ShellScript {
  const code = [
    `${WIDEN}`,
    `$SIG{PIPE} = "IGNORE";`,
    `open(my $f, ">", $ARGV[0]) or die "onestor_tee: $ARGV[0]: $!\\n";`,
    `my @o = ($f, \\*STDOUT); w($_) for \\*STDIN, @o;`,
    `my ($spool, $s) = ($ARGV[1] // "");`,
    `push @o, $s if $spool ne "" && open($s, ">>", $spool);`,
    `my $ask = time + 3;`,
    `my $b;`,
    `while (@o) {`,
    `  my $n = sysread(STDIN, $b, 1048576);`,
    `  die "onestor_tee: read: $!\\n" unless defined $n;`,
    `  last unless $n;`,
    `  @o = grep { my ($h, $off) = ($_, 0);`,
    `    while ($off < $n) { my $w = syswrite($h, $b, $n - $off, $off); last unless defined $w; $off += $w }`,
    `    $off == $n } @o;`,
    `  if ($s && $ask && time >= $ask) {`,
    `    if (-e "$spool.want") { $ask = 0 }`,
    `    else { @o = grep { $_ != $s } @o; close($s); undef $s; unlink($spool, "$spool.pid") }`,
    `  }`,
    `}`,
    `chmod(0400, $spool) if $s && grep { $_ == $s } @o;`,
  ].join("\n");
  return raw(`onestor_tee() {
  if command -v perl >/dev/null 2>&1; then perl -e '${code}' "$@"; else tee -p "$1"; fi
}`);
}

/**
 * A bash function `onestor_follow PID` that copies the spool on its standard input (a file
 * {@linkcode teeFunction} is writing) to its standard output while it grows, and ends with status
 * 0 once the spool is marked complete and all of it was copied. It fails (status 6) when the
 * writer PID is gone and the spool is not complete: the follower's receiver then sees a stream
 * without its trailer and refuses it. Needs perl (status 127 without).
 */
export function followFunction(): ShellScript {
  // It writes whole MiBs while it keeps pace with the writer (the rest once the spool is complete):
  // passing each bit of the spool on as it grows made every follower's ssh, the hypervisor's sshd
  // and tar move the stream in small pieces, and 16 followers' hypervisors spent ~20% more CPU than
  // for the same streams sent at full speed.
  const code = [
    `${WIDEN}`,
    `w(\\*STDOUT);`,
    `my ($pid, $b, $n) = ($ARGV[0], "");`,
    `sub out { my ($off, $len) = (0, length $b); while ($off < $len) { my $w = syswrite(STDOUT, $b, $len - $off, $off); exit 5 unless defined $w; $off += $w } $b = "" }`,
    `for (;;) {`,
    `  $n = sysread(STDIN, $b, 1048576 - length($b), length($b));`,
    `  exit 4 unless defined $n;`,
    `  if (length($b) >= 1048576) { out(); next }`,
    `  next if $n;`,
    `  if (!((stat(STDIN))[2] & 0200)) { out(); while (($n = sysread(STDIN, $b, 1048576))) { out() } exit(defined $n ? 0 : 4) }`,
    `  unless (kill(0, $pid)) { out(); exit 6 }`,
    `  select(undef, undef, undef, 0.02);`,
    `}`,
  ].join("\n");
  return raw(`onestor_follow() {
  command -v perl >/dev/null 2>&1 || return 127
  perl -e '${code}' "$1"
}`);
}
