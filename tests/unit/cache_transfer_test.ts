/**
 * The fill stream (verified promotion, cut-through forward, the owner's watchdog), the front-end
 * identity of images and the invalidation journal, run for real on this machine (a fake `ssh`
 * runs remote commands locally; "hosts" are folders).
 */
import assert from "node:assert/strict";
import { fakeSshRunner } from "../support/fake_ssh.ts";
import { contentDigest, entryName, leaseName, parseEntry, recordPrefix } from "../../core/cache/entry.ts";
import { fillEntry, fillLeasePrefix } from "../../core/cache/fill.ts";
import type { FillForward } from "../../core/cache/scripts.ts";
import { ReplicaFolder } from "../../core/cache/store.ts";
import { type CopyRequest, receiverScript } from "../../core/transfer/copy.ts";
import { sh } from "../../core/remote/shell.ts";
import {
  cachedIdentity,
  forgetIdentity,
  imageIdentity,
  knownSums,
  learnIdentity,
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
import { RemoteError } from "../../core/errors.ts";
import { scratchConfinement } from "../../core/remote/confine.ts";
import { setConfig } from "../../core/runtime.ts";
import { loadConfig } from "../../config/load.ts";

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

async function xxh(path: string): Promise<string> {
  return (await run(["xxhsum", "-H128", path])).split(" ")[0];
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

/** A lease taken for `owner` as "serve" would take it (the fill checks it is still its own). */
async function takeLease(
  relay: string,
  stat: Awaited<ReturnType<typeof statImage>>,
  owner: string,
): Promise<number> {
  const now = Math.floor(Date.now() / 1000);
  await Deno.writeTextFile(
    `${relay}/${leaseName(IMAGE)}`,
    `${fillLeasePrefix(stat, owner)}${now},"expires_at":${now + 60}}`,
  );
  return now;
}

function fillRequest(s: { relay: string; runner: HostRunner }, stat: Awaited<ReturnType<typeof statImage>>) {
  return {
    folder: new ReplicaFolder(s.runner, "relay-test", s.relay, 30_000, scratchConfinement(s.relay)),
    stat,
    owner: "fe:1:a",
    algorithm: "xxh128" as const,
    expectRecord: null,
    evictions: [],
    now: Math.floor(Date.now() / 1000),
    frontendHopOptions: [],
    compression: "none" as const,
    timeoutMs: 0,
    leaseSeconds: 30,
  };
}

/** The forward's receiver, run by the relay itself (no hop needed here). */
function forwardTo(dir: string, extra: Partial<CopyRequest> = {}): FillForward {
  const root = dir.split("/").slice(0, 3).join("/");
  const copy: CopyRequest = {
    from: {
      host: "relay-test",
      dir: "/unused",
      entries: [{ name: IMAGE, as: "disk.0" }, { name: `${IMAGE}.snap`, as: "disk.0.snap", optional: true }],
    },
    to: { host: "hv-test", dir, confine: scratchConfinement(root) },
    mirror: true,
    ...extra,
  };
  return { kind: "push", script: sh`bash -c ${receiverScript(copy, ".onestor-xfer-t").text}` };
}

Deno.test("fillEntry() writes the relay's entry and forwards the same stream; the record holds the front-end's checksums", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  const acquired = await takeLease(s.relay, stat, "fe:1:a");
  const result = await fillEntry(s.runner, { ...fillRequest(s, stat), acquired, forward: forwardTo(s.hv) });
  assert.equal(result.conflict, null);
  assert.equal(result.promoted, true, result.problem ?? "");
  assert.equal(result.forward?.ok, true, result.forward?.reason ?? "");
  const image = await xxh(`${s.fe}/${IMAGE}`);
  const snap = await xxh(`${s.fe}/${IMAGE}.snap/0`);
  assert.deepEqual(result.identity?.sums, { [IMAGE]: image, [`${IMAGE}.snap/0`]: snap });
  assert.ok(result.streamBytes > 3 * 1048576 && result.streamBytes < 4 * 1048576, `${result.streamBytes}`);
  // The entry is in place under its own names, the forward renamed, both sparse.
  assert.equal(await xxh(`${s.relay}/${IMAGE}`), image);
  assert.equal(await xxh(`${s.hv}/disk.0`), image);
  assert.equal(await xxh(`${s.hv}/disk.0.snap/0`), snap);
  assert.ok((await Deno.stat(`${s.hv}/disk.0`)).blocks! * 512 < 8 * 1048576);
  const record = await Deno.readTextFile(`${s.relay}/${entryName(IMAGE)}`);
  assert.ok(record.startsWith(recordPrefix(result.identity!)), record);
  const entry = parseEntry(record)!;
  assert.deepEqual(entry.files.map((f) => f.name), [IMAGE, `${IMAGE}.snap`, `${IMAGE}.snap/0`]);
  assert.deepEqual(entry.source.sums, result.identity!.sums);
  // The sidecar holds the identity: the next deployment compares without reading the image.
  assert.deepEqual(await cachedIdentity(stat, "xxh128"), result.identity);
  assert.match(await Deno.readTextFile(`${s.relay}/.onestor-cache.log`), /fill-start[^\n]*\n.*promote/);
  // No lease, fill folder or temporary folder is left.
  assert.deepEqual(
    [...Deno.readDirSync(s.relay)].map((e) => e.name).filter((n) => n.startsWith(IMAGE)).sort(),
    [
      IMAGE,
      `${IMAGE}.onestor.json`,
      `${IMAGE}.snap`,
    ],
  );
  assert.deepEqual([...Deno.readDirSync(s.hv)].map((e) => e.name).sort(), ["disk.0", "disk.0.snap"]);
});

Deno.test("fillEntry(): a forward that fails still promotes the relay's copy and reports the failure", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  await Deno.writeTextFile(`${s.root}/hv-file`, "not a folder");
  const acquired = await takeLease(s.relay, stat, "fe:1:a");
  const result = await fillEntry(s.runner, {
    ...fillRequest(s, stat),
    acquired,
    forward: forwardTo(`${s.root}/hv-file/7`),
  });
  assert.equal(result.promoted, true);
  assert.equal(result.forward?.ok, false);
  assert.equal(await xxh(`${s.relay}/${IMAGE}`), await xxh(`${s.fe}/${IMAGE}`));
});

