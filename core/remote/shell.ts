/**
 * Shell scripts built by construction: every interpolated value is quoted, so a path holding
 * `$(...)`, `;`, spaces or newlines reaches the remote shell as the same literal string.
 *
 * @example
 * ```ts
 * const script = sh`mkdir -p ${dir} && cp ${src} ${dst}`;
 * ```
 *
 * @module
 */

/** A piece of shell text that is safe to run: either constant text or built by {@linkcode sh}. */
export class ShellScript {
  /** The shell text. */
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  /** The shell text. */
  toString(): string {
    return this.text;
  }
}

/** Values that may be interpolated into {@linkcode sh}. Arrays expand to several words. */
export type ShellValue = string | number | bigint | ShellScript | readonly ShellValue[];

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes one value as a single shell word (POSIX single quotes). */
export function quote(value: string | number | bigint): string {
  const text = String(value);
  if (text.includes("\0")) {
    throw new TypeError("Cannot pass a NUL byte to a shell command");
  }
  if (text !== "" && SAFE_WORD.test(text)) return text;
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

function render(value: ShellValue): string {
  if (value instanceof ShellScript) return value.text;
  if (Array.isArray(value)) return value.map(render).join(" ");
  if (typeof value === "string" || typeof value === "number" || typeof value === "bigint") {
    return quote(value as string | number | bigint);
  }
  throw new TypeError(`Cannot interpolate a ${typeof value} into a shell script`);
}

/** Tagged template: constant parts are kept, interpolated values are quoted. */
export function sh(strings: TemplateStringsArray, ...values: ShellValue[]): ShellScript {
  let text = strings[0];
  for (let i = 0; i < values.length; i++) {
    text += render(values[i]) + strings[i + 1];
  }
  return new ShellScript(text);
}

/** Marks constant, programmer-written shell text as safe. Never pass data through this. */
export function raw(text: string): ShellScript {
  return new ShellScript(text);
}

/** Joins scripts with newlines into one script. */
export function joinScripts(scripts: readonly ShellScript[], separator = "\n"): ShellScript {
  return new ShellScript(scripts.map((s) => s.text).join(separator));
}
