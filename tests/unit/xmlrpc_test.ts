import assert from "node:assert/strict";
import { ConfigError, OnedError } from "../../core/errors.ts";
import { OneLookup } from "../../core/one/lookup.ts";
import {
  encodeMethodCall,
  OneClient,
  OnedCallError,
  OnedErrorCode,
  parseMethodResponse,
} from "../../core/one/xmlrpc.ts";
import { childText } from "../../core/one/xml.ts";
import { FakeOned } from "../support/fake_oned.ts";
import { datastoreXml, hostXml, imageDisk, vmXml } from "../support/fixtures.ts";

function envOf(vars: Record<string, string>): { get(name: string): string | undefined } {
  return { get: (name) => vars[name] };
}

async function clientFor(oned: FakeOned, extra: Record<string, string> = {}): Promise<OneClient> {
  return new OneClient({ env: envOf({ ...(await oned.envFor()), ...extra }) });
}

Deno.test("`encodeMethodCall()` escapes strings and types params", () => {
  const xml = encodeMethodCall("one.vm.info", ["a<b&c", 7, false, 1.5]);
  assert.match(xml, /<methodName>one\.vm\.info<\/methodName>/);
  assert.match(xml, /<string>a&lt;b&amp;c<\/string>/);
  assert.match(xml, /<int>7<\/int>/);
  assert.match(xml, /<boolean>0<\/boolean>/);
  assert.match(xml, /<double>1\.5<\/double>/);
});

Deno.test("`parseMethodResponse()` decodes arrays, i8, untyped strings and faults", () => {
  const ok = parseMethodResponse(
    "<methodResponse><params><param><value><array><data>" +
      "<value><boolean>0</boolean></value><value>plain &lt;VM&gt;<![CDATA[x]]></value>" +
      "<value><i4>1024</i4></value><value><int>7</int></value><value><i8>0</i8></value>" +
      "<value><ex:nil/></value><value><struct><member><name>k</name><value><double>2.5</double></value>" +
      "</member></struct></value></data></array></value></param></params></methodResponse>",
  );
  assert.equal(ok.fault, false);
  const value = ok.fault ? [] : ok.value as unknown[];
  assert.deepEqual(value.slice(0, 6), [false, "plain <VM>x", 1024, 7, 0, null]);
  assert.deepEqual({ ...value[6] as object }, { k: 2.5 });
  const fault = parseMethodResponse(
    "<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>-501</int></value>" +
      "</member><member><name>faultString</name><value><string>Type mismatch</string></value></member>" +
      "</struct></value></fault></methodResponse>",
  );
  assert.deepEqual(fault, { fault: true, code: -501, message: "Type mismatch" });
});

Deno.test("`OneClient.vmInfo()` returns the VM document and sends session, id, decrypt", async () => {
  await using oned = await FakeOned.start();
  oned.addVm(vmXml({ id: 7, disks: [imageDisk({ DISK_ID: 0, SIZE: 1234 })] }));
  const client = await clientFor(oned);
  const vm = await client.vmInfo(7);
  assert.equal(vm.name, "VM");
  assert.equal(childText(vm, "ID"), "7");
  assert.deepEqual(oned.calls, [{ method: "one.vm.info", session: oned.session, params: [7, false] }]);
});

Deno.test("`OneClient.datastoreInfo()` and `hostInfo()` by id call the info methods", async () => {
  await using oned = await FakeOned.start();
  oned.addDatastore(datastoreXml({ id: 100, template: { REPLICA_HOST: "replica1" } }));
  oned.addHost(hostXml({ id: 3, name: "hv3" }));
  const client = await clientFor(oned);
  assert.equal(childText(await client.datastoreInfo(100), "ID"), "100");
  assert.equal(childText(await client.hostInfo(3), "NAME"), "hv3");
  assert.equal(childText(await client.hostInfo("3"), "NAME"), "hv3");
  assert.deepEqual(oned.calls.map((c) => [c.method, c.params]), [
    ["one.datastore.info", [100, false]],
    ["one.host.info", [3, false]],
    ["one.host.info", [3, false]],
  ]);
});

Deno.test("`OneClient.hostInfo()` by name searches the host pool", async () => {
  await using oned = await FakeOned.start();
  oned.addHost(hostXml({ id: 1, name: "host1" }));
  oned.addHost(hostXml({ id: 2, name: "host2", template: { REPLICA_STORAGE_IP: "127.1.1.2" } }));
  const client = await clientFor(oned);
  const host = await client.hostInfo("host2");
  assert.equal(childText(host, "ID"), "2");
  assert.equal(oned.callCount("one.hostpool.info"), 1);
  assert.equal(oned.callCount("one.host.info"), 0);
  await assert.rejects(client.hostInfo("nohost"), (e: unknown) => {
    assert.ok(e instanceof OnedCallError);
    assert.equal(e.message, "oned has no host named nohost");
    assert.equal(e.code, OnedErrorCode.NO_EXISTS);
    return true;
  });
});

