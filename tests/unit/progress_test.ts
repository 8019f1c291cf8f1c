import assert from "node:assert/strict";
import { barLine, duration, logLine, ProgressReporter } from "../../core/progress/reporter.ts";
import { pollBytes } from "../../core/progress/poll.ts";

const MiB = 1048576;
const CLEAR = "\r\x1b[2K";

/** Whether text holds a control character other than a newline. */
function hasControl(text: string): boolean {
  return [...text].some((c) => c !== "\n" && (c.charCodeAt(0) < 32 || c.charCodeAt(0) === 127));
}

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, tick: (ms: number) => now += ms };
}

Deno.test("barLine() shows the bar, bytes, rate and time left", () => {
  const line = barLine("Copying x", { done: 24 * MiB, total: 60 * MiB, seconds: 2 }, 10);
  assert.equal(line, "[####------]  40%  24.0/60.0 MiB  12.0 MiB/s  ETA 3 s  Copying x");
  assert.equal(barLine("y", { done: 3 * MiB, total: null, seconds: 1 }), "3.0 MiB  3.0 MiB/s  y");
  assert.equal(duration(59), "59 s");
  assert.equal(duration(125), "2:05");
  assert.equal(duration(3725), "1:02:05");
});

Deno.test("logLine() is plain text for oned's logs", () => {
  const line = logLine("Copying x", { done: 30 * MiB, total: 60 * MiB, seconds: 10 });
  assert.equal(line, "Copying x: 30.0 of 60.0 MiB (50%), 3.0 MiB/s, 10 s left");
  assert.equal(hasControl(line), false);
});

Deno.test("ProgressReporter on a terminal redraws the bar in place, notes above it", () => {
  const out: string[] = [];
  const c = clock();
  const p = new ProgressReporter({
    label: "L",
    total: 4 * MiB,
    mode: "tty",
    write: (t) => out.push(t),
    now: c.now,
  });
  c.tick(1000);
  p.add(MiB);
  p.add(MiB); // within 200 ms of the last draw: not redrawn
  c.tick(1000);
  p.note("message");
  p.add(MiB);
  p.finish("L: done");
  assert.equal(out.length, 5);
  assert.ok(out.slice(0, 4).every((l) => l.startsWith(CLEAR)));
  assert.equal(out[0], `${CLEAR}[######------------------]  25%  1.0/4.0 MiB  1.0 MiB/s  ETA 3 s  L`);
  assert.equal(out[1], `${CLEAR}message\n`);
  assert.ok(out[2].includes("]  50%"), out[2]);
  assert.ok(out[3].includes("]  75%  3.0/4.0 MiB  1.5 MiB/s"), out[3]);
  assert.equal(out[4], "\r\x1b[2KL: done\n");
});

Deno.test("ProgressReporter run by oned writes an INFO line per interval, no control characters", () => {
  const logs: string[] = [];
  const out: string[] = [];
  const c = clock();
  const p = new ProgressReporter({
    label: "Copying x",
    total: 10 * MiB,
    mode: "log",
    intervalMs: 15_000,
    log: (m) => logs.push(m),
    write: (t) => out.push(t),
    now: c.now,
  });
  for (let i = 0; i < 10; i++) {
    c.tick(5_000);
    p.add(MiB);
  }
  p.finish();
  // 50 s of work: lines at 15, 30 and 45 s, then the final one.
  assert.deepEqual(logs, [
    "Copying x: 3.0 of 10.0 MiB (30%), 0.2 MiB/s, 35 s left",
    "Copying x: 6.0 of 10.0 MiB (60%), 0.2 MiB/s, 20 s left",
    "Copying x: 9.0 of 10.0 MiB (90%), 0.2 MiB/s, 5 s left",
    "Copying x: 10.0 of 10.0 MiB (100%), 0.2 MiB/s, 0 s left",
  ]);
  assert.deepEqual(out, []);
  for (const line of logs) assert.equal(hasControl(line), false);
});

Deno.test("ProgressReporter in log mode stays quiet for short work, prints summaries as lines", () => {
  const logs: string[] = [];
  const out: string[] = [];
  const c = clock();
  const p = new ProgressReporter({
    label: "x",
    total: MiB,
    mode: "log",
    log: (m) => logs.push(m),
    write: (t) => out.push(t),
    now: c.now,
  });
  c.tick(100);
  p.add(MiB);
  p.note("a note");
  p.finish("x: cached");
  assert.deepEqual(logs, []);
  assert.deepEqual(out, ["a note\n", "x: cached\n"]);
});

Deno.test("pollBytes() reports each measurement until stopped", async () => {
  const seen: number[] = [];
  let n = 0;
  const poll = pollBytes(() => Promise.resolve(++n), (b) => seen.push(b), 10);
  await new Promise((r) => setTimeout(r, 80));
  await poll.stop();
  const count = seen.length;
  assert.ok(count >= 2, `${count} measurements`);
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(seen.length, count, "nothing after stop()");
  assert.deepEqual(seen, seen.slice().sort((a, b) => a - b));
});
