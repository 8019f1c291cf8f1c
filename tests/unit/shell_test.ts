import assert from "node:assert/strict";
import { quote, raw, sh } from "../../core/remote/shell.ts";
import { runCommand } from "../../core/remote/process.ts";

const HOSTILE = [
  "$(touch /tmp/onestor-pwned)",
  "`touch /tmp/onestor-pwned`",
  "a; touch /tmp/onestor-pwned",
  "with spaces  and\ttabs",
  "new\nline",
  "it's 'quoted'",
  '"double" $HOME ${PATH} \\ backslash',
  "*",
  "-rf",
  "",
  "| & > < ! ~ # %",
];

Deno.test("quote() leaves safe words alone and quotes everything else", () => {
  assert.deepEqual(quote("/var/lib/one/datastores/1/abc"), "/var/lib/one/datastores/1/abc");
  assert.deepEqual(quote("host:/path"), "host:/path");
  assert.deepEqual(quote(""), "''");
  assert.deepEqual(quote("a b"), "'a b'");
  assert.deepEqual(quote("it's"), `'it'\\''s'`);
  assert.deepEqual(quote(42), "42");
});

Deno.test("quote() refuses NUL bytes", () => {
  assert.throws(() => quote("a\0b"), TypeError);
});

Deno.test("sh`` keeps hostile values literal when a real shell runs the script", async () => {
  try {
    Deno.removeSync("/tmp/onestor-pwned");
  } catch { /* absent */ }
  for (const value of HOSTILE) {
    const script = sh`printf '%s' ${value}`;
    const result = await runCommand(["sh", "-c", script.text]);
    assert.deepEqual(result.code, 0);
    assert.deepEqual(result.stdout, value);
  }
  const all = sh`for a in ${HOSTILE}; do printf '<%s>' "$a"; done`;
  const result = await runCommand(["sh", "-c", all.text]);
  assert.deepEqual(result.stdout, HOSTILE.map((v) => `<${v}>`).join(""));
  let pwned = true;
  try {
    Deno.statSync("/tmp/onestor-pwned");
  } catch {
    pwned = false;
  }
  assert.deepEqual(pwned, false);
});

Deno.test("sh`` nests scripts without quoting them again, and raw() marks constant text", () => {
  const inner = sh`cat ${"a b"}`;
  assert.deepEqual(sh`${inner} | ${raw("wc -c")}`.text, "cat 'a b' | wc -c");
});

Deno.test("sh`` refuses values that are not strings, numbers or scripts", () => {
  assert.throws(() => sh`echo ${undefined as unknown as string}`, TypeError);
  assert.throws(() => sh`echo ${{} as unknown as string}`, TypeError);
});
