/**
 * A small XML parser for what oned emits (object XML from the API, DS_DRIVER_ACTION_DATA,
 * XML-RPC envelopes) and the XPath subset OpenNebula's drivers use through `xpath.rb`.
 *
 * The parser is strict about structure (matching tags, one root, known entities) because a
 * truncated answer from oned must fail loudly instead of yielding empty attributes. It keeps
 * attributes, decodes entities and CDATA, and skips comments, processing instructions and a
 * DOCTYPE without internal subset.
 *
 * @example
 * ```ts
 * const vm = parseXml(text);
 * const size = xpathText(vm, "/VM/TEMPLATE/DISK[DISK_ID=0]/SIZE"); // "" when missing
 * ```
 *
 * @module
 */

import { InputError } from "../errors.ts";

/** One element of a parsed document. */
export interface XmlElement {
  /** Tag name, e.g. `DISK`. */
  name: string;
  /** Attributes of the start tag, entity-decoded. */
  attrs: Record<string, string>;
  /** Child elements in document order. */
  children: XmlElement[];
  /**
   * Character data directly inside this element (text and CDATA joined, entities decoded).
   * Whitespace-only text of an element that has child elements is dropped (indentation).
   */
  text: string;
}

/** The input is not well-formed XML; the message names the line and column. */
export class XmlParseError extends InputError {
  constructor(message: string) {
    super(message);
    this.name = "XmlParseError";
  }
}

const NAMED_ENTITIES: Record<string, string> = {
  lt: "<",
  gt: ">",
  amp: "&",
  quot: '"',
  apos: "'",
};

