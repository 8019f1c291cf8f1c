/**
 * A fake oned: an XML-RPC server on 127.0.0.1 (random port) answering `one.vm.info`,
 * `one.datastore.info`, `one.host.info`, `one.image.info`, `one.hostpool.info`,
 * `one.datastorepool.info`, `one.vmpool.info` (oned's short VM form) and `one.vmpool.infoextended`
 * from objects a test registers, with oned's answer shapes (`[true, xml, 0]`, `[false, "[one.vm.info] Error getting virtual
 * machine [7].", 1024, 7, 0]`). It checks the session string and records every call.
 *
 * Lab hosts share the machine's network namespace, so actions running inside them reach the fake
 * at the same `127.0.0.1` endpoint; write the auth file where they can read it (`envFor({dir})`).
 *
 * @example
 * ```ts
 * await using oned = await FakeOned.start();
 * oned.addVm(vmXml({ id: 7 }));
 * const env = await oned.envFor(); // { ONE_XMLRPC, ONE_AUTH }
 * // ... run an action with env ...
 * assert.equal(oned.callCount("one.vm.info"), 1);
 * ```
 *
 * @module
 */

import { childElement, parseXml, type XmlElement } from "../../core/one/xml.ts";

/** A parameter as the fake decoded it. */
export type FakeParam = string | number | boolean | null | FakeParam[];

/** One call the fake received. */
export interface RecordedCall {
  /** Method name, e.g. `one.vm.info`. */
  method: string;
  /** Session string sent as first parameter. */
  session: string;
  /** Remaining parameters. */
  params: FakeParam[];
}

/** A failure to inject for the next call(s) of a method. */
export interface InjectedFailure {
  /** Answer with an XML-RPC fault instead of oned's `[false, ...]` array. */
  fault?: boolean;
  /** oned error code (default 0x2000 INTERNAL) or fault code (default -500). */
  code?: number;
  /** Error text (default `[<method>] Internal error.`). */
  message?: string;
  /** Answer with this HTTP status and a plain body instead. */
  httpStatus?: number;
  /** How many calls fail (default 1). */
  times?: number;
  /** Answer with this body (HTTP 200, text/xml) verbatim: a malformed or hostile answer. */
  body?: string;
  /** With `body`: send it in pieces of `dribbleBytes`, one every `dribbleMs` (a slow answer). */
  dribbleMs?: number;
  /** Piece size of a dribbled body (default 16 bytes). */
  dribbleBytes?: number;
}

/** Options of {@linkcode FakeOned.start}. */
export interface FakeOnedOptions {
  /** Session string oned accepts (default `oneadmin:fakepass`). */
  session?: string;
  /** Address to listen on (default 127.0.0.1). */
  hostname?: string;
}

type Kind = "vm" | "datastore" | "host" | "image";

const OBJECT_NAMES: Record<Kind, string> = {
  vm: "virtual machine",
  datastore: "datastore",
  host: "host",
  image: "image",
};
const ROOTS: Record<Kind, string> = { vm: "VM", datastore: "DATASTORE", host: "HOST", image: "IMAGE" };

function escapeText(text: string): string {
  // xmlrpc-c escapes '<', '&' and CR; '>' is escaped here too, which is also valid.
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll(
    "\r",
    "&#x0d;",
  );
}

function valueXml(v: string | number | boolean | bigint): string {
  if (typeof v === "boolean") return `<value><boolean>${v ? 1 : 0}</boolean></value>`;
  if (typeof v === "bigint") return `<value><i8>${v}</i8></value>`;
  if (typeof v === "number") return `<value><i4>${v}</i4></value>`;
  return `<value><string>${escapeText(v)}</string></value>`;
}

function responseXml(values: (string | number | boolean | bigint)[]): string {
  return '<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n<params>\r\n<param><value><array><data>\r\n' +
    values.map(valueXml).join("\r\n") +
    "\r\n</data></array></value></param>\r\n</params>\r\n</methodResponse>\r\n";
}

