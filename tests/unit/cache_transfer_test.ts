/**
 * The cut-through stream, the front-end identity of images and the invalidation journal, run for
 * real on this machine (a fake `ssh` runs remote commands locally; "hosts" are folders).
 */
import assert from "node:assert/strict";
import { fakeSshRunner } from "../support/fake_ssh.ts";
import { contentDigest, entryName } from "../../core/cache/entry.ts";
import {
  cachedIdentity,
  forgetIdentity,
  imageIdentity,
  parseSumLines,
  sameStat,
  statImage,
} from "../../core/cache/identity.ts";
import {
  applyPendingInvalidations,
  journalInvalidation,
  pendingInvalidations,
} from "../../core/cache/invalidate.ts";
import { HostRunner } from "../../core/remote/runner.ts";
import { fanoutCopy, parseManifest, perFileCommand } from "../../core/transfer/fanout.ts";
import { RemoteError } from "../../core/errors.ts";
import { scratchConfinement } from "../../core/remote/confine.ts";

const IMAGE = "0123456789abcdef0123456789abcdef";

async function run(argv: string[]): Promise<string> {
  const out = await new Deno.Command(argv[0], { args: argv.slice(1), stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`${argv.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

async function b2sum(path: string): Promise<string> {
  return (await run(["b2sum", path])).split(" ")[0];
}

/** Scratch folders for a front-end, a relay and a hypervisor, a fake ssh and a state folder. */
async function scratch() {
  const root = await Deno.makeTempDir({ prefix: "onestor_cache_xfer_" });
  const { runner } = await fakeSshRunner(root);
  const fe = `${root}/fe`;
  const relay = `${root}/relay`;
  const hv = `${root}/hv/100/7`;
  for (const d of [fe, relay, `${fe}/${IMAGE}.snap`]) await Deno.mkdir(d, { recursive: true });
  // A sparse 32 MiB image with 3 MiB of data, and one snapshot.
  await run(["truncate", "-s", "32M", `${fe}/${IMAGE}`]);
  await run([
    "dd",
    "if=/dev/urandom",
    `of=${fe}/${IMAGE}`,
    "bs=1M",
    "seek=4",
    "count=3",
    "conv=notrunc",
    "status=none",
  ]);
  await Deno.writeTextFile(`${fe}/${IMAGE}.snap/0`, "snapshot zero\n");
  const previous = Deno.env.get("ONESTOR_STATE_DIR");
  Deno.env.set("ONESTOR_STATE_DIR", `${root}/state`);
  return {
    root,
    fe,
    relay,
    hv,
    runner,
    async [Symbol.asyncDispose]() {
      if (previous === undefined) Deno.env.delete("ONESTOR_STATE_DIR");
      else Deno.env.set("ONESTOR_STATE_DIR", previous);
      await Deno.remove(root, { recursive: true });
    },
  };
}

const entries = [{ name: IMAGE }, { name: `${IMAGE}.snap`, optional: true }];
const forwardEntries = [{ name: IMAGE, as: "disk.0" }, {
  name: `${IMAGE}.snap`,
  as: "disk.0.snap",
  optional: true,
}];

Deno.test("fanoutCopy() writes the relay's copy and forwards the same stream, with per-file checksums on both ends", async () => {
  await using s = await scratch();
  const result = await fanoutCopy(s.runner, {
    from: { dir: s.fe, entries },
    relay: { host: "relay-test", dir: s.relay, fill: ".onestor-fill-x", confine: scratchConfinement(s.root) },
    forward: {
      host: "hv-test",
      address: "relay-test",
      dir: s.hv,
      entries: forwardEntries,
      confine: scratchConfinement(s.root),
    },
    checksum: "b2sum",
    contentChecksum: "b2sum",
    startLog: JSON.stringify({ event: "fill-start" }),
  });
  const image = await b2sum(`${s.fe}/${IMAGE}`);
  const snap = await b2sum(`${s.fe}/${IMAGE}.snap/0`);
  const expected = { [IMAGE]: image, [`${IMAGE}.snap/0`]: snap };
  assert.deepEqual(result.sourceSums, expected);
  assert.deepEqual(result.relay, {
    ok: true,
    problem: null,
    sums: expected,
    statLines: result.relay.statLines,
  });
  assert.deepEqual(result.forward, { ok: true, problem: null });
  assert.ok(result.streamBytes > 3 * 1048576 && result.streamBytes < 4 * 1048576, `${result.streamBytes}`);
  // Relay copy under the fill folder with the source names; forwarded copy renamed, both sparse.
  assert.equal(await b2sum(`${s.relay}/.onestor-fill-x/${IMAGE}`), image);
  assert.equal(await b2sum(`${s.hv}/disk.0`), image);
  assert.equal(await b2sum(`${s.hv}/disk.0.snap/0`), snap);
  assert.ok((await Deno.stat(`${s.hv}/disk.0`)).blocks! * 512 < 8 * 1048576);
  assert.deepEqual(result.relay.statLines.map((l) => l.split("|").pop()), [
    IMAGE,
    `${IMAGE}.snap`,
    `${IMAGE}.snap/0`,
  ]);
  assert.match(await Deno.readTextFile(`${s.relay}/.onestor-cache.log`), /fill-start/);
  // No temporary folder is left at the forward's destination.
  assert.deepEqual([...Deno.readDirSync(s.hv)].map((e) => e.name).sort(), ["disk.0", "disk.0.snap"]);
});

Deno.test("fanoutCopy(): a forward that fails still leaves a complete relay copy and reports the failure", async () => {
  await using s = await scratch();
  // A forward whose destination cannot be created: relay copy complete, forward reported failed.
  await Deno.writeTextFile(`${s.root}/hv-file`, "not a folder");
  const noForward = await fanoutCopy(s.runner, {
    from: { dir: s.fe, entries },
    relay: { host: "relay-test", dir: s.relay, fill: ".onestor-fill-z", confine: scratchConfinement(s.root) },
    forward: {
      host: "hv-test",
      address: "relay-test",
      dir: `${s.root}/hv-file/7`,
      entries: forwardEntries,
      confine: scratchConfinement(s.root),
    },
    contentChecksum: "b2sum",
  });
  assert.equal(noForward.relay.ok, true);
  assert.equal(noForward.forward?.ok, false);
  assert.equal(await b2sum(`${s.relay}/.onestor-fill-z/${IMAGE}`), await b2sum(`${s.fe}/${IMAGE}`));
});

Deno.test("fanoutCopy() throws a RemoteError naming the relay when it cannot be reached", async () => {
  await using s = await scratch();
  await assert.rejects(
    fanoutCopy(s.runner, {
      from: { dir: s.fe, entries },
      relay: {
        host: "down-host",
        dir: s.relay,
        fill: ".onestor-fill-q",
        confine: scratchConfinement(s.root),
      },
      contentChecksum: "b2sum",
    }),
    (error: unknown) =>
      error instanceof RemoteError && error.host === "down-host" && error.kind === "unreachable",
  );
});

Deno.test("fanoutCopy() stops the stream when the process that owns it is gone (no orphan copy)", async () => {
  await using s = await scratch();
  const gone = new Deno.Command("true").spawn();
  await gone.status;
  const started = performance.now();
  await assert.rejects(
    fanoutCopy(s.runner, {
      from: { dir: s.fe, entries },
      relay: {
        host: "relay-test",
        dir: s.relay,
        fill: ".onestor-fill-w",
        confine: scratchConfinement(s.root),
      },
      contentChecksum: "b2sum",
      ownerPid: gone.pid,
    }),
  );
  assert.ok(performance.now() - started < 5000);
});

Deno.test("perFileCommand() refuses unknown programs; parseManifest() reads its output", () => {
  assert.throws(() => perFileCommand("rm -rf /"), TypeError);
  assert.match(perFileCommand("sha256sum"), /^printf .* "\$\(sha256sum \| cut/);
  assert.deepEqual(parseManifest(["abc x/y", "def z", "bad"]), { "x/y": "abc", z: "def" });
});

Deno.test("imageIdentity() reads the image once and then answers from the sidecar until the image changes", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  assert.deepEqual(stat.files.map((f) => [f.name, f.type]), [[IMAGE, "f"], [`${IMAGE}.snap`, "d"], [
    `${IMAGE}.snap/0`,
    "f",
  ]]);
  assert.ok(stat.allocated >= 3 * 1048576 && stat.allocated < 5 * 1048576);
  const first = await imageIdentity(s.runner, stat, "b2sum");
  assert.equal(first.sums[IMAGE], await b2sum(`${s.fe}/${IMAGE}`));
  assert.equal(first.checksum, await contentDigest("b2sum", first.sums));
  // A runner that cannot run anything: the sidecar answers.
  const broken = { output: () => Promise.reject(new Error("read again")) } as unknown as HostRunner;
  assert.deepEqual(await imageIdentity(broken, stat, "b2sum"), first);
  assert.equal(await cachedIdentity(stat, "md5sum"), null);
  // A new snapshot changes the stat, so the sidecar no longer applies and the checksum changes.
  await Deno.writeTextFile(`${s.fe}/${IMAGE}.snap/1`, "one");
  const stat2 = await statImage(`${s.fe}/${IMAGE}`);
  assert.ok(!sameStat(stat, stat2));
  assert.equal(await cachedIdentity(stat2, "b2sum"), null);
  const second = await imageIdentity(s.runner, stat2, "b2sum");
  assert.notEqual(second.checksum, first.checksum);
  await forgetIdentity(stat2.path);
  assert.equal(await cachedIdentity(stat2, "b2sum"), null);
});

Deno.test("statImage() refuses a missing image or a folder", async () => {
  await using s = await scratch();
  await assert.rejects(statImage(`${s.fe}/nope`), /does not exist on the front-end/);
  await assert.rejects(statImage(`${s.fe}/${IMAGE}.snap`), /not a regular file/);
});

Deno.test("parseSumLines() reads the output of b2sum, sha256sum and md5sum", () => {
  assert.deepEqual(parseSumLines("aa11  a\nbb22 *b/c\n\\cc33  d\\nx\nnoise\n"), {
    a: "aa11",
    "b/c": "bb22",
    "d\\nx": "cc33",
  });
});

Deno.test("the invalidation journal keeps one record per image and is applied at the next contact", async () => {
  await using s = await scratch();
  const path = `${s.relay}/${IMAGE}`;
  await Deno.writeTextFile(path, "cached");
  await Deno.writeTextFile(`${s.relay}/${entryName(IMAGE)}`, "{}");
  await journalInvalidation("relay-test", { source: path, reason: "rm", at: 1 });
  await journalInvalidation("relay-test", { source: path, reason: "mvds", at: 2 });
  await journalInvalidation("down-host", { source: path, reason: "rm", at: 3 });
  const pending = await pendingInvalidations("relay-test");
  assert.deepEqual(pending.map((p) => p.record.reason), ["mvds"]);
  // An unreachable replica keeps its record; a reachable one applies it and the record goes.
  assert.equal(await applyPendingInvalidations(s.runner, "down-host"), 0);
  assert.equal((await pendingInvalidations("down-host")).length, 1);
  assert.equal(await applyPendingInvalidations(s.runner, "relay-test"), 1);
  assert.deepEqual(await pendingInvalidations("relay-test"), []);
  await assert.rejects(Deno.stat(path));
  await assert.rejects(Deno.stat(`${s.relay}/${entryName(IMAGE)}`));
  assert.match(
    await Deno.readTextFile(`${s.relay}/.onestor-cache.log`),
    /"event":"invalidate".*"reason":"mvds"/,
  );
});
