import assert from "node:assert/strict";
import { markerScript } from "../../core/tm/monitor_marker.ts";

/** Runs `script` with bash and returns its exit code and stderr. */
async function run(script: string): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command("bash", { args: ["-c", script], stdout: "null", stderr: "piped" })
    .output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("markerScript() writes the marker once and leaves it alone when it already holds the driver", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ds = `${dir}/100`;
    assert.equal((await run(markerScript(ds, "onestor").text)).code, 0);
    assert.equal(await Deno.readTextFile(`${ds}/.monitor`), "onestor\n");
    const before = (await Deno.stat(`${ds}/.monitor`)).ino;
    assert.equal((await run(markerScript(ds, "onestor").text)).code, 0);
    assert.equal((await Deno.stat(`${ds}/.monitor`)).ino, before, "an equal marker is not rewritten");
    assert.equal((await run(markerScript(ds, "ssh").text)).code, 0);
    assert.equal(await Deno.readTextFile(`${ds}/.monitor`), "ssh\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("markerScript() run by many deployments at once: every one succeeds, no temporary file is left", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ds = `${dir}/100`;
    // The same moment on one host: each writer finds no marker yet and renames its own file.
    const results = await Promise.all(
      Array.from({ length: 24 }, () => run(markerScript(ds, "onestor").text)),
    );
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    assert.equal(await Deno.readTextFile(`${ds}/.monitor`), "onestor\n");
    const names = [];
    for await (const e of Deno.readDir(ds)) names.push(e.name);
    assert.deepEqual(names, [".monitor"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
