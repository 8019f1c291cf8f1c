/**
 * Malformed input: broken base64 and XML on standard input (truncated, huge, deeply nested, entity
 * expansion, external entities, wrong roots, invalid UTF-8), malformed and slow XML-RPC answers,
 * garbage configuration files, wrong argument counts. Each must end in a clear one-line error, the
 * driver's exit code (255 for a failure, 2 for a wrong invocation), within its time, and change
 * nothing. The parsers are driven in process with every input; the installed program is run for a
 * representative subset of each kind (its exit code and what oned would show). The counts are
 * printed.
 */

import assert from "node:assert/strict";
import { loadConfig } from "../../config/load.ts";
import { ConfigError, oneLine, OneStorError, UsageError } from "../../core/errors.ts";
import { argumentCountError } from "../../main.ts";
import { encodeBase64Text, parseBase64Xml, parseDriverAction } from "../../core/one/driver_action.ts";
import { OneLookup } from "../../core/one/lookup.ts";
import { OneClient } from "../../core/one/xmlrpc.ts";
import { DS_ACTIONS, TM_ACTIONS } from "../../actions/registry.ts";
import { datastoreXml, imageXml, vmXml } from "../support/fixtures.ts";
import { FakeOned } from "../support/fake_oned.ts";
import { onestor } from "../support/run_onestor.ts";
import { failureInfo } from "../support/world.ts";
import { Seeded, seedOf, soaking } from "../support/seeded.ts";

const counts = { stdin: 0, xmlrpc: 0, config: 0, argv: 0, spawned: 0 };

const b64 = encodeBase64Text;
const DS = datastoreXml({ id: 1, basePath: "/nonexistent-onestor-test/1" });
const GOOD = `<DS_DRIVER_ACTION_DATA>${imageXml({ id: 5 })}${DS}</DS_DRIVER_ACTION_DATA>`;

/** Billion laughs: ten levels of ten references. */
const LAUGHS = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">` +
  Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i || ""};`.repeat(10)}">`).join("") +
  `]><DS_DRIVER_ACTION_DATA><IMAGE><PATH>&lol9;</PATH></IMAGE>${DS}</DS_DRIVER_ACTION_DATA>`;
const EXTERNAL = `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>` +
  `<DS_DRIVER_ACTION_DATA><IMAGE><PATH>&e;</PATH></IMAGE>${DS}</DS_DRIVER_ACTION_DATA>`;
const DEEP = "<a>".repeat(200_000) + "</a>".repeat(200_000);
const DEEP_OPEN = `<DS_DRIVER_ACTION_DATA>${"<x>".repeat(500_000)}`;

/** Base64 standard inputs that are not a usable DS_DRIVER_ACTION_DATA. */
const BAD_STDIN: Record<string, string> = {
  empty: "",
  blank: " \n\t",
  "not base64": "%%% not base64 %%%",
  "base64 with a stray character": b64(GOOD).slice(0, 40) + "*" + b64(GOOD).slice(41),
  "truncated base64": b64(GOOD).slice(0, 101),
  "base64 of nothing xml": b64("hello world"),
  "truncated XML": b64(GOOD.slice(0, Math.floor(GOOD.length / 2))),
  "XML cut inside CDATA": b64(GOOD.slice(0, GOOD.indexOf("<![CDATA[") + 12)),
  "wrong root": b64(`<VM>${DS}</VM>`),
  "two roots": b64(GOOD + GOOD),
  "entity expansion": b64(LAUGHS),
  "external entity": b64(EXTERNAL),
  "undefined entity": b64(
    `<DS_DRIVER_ACTION_DATA><IMAGE><PATH>&bogus;</PATH></IMAGE>${DS}</DS_DRIVER_ACTION_DATA>`,
  ),
  "deeply nested": b64(DEEP),
  "deeply nested, never closed": b64(DEEP_OPEN),
  "huge text, then truncated": b64(`<DS_DRIVER_ACTION_DATA><IMAGE><PATH>${"A".repeat(24 << 20)}`),
  "invalid UTF-8": btoa(String.fromCharCode(0xff, 0xfe, 0x3c, 0x80, 0x81, 0x3e)),
  "NUL bytes": b64(`<DS_DRIVER_ACTION_DATA>\0\0</DS_DRIVER_ACTION_DATA`),
  "mismatched tags": b64(`<DS_DRIVER_ACTION_DATA><IMAGE></DATASTORE></DS_DRIVER_ACTION_DATA>`),
  "raw XML instead of base64": GOOD,
};

