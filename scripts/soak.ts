/**
 * `deno task soak`: the whole reliability set, beyond the bounded subset CI runs. The same test
 * files with ONESTOR_SOAK=1: 6 SIGKILLs per copying path instead of 2 (60 in all), 20 000 seeded
 * mutations of a driver's stdin instead of 1 000, and every other reliability test once more. Each
 * test prints its counts; this script repeats them at the end with the wall time.
 *
 * `ONESTOR_SEED=<n>` replays a run with other seeds. Lab tests need root (as the whole suite).
 *
 * @module
 */

const FILES = [
  "tests/unit/confine_test.ts",
  "tests/unit/validate_test.ts",
  "tests/unit/malformed_test.ts",
  "tests/unit/hostkeys_test.ts",
  "tests/lab/confinement_test.ts",
  "tests/lab/faults_test.ts",
  "tests/lab/outages_test.ts",
  "tests/lab/load_test.ts",
  "tests/lab/hostkeys_test.ts",
];
const COUNT_LINE = /^(confinement|faults|outages|load|malformed input|host keys|cut-off \S+).*:/;

const started = performance.now();
const root = new URL("..", import.meta.url).pathname;
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", "--no-check", ...FILES],
  cwd: root,
  env: { ONESTOR_SOAK: "1", NO_COLOR: "1", ...(Deno.uid() === 0 ? { ONESTOR_LAB: "require" } : {}) },
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const counts: string[] = [];
const decoder = new TextDecoder();
let pending = "";
for await (const chunk of child.stdout) {
  const text = decoder.decode(chunk, { stream: true });
  Deno.stdout.writeSync(chunk);
  pending += text;
  const lines = pending.split("\n");
  pending = lines.pop() ?? "";
  for (const line of lines) if (COUNT_LINE.test(line) && !line.includes(" ...")) counts.push(line);
}
const status = await child.status;
const minutes = (performance.now() - started) / 60000;
console.log(`\nsoak: ${status.success ? "passed" : "FAILED"} in ${minutes.toFixed(1)} min`);
for (const line of counts) console.log(`  ${line}`);
Deno.exit(status.code);