// Lenient on which characters make a name (template attribute names are user-defined), strict on
// everything that would make the structure ambiguous.
const NAME = /[^\s/>=<"'&!?]+/y;
const SPACE = /\s*/y;

function position(input: string, offset: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < input.length; i++) {
    if (input.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return `line ${line}, column ${offset - lineStart + 1}`;
}

function fail(input: string, offset: number, what: string): never {
  throw new XmlParseError(`Malformed XML at ${position(input, offset)}: ${what}`);
}

/** Decodes the five predefined entities and numeric character references in `raw`. */
function decodeEntities(input: string, raw: string, offset: number): string {
  if (!raw.includes("&")) return raw;
  let out = "";
  let i = 0;
  while (i < raw.length) {
    const amp = raw.indexOf("&", i);
    if (amp < 0) {
      out += raw.slice(i);
      break;
    }
    out += raw.slice(i, amp);
    const semi = raw.indexOf(";", amp);
    if (semi < 0 || semi - amp > 12) fail(input, offset + amp, "'&' that does not start an entity");
    const ref = raw.slice(amp + 1, semi);
    let decoded: string | undefined;
    if (ref.startsWith("#")) {
      const code = /^#x[0-9a-fA-F]+$/.test(ref)
        ? parseInt(ref.slice(2), 16)
        : /^#[0-9]+$/.test(ref)
        ? parseInt(ref.slice(1), 10)
        : NaN;
      if (code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff)) {
        decoded = String.fromCodePoint(code);
      }
    } else {
      decoded = Object.hasOwn(NAMED_ENTITIES, ref) ? NAMED_ENTITIES[ref] : undefined;
    }
    if (decoded === undefined) fail(input, offset + amp, `unknown entity '&${ref};'`);
    out += decoded;
    i = semi + 1;
  }
  return out;
}

interface OpenElement {
  element: XmlElement;
  parts: string[];
}

function close(open: OpenElement): XmlElement {
  const text = open.parts.join("");
  open.element.text = open.element.children.length > 0 && text.trim() === "" ? "" : text;
  return open.element;
}

/** Skips a comment, processing instruction or DOCTYPE at `i`; returns the offset after it. */
function skipMarkup(input: string, i: number): number {
  if (input.startsWith("<!--", i)) {
    const end = input.indexOf("-->", i + 4);
    if (end < 0) fail(input, i, "unterminated comment");
    return end + 3;
  }
  if (input.startsWith("<?", i)) {
    const end = input.indexOf("?>", i + 2);
    if (end < 0) fail(input, i, "unterminated processing instruction");
    return end + 2;
  }
  // <!DOCTYPE ...>: oned never sends one; an internal subset could declare entities we do not
  // expand, so refuse it rather than guess.
  const end = input.indexOf(">", i);
  if (end < 0) fail(input, i, "unterminated DOCTYPE");
  if (input.slice(i, end).includes("[")) fail(input, i, "DOCTYPE with an internal subset");
  return end + 1;
}

/**
 * Parses an XML document and returns its root element.
 *
 * @throws {XmlParseError} when the text is not well-formed (the message names line and column).
 */
export function parseXml(input: string): XmlElement {
  let i = input.charCodeAt(0) === 0xfeff ? 1 : 0;
  const stack: OpenElement[] = [];
  let root: XmlElement | undefined;
  const n = input.length;

  while (i < n) {
    const lt = input.indexOf("<", i);
    const textEnd = lt < 0 ? n : lt;
    if (textEnd > i) {
      const raw = input.slice(i, textEnd);
      if (stack.length > 0) {
        stack[stack.length - 1].parts.push(decodeEntities(input, raw, i));
      } else if (raw.trim() !== "") {
        fail(input, i, "text outside the root element");
      }
    }
    if (lt < 0) break;
    i = lt;

    if (input.startsWith("<![CDATA[", i)) {
      if (stack.length === 0) fail(input, i, "CDATA outside the root element");
      const end = input.indexOf("]]>", i + 9);
      if (end < 0) fail(input, i, "unterminated CDATA section");
      stack[stack.length - 1].parts.push(input.slice(i + 9, end));
      i = end + 3;
      continue;
    }
    if (input.startsWith("<!", i) || input.startsWith("<?", i)) {
      i = skipMarkup(input, i);
      continue;
    }

    if (input.startsWith("</", i)) {
      NAME.lastIndex = i + 2;
      const m = NAME.exec(input);
      if (!m) fail(input, i, "end tag without a name");
      SPACE.lastIndex = i + 2 + m[0].length;
      SPACE.exec(input);
      const gt = SPACE.lastIndex;
      if (input[gt] !== ">") fail(input, gt, `expected '>' to end </${m[0]}`);
      const open = stack.pop();
      if (!open) fail(input, i, `end tag </${m[0]}> without a start tag`);
      if (open.element.name !== m[0]) {
        fail(input, i, `end tag </${m[0]}> does not match <${open.element.name}>`);
      }
      const done = close(open);
      if (stack.length === 0) root = done;
      i = gt + 1;
      continue;
    }

    // Start tag.
    NAME.lastIndex = i + 1;
    const m = NAME.exec(input);
    if (!m) fail(input, i, "'<' that does not start a tag");
    if (stack.length === 0 && root !== undefined) fail(input, i, "more than one root element");
    const element: XmlElement = { name: m[0], attrs: Object.create(null), children: [], text: "" };
    let j = i + 1 + m[0].length;
    let selfClosing = false;
    for (;;) {
      SPACE.lastIndex = j;
      SPACE.exec(input);
      const afterSpace = SPACE.lastIndex;
      const c = input[afterSpace];
      if (c === ">") {
        j = afterSpace + 1;
        break;
      }
      if (c === "/" && input[afterSpace + 1] === ">") {
        selfClosing = true;
        j = afterSpace + 2;
        break;
      }
      if (c === undefined) fail(input, i, `unterminated start tag <${element.name}`);
      if (afterSpace === j) fail(input, j, `expected a space or '>' in <${element.name}>`);
      NAME.lastIndex = afterSpace;
      const an = NAME.exec(input);
      if (!an) fail(input, afterSpace, `bad attribute in <${element.name}>`);
      SPACE.lastIndex = afterSpace + an[0].length;
      SPACE.exec(input);
      let k = SPACE.lastIndex;
      if (input[k] !== "=") fail(input, k, `expected '=' after attribute ${an[0]}`);
      SPACE.lastIndex = k + 1;
      SPACE.exec(input);
      k = SPACE.lastIndex;
      const quote = input[k];
      if (quote !== '"' && quote !== "'") fail(input, k, `expected a quoted value for attribute ${an[0]}`);
      const endQuote = input.indexOf(quote, k + 1);
      if (endQuote < 0) fail(input, k, `unterminated value of attribute ${an[0]}`);
      const rawValue = input.slice(k + 1, endQuote);
      if (rawValue.includes("<")) fail(input, k, `'<' in the value of attribute ${an[0]}`);
      if (Object.hasOwn(element.attrs, an[0])) fail(input, afterSpace, `duplicate attribute ${an[0]}`);
      element.attrs[an[0]] = decodeEntities(input, rawValue, k + 1);
      j = endQuote + 1;
    }

    if (stack.length > 0) stack[stack.length - 1].element.children.push(element);
    if (selfClosing) {
      if (stack.length === 0) root = element;
    } else {
      stack.push({ element, parts: [] });
    }
    i = j;
  }

  if (stack.length > 0) {
    fail(input, n, `unexpected end of document inside <${stack[stack.length - 1].element.name}>`);
  }
  if (root === undefined) fail(input, n, "no root element");
  return root;
}

/** Escapes text for use inside an XML element or a quoted attribute value. */
export function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === '"' ? "&quot;" : "&apos;",
  );
}