function faultXml(code: number, message: string): string {
  return '<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n<fault>\r\n<value><struct>\r\n' +
    `<member><name>faultCode</name>\r\n<value><i4>${code}</i4></value></member>\r\n` +
    `<member><name>faultString</name>\r\n<value><string>${
      escapeText(message)
    }</string></value></member>\r\n` +
    "</struct></value>\r\n</fault>\r\n</methodResponse>\r\n";
}

function decodeParam(value: XmlElement): FakeParam {
  const typed = value.children[0];
  if (!typed) return value.text;
  switch (typed.name) {
    case "string":
      return typed.text;
    case "int":
    case "i4":
    case "i8":
    case "double":
      return Number(typed.text);
    case "boolean":
      return typed.text.trim() === "1";
    case "array":
      return (childElement(typed, "data")?.children ?? []).map(decodeParam);
    case "nil":
      return null;
    default:
      throw new Error(`Unsupported parameter type <${typed.name}>`);
  }
}

/** A verbatim answer, all at once or dribbled slowly until the client gives up. */
function rawResponse(failure: InjectedFailure, signal: AbortSignal): Response {
  const bytes = new TextEncoder().encode(failure.body ?? "");
  const headers = { "content-type": "text/xml" };
  if (!failure.dribbleMs) return new Response(bytes, { headers });
  const piece = failure.dribbleBytes ?? 16;
  let at = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (at >= bytes.length || signal.aborted) return controller.close();
      await new Promise((r) => setTimeout(r, failure.dribbleMs));
      controller.enqueue(bytes.subarray(at, at + piece));
      at += piece;
    },
  });
  return new Response(stream, { headers });
}

