/**
 * Freezing or suspending a domain around a copy (cpds fallbacks, live backups) against a scripted
 * fake `virsh`: the release always runs, a failed freeze stops before anything is copied, a domain
 * the administrator paused stays paused.
 */

import assert from "node:assert/strict";
import { EXIT_PAUSE_FAILED, pausedCopyScript } from "../../core/hypervisor/pause.ts";
import { isHotSaveAs, parseSnapId } from "../../core/live/save_as.ts";
import { VmView } from "../../core/one/objects.ts";
import { vmXml } from "../support/fixtures.ts";

const FAKE_VIRSH = `#!/bin/sh
d=$FAKE_DIR
while [ "$1" = -q ] || [ "$1" = -c ]; do [ "$1" = -c ] && shift; shift; done
echo "$1" >>"$d/calls"
case $1 in
  domstate) cat "$d/state" ;;
  domfsfreeze) [ -f "$d/agent" ] || { echo "error: argument unsupported: QEMU guest agent is not configured" >&2; exit 1; } ;;
  domfsthaw|resume) ;;
  suspend) if [ -f "$d/nosuspend" ]; then echo "error: cannot suspend" >&2; exit 1; fi ;;
  *) echo "unexpected $1" >&2; exit 9 ;;
esac
`;

async function setup(files: Record<string, string>) {
  const dir = await Deno.makeTempDir({ prefix: "fake_pause_" });
  await Deno.mkdir(`${dir}/bin`);
  await Deno.writeTextFile(`${dir}/bin/virsh`, FAKE_VIRSH, { mode: 0o755 });
  await Deno.writeTextFile(`${dir}/disk.0`, "disk-bytes");
  for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(`${dir}/${name}`, text);
  return dir;
}

async function run(dir: string, mode: "agent" | "suspend") {
  const script = pausedCopyScript({
    uri: "qemu:///system",
    domain: "one-7",
    src: `${dir}/disk.0`,
    dest: `${dir}/export`,
    mode,
    freezeTimeoutSeconds: 5,
  });
  const out = await new Deno.Command("sh", {
    args: ["-c", script.text],
    env: { PATH: `${dir}/bin:/usr/bin:/bin`, FAKE_DIR: dir },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const calls = (await Deno.readTextFile(`${dir}/calls`).catch(() => "")).trim().split("\n");
  const exported = await Deno.readTextFile(`${dir}/export`).catch(() => null);
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr), calls, exported };
}

Deno.test("pausedCopyScript() copies under a guest-agent freeze and thaws", async () => {
  const dir = await setup({ agent: "", state: "running\n" });
  try {
    const r = await run(dir, "agent");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.calls, ["domfsfreeze", "domfsthaw"]);
    assert.equal(r.exported, "disk-bytes");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pausedCopyScript() without a guest agent fails before copying, and still thaws", async () => {
  const dir = await setup({ state: "running\n" });
  try {
    const r = await run(dir, "agent");
    assert.equal(r.code, EXIT_PAUSE_FAILED);
    assert.match(r.stderr, /Cannot freeze the file systems of domain one-7 .*guest agent is not configured/);
    assert.deepEqual(r.calls, ["domfsfreeze", "domfsthaw"]);
    assert.equal(r.exported, null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pausedCopyScript() suspends and resumes a running domain, leaves a paused one paused", async () => {
  const running = await setup({ state: "running\n" });
  const paused = await setup({ state: "paused\n" });
  const stuck = await setup({ state: "running\n", nosuspend: "" });
  try {
    const a = await run(running, "suspend");
    assert.equal(a.code, 0, a.stderr);
    assert.deepEqual(a.calls, ["domstate", "suspend", "resume"]);
    assert.equal(a.exported, "disk-bytes");
    const b = await run(paused, "suspend");
    assert.equal(b.code, 0, b.stderr);
    assert.deepEqual(b.calls, ["domstate"]);
    const c = await run(stuck, "suspend");
    assert.equal(c.code, EXIT_PAUSE_FAILED);
    assert.equal(c.exported, null);
  } finally {
    for (const d of [running, paused, stuck]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("parseSnapId() takes -1 or a snapshot id", () => {
  assert.equal(parseSnapId("-1"), -1);
  assert.equal(parseSnapId(" 12 "), 12);
  assert.throws(() => parseSnapId("-2"), /Snapshot id must be -1 or a non-negative integer/);
  assert.throws(() => parseSnapId("1;rm"), /Snapshot id/);
});

Deno.test("isHotSaveAs() is true only in HOTPLUG_SAVEAS (26)", () => {
  assert.equal(isHotSaveAs(VmView.fromXml(vmXml({ lcmState: 26 }))), true);
  for (const lcm of [27, 28, 67, 68, 3]) {
    assert.equal(isHotSaveAs(VmView.fromXml(vmXml({ lcmState: lcm }))), false);
  }
});
