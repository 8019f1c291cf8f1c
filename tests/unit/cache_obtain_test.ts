/**
 * obtainEntry() end to end on this machine: the "replica" and the "hypervisor" are folders reached
 * through a fake ssh that runs commands locally, the "front-end" another folder. The same scripts
 * run as on real hosts (serve, fill, the copy's receiver), so single flight, leases, pins,
 * promotion, cut-through and delivery are exercised for real; the lab test does it across hosts.
 */
import assert from "node:assert/strict";
import { fakeSshRunner } from "../support/fake_ssh.ts";
import {
  encodeRecord,
  entryName,
  type Lease,
  leaseName,
  parseEntry,
  PIN_INFIX,
} from "../../core/cache/entry.ts";
import { fillLeasePrefix } from "../../core/cache/fill.ts";
import { statImage } from "../../core/cache/identity.ts";
import { type Delivery, obtainEntry, type ObtainRequest } from "../../core/cache/obtain.ts";
import { ReplicaFolder } from "../../core/cache/store.ts";
import { scratchConfinement } from "../../core/remote/confine.ts";
import { agreedAlgorithm } from "../../core/transfer/hashes.ts";

const MIB = 1048576;
const IMAGE = "0123456789abcdef0123456789abcdef";

async function sh(script: string): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", script], stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`${script}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

