/**
 * A minimal XML-RPC client for oned's API over `fetch`, and {@linkcode OneClient}, which asks oned
 * for the objects the drivers read. One call per lookup replaces upstream's `onevm show -x` (a
 * Ruby CLI start per value).
 *
 * Endpoint and credentials follow OpenNebula's client (OCA): `ONE_XMLRPC`, else
 * `~/.one/one_endpoint`, else `/var/lib/one/.one/one_endpoint`, else `http://localhost:2633/RPC2`;
 * `ONE_AUTH` names a *file* holding `user:password`, else `~/.one/one_auth`, else
 * `/var/lib/one/.one/one_auth`. oned passes its own environment to drivers, so this finds
 * oneadmin's credentials like the upstream scripts did.
 *
 * oned answers every call with an array `[success, body_or_error, error_code, ...]`; transport
 * problems come back as XML-RPC faults.
 *
 * @module
 */

import { ConfigError, OnedError } from "../errors.ts";
import { childElement, escapeXml, parseXml, type XmlElement, XmlParseError } from "./xml.ts";
import { post, type PostAnswer, PostError } from "./http_post.ts";

/** A decoded XML-RPC value. */
export type XmlRpcValue =
  | string
  | number
  | boolean
  | null
  | Uint8Array
  | XmlRpcValue[]
  | { [name: string]: XmlRpcValue };

/** A parameter of a call: strings, integers and booleans are all oned's info methods take. */
export type XmlRpcParam = string | number | boolean;

/** oned's `ErrorCode` values (Request.h), returned as the third element of a failed call. */
export const OnedErrorCode = {
  SUCCESS: 0x0,
  AUTHENTICATION: 0x100,
  AUTHORIZATION: 0x200,
  NO_EXISTS: 0x400,
  ACTION: 0x800,
  RPC_API: 0x1000,
  INTERNAL: 0x2000,
  ALLOCATE: 0x4000,
  LOCKED: 0x8000,
  REPLICATION: 0x10000,
} as const;

/** Why a call to oned failed. */
export type OnedFailureKind = "unreachable" | "timeout" | "http" | "malformed" | "fault" | "refused";

/** A failed call to oned; `kind` and `code` let callers tell "no such VM" from "oned is down". */
export class OnedCallError extends OnedError {
  /** The endpoint called. */
  readonly endpoint: string;
  /** The XML-RPC method, e.g. `one.vm.info`. */
  readonly method: string;
  /** What went wrong. */
  readonly kind: OnedFailureKind;
  /** oned's error code (see {@linkcode OnedErrorCode}) or the fault code; `null` otherwise. */
  readonly code: number | null;
  constructor(
    message: string,
    details: {
      endpoint: string;
      method: string;
      kind: OnedFailureKind;
      code?: number | null;
      cause?: unknown;
    },
  ) {
    super(message, { cause: details.cause });
    this.name = "OnedCallError";
    this.endpoint = details.endpoint;
    this.method = details.method;
    this.kind = details.kind;
    this.code = details.code ?? null;
  }
}

/** Serialises a `methodCall` document. */
export function encodeMethodCall(method: string, params: readonly XmlRpcParam[]): string {
  const encoded = params.map((p) => {
    let value: string;
    if (typeof p === "boolean") value = `<boolean>${p ? 1 : 0}</boolean>`;
    else if (typeof p === "number") {
      value = Number.isInteger(p) ? `<int>${p}</int>` : `<double>${p}</double>`;
    } else value = `<string>${escapeXml(p)}</string>`;
    return `<param><value>${value}</value></param>`;
  });
  return `<?xml version="1.0"?><methodCall><methodName>${escapeXml(method)}</methodName>` +
    `<params>${encoded.join("")}</params></methodCall>`;
}

function decodeNumber(text: string, type: string): number {
  const t = text.trim();
  const n = Number(t);
  if (t === "" || !Number.isFinite(n)) throw new XmlParseError(`Bad <${type}> value '${t}'`);
  return n;
}