Deno.test("DS_DRIVER_ACTION_DATA: every broken or hostile stdin is refused in process, quickly, in one line", () => {
  for (const [what, input] of Object.entries(BAD_STDIN)) {
    counts.stdin++;
    const t0 = performance.now();
    assert.throws(() => parseDriverAction(input), (e: unknown) => {
      assert.ok(e instanceof OneStorError, `${what}: ${e}`);
      assert.ok(!e.message.includes("\n") && e.message.length < 400, `${what}: one short line: ${e.message}`);
      return true;
    }, what);
    assert.ok(performance.now() - t0 < 5000, `${what}: no hang`);
  }
  // The VM XML of premigrate/postmigrate/failmigrate goes through the same decoder.
  for (
    const input of ["", "%%%", b64("<VM>"), b64(LAUGHS.replaceAll("DS_DRIVER_ACTION_DATA", "VM")), b64(DEEP)]
  ) {
    counts.stdin++;
    assert.throws(() => parseBase64Xml(input, "VM", "VM XML"), OneStorError);
  }
});

Deno.test("seeded mutations of a valid stdin: every one parses or is refused with a OneStorError", () => {
  const rng = new Seeded(seedOf(7));
  const n = soaking() ? 20_000 : 1_000;
  const pieces = [
    "<",
    ">",
    "&",
    "&amp;",
    "&#0;",
    "&#x110000;",
    "]]>",
    "<![CDATA[",
    "</IMAGE>",
    "<IMAGE>",
    "\0",
    "\uffff",
    '"',
    "<!--",
    "<?",
  ];
  let accepted = 0;
  for (let i = 0; i < n; i++) {
    let text = GOOD;
    for (let k = rng.int(1, 4); k > 0; k--) {
      const at = rng.int(0, text.length);
      switch (rng.int(0, 3)) {
        case 0:
          text = text.slice(0, at); // truncated
          break;
        case 1:
          text = text.slice(0, at) + rng.pick(pieces) + text.slice(at);
          break;
        case 2:
          text = text.slice(0, at) + text.slice(at + rng.int(1, 40));
          break;
        default:
          text = text.slice(0, at) + String.fromCharCode(rng.int(0, 0x7f)) + text.slice(at + 1);
      }
    }
    const input = rng.next() < 0.1 ? b64(text).slice(0, rng.int(0, b64(text).length)) : b64(text);
    counts.stdin++;
    try {
      const a = parseDriverAction(input);
      // What the actions read first must also fail cleanly or give a value.
      void [a.dsBasePath, a.imageSource, a.imagePath, a.imageType, a.dsType, a.dsId, a.bridgeList];
      accepted++;
    } catch (e) {
      assert.ok(
        e instanceof OneStorError,
        `mutation ${i} (seed ${rng.seed}): ${e}\n${JSON.stringify(text).slice(0, 300)}`,
      );
    }
  }
  console.log(
    `malformed input: ${n} seeded mutations (seed ${rng.seed}): ${
      n - accepted
    } refused, ${accepted} still valid`,
  );
});

/** Runs onestor and checks a clean refusal: the exit code and exactly one line for oned. */
async function refused(
  args: string[],
  options: { stdin?: string; env?: Record<string, string> },
  code = 255,
) {
  counts.spawned++;
  const r = await onestor(args, { ...options, timeoutMs: 60_000 });
  assert.equal(r.code, code, `${args.join(" ")}: exit ${r.code} ${r.stderr}`);
  const info = failureInfo(r.stderr);
  assert.equal(info.length, 1, `${args.join(" ")}: ${JSON.stringify(info)}`);
  assert.equal(r.stdout, "", `${args.join(" ")}: nothing on stdout for oned to record`);
  return info[0];
}

async function scratchEnv(): Promise<{ env: Record<string, string>; root: string }> {
  const root = await Deno.makeTempDir({ prefix: "onestor_malformed_" });
  return {
    root,
    env: {
      ONESTOR_CONFIG_ROOT: root,
      ONESTOR_STATE_DIR: `${root}/state`,
      ONESTOR_METRICS_DIR: `${root}/state/metrics`,
      ONE_XMLRPC: "http://127.0.0.1:9/RPC2",
      ONE_AUTH: `${root}/no_auth`,
    },
  };
}