Deno.test("fillEntry(): SPARSE=NO at the hypervisor allocates every block of the forwarded disk", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  const acquired = await takeLease(s.relay, stat, "fe:1:a");
  const result = await fillEntry(s.runner, {
    ...fillRequest(s, stat),
    acquired,
    forward: forwardTo(s.hv, { sparse: false }),
  });
  assert.equal(result.forward?.ok, true);
  const st = await Deno.stat(`${s.hv}/disk.0`);
  assert.ok(st.blocks! * 512 >= st.size, `${st.blocks! * 512} bytes allocated for ${st.size}`);
  // The cache keeps it sparse.
  assert.ok((await Deno.stat(`${s.relay}/${IMAGE}`)).blocks! * 512 < 8 * 1048576);
});

Deno.test("fillEntry(): a lease that is no longer this process's means nothing is read or written", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  await takeLease(s.relay, stat, "other:2:b");
  const result = await fillEntry(s.runner, { ...fillRequest(s, stat), acquired: 1, forward: null });
  assert.match(result.conflict ?? "", /no longer this process's/);
  await assert.rejects(Deno.stat(`${s.relay}/${entryName(IMAGE)}`));
});

Deno.test("fillEntry(): an image that changes while it is sent is not promoted", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  const acquired = await takeLease(s.relay, stat, "fe:1:a");
  // A snapshot added after the stat: the fingerprint before the send differs from what was stat'ed
  // only in the listing, which the trailer's before/after comparison does not see; so change the
  // image while tar reads it instead, through a slow pipe.
  const writer = new Deno.Command("sh", {
    args: ["-c", `sleep 0.3; printf x | dd of=${s.fe}/${IMAGE} bs=1 seek=0 conv=notrunc status=none`],
  }).spawn();
  const slow = `${s.root}/slow-ssh`;
  await Deno.writeTextFile(slow, `#!/bin/bash\nsleep 1\nexec ${s.root}/ssh "$@"\n`);
  await Deno.chmod(slow, 0o755);
  const { HostRunner: Runner } = await import("../../core/remote/runner.ts");
  const { SshClient } = await import("../../core/remote/ssh.ts");
  const runner = new Runner(new SshClient({ program: slow, controlPersist: 0 }), []);
  const result = await fillEntry(runner, {
    ...fillRequest({ relay: s.relay, runner }, stat),
    acquired,
    forward: null,
  });
  await writer.status;
  assert.equal(result.promoted, false);
  // tar notices it ("file changed as we read it", exit 1) or the fingerprints differ.
  assert.match(
    result.problem ?? "",
    /changed on the front-end|front-end's tar failed/,
    JSON.stringify(result),
  );
  assert.equal(result.identity, null);
  await assert.rejects(Deno.stat(`${s.relay}/${entryName(IMAGE)}`));
  // The lease and the fill folder went with the failed fill.
  await assert.rejects(Deno.stat(`${s.relay}/${leaseName(IMAGE)}`));
});

