import assert from "node:assert/strict";
import { recoveryEntries, removePathsScript } from "../../core/tm/delete.ts";

Deno.test("recoveryEntries() is the VM's folder for a VM folder, that disk's entries for a disk", () => {
  assert.deepEqual(recoveryEntries("/snaps/", 7, "/ds/100/7"), ["/snaps/7"]);
  assert.deepEqual(recoveryEntries("/snaps", 7, "/ds/100/7/disk.2"), [
    "/snaps/7/disk.2",
    "/snaps/7/disk.2.snap",
    "/snaps/7/disk.2.replica_snap",
    "/snaps/7/disk.2.recovery",
  ]);
});

Deno.test("removePathsScript() removes files, folders and dangling links, and accepts absent paths", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/vm/disk.0.snap`, { recursive: true });
    await Deno.writeTextFile(`${dir}/vm/disk.0`, "x");
    await Deno.symlink("nowhere", `${dir}/link`);
    const odd = `${dir}/a 'b' $(x)`;
    await Deno.writeTextFile(odd, "y");
    const script = removePathsScript([`${dir}/vm`, `${dir}/link`, `${dir}/absent`, odd]);
    for (let i = 0; i < 2; i++) {
      const r = await new Deno.Command("sh", { args: ["-c", script.text] }).output();
      assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    }
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
