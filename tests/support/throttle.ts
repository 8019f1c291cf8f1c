/**
 * A throttling TCP proxy for tests and benchmarks: used as an ssh `ProxyCommand`, it caps what the
 * client sends to `rate` bytes per second, so a lab link behaves like a slow edge link.
 *
 * @module
 */

/** The proxy, a perl script (perl is on every Debian machine): `perl throttle.pl HOST PORT RATE`. */
export const THROTTLE_PL: string =
  `use strict; use IO::Socket::INET; use IO::Select; use Time::HiRes qw(time sleep);
my ($host, $port, $rate) = @ARGV;
my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp') or die "connect: $!";
binmode STDIN; binmode STDOUT;
my $sel = IO::Select->new(\\*STDIN, $s);
my $next = time;
sub put { my ($fh, $buf) = @_; my $off = 0; while ($off < length $buf) { my $w = syswrite($fh, $buf, length($buf) - $off, $off); exit 0 unless defined $w; $off += $w } }
while (my @ready = $sel->can_read) {
  for my $fh (@ready) {
    my $n = sysread($fh, my $buf, 16384);
    if (!$n) { exit 0 if $fh == $s; shutdown($s, 1); $sel->remove(\\*STDIN); next }
    if ($fh == $s) { put(\\*STDOUT, $buf); next }
    my $now = time; $next = $now if $next < $now; sleep($next - $now) if $next > $now; $next += $n / $rate;
    put($s, $buf);
  }
}
`;

/** Writes the proxy into `dir` and returns a function giving the ssh options for a link of `bytesPerSecond`. */
export async function throttleOptions(dir: string): Promise<(bytesPerSecond: number) => string> {
  const path = `${dir}/throttle.pl`;
  await Deno.writeTextFile(path, THROTTLE_PL);
  return (bytesPerSecond: number) => `-o 'ProxyCommand=perl ${path} %h %p ${bytesPerSecond}'`;
}