async function scratch(replicaHost = "replica-test") {
  const root = await Deno.makeTempDir({ prefix: "onestor_cache_obtain_" });
  const { runner } = await fakeSshRunner(root);
  const fe = `${root}/fe/datastores/1`;
  const replica = `${root}/replica/datastores/1`;
  const hv = `${root}/hv/datastores/100`;
  await Deno.mkdir(fe, { recursive: true });
  const image = `${fe}/${IMAGE}`;
  await sh(
    `truncate -s 16M ${image} && head -c ${
      2 * MIB
    } /dev/urandom | dd of=${image} bs=1M seek=3 conv=notrunc status=none`,
  );
  const previous = Deno.env.get("ONESTOR_STATE_DIR");
  Deno.env.set("ONESTOR_STATE_DIR", `${root}/state`);
  const folder = () => new ReplicaFolder(runner, replicaHost, replica, 30_000, scratchConfinement(root));
  /** A delivery to `<hv>/<vm>/disk.0`: the "replica" pushes to itself, so no hop is needed here. */
  const delivery = (vm: number, extra: Partial<Delivery["copy"]> = {}): Delivery => ({
    cutThrough: true,
    copy: {
      from: {
        host: replicaHost,
        dir: fe.replace("/fe/", "/replica/"),
        entries: [{ name: IMAGE, as: "disk.0" }, {
          name: `${IMAGE}.snap`,
          as: "disk.0.snap",
          optional: true,
        }],
      },
      to: { host: replicaHost, dir: `${hv}/${vm}`, confine: scratchConfinement(root) },
      route: { mode: "push", address: replicaHost },
      mirror: true,
      ...extra,
    },
  });
  const request = async (owner: string, extra: Partial<ObtainRequest> = {}): Promise<ObtainRequest> => ({
    folder: folder(),
    stat: await statImage(image),
    owner,
    algorithm: "xxh128",
    leaseSeconds: 5,
    lockTimeoutSeconds: 0,
    verify: "size-mtime",
    limits: { maxBytes: null, maxUsedPercent: 100 },
    frontendHopOptions: [],
    compression: "none",
    transferTimeoutMs: 0,
    ...extra,
  });
  const deploy = async (owner: string, vm: number, extra: Partial<ObtainRequest> = {}) =>
    obtainEntry(
      runner,
      await request(owner, {
        pin: { owner, vm, disk: 0, host: "hv-test" },
        delivery: delivery(vm),
        ...extra,
      }),
    );
  return {
    root,
    replica,
    hv,
    image,
    runner,
    request,
    deploy,
    delivery,
    async fills(): Promise<number> {
      const log = await Deno.readTextFile(`${replica}/.onestor-cache.log`).catch(() => "");
      return log.split("\n").filter((l) => l.includes('"fill-start"')).length;
    },
    leftovers(): string[] {
      return [...Deno.readDirSync(replica)].map((e) => e.name).filter((n) =>
        n.includes("fill-") || n.includes("lease") || n.includes(PIN_INFIX) || n.includes(".tmp")
      );
    },
    async [Symbol.asyncDispose]() {
      if (previous === undefined) Deno.env.delete("ONESTOR_STATE_DIR");
      else Deno.env.set("ONESTOR_STATE_DIR", previous);
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test("obtainEntry(): a miss fills, promotes and forwards the disk; the next deployment is a hit", async () => {
  await using s = await scratch();
  const miss = await s.deploy("fe:1:a", 1);
  assert.equal(miss.kind, "filled");
  assert.ok(miss.kind === "filled" && miss.fill.promoted && miss.fill.forward?.ok, JSON.stringify(miss));
  assert.deepEqual(await Deno.readFile(`${s.replica}/${IMAGE}`), await Deno.readFile(s.image));
  assert.deepEqual(await Deno.readFile(`${s.hv}/1/disk.0`), await Deno.readFile(s.image));
  // Sparse on both: 2 MiB of data in a 16 MiB image.
  assert.ok((await Deno.stat(`${s.hv}/1/disk.0`)).blocks! * 512 < 4 * MIB);
  const record = JSON.parse(await Deno.readTextFile(`${s.replica}/${entryName(IMAGE)}`));
  assert.equal(record.version, 2);
  assert.equal(record.source.algorithm, "xxh128");
  assert.equal(record.source.sums[IMAGE], (await sh(`xxhsum -H128 ${s.image}`)).split(" ")[0]);
  const hit = await s.deploy("fe:2:b", 2);
  assert.equal(hit.kind, "hit");
  assert.ok(hit.kind === "hit" && hit.copy?.ok);
  assert.deepEqual(await Deno.readFile(`${s.hv}/2/disk.0`), await Deno.readFile(s.image));
  assert.equal(await s.fills(), 1);
  // Nothing of the fill or the pins is left behind; the hit touched the record (last use).
  assert.deepEqual(s.leftovers(), []);
  assert.deepEqual([...Deno.readDirSync(`${s.hv}/2`)].map((e) => e.name), ["disk.0"]);
});

Deno.test("obtainEntry(): six concurrent deployments, one fill, every disk delivered", async () => {
  await using s = await scratch();
  const outcomes = await Promise.all(Array.from({ length: 6 }, (_, i) => s.deploy(`fe:${i}:x`, 10 + i)));
  assert.deepEqual(outcomes.map((o) => o.kind).sort(), ["filled", "hit", "hit", "hit", "hit", "hit"]);
  assert.equal(await s.fills(), 1);
  const want = await Deno.readFile(s.image);
  for (let i = 0; i < 6; i++) assert.deepEqual(await Deno.readFile(`${s.hv}/${10 + i}/disk.0`), want);
  assert.deepEqual(s.leftovers(), []);
});

Deno.test("obtainEntry(): a changed image or a damaged entry is filled again", async () => {
  await using s = await scratch();
  await s.deploy("fe:1:a", 1);
  await Deno.truncate(`${s.replica}/${IMAGE}`, MIB);
  assert.equal((await s.deploy("fe:1:b", 2)).kind, "filled");
  // New content on the front-end (same size): the entry no longer matches.
  await sh(`head -c ${MIB} /dev/urandom | dd of=${s.image} bs=1M seek=8 conv=notrunc status=none`);
  assert.equal((await s.deploy("fe:1:c", 3)).kind, "filled");
  assert.deepEqual(await Deno.readFile(`${s.replica}/${IMAGE}`), await Deno.readFile(s.image));
  assert.deepEqual(await Deno.readFile(`${s.hv}/3/disk.0`), await Deno.readFile(s.image));
  assert.equal(await s.fills(), 3);
});

Deno.test("obtainEntry(): REPLICA_CACHE_VERIFY=checksum drops a rewritten entry of the same size and mtime", async () => {
  await using s = await scratch();
  await s.deploy("fe:1:a", 1);
  const cached = `${s.replica}/${IMAGE}`;
  await sh(
    `m=$(stat -c %Y ${cached}) && printf onestor-corrupt! | dd of=${cached} bs=1 seek=${
      3 * MIB
    } conv=notrunc status=none && touch -d @$m ${cached}`,
  );
  // Size and mtime unchanged: only a content check sees it.
  assert.equal((await s.deploy("fe:1:b", 2)).kind, "hit");
  await sh(
    `m=$(stat -c %Y ${cached}) && printf onestor-corrupt! | dd of=${cached} bs=1 seek=${
      3 * MIB
    } conv=notrunc status=none && touch -d @$m ${cached}`,
  );
  const checked = await s.deploy("fe:1:c", 3, { verify: "checksum" });
  assert.equal(checked.kind, "filled");
  assert.deepEqual(await Deno.readFile(`${s.hv}/3/disk.0`), await Deno.readFile(s.image));
  assert.match(await Deno.readTextFile(`${s.replica}/.onestor-cache.log`), /"event":"drop"/);
});

Deno.test("obtainEntry(): an entry from an earlier boot of the replica has its content checked once, then is trusted", async () => {
  await using s = await scratch();
  const boot = (await Deno.readTextFile("/proc/sys/kernel/random/boot_id")).trim();
  const recordFile = `${s.replica}/${entryName(IMAGE)}`;
  const cached = `${s.replica}/${IMAGE}`;
  // Size and mtime kept: what a crash leaves of a file whose data had not reached the disk.
  const damage = () =>
    sh(
      `m=$(stat -c %Y ${cached}) && head -c ${MIB} /dev/zero | dd of=${cached} bs=1M seek=3 conv=notrunc ` +
        `status=none && touch -d @$m ${cached}`,
    );
  const rewriteBoot = async (to: string | null) => {
    const text = (await Deno.readTextFile(recordFile)).replace(/,"boot":"[^"]*"/, "");
    await Deno.writeTextFile(recordFile, to === null ? text : `${text.slice(0, -1)},"boot":"${to}"}`);
  };
  assert.equal((await s.deploy("fe:1:a", 1)).kind, "filled");
  assert.equal(parseEntry(await Deno.readTextFile(recordFile))?.boot, boot);

  // Promoted in an earlier boot and damaged: the first use checks it, drops it and fills again.
  await rewriteBoot("00000000-0000-0000-0000-000000000000");
  await damage();
  assert.equal((await s.deploy("fe:1:b", 2)).kind, "filled");
  assert.deepEqual(await Deno.readFile(`${s.hv}/2/disk.0`), await Deno.readFile(s.image));
  assert.match(
    await Deno.readTextFile(`${s.replica}/.onestor-cache.log`),
    /"event":"drop".*checksum mismatch on the replica \(first use since the replica started\)/,
  );

  // A sound entry whose record has no boot (an older version's): checked once, stamped, served.
  await rewriteBoot(null);
  assert.equal((await s.deploy("fe:1:c", 3)).kind, "hit");
  assert.deepEqual(await Deno.readFile(`${s.hv}/3/disk.0`), await Deno.readFile(s.image));
  assert.equal(parseEntry(await Deno.readTextFile(recordFile))?.boot, boot);
  assert.match(await Deno.readTextFile(`${s.replica}/.onestor-cache.log`), /"event":"reverify"/);
  assert.equal(await s.fills(), 2);

  // Within one boot a hit checks size and mtime only (REPLICA_CACHE_VERIFY=size-mtime): the same
  // damage now goes unseen, which is what the check of every use (checksum) is for.
  await damage();
  assert.equal((await s.deploy("fe:1:d", 4)).kind, "hit");
  assert.notDeepEqual(await Deno.readFile(`${s.hv}/4/disk.0`), await Deno.readFile(s.image));
});

Deno.test("obtainEntry(): a replica that cannot check an entry from an earlier boot drops it; the fill again uses blake2b", async () => {
  await using s = await scratch("replica-noxxh");
  const recordFile = `${s.replica}/${entryName(IMAGE)}`;
  assert.equal((await s.deploy("fe:1:a", 1)).kind, "filled");
  assert.equal(parseEntry(await Deno.readTextFile(recordFile))?.source.algorithm, "xxh128");
  // Within the boot it was filled in, the entry is served without its content being read.
  assert.equal((await s.deploy("fe:1:b", 2)).kind, "hit");
  const text = await Deno.readTextFile(recordFile);
  await Deno.writeTextFile(recordFile, text.replace(/"boot":"[^"]*"/, '"boot":"earlier"'));
  const again = await s.deploy("fe:1:c", 3);
  assert.equal(again.kind, "filled");
  assert.deepEqual(await Deno.readFile(`${s.hv}/3/disk.0`), await Deno.readFile(s.image));
  assert.equal(parseEntry(await Deno.readTextFile(recordFile))?.source.algorithm, "blake2b");
  // Remembered: the next fill for this replica agrees on blake2b from the start.
  assert.equal(agreedAlgorithm("xxh128", [null, "replica-noxxh"], `${s.root}/state`), "blake2b");
  assert.equal(agreedAlgorithm("xxh128", [null, "replica-test"], `${s.root}/state`), "xxh128");
});

Deno.test("obtainEntry(): waits for a live lease up to REPLICA_COPY_LOCK_TIMEOUT, takes an expired one over", async () => {
  await using s = await scratch();
  const now = Math.floor(Date.now() / 1000);
  const lease = (expiresAt: number): Lease => ({
    version: 2,
    owner: "other:9:zz",
    frontend: "other",
    pid: 9,
    source: s.image,
    fill: ".onestor-fill-other",
    reserve: 0,
    acquired_at: now,
    expires_at: expiresAt,
  });
  await Deno.mkdir(s.replica, { recursive: true });
  await Deno.writeTextFile(`${s.replica}/${leaseName(IMAGE)}`, encodeRecord(lease(now + 600)));
  const started = performance.now();
  const waited = await s.deploy("fe:1:a", 1, { lockTimeoutSeconds: 1 });
  assert.equal(waited.kind, "timeout");
  assert.ok(waited.kind === "timeout" && waited.holder === "other:9:zz");
  assert.ok(performance.now() - started >= 1000);
  await Deno.mkdir(`${s.replica}/.onestor-fill-other`);
  await Deno.writeTextFile(`${s.replica}/${leaseName(IMAGE)}`, encodeRecord(lease(now - 1)));
  const taken = await s.deploy("fe:1:b", 2);
  assert.equal(taken.kind, "filled");
  await assert.rejects(Deno.stat(`${s.replica}/.onestor-fill-other`));
  assert.match(await Deno.readTextFile(`${s.replica}/.onestor-cache.log`), /lease-takeover/);
});

Deno.test("obtainEntry(): a deployment waiting for another's fill is served when it is promoted", async () => {
  await using s = await scratch();
  // Another process holds a live lease (it renews it), then promotes: the waiter wakes and copies.
  const first = await s.deploy("fe:1:a", 1);
  assert.equal(first.kind, "filled");
  const record = await Deno.readTextFile(`${s.replica}/${entryName(IMAGE)}`);
  await Deno.remove(`${s.replica}/${entryName(IMAGE)}`);
  const stat = await statImage(s.image);
  const now = Math.floor(Date.now() / 1000);
  await Deno.writeTextFile(
    `${s.replica}/${leaseName(IMAGE)}`,
    `${fillLeasePrefix(stat, "other:9:zz")}${now},"expires_at":${now + 600}}`,
  );
  setTimeout(() => {
    Deno.writeTextFileSync(`${s.replica}/${entryName(IMAGE)}`, record);
    Deno.removeSync(`${s.replica}/${leaseName(IMAGE)}`);
  }, 1500);
  const started = performance.now();
  const served = await s.deploy("fe:2:b", 2);
  assert.equal(served.kind, "hit");
  assert.ok(performance.now() - started >= 1000);
  assert.deepEqual(await Deno.readFile(`${s.hv}/2/disk.0`), await Deno.readFile(s.image));
  assert.equal(await s.fills(), 1);
});

Deno.test("obtainEntry(): no room under the limits means no fill and no lease left", async () => {
  await using s = await scratch();
  const result = await s.deploy("fe:1:a", 1, { limits: { maxBytes: MIB, maxUsedPercent: 100 } });
  assert.equal(result.kind, "no-room");
  assert.ok(result.kind === "no-room" && /larger than REPLICA_MAX_SIZE_MB/.test(result.reason));
  assert.equal(await s.fills(), 0);
  await assert.rejects(Deno.stat(`${s.replica}/${leaseName(IMAGE)}`));
});

Deno.test("obtainEntry(): with the cut-through off, the fill is promoted first, then served", async () => {
  await using s = await scratch();
  const d = s.delivery(1);
  const result = await obtainEntry(
    s.runner,
    await s.request("fe:1:a", {
      pin: { owner: "fe:1:a", vm: 1, disk: 0, host: "hv-test" },
      delivery: { ...d, cutThrough: false },
    }),
  );
  assert.equal(result.kind, "hit");
  assert.deepEqual(await Deno.readFile(`${s.hv}/1/disk.0`), await Deno.readFile(s.image));
  assert.equal(await s.fills(), 1);
});

Deno.test("obtainEntry(): a warm-up (no pin, no delivery) fills once and then finds the entry", async () => {
  await using s = await scratch();
  assert.equal((await obtainEntry(s.runner, await s.request("fe:1:a"))).kind, "filled");
  assert.equal((await obtainEntry(s.runner, await s.request("fe:1:b"))).kind, "hit");
  assert.equal(await s.fills(), 1);
  assert.deepEqual(s.leftovers(), []);
});
