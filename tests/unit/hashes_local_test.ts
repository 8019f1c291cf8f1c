import assert from "node:assert/strict";
import { agreedAlgorithm, hasLocally } from "../../core/transfer/hashes.ts";

/** A fake `xxhsum` in a folder of its own that counts its runs and exits with `code`. */
function fakeProgram(bin: string, counter: string, code: number): void {
  // The exit code sets the size too: a replaced file must differ even where an inode is reused at once.
  Deno.writeTextFileSync(
    `${bin}/xxhsum`,
    `#!/bin/sh\n# ${"v".repeat(code + 1)}\necho run >>'${counter}'\nexit ${code}\n`,
  );
  Deno.chmodSync(`${bin}/xxhsum`, 0o755);
}

const runs = (counter: string) => {
  try {
    return Deno.readTextFileSync(counter).split("\n").filter(Boolean).length;
  } catch {
    return 0;
  }
};

Deno.test("the front-end asks its hash program once per program file, remembered across processes", () => {
  const dir = Deno.makeTempDirSync();
  const path = Deno.env.get("PATH");
  try {
    const bin = `${dir}/bin`;
    Deno.mkdirSync(bin);
    const counter = `${dir}/runs`;
    fakeProgram(bin, counter, 0);
    Deno.env.set("PATH", `${bin}:/usr/bin:/bin`);
    const first = `${dir}/state1`;
    assert.equal(hasLocally("xxh128", first), true);
    assert.equal(runs(counter), 1);
    assert.equal(hasLocally("xxh128", first), true);
    assert.equal(runs(counter), 1, "asked once per process");

    // Another process (another state folder holding what the first one wrote) does not run it.
    const second = `${dir}/state2`;
    Deno.mkdirSync(`${second}/programs`, { recursive: true });
    Deno.copyFileSync(`${first}/programs/xxh128.json`, `${second}/programs/xxh128.json`);
    assert.equal(hasLocally("xxh128", second), true);
    assert.equal(runs(counter), 1, "remembered in the state folder");

    // A replaced program (an upgrade, or one too old for -H128) is asked again.
    Deno.removeSync(`${bin}/xxhsum`);
    fakeProgram(bin, counter, 1);
    assert.equal(hasLocally("xxh128", second), false);
    assert.equal(runs(counter), 2);
    assert.equal(agreedAlgorithm("xxh128", [null], second), "blake2b");

    // No program on PATH: no process, no.
    Deno.removeSync(`${bin}/xxhsum`);
    Deno.env.set("PATH", bin);
    assert.equal(hasLocally("xxh128", `${dir}/state3`), false);
    assert.equal(runs(counter), 2);
  } finally {
    if (path === undefined) Deno.env.delete("PATH");
    else Deno.env.set("PATH", path);
    Deno.removeSync(dir, { recursive: true });
  }
});