/** Decodes one XML-RPC `<value>` element. */
export function decodeValue(value: XmlElement): XmlRpcValue {
  // A <value> without a type element is a string.
  if (value.children.length === 0) return value.text;
  const typed = value.children[0];
  switch (typed.name) {
    case "string":
      return typed.text;
    case "int":
    case "i4":
    case "i8":
    case "ex:i8":
    case "double":
      return decodeNumber(typed.text, typed.name);
    case "boolean":
      return typed.text.trim() === "1";
    case "nil":
    case "ex:nil":
      return null;
    case "dateTime.iso8601":
      return typed.text.trim();
    case "base64":
      return Uint8Array.from(atob(typed.text.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
    case "array":
      return (childElement(typed, "data")?.children ?? [])
        .filter((c) => c.name === "value")
        .map(decodeValue);
    case "struct": {
      const out: { [name: string]: XmlRpcValue } = Object.create(null);
      for (const member of typed.children) {
        if (member.name !== "member") continue;
        const v = childElement(member, "value");
        out[childElement(member, "name")?.text ?? ""] = v ? decodeValue(v) : "";
      }
      return out;
    }
    default:
      throw new XmlParseError(`Unknown XML-RPC type <${typed.name}>`);
  }
}

/** A decoded `methodResponse`: either a value or a fault. */
export type MethodResponse =
  | { fault: false; value: XmlRpcValue }
  | { fault: true; code: number; message: string };

/** Parses a `methodResponse` document. @throws {XmlParseError} when it is not one. */
export function parseMethodResponse(xml: string): MethodResponse {
  const root = parseXml(xml);
  if (root.name !== "methodResponse") throw new XmlParseError(`Root is <${root.name}>, not <methodResponse>`);
  const fault = childElement(root, "fault");
  if (fault) {
    const v = childElement(fault, "value");
    const decoded = v ? decodeValue(v) : null;
    const struct = decoded !== null && typeof decoded === "object" && !Array.isArray(decoded) &&
        !(decoded instanceof Uint8Array)
      ? decoded
      : {};
    return {
      fault: true,
      code: typeof struct.faultCode === "number" ? struct.faultCode : 0,
      message: typeof struct.faultString === "string" ? struct.faultString : "unknown fault",
    };
  }
  const value = childElement(childElement(childElement(root, "params") ?? root, "param") ?? root, "value");
  if (!value) throw new XmlParseError("No <params><param><value> in the response");
  return { fault: false, value: decodeValue(value) };
}

/** Settings of a {@linkcode OneClient}; anything left out comes from the environment. */
export interface OneClientOptions {
  /** XML-RPC endpoint URL. */
  endpoint?: string;
  /** Session string (`user:password`), instead of reading an auth file. */
  session?: string;
  /** Per-call timeout in milliseconds (default: `ONESTOR_ONED_TIMEOUT` seconds, else 30 s). */
  timeoutMs?: number;
  /** Environment to read (`Deno.env` by default); tests pass their own. */
  env?: { get(name: string): string | undefined };
}

const DEFAULT_ENDPOINT = "http://localhost:2633/RPC2";
const ONEADMIN_DOT_ONE = "/var/lib/one/.one";

function firstLine(path: string): string | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
  return text.split("\n")[0].trimEnd();
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** A client for the oned calls the drivers need. Nothing is cached across calls or processes. */
export class OneClient {
  /** The XML-RPC endpoint in use. */
  readonly endpoint: string;
  /** Per-call timeout in milliseconds. */
  readonly timeoutMs: number;
  readonly #env: { get(name: string): string | undefined };
  #session: string | undefined;
  #sessionSource = "the session given";

  constructor(options: OneClientOptions = {}) {
    this.#env = options.env ?? Deno.env;
    this.#session = options.session;
    this.endpoint = options.endpoint ?? this.#resolveEndpoint();
    this.timeoutMs = options.timeoutMs ?? this.#resolveTimeout();
  }

  #home(): string | undefined {
    return this.#env.get("HOME") || undefined;
  }

  #resolveEndpoint(): string {
    const fromEnv = this.#env.get("ONE_XMLRPC")?.trim();
    if (fromEnv) return fromEnv;
    const home = this.#home();
    for (const file of [home && `${home}/.one/one_endpoint`, `${ONEADMIN_DOT_ONE}/one_endpoint`]) {
      if (!file) continue;
      const line = firstLine(file)?.trim();
      if (line) return line;
    }
    return DEFAULT_ENDPOINT;
  }

  #resolveTimeout(): number {
    const raw = this.#env.get("ONESTOR_ONED_TIMEOUT");
    if (raw === undefined || raw.trim() === "") return 30_000;
    const seconds = Number(raw);
    if (!Number.isFinite(seconds) || seconds <= 0) {
      throw new ConfigError(`ONESTOR_ONED_TIMEOUT must be a positive number of seconds, got '${raw}'`);
    }
    return Math.round(seconds * 1000);
  }

  /** The session string, read once from the first auth file found (OCA's order). */
  #resolveSession(): string {
    if (this.#session !== undefined) return this.#session;
    const home = this.#home();
    const candidates = [
      this.#env.get("ONE_AUTH"),
      home && `${home}/.one/one_auth`,
      `${ONEADMIN_DOT_ONE}/one_auth`,
    ];
    for (const file of candidates) {
      // Like OCA, an ONE_AUTH that is not a file falls through to the next candidate.
      if (!file || !isFile(file)) continue;
      const line = firstLine(file);
      if (!line) throw new OnedError(`The OpenNebula credentials file ${file} is empty`);
      this.#session = line;
      this.#sessionSource = file;
      return line;
    }
    throw new OnedError(
      "No OpenNebula credentials: set ONE_AUTH to a file holding user:password, or create ~/.one/one_auth",
    );
  }

  /**
   * Calls `method` with the session prepended and returns the body of a successful answer.
   * `subject` names the object in error messages (`VM 7`).
   *
   * @throws {OnedCallError} when oned cannot be reached, times out, faults or refuses the call.
   */
  async call(method: string, params: readonly XmlRpcParam[] = [], subject?: string): Promise<XmlRpcValue> {
    const session = this.#resolveSession();
    const endpoint = this.endpoint;
    const details = { endpoint, method };
    let answer: PostAnswer;
    try {
      answer = await post(
        endpoint,
        encodeMethodCall(method, [session, ...params]),
        "text/xml",
        this.timeoutMs,
      );
    } catch (error) {
      const { kind, reason } = error instanceof PostError
        ? error
        : { kind: "unreachable" as const, reason: String(error) };
      throw new OnedCallError(`Cannot reach oned at ${endpoint}: ${reason}`, {
        ...details,
        kind,
        cause: error,
      });
    }
    const body = answer.body;
    if (answer.status < 200 || answer.status > 299) {
      throw new OnedCallError(
        `oned at ${endpoint} answered ${method} with HTTP ${answer.status} ${answer.statusText}`.trimEnd(),
        { ...details, kind: "http", code: answer.status },
      );
    }
    let decoded: MethodResponse;
    try {
      decoded = parseMethodResponse(body);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new OnedCallError(`oned at ${endpoint} sent a malformed answer to ${method}: ${reason}`, {
        ...details,
        kind: "malformed",
        cause: error,
      });
    }
    if (decoded.fault) {
      throw new OnedCallError(
        `oned at ${endpoint} rejected ${method} (fault ${decoded.code}): ${decoded.message}`,
        { ...details, kind: "fault", code: decoded.code },
      );
    }
    const value = decoded.value;
    if (!Array.isArray(value) || typeof value[0] !== "boolean") {
      throw new OnedCallError(`oned at ${endpoint} sent an unexpected answer to ${method}`, {
        ...details,
        kind: "malformed",
      });
    }
    if (!value[0]) {
      const code = typeof value[2] === "number" ? value[2] : null;
      let message = `oned refused ${method}${subject ? ` for ${subject}` : ""}: ${String(value[1])}`;
      if (code === OnedErrorCode.AUTHENTICATION) {
        message += ` (check the credentials in ${this.#sessionSource})`;
      }
      throw new OnedCallError(message, { ...details, kind: "refused", code });
    }
    return value[1];
  }

  /** Calls an info method and parses the XML body, checking its root element. */
  async #info(method: string, params: XmlRpcParam[], subject: string | undefined, root: string) {
    const body = await this.call(method, params, subject);
    const fail = (why: string, cause?: unknown): never => {
      throw new OnedCallError(`oned at ${this.endpoint} sent a malformed answer to ${method}: ${why}`, {
        endpoint: this.endpoint,
        method,
        kind: "malformed",
        cause,
      });
    };
    if (typeof body !== "string") fail("the body is not a string");
    let element: XmlElement;
    try {
      element = parseXml(body as string);
    } catch (error) {
      return fail(error instanceof Error ? error.message : String(error), error);
    }
    if (element.name !== root) fail(`root is <${element.name}>, expected <${root}>`);
    return element;
  }

  /** `one.vm.info`: the `<VM>` document of VM `id` (full history included). */
  vmInfo(id: number): Promise<XmlElement> {
    return this.#info("one.vm.info", [id, false], `VM ${id}`, "VM");
  }

  /** `one.datastore.info`: the `<DATASTORE>` document of datastore `id`. */
  datastoreInfo(id: number): Promise<XmlElement> {
    return this.#info("one.datastore.info", [id, false], `datastore ${id}`, "DATASTORE");
  }

  /** `one.hostpool.info`: the `<HOST_POOL>` document. */
  hostPoolInfo(): Promise<XmlElement> {
    return this.#info("one.hostpool.info", [], undefined, "HOST_POOL");
  }

  /** `one.datastorepool.info`: the `<DATASTORE_POOL>` document (every datastore, with its template). */
  datastorePoolInfo(): Promise<XmlElement> {
    return this.#info("one.datastorepool.info", [], undefined, "DATASTORE_POOL");
  }

  /**
   * `one.vmpool.infoextended`: the `<VM_POOL>` document with every VM's full template (all users'
   * VMs, `filter` -2). `state` -1 means every state but DONE, 3 only ACTIVE VMs. The short form
   * `one.vmpool.info` is not used: oned reduces its DISK elements to a few attributes (no FORMAT,
   * TARGET or RECOVERY_SNAPSHOT_FREQ).
   */
  vmPoolInfo(state = -1): Promise<XmlElement> {
    return this.#info("one.vmpool.infoextended", [-2, -1, -1, state], undefined, "VM_POOL");
  }

  /**
   * The `<HOST>` document of a host given by id (`one.host.info`) or by name (`one.host.info`
   * takes only ids, so a name is looked up in `one.hostpool.info`).
   */
  async hostInfo(nameOrId: string | number): Promise<XmlElement> {
    if (typeof nameOrId === "number" || /^[0-9]+$/.test(nameOrId)) {
      const id = Number(nameOrId);
      return await this.#info("one.host.info", [id, false], `host ${id}`, "HOST");
    }
    const pool = await this.hostPoolInfo();
    const host = findHostByName(pool, nameOrId);
    if (!host) {
      throw new OnedCallError(`oned has no host named ${nameOrId}`, {
        endpoint: this.endpoint,
        method: "one.hostpool.info",
        kind: "refused",
        code: OnedErrorCode.NO_EXISTS,
      });
    }
    return host;
  }
}

/** The `HOST` of a `HOST_POOL` whose `NAME` is `name` (exact, as upstream compares names). */
export function findHostByName(pool: XmlElement, name: string): XmlElement | undefined {
  return pool.children.find((h) => h.name === "HOST" && childElement(h, "NAME")?.text === name);
}
