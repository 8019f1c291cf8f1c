/**
 * DS_DRIVER_ACTION_DATA: the base64 XML document one_datastore writes on a DS action's stdin
 * (`<DS_DRIVER_ACTION_DATA><IMAGE>…</IMAGE><DATASTORE>…</DATASTORE>[extra]</DS_DRIVER_ACTION_DATA>`,
 * spec §1.5 and §7). Values are read like `xpath.rb -b` does: missing elements are `""`.
 *
 * @module
 */

import { datastoreType, imageType } from "../validate.ts";
import { InputError } from "../errors.ts";
import { DatastoreView, intOrNull } from "./objects.ts";
import { childElement, escapeXml, parseXml, type XmlElement, XmlParseError, xpathText } from "./xml.ts";

const ROOT = "DS_DRIVER_ACTION_DATA";

/** Decodes base64 (whitespace and newlines allowed, padding optional) into UTF-8 text. */
export function decodeBase64Text(base64: string, what: string): string {
  const compact = base64.replace(/\s+/g, "");
  const body = compact.replace(/=+$/, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || body.length % 4 === 1) {
    throw new InputError(`${what} is not valid base64`);
  }
  // Padding is optional on input (Ruby's decode64 never required it).
  const padded = body + "=".repeat((4 - body.length % 4) % 4);
  let binary: string;
  try {
    binary = atob(padded);
  } catch {
    throw new InputError(`${what} is not valid base64`);
  }
  // A plain loop: Uint8Array.from with a mapping function took seconds for a 32 MiB input.
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/** Encodes UTF-8 text as base64 on one line, as oned does (EVP_EncodeBlock). */
export function encodeBase64Text(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  // Chunked: String.fromCharCode(...bytes) overflows the stack on large documents.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * Decodes base64 and parses the XML inside, checking the root element's name.
 * Used for DS_DRIVER_ACTION_DATA and for the VM XML premigrate/postmigrate get on stdin.
 *
 * @throws {InputError} on empty input, bad base64, malformed XML or another root element.
 */
export function parseBase64Xml(base64: string, rootName: string, what = rootName): XmlElement {
  if (base64.trim() === "") throw new InputError(`No ${what} on standard input`);
  const text = decodeBase64Text(base64, what);
  let root: XmlElement;
  try {
    root = parseXml(text);
  } catch (error) {
    if (error instanceof XmlParseError) throw new InputError(`${what} is not valid XML: ${error.message}`);
    throw error;
  }
  if (root.name !== rootName) throw new InputError(`${what} has root <${root.name}>, expected <${rootName}>`);
  return root;
}

/** The parsed DS_DRIVER_ACTION_DATA with accessors for what the fs driver reads. */
export class DriverAction {
  /** The `DS_DRIVER_ACTION_DATA` element. */
  readonly root: XmlElement;

  constructor(root: XmlElement) {
    if (root.name !== ROOT) throw new InputError(`Expected <${ROOT}>, got <${root.name}>`);
    this.root = root;
  }

  /** Text at a path relative to the root (`IMAGE/PATH`, `DATASTORE/TEMPLATE/DRIVER`), `""` if missing. */
  get(path: string): string {
    return xpathText(this.root, path);
  }

  /** The `IMAGE` element (absent for datastore monitor). */
  get image(): XmlElement | undefined {
    return childElement(this.root, "IMAGE");
  }
  /** The `DATASTORE` element as a view (always present in oned's messages). */
  get datastore(): DatastoreView | undefined {
    const ds = childElement(this.root, "DATASTORE");
    return ds ? new DatastoreView(ds) : undefined;
  }

  /** `IMAGE/ID`, `null` when absent (stat and cp get a reduced IMAGE). */
  get imageId(): number | null {
    return intOrNull(this.get("IMAGE/ID"));
  }
  /** `IMAGE/PATH`: what to import (cp, stat) or the source image's SOURCE (clone). */
  get imagePath(): string {
    return this.get("IMAGE/PATH");
  }
  /** `IMAGE/SOURCE`: the image file in the datastore. */
  get imageSource(): string {
    return this.get("IMAGE/SOURCE");
  }
  /** `IMAGE/SIZE` in MiB. */
  get imageSize(): number | null {
    return intOrNull(this.get("IMAGE/SIZE"));
  }
  /** `IMAGE/FORMAT` (`save_as` marks a disk-saveas target for mkfs). */
  get imageFormat(): string {
    return this.get("IMAGE/FORMAT");
  }
  /** `IMAGE/FS`. */
  get imageFs(): string {
    return this.get("IMAGE/FS");
  }
  /** Numeric `IMAGE/TYPE` (see `ImageType`). */
  get imageType(): number | null {
    return imageType(this.get("IMAGE/TYPE"));
  }
  /** `IMAGE/TEMPLATE/MD5`. */
  get imageMd5(): string {
    return this.get("IMAGE/TEMPLATE/MD5");
  }
  /** `IMAGE/TEMPLATE/SHA1`. */
  get imageSha1(): string {
    return this.get("IMAGE/TEMPLATE/SHA1");
  }
  /** `IMAGE/TARGET_SNAPSHOT` (snapshot actions). */
  get targetSnapshot(): number | null {
    return intOrNull(this.get("IMAGE/TARGET_SNAPSHOT"));
  }
  /** `IMAGE/CLONING_ID` (clone: the source image id). */
  get cloningId(): number | null {
    return intOrNull(this.get("IMAGE/CLONING_ID"));
  }

  /** `DATASTORE/ID`. */
  get dsId(): number | null {
    return intOrNull(this.get("DATASTORE/ID"));
  }
  /** `DATASTORE/BASE_PATH`. */
  get dsBasePath(): string {
    return this.get("DATASTORE/BASE_PATH");
  }
  /** Numeric `DATASTORE/TYPE` (2 = FILE_DS). */
  get dsType(): number | null {
    return datastoreType(this.get("DATASTORE/TYPE"));
  }
  /** `DATASTORE/DS_MAD`. */
  get dsMad(): string {
    return this.get("DATASTORE/DS_MAD");
  }
  /** `DATASTORE/TM_MAD`. */
  get tmMad(): string {
    return this.get("DATASTORE/TM_MAD");
  }
  /** `DATASTORE/TEMPLATE/<name>`, `""` when missing. */
  dsTemplate(name: string): string {
    return this.get(`DATASTORE/TEMPLATE/${name}`);
  }
  /** `DATASTORE/TEMPLATE/BRIDGE_LIST`, split on whitespace. */
  get bridgeList(): string[] {
    return this.dsTemplate("BRIDGE_LIST").split(/\s+/).filter((h) => h !== "");
  }
  /** `SOURCE_BRIDGE_LIST` (clone across datastores), split on whitespace. */
  get sourceBridgeList(): string[] {
    return this.get("SOURCE_BRIDGE_LIST").split(/\s+/).filter((h) => h !== "");
  }
}

/** Parses a base64 DS_DRIVER_ACTION_DATA payload. */
export function parseDriverAction(base64: string): DriverAction {
  return new DriverAction(parseBase64Xml(base64, ROOT));
}

/** Reads DS_DRIVER_ACTION_DATA (base64) from standard input, or from `input` when given. */
export async function readDriverAction(input?: ReadableStream<Uint8Array>): Promise<DriverAction> {
  if (input === undefined && Deno.stdin.isTerminal()) {
    throw new InputError(`Expected ${ROOT} (base64) on standard input, got a terminal`);
  }
  const text = await new Response(input ?? Deno.stdin.readable).text();
  return parseDriverAction(text);
}

/** Builds the DS_DRIVER_ACTION_DATA XML from already-serialised `<IMAGE>`, `<DATASTORE>` and extras. */
export function buildDriverActionXml(parts: { image?: string; datastore?: string; extra?: string }): string {
  return `<${ROOT}>${parts.image ?? ""}${parts.datastore ?? ""}${parts.extra ?? ""}</${ROOT}>`;
}

/** Builds a base64 DS_DRIVER_ACTION_DATA payload as one_datastore passes it on stdin. */
export function encodeDriverAction(parts: { image?: string; datastore?: string; extra?: string }): string {
  return encodeBase64Text(buildDriverActionXml(parts));
}

/** `<SOURCE_BRIDGE_LIST>` extra element, escaped like oned does. */
export function sourceBridgeListXml(hosts: string): string {
  return `<SOURCE_BRIDGE_LIST>${escapeXml(hosts)}</SOURCE_BRIDGE_LIST>`;
}