Deno.test("`OneClient.vmInfo()` reports oned's error for an unknown VM", async () => {
  await using oned = await FakeOned.start();
  const client = await clientFor(oned);
  await assert.rejects(client.vmInfo(7), (e: unknown) => {
    assert.ok(e instanceof OnedCallError && e instanceof OnedError);
    assert.equal(
      e.message,
      "oned refused one.vm.info for VM 7: [one.vm.info] Error getting virtual machine [7].",
    );
    assert.equal(e.kind, "refused");
    assert.equal(e.code, OnedErrorCode.NO_EXISTS);
    assert.equal(e.method, "one.vm.info");
    assert.equal(e.endpoint, oned.endpoint);
    return true;
  });
  await assert.rejects(client.datastoreInfo(5), /Error getting datastore \[5\]\.$/);
});

Deno.test("`OneClient` names the credentials file when authentication fails", async () => {
  await using oned = await FakeOned.start();
  oned.addVm(vmXml({ id: 1 }));
  const env = await oned.envFor({ session: "oneadmin:wrong" });
  const client = new OneClient({ env: envOf(env) });
  await assert.rejects(client.vmInfo(1), (e: unknown) => {
    assert.ok(e instanceof OnedCallError);
    assert.equal(e.code, OnedErrorCode.AUTHENTICATION);
    assert.equal(
      e.message,
      "oned refused one.vm.info for VM 1: [one.vm.info] User couldn't be authenticated, aborting call. " +
        `(check the credentials in ${env.ONE_AUTH})`,
    );
    return true;
  });
  assert.equal(oned.calls[0].session, "oneadmin:wrong");
});

Deno.test("`OneClient` reads only the first line of the auth file", async () => {
  await using oned = await FakeOned.start();
  oned.addVm(vmXml({ id: 1 }));
  const env = await oned.envFor();
  await Deno.writeTextFile(env.ONE_AUTH, `${oned.session}  \nsecond line\n`);
  await new OneClient({ env: envOf(env) }).vmInfo(1);
  assert.equal(oned.calls[0].session, oned.session);
});

Deno.test("`OneClient` falls back to ~/.one/one_auth and ~/.one/one_endpoint", async () => {
  await using oned = await FakeOned.start();
  oned.addVm(vmXml({ id: 2 }));
  const home = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${home}/.one`);
    await Deno.writeTextFile(`${home}/.one/one_auth`, `${oned.session}\n`);
    await Deno.writeTextFile(`${home}/.one/one_endpoint`, `${oned.endpoint}\n`);
    // ONE_AUTH pointing at nothing falls through, as in OpenNebula's client.
    const client = new OneClient({ env: envOf({ HOME: home, ONE_AUTH: `${home}/missing` }) });
    assert.equal(client.endpoint, oned.endpoint);
    assert.equal(childText(await client.vmInfo(2), "ID"), "2");
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("`OneClient` uses the default endpoint and says when credentials are missing", async () => {
  const home = await Deno.makeTempDir();
  try {
    const client = new OneClient({ env: envOf({ HOME: home }) });
    if (!(await Deno.stat("/var/lib/one/.one/one_endpoint").catch(() => null))) {
      assert.equal(client.endpoint, "http://localhost:2633/RPC2");
    }
    if (!(await Deno.stat("/var/lib/one/.one/one_auth").catch(() => null))) {
      await assert.rejects(client.vmInfo(1), (e: unknown) => {
        assert.ok(e instanceof OnedError);
        assert.match(e.message, /^No OpenNebula credentials: set ONE_AUTH/);
        return true;
      });
    }
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("`OneClient` reports a refused connection with the endpoint", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const endpoint = `http://127.0.0.1:${port}/RPC2`;
  const client = new OneClient({ endpoint, session: "a:b" });
  await assert.rejects(client.vmInfo(1), (e: unknown) => {
    assert.ok(e instanceof OnedCallError);
    assert.equal(e.message, `Cannot reach oned at ${endpoint}: connection refused`);
    assert.equal(e.kind, "unreachable");
    return true;
  });
});

Deno.test("`OneClient` gives up after the timeout", async () => {
  await using oned = await FakeOned.start();
  oned.addVm(vmXml({ id: 1 }));
  oned.setDelay(1000);
  const client = await clientFor(oned, { ONESTOR_ONED_TIMEOUT: "0.1" });
  assert.equal(client.timeoutMs, 100);
  const start = performance.now();
  await assert.rejects(client.vmInfo(1), (e: unknown) => {
    assert.ok(e instanceof OnedCallError);
    assert.equal(e.kind, "timeout");
    assert.equal(e.message, `Cannot reach oned at ${oned.endpoint}: no answer within 0.1 s`);
    return true;
  });
  assert.ok(performance.now() - start < 900);
  assert.throws(() => new OneClient({ env: envOf({ ONESTOR_ONED_TIMEOUT: "soon" }) }), ConfigError);
});