/** An in-process fake of oned's XML-RPC API. */
export class FakeOned {
  /** The endpoint URL, `http://127.0.0.1:<port>/RPC2`. */
  readonly endpoint: string;
  /** The session string the fake accepts. */
  readonly session: string;
  /** Every call received, in order. */
  readonly calls: RecordedCall[] = [];
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #objects: Record<Kind, Map<number, string>> = {
    vm: new Map(),
    datastore: new Map(),
    host: new Map(),
    image: new Map(),
  };
  readonly #failures = new Map<string, InjectedFailure & { left: number }>();
  readonly #tempDirs: string[] = [];
  #delayMs = 0;

  private constructor(options: FakeOnedOptions) {
    this.session = options.session ?? "oneadmin:fakepass";
    this.#server = Deno.serve(
      { hostname: options.hostname ?? "127.0.0.1", port: 0, onListen() {} },
      (request) => this.#handle(request),
    );
    const { hostname, port } = this.#server.addr;
    this.endpoint = `http://${hostname}:${port}/RPC2`;
  }

  /** Starts a fake on a free port. */
  static start(options: FakeOnedOptions = {}): Promise<FakeOned> {
    return Promise.resolve(new FakeOned(options));
  }

  #register(kind: Kind, xml: string): number {
    const root = parseXml(xml);
    if (root.name !== ROOTS[kind]) throw new Error(`Expected <${ROOTS[kind]}>, got <${root.name}>`);
    const id = Number(childElement(root, "ID")?.text);
    if (!Number.isInteger(id)) throw new Error(`<${root.name}> without a numeric ID`);
    this.#objects[kind].set(id, xml);
    return id;
  }

  /** Registers (or replaces) a VM from its `<VM>` XML; returns its id. */
  addVm(xml: string): number {
    return this.#register("vm", xml);
  }
  /** Registers (or replaces) a datastore from its `<DATASTORE>` XML; returns its id. */
  addDatastore(xml: string): number {
    return this.#register("datastore", xml);
  }
  /** Registers (or replaces) a host from its `<HOST>` XML; returns its id. */
  addHost(xml: string): number {
    return this.#register("host", xml);
  }
  /** Registers (or replaces) an image from its `<IMAGE>` XML; returns its id. */
  addImage(xml: string): number {
    return this.#register("image", xml);
  }
  /** Answers the info call of object `id` with `body` verbatim (for malformed answers). */
  setRaw(kind: Kind, id: number, body: string): void {
    this.#objects[kind].set(id, body);
  }
  /** Forgets an object, so later lookups get oned's "Error getting ..." answer. */
  remove(kind: Kind, id: number): void {
    this.#objects[kind].delete(id);
  }

  /** Makes the next call(s) of `method` fail as described. */
  failNext(method: string, failure: InjectedFailure = {}): void {
    this.#failures.set(method, { ...failure, left: failure.times ?? 1 });
  }

  /** Delays every answer by `ms` (to exercise client timeouts). */
  setDelay(ms: number): void {
    this.#delayMs = ms;
  }

  /** Number of calls received, of `method` only when given. */
  callCount(method?: string): number {
    return method === undefined ? this.calls.length : this.calls.filter((c) => c.method === method).length;
  }

  /** Forgets the recorded calls. */
  resetCalls(): void {
    this.calls.length = 0;
  }

  /**
   * Environment that points onestor at this fake: `ONE_XMLRPC` and `ONE_AUTH` (a file holding the
   * session, written in `dir` or a new temporary directory removed by {@linkcode close}).
   */
  async envFor(options: { dir?: string; session?: string } = {}): Promise<Record<string, string>> {
    let dir = options.dir;
    if (dir === undefined) {
      dir = await Deno.makeTempDir({ prefix: "fake_oned_" });
      this.#tempDirs.push(dir);
    }
    const authFile = `${dir}/one_auth`;
    await Deno.writeTextFile(authFile, `${options.session ?? this.session}\n`, { mode: 0o600 });
    return { ONE_XMLRPC: this.endpoint, ONE_AUTH: authFile };
  }

  /** Stops the server and removes the temporary auth files. */
  async close(): Promise<void> {
    await this.#server.shutdown();
    for (const dir of this.#tempDirs.splice(0)) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  /** Same as {@linkcode close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * `one.vmpool.info[extended] (session, filter, start, end, state[, query])` (signature A:siiiis):
   * every registered VM in the range whose STATE matches (-1: all but DONE, -2: all). The short
   * form keeps what oned's `VirtualMachine::to_xml_short` keeps of each DISK (DISK_ID, DATASTORE,
   * DATASTORE_ID, IMAGE, IMAGE_ID, SIZE, TYPE, CLONE, CLONE_TARGET, LN_TARGET,
   * DISK_SNAPSHOT_TOTAL_SIZE): no FORMAT, TARGET or RECOVERY_SNAPSHOT_FREQ.
   */
  #vmPool(method: string, session: string, params: FakeParam[]): string {
    const ints = params.slice(1, 5);
    if (
      typeof params[0] !== "string" || ints.length !== 4 || !ints.every((p) => Number.isInteger(p)) ||
      params.length > 6 || (params.length === 6 && typeof params[5] !== "string")
    ) {
      return faultXml(-501, `Type mismatch or wrong number of parameters for ${method}`);
    }
    if (session !== this.session) {
      return responseXml([
        false,
        `[${method}] User couldn't be authenticated, aborting call.`,
        0x100,
        -1,
        0n,
      ]);
    }
    const [, start, end, state] = ints as number[];
    const out: string[] = [];
    for (const [id, text] of [...this.#objects.vm.entries()].sort(([a], [b]) => a - b)) {
      if (start >= 0 && id < start) continue;
      if (end >= 0 && id > end) continue;
      const vmState = Number(childElement(parseXml(text), "STATE")?.text ?? "-1");
      if (state === -1 && vmState === 6) continue;
      if (state >= 0 && vmState !== state) continue;
      out.push(method === "one.vmpool.info" ? shortVm(text) : text);
    }
    return responseXml([true, `<VM_POOL>${out.join("")}</VM_POOL>`, 0]);
  }

  async #handle(request: Request): Promise<Response> {
    const body = await request.text();
    if (this.#delayMs > 0) {
      // Stop waiting when the client gives up, so close() does not wait for the delay.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.#delayMs);
        request.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    }
    const xml = (text: string) => new Response(text, { headers: { "content-type": "text/xml" } });
    if (request.method !== "POST") return new Response("Method not allowed", { status: 405 });

    let method: string;
    let params: FakeParam[];
    try {
      const call = parseXml(body);
      if (call.name !== "methodCall") throw new Error(`root <${call.name}>`);
      method = childElement(call, "methodName")?.text.trim() ?? "";
      params = (childElement(call, "params")?.children ?? []).map((p) => {
        const v = childElement(p, "value");
        if (!v) throw new Error("<param> without <value>");
        return decodeParam(v);
      });
    } catch (error) {
      return xml(faultXml(-503, `Call XML not a proper XML-RPC call.  ${(error as Error).message}`));
    }

    const session = typeof params[0] === "string" ? params[0] : "";
    this.calls.push({ method, session, params: params.slice(1) });

    const injected = this.#failures.get(method);
    if (injected) {
      if (--injected.left <= 0) this.#failures.delete(method);
      if (injected.body !== undefined) return rawResponse(injected, request.signal);
      if (injected.httpStatus) return new Response("injected failure", { status: injected.httpStatus });
      if (injected.fault) return xml(faultXml(injected.code ?? -500, injected.message ?? "injected fault"));
      return xml(responseXml([
        false,
        injected.message ?? `[${method}] Internal error.`,
        injected.code ?? 0x2000,
        -1,
        0n,
      ]));
    }

    const kind: Kind | undefined = ({
      "one.vm.info": "vm",
      "one.datastore.info": "datastore",
      "one.host.info": "host",
      "one.image.info": "image",
    } as Record<string, Kind>)[method];
    const poolMethods = ["one.hostpool.info", "one.datastorepool.info"];
    const vmPoolMethods = ["one.vmpool.info", "one.vmpool.infoextended"];
    if (vmPoolMethods.includes(method)) return xml(this.#vmPool(method, session, params));
    if (kind === undefined && !poolMethods.includes(method)) {
      return xml(faultXml(-506, `Requested method '${method}' not found`));
    }
    // xmlrpc-c checks the signature (A:sib / A:s) before oned sees the call.
    const signatureOk = typeof params[0] === "string" &&
      (kind === undefined ? params.length === 1 : Number.isInteger(params[1]) && params.length <= 3 &&
        (params.length < 3 || typeof params[2] === "boolean"));
    if (!signatureOk) {
      return xml(faultXml(-501, `Type mismatch or wrong number of parameters for ${method}`));
    }
    if (session !== this.session) {
      return xml(
        responseXml([false, `[${method}] User couldn't be authenticated, aborting call.`, 0x100, -1, 0n]),
      );
    }
    if (kind === undefined) {
      const pool = method === "one.datastorepool.info" ? "datastore" : "host";
      const root = pool === "datastore" ? "DATASTORE_POOL" : "HOST_POOL";
      const objects = [...this.#objects[pool].entries()].sort(([a], [b]) => a - b).map(([, x]) => x);
      return xml(responseXml([true, `<${root}>${objects.join("")}</${root}>`, 0]));
    }
    const id = params[1] as number;
    const found = this.#objects[kind].get(id);
    if (found === undefined) {
      return xml(
        responseXml([false, `[${method}] Error getting ${OBJECT_NAMES[kind]} [${id}].`, 0x400, id, 0n]),
      );
    }
    return xml(responseXml([true, found, 0]));
  }
}

const SHORT_DISK_ATTRS = [
  "DISK_ID",
  "DATASTORE",
  "DATASTORE_ID",
  "IMAGE",
  "IMAGE_ID",
  "SIZE",
  "TYPE",
  "CLONE",
  "CLONE_TARGET",
  "LN_TARGET",
  "DISK_SNAPSHOT_TOTAL_SIZE",
];

/** A VM reduced the way oned's `one.vmpool.info` reduces it (template DISKs keep a few attributes). */
function shortVm(text: string): string {
  return text.replace(/<DISK>(.*?)<\/DISK>/gs, (_, inner: string) => {
    const kept = [...inner.matchAll(/<([A-Z_]+)>(.*?)<\/\1>/gs)]
      .filter((m) => SHORT_DISK_ATTRS.includes(m[1]))
      .map((m) => m[0]);
    return `<DISK>${kept.join("")}</DISK>`;
  });
}