async function inBatches<T>(items: readonly T[], size: number, fn: (item: T) => Promise<void>) {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

Deno.test("the installed program refuses broken stdin for every datastore action, changing nothing", async () => {
  const { env, root } = await scratchEnv();
  try {
    // Every kind reaches the program through some action, every action gets two kinds.
    const kinds = ["empty", "not base64", "truncated XML", "entity expansion", "deeply nested", "wrong root"];
    const runs = DS_ACTIONS.flatMap((a, i) =>
      [kinds[i % kinds.length], kinds[(i + 3) % kinds.length]].map((k) => ({ action: a.name, kind: k }))
    );
    await inBatches(runs, 6, async ({ action, kind }) => {
      const line = await refused(["ds", action, "5"], { stdin: BAD_STDIN[kind], env });
      assert.doesNotMatch(line, /at file:|Error: |stack/i, `${action}/${kind}: no stack trace: ${line}`);
    });
    // A premigrate with a broken VM XML fails before it touches any host.
    await refused(["tm", "premigrate", "hv1", "hv2", "/var/lib/one/datastores/100/7", "7", "100"], {
      stdin: b64("<VM><ID>7</ID>"),
      env,
    });
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name).filter((n) => n !== "state"), []);
    await assert.rejects(Deno.stat("/nonexistent-onestor-test"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("malformed, hostile and slow XML-RPC answers end in one clear line within the timeout", async () => {
  await using oned = await FakeOned.start();
  oned.addVm(vmXml({ id: 7 }));
  const env = await oned.envFor();
  const client = () => new OneClient({ endpoint: env.ONE_XMLRPC, session: oned.session, timeoutMs: 1500 });
  const envelope = (inner: string) =>
    `<?xml version="1.0"?><methodResponse><params><param><value>${inner}</value></param></params></methodResponse>`;
  const answers: Record<string, Parameters<FakeOned["failNext"]>[1]> = {
    "empty body": { body: "" },
    "not XML": { body: "<<<>>> garbage" },
    "HTML error page": { body: "<html><body>502 Bad Gateway</body></html>" },
    "truncated envelope": { body: envelope("<array><data><value><boolean>1</boolean></value>").slice(0, 90) },
    "wrong types": {
      body: envelope("<array><data><value><i4>1</i4></value><value><i4>5</i4></value></data></array>"),
    },
    "success without a body": {
      body: envelope("<array><data><value><boolean>1</boolean></value></data></array>"),
    },
    "entity expansion": {
      body: LAUGHS.replace(/<DS_DRIVER_ACTION_DATA>.*$/, "<methodResponse>&lol9;</methodResponse>"),
    },
    "deeply nested arrays": { body: envelope("<array><data><value>".repeat(50_000)) },
    "huge string": { body: envelope(`<string>${"x".repeat(16 << 20)}`) },
    "HTTP 500": { httpStatus: 500 },
    "XML-RPC fault": { fault: true, message: "line one\nline two" },
    "dribbled answer": { body: envelope("<string>" + "y".repeat(4096) + "</string>"), dribbleMs: 200 },
  };
  for (const [what, failure] of Object.entries(answers)) {
    counts.xmlrpc++;
    oned.failNext("one.vm.info", failure);
    const t0 = performance.now();
    await assert.rejects(new OneLookup(client()).vm(7), (e: unknown) => {
      assert.ok(e instanceof OneStorError, `${what}: ${e}`);
      // What oned gets is the message on one line (main prints it through oneLine).
      assert.ok(oneLine(e).length < 500, `${what}: one short line: ${oneLine(e).slice(0, 200)}`);
      return true;
    }, what);
    assert.ok(performance.now() - t0 < 6000, `${what}: answered within the timeout`);
  }
  // oned answering slower than the timeout.
  counts.xmlrpc++;
  oned.setDelay(5000);
  const t0 = performance.now();
  await assert.rejects(new OneLookup(client()).vm(7), /no answer within 1\.5 s/);
  assert.ok(performance.now() - t0 < 4000);
  oned.setDelay(0);
  // A VM document that is cut short or not a VM.
  for (const body of ["<VM><ID>7</ID><TEMPLATE>", "<HOST><ID>7</ID></HOST>", LAUGHS]) {
    counts.xmlrpc++;
    oned.setRaw("vm", 7, body);
    await assert.rejects(new OneLookup(client()).vm(7), OneStorError);
  }
  // The same through the program: exit 255 and one line, before any host is contacted.
  oned.setRaw("vm", 7, "<VM><ID>7</ID><TEMPLATE>");
  const { env: scratch, root } = await scratchEnv();
  try {
    const line = await refused(
      ["tm", "resize", "hv1:/var/lib/one/datastores/100/7/disk.0", "64", "7", "100"],
      {
        env: { ...scratch, ...env, ONESTOR_ONED_TIMEOUT: "2" },
      },
    );
    assert.match(line, /VM 7|Malformed XML|not valid/i);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("garbage configuration files: one line naming file and line; shared files warn; nothing runs", async () => {
  const root = await Deno.makeTempDir({ prefix: "onestor_malformed_conf_" });
  const conf = `${root}/var/lib/one/remotes/etc/onestor/onestor.conf`;
  const sshrc = `${root}/var/lib/one/remotes/etc/tm/ssh/sshrc`;
  await Deno.mkdir(conf.slice(0, conf.lastIndexOf("/")), { recursive: true });
  await Deno.mkdir(sshrc.slice(0, sshrc.lastIndexOf("/")), { recursive: true });
  try {
    const pwned = `${root}/pwned`;
    const garbage = [
      "\u0000\u0001\u0002binary\xff\xfe",
      `SSH_OPTS=$(touch ${pwned})`,
      `SSH_OPTS=\`touch ${pwned}\``,
      'SSH_OPTS="-o unterminated',
      "SSH_CONNECT_TIMEOUT=-1",
      "SSH_CONNECT_TIMEOUT=1e3",
      `LOG_LEVEL=${"x".repeat(1 << 20)}`,
      "if true; then SSH_OPTS=-v; fi",
      "TRANSFER_CHECKSUM=crc32",
      "DATASTORE_LOCATION=relative/path",
      "NO_SUCH_KEY=1",
      "=value",
      "REPLICA_FALLBACK=maybe",
    ];
    for (const text of garbage) {
      counts.config++;
      await Deno.writeTextFile(conf, text + "\n");
      assert.throws(() => loadConfig({ root, env: {}, warn: () => {} }), (e: unknown) => {
        assert.ok(e instanceof ConfigError, `${JSON.stringify(text.slice(0, 40))}: ${e}`);
        assert.ok(!e.message.includes("\n") && e.message.length < 1000, e.message.slice(0, 200));
        assert.ok(e.message.includes(conf) || e.message.includes("onestor.conf"), e.message);
        return true;
      });
    }
    await Deno.remove(conf);
    // A shared file (read by other drivers too): unknown keys warn, wrong values of known keys stop.
    for (
      const [text, fatal] of [["GARBAGE LINE WITHOUT EQUALS", true], ["SOME_OTHER_DRIVER_KEY=1", false], [
        "REPLICA_MAX_USED_PERC=lots",
        true,
      ]] as const
    ) {
      counts.config++;
      await Deno.writeTextFile(sshrc, `${text}\n`);
      const warnings: string[] = [];
      if (fatal) {
        assert.throws(() => loadConfig({ root, env: {}, warn: (m) => warnings.push(m) }), ConfigError);
      } else assert.doesNotThrow(() => loadConfig({ root, env: {}, warn: (m) => warnings.push(m) }));
    }
    await Deno.writeTextFile(sshrc, "\n");
    // oned.conf garbage never stops an action: DATASTORE_LOCATION falls back to oned's default.
    counts.config++;
    await Deno.mkdir(`${root}/etc/one`, { recursive: true });
    await Deno.writeTextFile(`${root}/etc/one/oned.conf`, "\xff\u0000DATASTORE_LOCATION = [ unbalanced\n");
    assert.equal(loadConfig({ root, env: {} }).datastoreLocation, "/var/lib/one/datastores");
    // Through the program: exit 255, one line, and the command substitution never ran.
    await Deno.writeTextFile(conf, `SSH_OPTS=$(touch ${pwned})\n`);
    const line = await refused(["tm", "delete", "hv1:/var/lib/one/datastores/100/7", "7", "100"], {
      env: { ONESTOR_CONFIG_ROOT: root, ONESTOR_METRICS_DIR: `${root}/metrics` },
    });
    assert.match(line, /onestor\.conf:1/);
    await assert.rejects(Deno.stat(pwned));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("wrong argument counts for every action: exit 2 and the usage in one line", async () => {
  for (const a of [...TM_ACTIONS, ...DS_ACTIONS]) {
    const [min, max] = a.args;
    const counts_ = [...(min > 0 ? [min - 1] : []), ...(Number.isFinite(max) ? [max + 1] : [])];
    for (const n of counts_) {
      counts.argv++;
      const error = argumentCountError(a, Array(n).fill("1"));
      assert.ok(error instanceof UsageError && error.exitCode === 2, `${a.name} with ${n} arguments`);
      assert.match(error.message, /^Wrong number of arguments for (tm|ds) action \S+: got \d+, expected /);
    }
    assert.equal(argumentCountError(a, Array(min).fill("1")), null);
  }
  // The program itself: exit 2 and that one line (a few actions of each family).
  const { env, root } = await scratchEnv();
  try {
    for (const args of [["tm", "clone", "a", "b"], ["tm", "mv"], ["ds", "cp"], ["ds", "rm", "1", "2"]]) {
      counts.argv++;
      assert.match(await refused(args, { env }, 2), /^Wrong number of arguments for (tm|ds) action /);
    }
    counts.argv++;
    assert.match(await refused(["tm", "no_such_action"], { env }, 2), /Unknown TM action 'no_such_action'/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  console.log(
    `malformed input: ${counts.stdin} broken stdins, ${counts.xmlrpc} bad oned answers, ${counts.config} ` +
      `garbage configurations, ${counts.argv} wrong invocations; ${counts.spawned} runs of the program, ` +
      `each one clear line with the driver's exit code`,
  );
});
