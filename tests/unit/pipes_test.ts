/**
 * The data path's wide pipes (core/transfer/pipes.ts), run in real bash with real perl: the pipe
 * on a widened stream holds 1 MiB, a stream that is not a pipe is left alone, and `onestor_tee`
 * copies its input byte for byte to both outputs, keeps feeding one when the other closes early,
 * and is coreutils' `tee -p` on a host without perl.
 */
import assert from "node:assert/strict";
import { followFunction, teeFunction, widenPipes } from "../../core/transfer/pipes.ts";

/** Prints the size of the pipe on fd 0 (F_GETPIPE_SZ), or "none". */
const PIPE_SIZE = `perl -e 'my $s = fcntl(STDIN, 1032, 0); print defined $s ? $s + 0 : "none"'`;

/** bash by its path: some tests run it with a PATH that has no perl. */
const BASH = new TextDecoder().decode(
  (await new Deno.Command("bash", { args: ["-c", "command -v bash"], stdout: "piped" }).output()).stdout,
).trim();

async function bash(script: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command(BASH, {
    args: ["-c", script],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("widenPipes: the pipe between two commands holds 1 MiB; a file stays as it is", async () => {
  const plain = await bash(`true | ${PIPE_SIZE}`);
  assert.equal(plain.stdout, "65536", "the default pipe, for comparison");
  const reader = await bash(`echo x | { ${widenPipes("STDIN").text}\n${PIPE_SIZE}; }`);
  assert.equal(reader.stdout, "1048576");
  // The reader looks once the line is there, so after the writer widened the pipe.
  const writer = await bash(`{ ${widenPipes("STDOUT").text}\necho x; } | { read -r _; ${PIPE_SIZE}; }`);
  assert.equal(writer.stdout, "1048576");
  const file = await bash(`${widenPipes("STDIN").text}\n${PIPE_SIZE} </dev/null`);
  assert.equal(file.code, 0);
  assert.equal(file.stdout, "none");
});

Deno.test("widenPipes never fails, also without perl", async () => {
  const r = await bash(`${widenPipes("STDIN", "STDOUT").text}\necho ok`, { PATH: "/nonexistent" });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, "ok\n");
});

const dir = await Deno.makeTempDir({ prefix: "onestor-pipes-" });
addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
// 5 MiB and a bit of random data: several 1 MiB reads, a short last one.
const input = `${dir}/in`;
const data = crypto.getRandomValues(new Uint8Array(65536));
{
  const f = await Deno.open(input, { write: true, create: true, truncate: true });
  for (let i = 0; i < 80; i++) await f.write(data);
  await f.write(data.subarray(0, 1234));
  f.close();
}

async function teeRun(consumer: string, forward: string, env?: Record<string, string>) {
  return await bash(
    `set -o pipefail
${teeFunction().text}
cd ${dir} && rm -f f out fwd && mkfifo f
( ${forward} <f ) &
fp=$!
onestor_tee f <in | ${consumer}
rc=$?
wait $fp
echo "rc=$rc fwd=$?"`,
    env,
  );
}

async function same(a: string, b: string): Promise<boolean> {
  return (await bash(`cmp -s ${a} ${b}`)).code === 0;
}

Deno.test("onestor_tee copies its input to both outputs, byte for byte", async () => {
  const r = await teeRun("cat >out", "cat >fwd");
  assert.equal(r.stdout.trim(), "rc=0 fwd=0", r.stderr);
  assert.ok(await same(input, `${dir}/out`));
  assert.ok(await same(input, `${dir}/fwd`));
});

Deno.test("onestor_tee keeps feeding the cache when the forward closes early, and the reverse", async () => {
  const early = await teeRun("cat >out", "head -c 100000 >fwd");
  assert.equal(early.stdout.trim(), "rc=0 fwd=0", early.stderr);
  assert.ok(await same(input, `${dir}/out`), "the output got everything");
  assert.equal((await Deno.stat(`${dir}/fwd`)).size, 100000);
  const closed = await teeRun("head -c 5000 >out", "cat >fwd");
  assert.equal(closed.stdout.trim(), "rc=0 fwd=0", closed.stderr);
  assert.ok(await same(input, `${dir}/fwd`), "the forward got everything");
  assert.equal((await Deno.stat(`${dir}/out`)).size, 5000);
});

Deno.test("onestor_tee without perl is tee -p, with the same results", async () => {
  const bin = `${dir}/bin`;
  await Deno.mkdir(bin, { recursive: true });
  for (const tool of ["cat", "tee", "mkfifo", "rm", "head", "cmp"]) {
    const path = (await bash(`command -v ${tool}`)).stdout.trim();
    await Deno.symlink(path, `${bin}/${tool}`).catch(() => {});
  }
  const r = await teeRun("cat >out", "head -c 100000 >fwd", { PATH: bin });
  assert.equal(r.stdout.trim(), "rc=0 fwd=0", r.stderr);
  assert.ok(await same(input, `${dir}/out`));
  assert.equal((await Deno.stat(`${dir}/fwd`)).size, 100000);
});

Deno.test("onestor_tee with a spool: the same bytes, read-only once complete", async () => {
  const r = await bash(`${teeFunction().text}
cd ${dir} && rm -f f out fwd spool && mkfifo f && : >spool && : >spool.want
( cat <f >fwd ) &
onestor_tee f spool <in >out
wait
stat -c %a spool`);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), "400");
  for (const f of ["out", "fwd", "spool"]) assert.ok(await same(input, `${dir}/${f}`), f);
});

Deno.test("onestor_follow copies a spool while it is written and ends once it is complete", async () => {
  // The writer sends the input in two parts a second apart: the follower, started before the
  // second part, must wait for it and end only when the spool is marked complete.
  const r = await bash(`${teeFunction().text}
${followFunction().text}
cd ${dir} && rm -f f out fwd spool got && mkfifo f && : >spool && : >spool.want
( cat <f >/dev/null ) &
{ head -c 3000000 in; sleep 1; tail -c +3000001 in; } | onestor_tee f spool >/dev/null &
tp=$!
onestor_follow "$tp" <spool >got
echo "rc=$?"
wait $tp`);
  assert.equal(r.stdout.trim(), "rc=0", r.stderr);
  assert.ok(await same(input, `${dir}/got`));
});

Deno.test("onestor_follow fails on a spool whose writer died before it was complete", async () => {
  const r = await bash(`${followFunction().text}
cd ${dir} && head -c 100000 in >spool.part && chmod 600 spool.part
sleep 0 & dead=$!; wait $dead
onestor_follow "$dead" <spool.part >got
echo "rc=$? $(stat -c %s got)"`);
  assert.equal(r.stdout.trim(), "rc=6 100000", r.stderr);
});

Deno.test("onestor_tee drops a spool nobody asked for within its first seconds", async () => {
  // The input arrives over 4 s; no spool.want: the spool and its pid file are gone at the end,
  // the outputs got everything.
  const r = await bash(`${teeFunction().text}
cd ${dir} && rm -f f out fwd spool spool.want && mkfifo f && : >spool && echo 1 >spool.pid
( cat <f >fwd ) &
{ head -c 1000000 in; sleep 4; tail -c +1000001 in; } | onestor_tee f spool >out
wait
ls spool spool.pid 2>&1 | grep -c 'No such file'`);
  assert.equal(r.stdout.trim(), "2", r.stderr);
  assert.ok(await same(input, `${dir}/out`));
  assert.ok(await same(input, `${dir}/fwd`));
});
