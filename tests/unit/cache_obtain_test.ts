/**
 * obtainEntry() end to end on this machine: the "replica" is a folder reached through a fake ssh
 * that runs commands locally, the "front-end" another folder.
 */
import assert from "node:assert/strict";
import { fakeSshRunner } from "../support/fake_ssh.ts";
import { encodeRecord, entryName, type Lease, leaseName, parseEntry } from "../../core/cache/entry.ts";
import { statImage } from "../../core/cache/identity.ts";
import { obtainEntry, type ObtainRequest } from "../../core/cache/obtain.ts";
import { ReplicaFolder } from "../../core/cache/store.ts";
import { scratchConfinement } from "../../core/remote/confine.ts";

const MIB = 1048576;
const IMAGE = "0123456789abcdef0123456789abcdef";

async function scratch() {
  const root = await Deno.makeTempDir({ prefix: "onestor_cache_obtain_" });
  const { runner } = await fakeSshRunner(root);
  const fe = `${root}/fe/datastores/1`;
  const replica = `${root}/replica/datastores/1`;
  await Deno.mkdir(fe, { recursive: true });
  const image = `${fe}/${IMAGE}`;
  const make = await new Deno.Command("sh", {
    args: [
      "-c",
      `truncate -s 16M ${image} && head -c ${
        2 * MIB
      } /dev/urandom | dd of=${image} bs=1M seek=3 conv=notrunc status=none`,
    ],
  }).output();
  assert.ok(make.success);
  const previous = Deno.env.get("ONESTOR_STATE_DIR");
  Deno.env.set("ONESTOR_STATE_DIR", `${root}/state`);
  const folder = new ReplicaFolder(runner, "replica-test", replica, 30_000, scratchConfinement(root));
  await folder.ensure();
  const request = async (owner: string, extra: Partial<ObtainRequest> = {}): Promise<ObtainRequest> => ({
    folder: new ReplicaFolder(runner, "replica-test", replica, 30_000, scratchConfinement(root)),
    stat: await statImage(image),
    owner,
    algorithm: "b2sum",
    checksum: "b2sum",
    leaseSeconds: 5,
    lockTimeoutSeconds: 0,
    verify: "size-mtime",
    limits: { maxBytes: null, maxUsedPercent: 100 },
    frontendHopOptions: [],
    transferTimeoutMs: 0,
    controlTimeoutMs: 30_000,
    sparse: true,
    ...extra,
  });
  return {
    root,
    replica,
    image,
    folder,
    request,
    async fills(): Promise<number> {
      const log = await Deno.readTextFile(`${replica}/.onestor-cache.log`).catch(() => "");
      return log.split("\n").filter((l) => l.includes('"fill-start"')).length;
    },
    async [Symbol.asyncDispose]() {
      if (previous === undefined) Deno.env.delete("ONESTOR_STATE_DIR");
      else Deno.env.set("ONESTOR_STATE_DIR", previous);
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test("obtainEntry(): a miss fills and promotes a verified entry, the next call is a pinned hit", async () => {
  await using s = await scratch();
  const first = await obtainEntry(await s.request("fe:1:a"));
  assert.equal(first.kind, "filled");
  assert.ok(first.kind === "filled" && first.fill.promoted, JSON.stringify(first));
  const cached = await Deno.readFile(`${s.replica}/${IMAGE}`);
  assert.deepEqual(cached, await Deno.readFile(s.image));
  const hit = await obtainEntry(
    await s.request("fe:2:b", { pin: { owner: "fe:2:b", vm: 7, disk: 0, host: "hv1" } }),
  );
  assert.equal(hit.kind, "hit");
  const entry = parseEntry(await Deno.readTextFile(`${s.replica}/${entryName(IMAGE)}`))!;
  assert.deepEqual(entry.pins.map((p) => p.owner), ["fe:2:b"]);
  assert.equal(await s.fills(), 1);
  // Nothing of the fill is left behind.
  assert.deepEqual(
    [...Deno.readDirSync(s.replica)].map((e) => e.name).filter((n) =>
      n.includes("fill") || n.includes("lease")
    ),
    [],
  );
});

Deno.test("obtainEntry(): six concurrent callers, one fill", async () => {
  await using s = await scratch();
  const outcomes = await Promise.all(
    Array.from({ length: 6 }, async (_, i) => obtainEntry(await s.request(`fe:${i}:x`))),
  );
  assert.deepEqual(outcomes.map((o) => o.kind).sort(), ["filled", "hit", "hit", "hit", "hit", "hit"]);
  assert.equal(await s.fills(), 1);
});

Deno.test("obtainEntry(): a changed image or a damaged entry is filled again", async () => {
  await using s = await scratch();
  await obtainEntry(await s.request("fe:1:a"));
  await Deno.truncate(`${s.replica}/${IMAGE}`, MIB);
  assert.equal((await obtainEntry(await s.request("fe:1:b"))).kind, "filled");
  // New content on the front-end (same size): the entry no longer matches.
  await new Deno.Command("sh", {
    args: ["-c", `head -c ${MIB} /dev/urandom | dd of=${s.image} bs=1M seek=8 conv=notrunc status=none`],
  }).output();
  assert.equal((await obtainEntry(await s.request("fe:1:c"))).kind, "filled");
  assert.deepEqual(await Deno.readFile(`${s.replica}/${IMAGE}`), await Deno.readFile(s.image));
  assert.equal(await s.fills(), 3);
});

Deno.test("obtainEntry(): waits for a live lease up to REPLICA_COPY_LOCK_TIMEOUT, takes an expired one over", async () => {
  await using s = await scratch();
  const now = Math.floor(Date.now() / 1000);
  const lease = (expiresAt: number): Lease => ({
    version: 1,
    owner: "other:9:zz",
    frontend: "other",
    pid: 9,
    source: s.image,
    fill: ".onestor-fill-other",
    reserve: 0,
    acquired_at: now,
    expires_at: expiresAt,
  });
  await Deno.writeTextFile(`${s.replica}/${leaseName(IMAGE)}`, encodeRecord(lease(now + 600)));
  const started = performance.now();
  const waited = await obtainEntry(await s.request("fe:1:a", { lockTimeoutSeconds: 1 }));
  assert.equal(waited.kind, "timeout");
  assert.ok(waited.kind === "timeout" && waited.holder === "other:9:zz");
  assert.ok(performance.now() - started >= 1000);
  await Deno.mkdir(`${s.replica}/.onestor-fill-other`);
  await Deno.writeTextFile(`${s.replica}/${leaseName(IMAGE)}`, encodeRecord(lease(now - 1)));
  const taken = await obtainEntry(await s.request("fe:1:b"));
  assert.equal(taken.kind, "filled");
  await assert.rejects(Deno.stat(`${s.replica}/.onestor-fill-other`));
  assert.match(await Deno.readTextFile(`${s.replica}/.onestor-cache.log`), /lease-takeover/);
});

Deno.test("obtainEntry(): no room under the limits means no fill and no eviction of pinned entries", async () => {
  await using s = await scratch();
  const result = await obtainEntry(
    await s.request("fe:1:a", { limits: { maxBytes: MIB, maxUsedPercent: 100 } }),
  );
  assert.equal(result.kind, "no-room");
  assert.ok(result.kind === "no-room" && /larger than REPLICA_MAX_SIZE_MB/.test(result.reason));
  assert.equal(await s.fills(), 0);
  await assert.rejects(Deno.stat(`${s.replica}/${leaseName(IMAGE)}`));
});