/** The first child element called `name`, if any. */
export function childElement(element: XmlElement, name: string): XmlElement | undefined {
  return element.children.find((c) => c.name === name);
}

/** The text of the first child element called `name`, or `""` when there is none. */
export function childText(element: XmlElement, name: string): string {
  return childElement(element, name)?.text ?? "";
}

// ---------------------------------------------------------------------------------------------
// XPath subset
// ---------------------------------------------------------------------------------------------

type Predicate =
  | { kind: "position"; index: number }
  | { kind: "last"; minus: number }
  | { kind: "compare"; attr: boolean; name: string; op: "=" | "!="; value: string; numeric: boolean }
  | { kind: "exists"; attr: boolean; name: string };

interface Step {
  name: string;
  predicates: Predicate[];
}

interface CompiledPath {
  absolute: boolean;
  steps: Step[];
}

const compiled = new Map<string, CompiledPath>();

function unsupported(path: string, why: string): never {
  throw new TypeError(`Unsupported XPath '${path}': ${why}`);
}

function parsePredicate(path: string, body: string): Predicate {
  const text = body.trim();
  if (/^[0-9]+$/.test(text)) {
    const index = Number(text);
    if (index < 1) unsupported(path, "positions start at 1");
    return { kind: "position", index };
  }
  const last = /^last\(\)\s*(?:-\s*([0-9]+))?$/.exec(text);
  if (last) return { kind: "last", minus: last[1] === undefined ? 0 : Number(last[1]) };
  const cmp = /^(@?)([^\s=!@\[\]"'/]+)\s*(!?=)\s*(?:"([^"]*)"|'([^']*)'|([^\s"'\[\]]+))$/.exec(text);
  if (cmp) {
    const quoted = cmp[4] ?? cmp[5];
    const bare = cmp[6];
    // Unquoted numbers compare numerically, as in XPath (`[DISK_ID=01]` matches "1"). An
    // unquoted name would be a node-set in XPath; drivers never mean that, so it is a string.
    const numeric = quoted === undefined && bare !== undefined && /^-?[0-9]+(\.[0-9]+)?$/.test(bare);
    return {
      kind: "compare",
      attr: cmp[1] === "@",
      name: cmp[2],
      op: cmp[3] as "=" | "!=",
      value: quoted ?? bare ?? "",
      numeric,
    };
  }
  const exists = /^(@?)([^\s=!@\[\]"'/()]+)$/.exec(text);
  if (exists) return { kind: "exists", attr: exists[1] === "@", name: exists[2] };
  unsupported(path, `predicate [${body}]`);
}

function compile(path: string): CompiledPath {
  const cached = compiled.get(path);
  if (cached) return cached;
  const absolute = path.startsWith("/");
  const steps: Step[] = [];
  let i = absolute ? 1 : 0;
  while (i < path.length) {
    let j = i;
    while (j < path.length && path[j] !== "/" && path[j] !== "[") j++;
    const name = path.slice(i, j);
    if (name === "" && path[j] === "/") unsupported(path, "'//' (descendant axis)");
    if (name === "" || name === "." || name === ".." || name.includes("(") || name.includes(":")) {
      unsupported(path, `step '${name}'`);
    }
    const predicates: Predicate[] = [];
    while (path[j] === "[") {
      // Find the closing bracket, skipping quoted strings (values may hold '/' or ']').
      let k = j + 1;
      let quote = "";
      for (; k < path.length; k++) {
        const c = path[k];
        if (quote) {
          if (c === quote) quote = "";
        } else if (c === '"' || c === "'") {
          quote = c;
        } else if (c === "]") {
          break;
        }
      }
      if (k >= path.length) unsupported(path, "unterminated predicate");
      predicates.push(parsePredicate(path, path.slice(j + 1, k)));
      j = k + 1;
    }
    if (j < path.length && path[j] !== "/") unsupported(path, `unexpected '${path[j]}'`);
    steps.push({ name, predicates });
    i = j + 1;
    if (j === path.length - 1) unsupported(path, "trailing '/'");
  }
  if (steps.length === 0) unsupported(path, "empty path");
  const result = { absolute, steps };
  compiled.set(path, result);
  return result;
}

function valueMatches(actual: string, p: Extract<Predicate, { kind: "compare" }>): boolean {
  if (p.numeric) {
    const trimmed = actual.trim();
    return trimmed !== "" && Number(trimmed) === Number(p.value);
  }
  return actual === p.value;
}

function applyPredicate(nodes: XmlElement[], p: Predicate): XmlElement[] {
  switch (p.kind) {
    case "position":
      return p.index <= nodes.length ? [nodes[p.index - 1]] : [];
    case "last": {
      const index = nodes.length - 1 - p.minus;
      return index >= 0 ? [nodes[index]] : [];
    }
    case "exists":
      return nodes.filter((n) => p.attr ? Object.hasOwn(n.attrs, p.name) : childElement(n, p.name));
    case "compare":
      return nodes.filter((n) => {
        // XPath compares against every candidate: `=` holds if any matches, `!=` if any differs.
        const values = p.attr
          ? (Object.hasOwn(n.attrs, p.name) ? [n.attrs[p.name]] : [])
          : n.children.filter((c) => c.name === p.name).map((c) => c.text);
        return p.op === "="
          ? values.some((v) => valueMatches(v, p))
          : values.some((v) => !valueMatches(v, p));
      });
  }
}

function select(candidates: XmlElement[], step: Step): XmlElement[] {
  let nodes = step.name === "*" ? candidates : candidates.filter((c) => c.name === step.name);
  for (const p of step.predicates) nodes = applyPredicate(nodes, p);
  return nodes;
}

/**
 * All elements matching `path`, in document order.
 *
 * Supported: absolute paths (`/VM/TEMPLATE/DISK`) evaluated with `context` as the document root,
 * relative paths (`TEMPLATE/DISK`) evaluated from `context`'s children, `*` steps, and the
 * predicates `[1]`, `[last()]`, `[last()-1]`, `[NAME=1]`, `[NAME="v"]`, `[NAME='v']`, `[NAME!=v]`,
 * `[@attr="v"]` and `[NAME]`. Anything else throws a `TypeError` (a programming error).
 */
export function xpathNodes(context: XmlElement, path: string): XmlElement[] {
  const { absolute, steps } = compile(path);
  let nodes: XmlElement[];
  let rest = steps;
  if (absolute) {
    nodes = select([context], steps[0]);
    rest = steps.slice(1);
  } else {
    nodes = [context];
  }
  for (const step of rest) {
    const next: XmlElement[] = [];
    // Positional predicates count among the children of each context node, as XPath does.
    for (const node of nodes) next.push(...select(node.children, step));
    nodes = next;
    if (nodes.length === 0) break;
  }
  return nodes;
}

/** Text of the first element matching `path`, or `""` when none matches (as `xpath.rb` prints). */
export function xpathText(context: XmlElement, path: string): string {
  return xpathNodes(context, path)[0]?.text ?? "";
}

/** Texts of all elements matching `path` (what `xpath.rb` joins with spaces for `%m%`). */
export function xpathAll(context: XmlElement, path: string): string[] {
  return xpathNodes(context, path).map((n) => n.text);
}