Deno.test("`OneClient` reports faults, HTTP errors and malformed answers", async () => {
  await using oned = await FakeOned.start();
  oned.addVm(vmXml({ id: 1 }));
  const client = await clientFor(oned);
  oned.failNext("one.vm.info", { fault: true, code: -501, message: "Type mismatch" });
  await assert.rejects(
    client.vmInfo(1),
    new RegExp(
      `^OnedCallError: oned at ${oned.endpoint} rejected one.vm.info \\(fault -501\\): Type mismatch$`,
    ),
  );
  oned.failNext("one.vm.info", { httpStatus: 503 });
  await assert.rejects(client.vmInfo(1), (e: unknown) => {
    assert.ok(e instanceof OnedCallError);
    assert.equal(e.kind, "http");
    assert.match(e.message, /answered one\.vm\.info with HTTP 503/);
    return true;
  });
  oned.failNext("one.vm.info", {
    message: "[one.vm.info] The resource virtual machine is locked.",
    code: 0x8000,
  });
  await assert.rejects(
    client.vmInfo(1),
    /for VM 1: \[one\.vm\.info\] The resource virtual machine is locked\.$/,
  );
  oned.setRaw("vm", 1, "<VM><ID>1</ID><NAME>broken");
  await assert.rejects(client.vmInfo(1), (e: unknown) => {
    assert.ok(e instanceof OnedCallError);
    assert.equal(e.kind, "malformed");
    assert.match(e.message, /sent a malformed answer to one\.vm\.info: Malformed XML/);
    return true;
  });
  assert.equal(oned.callCount("one.vm.info"), 4);
});

Deno.test("`OneLookup` makes one call per object per process", async () => {
  await using oned = await FakeOned.start();
  oned.addVm(vmXml({ id: 7, history: [{ dsId: 100, hostname: "host1" }] }));
  oned.addDatastore(datastoreXml({ id: 100, template: { REPLICA_HOST: "replica1" } }));
  oned.addHost(hostXml({ id: 1, name: "host1", template: { REPLICA_STORAGE_IP: "127.0.0.11" } }));
  oned.addHost(hostXml({ id: 2, name: "host2" }));
  const lookup = new OneLookup(await clientFor(oned));

  const [a, b] = await Promise.all([lookup.vm(7), lookup.vm(7)]);
  assert.equal(a, b);
  assert.equal((await lookup.vm(7)).systemDsId, 100);
  assert.equal((await lookup.systemDatastore(7)).replicaHost, "replica1");
  assert.equal((await lookup.datastore(100)).id, 100);
  assert.equal((await lookup.host("host1")).replicaStorageIp, "127.0.0.11");
  assert.equal((await lookup.host("host2")).id, 2);
  assert.equal((await lookup.host(2)).name, "host2", "by id after the pool was read: no extra call");
  assert.equal((await lookup.host("host1")).id, 1);

  assert.equal(oned.callCount("one.vm.info"), 1);
  assert.equal(oned.callCount("one.datastore.info"), 1);
  assert.equal(oned.callCount("one.hostpool.info"), 1);
  assert.equal(oned.callCount("one.host.info"), 0);
  assert.equal(oned.callCount(), 3);
});

Deno.test("`OneLookup` retries after a failure and reports missing hosts", async () => {
  await using oned = await FakeOned.start();
  oned.addVm(vmXml({ id: 7, history: [] }));
  const lookup = new OneLookup(await clientFor(oned));
  oned.failNext("one.vm.info");
  await assert.rejects(lookup.vm(7), /Internal error/);
  assert.equal((await lookup.vm(7)).id, 7);
  await assert.rejects(lookup.systemDatastore(7), /^OnedError: VM 7 has no history record/);
  await assert.rejects(lookup.host("ghost"), /^OnedCallError: oned has no host named ghost$/);
  oned.addHost(hostXml({ id: 4 }));
  const fresh = new OneLookup(await clientFor(oned));
  assert.equal((await fresh.host(4)).name, "host4");
  assert.equal(oned.callCount("one.host.info"), 1);
});

Deno.test("`FakeOned` rejects wrong parameter types like xmlrpc-c", async () => {
  await using oned = await FakeOned.start();
  const client = await clientFor(oned);
  await assert.rejects(client.call("one.vm.info", ["7"]), /fault -501/);
  await assert.rejects(client.call("one.nothing", []), /fault -506/);
});

Deno.test("`FakeOned.envFor()` points a separate onestor process at the fake", async () => {
  await using oned = await FakeOned.start();
  oned.addVm(vmXml({ id: 7, history: [{ dsId: 100 }] }));
  oned.addDatastore(datastoreXml({ id: 100, template: { REPLICA_HOST: "replica1" } }));
  const lookup = JSON.stringify(new URL("../../core/one/lookup.ts", import.meta.url).href);
  const script = `import { OneLookup } from ${lookup};
const ds = await new OneLookup().systemDatastore(7); console.log(ds.replicaHost);`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", script],
    env: await oned.envFor(),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(new TextDecoder().decode(out.stderr), "");
  assert.equal(new TextDecoder().decode(out.stdout), "replica1\n");
  assert.deepEqual(oned.calls.map((c) => c.method), ["one.vm.info", "one.datastore.info"]);
});