Deno.test("fillEntry() throws a RemoteError naming the replica when it cannot be reached", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  await assert.rejects(
    fillEntry(s.runner, {
      ...fillRequest(s, stat),
      folder: new ReplicaFolder(s.runner, "down-host", s.relay, 30_000, scratchConfinement(s.relay)),
      acquired: 1,
      forward: null,
    }),
    (error: unknown) =>
      error instanceof RemoteError && error.host === "down-host" && error.kind === "unreachable",
  );
});

Deno.test("fillEntry() stops the stream when the process that owns it is gone (no orphan copy)", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  const acquired = await takeLease(s.relay, stat, "fe:1:a");
  const gone = new Deno.Command("true").spawn();
  await gone.status;
  const started = performance.now();
  const result = await fillEntry(s.runner, {
    ...fillRequest(s, stat),
    acquired,
    forward: null,
    ownerPid: gone.pid,
  })
    .catch((error) => error);
  assert.ok(result instanceof RemoteError || result.promoted === false, String(result));
  assert.ok(performance.now() - started < 5000);
  await assert.rejects(Deno.stat(`${s.relay}/${entryName(IMAGE)}`));
});

Deno.test("imageIdentity() reads the image once and then answers from the sidecar until the image changes", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  assert.deepEqual(stat.files.map((f) => [f.name, f.type]), [[IMAGE, "f"], [`${IMAGE}.snap`, "d"], [
    `${IMAGE}.snap/0`,
    "f",
  ]]);
  assert.ok(stat.allocated >= 3 * 1048576 && stat.allocated < 5 * 1048576);
  const first = await imageIdentity(s.runner, stat, "blake2b");
  assert.equal(first.sums[IMAGE], await b2sum(`${s.fe}/${IMAGE}`));
  assert.equal(first.checksum, await contentDigest("blake2b", first.sums));
  // A runner that cannot run anything: the sidecar answers.
  const broken = { output: () => Promise.reject(new Error("read again")) } as unknown as HostRunner;
  assert.deepEqual(await imageIdentity(broken, stat, "blake2b"), first);
  assert.equal(await cachedIdentity(stat, "md5"), null);
  assert.equal((await imageIdentity(s.runner, stat, "xxh128")).sums[IMAGE], await xxh(`${s.fe}/${IMAGE}`));
  // A new snapshot changes the stat, so the sidecar no longer applies and the checksum changes.
  await Deno.writeTextFile(`${s.fe}/${IMAGE}.snap/1`, "one");
  const stat2 = await statImage(`${s.fe}/${IMAGE}`);
  assert.ok(!sameStat(stat, stat2));
  assert.equal(await cachedIdentity(stat2, "blake2b"), null);
  const second = await imageIdentity(s.runner, stat2, "blake2b");
  assert.notEqual(second.checksum, first.checksum);
  await forgetIdentity(stat2.path);
  assert.equal(await cachedIdentity(stat2, "blake2b"), null);
});

Deno.test("fillEntry(): sums known from the sidecar are sent without reading the image again", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  const want = {
    [IMAGE]: await xxh(`${s.fe}/${IMAGE}`),
    [`${IMAGE}.snap/0`]: await xxh(`${s.fe}/${IMAGE}.snap/0`),
  };
  // As the datastore driver does once it wrote the image: the sidecar gets sums and fingerprint.
  await learnIdentity(s.runner, stat.path, "xxh128");
  const known = await knownSums(stat, "xxh128");
  assert.deepEqual(known?.sums, want);
  // An xxhsum that fails proves the fill does not run it.
  const bin = `${s.root}/bin`;
  await Deno.mkdir(bin);
  await Deno.writeTextFile(`${bin}/xxhsum`, "#!/bin/sh\necho no >&2\nexit 9\n");
  await Deno.chmod(`${bin}/xxhsum`, 0o755);
  const path = Deno.env.get("PATH")!;
  Deno.env.set("PATH", `${bin}:${path}`);
  try {
    const acquired = await takeLease(s.relay, stat, "fe:1:a");
    const result = await fillEntry(s.runner, {
      ...fillRequest(s, stat),
      known,
      acquired,
      forward: forwardTo(s.hv),
    });
    assert.equal(result.promoted, true, result.problem ?? "");
    assert.deepEqual(result.identity?.sums, want);
    assert.deepEqual(
      parseEntry(await Deno.readTextFile(`${s.relay}/${entryName(IMAGE)}`))!.source.sums,
      want,
    );
  } finally {
    Deno.env.set("PATH", path);
  }
  assert.equal(await xxh(`${s.relay}/${IMAGE}`), want[IMAGE]);
  assert.equal(await xxh(`${s.hv}/disk.0`), want[IMAGE]);
});

Deno.test("fillEntry(): known sums of another version of the image are refused, nothing is promoted", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  const acquired = await takeLease(s.relay, stat, "fe:1:a");
  // Sums recorded for a version whose fingerprint is not the one the sender finds.
  const known = {
    sums: { [IMAGE]: "0".repeat(32), [`${IMAGE}.snap/0`]: "1".repeat(32) },
    fingerprint: "f 1 2 3 x",
  };
  const result = await fillEntry(s.runner, { ...fillRequest(s, stat), known, acquired, forward: null });
  assert.equal(result.promoted, false);
  assert.match(result.problem ?? "", /changed on the front-end/);
  assert.equal(result.identity, null);
  await assert.rejects(Deno.stat(`${s.relay}/${entryName(IMAGE)}`));
});

Deno.test("a fill records the fingerprint with the sums; learnIdentity() of a missing image does nothing", async () => {
  await using s = await scratch();
  const stat = await statImage(`${s.fe}/${IMAGE}`);
  assert.equal(await knownSums(stat, "xxh128"), null);
  const acquired = await takeLease(s.relay, stat, "fe:1:a");
  const result = await fillEntry(s.runner, { ...fillRequest(s, stat), acquired, forward: null });
  assert.equal(result.promoted, true, result.problem ?? "");
  const known = await knownSums(stat, "xxh128");
  assert.deepEqual(known?.sums, result.identity?.sums);
  // The fingerprint is the one the identity script takes of the same files.
  await forgetIdentity(stat.path);
  await learnIdentity(s.runner, stat.path, "xxh128");
  assert.equal((await knownSums(stat, "xxh128"))?.fingerprint, known?.fingerprint);
  await learnIdentity(s.runner, `${s.fe}/missing`, "xxh128");
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
  // The replica's scripts are confined to DATASTORE_LOCATION: here, the scratch folder.
  const conf = `${s.root}/conf/var/lib/one/remotes/etc/onestor`;
  await Deno.mkdir(conf, { recursive: true });
  await Deno.writeTextFile(`${conf}/onestor.conf`, `DATASTORE_LOCATION=${s.root}\n`);
  setConfig(loadConfig({ root: `${s.root}/conf`, env: {} }));
  using _reset = { [Symbol.dispose]: () => setConfig(undefined) };
  const path = `${s.relay}/${IMAGE}`;
  await Deno.writeTextFile(path, "cached");
  await Deno.writeTextFile(`${s.relay}/${entryName(IMAGE)}`, "{}");
  await journalInvalidation("relay-test", { source: path, reason: "rm", at: 1 });
  await journalInvalidation("relay-test", { source: path, reason: "mvds", at: 2 });
  await journalInvalidation("down-host", { source: path, reason: "rm", at: 3 });
  const pending = await pendingInvalidations("relay-test");
  assert.deepEqual(pending.map((p) => p.record.reason), ["mvds"]);
  // An unreachable replica keeps its record; a reachable one applies it and the record goes.
  assert.equal(await applyPendingInvalidations(s.runner, "down-host", scratchConfinement(s.root)), 0);
  assert.equal((await pendingInvalidations("down-host")).length, 1);
  assert.equal(await applyPendingInvalidations(s.runner, "relay-test", scratchConfinement(s.root)), 1);
  assert.deepEqual(await pendingInvalidations("relay-test"), []);
  await assert.rejects(Deno.stat(path));
  await assert.rejects(Deno.stat(`${s.relay}/${entryName(IMAGE)}`));
  assert.match(
    await Deno.readTextFile(`${s.relay}/.onestor-cache.log`),
    /"event":"invalidate".*"reason":"mvds"/,
  );
});
