/**
 * Reads OpenNebula's shell-syntax configuration files (sshrc, tmrc, fs.conf, datastore.conf and our
 * own onestor.conf) without running a shell: upstream sources them with bash, but a driver must not
 * execute whatever an included line happens to contain.
 *
 * Supported: `NAME=value` assignments (several per line, `;` separated or not), an optional
 * `export ` prefix, `export NAME` alone, comments (`#` at the start of a word), blank lines,
 * unquoted, single-quoted and double-quoted values with backslash escapes and line continuations,
 * and `$NAME` / `${NAME}` for variables assigned earlier in the same file. Anything else (commands,
 * `if`, `$(...)`, backticks, `${NAME:-x}`) is refused with a {@linkcode ConfigError} naming the file
 * and line.
 *
 * @module
 */

import { ConfigError } from "../core/errors.ts";

/** One assignment found in a file, in file order. */
export interface ShellAssignment {
  /** Variable name. */
  name: string;
  /** Value after quote removal and expansion. */
  value: string;
  /** 1-based line where the assignment starts. */
  line: number;
  /** Whether it was written as `export NAME=value`. */
  exported: boolean;
}

const NAME = /[A-Za-z_][A-Za-z0-9_]*/y;
const SPECIAL_PARAMETER = /[0-9?$!#@*-]/;

/**
 * Parses shell `NAME=value` text. `file` is only used in error messages (`<file>:<line>: ...`).
 * Assignments to the same name are all returned; as in a shell, the last one wins.
 */
export function parseShellVars(text: string, file: string): ShellAssignment[] {
  const assignments: ShellAssignment[] = [];
  const defined = new Map<string, string>();
  let i = text.startsWith("\uFEFF") ? 1 : 0; // a byte order mark left by some editors
  let line = 1;
  // `export` applies to the assignments that follow it up to the end of the command.
  let exporting = false;

  const fail = (what: string, at = line) => new ConfigError(`${file}:${at}: ${what}`);

  const restOfLine = (from: number): string => {
    const end = text.indexOf("\n", from);
    const rest = text.slice(from, end < 0 ? text.length : end).trim();
    return rest.length > 60 ? `${rest.slice(0, 57)}...` : rest;
  };

  const readName = (): string | null => {
    NAME.lastIndex = i;
    const match = NAME.exec(text);
    return match ? match[0] : null;
  };

  const readDollar = (): string => {
    // text[i] is "$"
    const next = text[i + 1];
    if (next === "(") {
      throw fail(
        text[i + 2] === "("
          ? "arithmetic expansion $((...)) is not supported: write the value literally"
          : "command substitution $(...) is not run: write the value literally",
      );
    }
    if (next === "{") {
      const end = text.indexOf("}", i + 2);
      const inner = end < 0 ? "" : text.slice(i + 2, end);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(inner)) {
        throw fail(`unsupported parameter expansion \${${inner}...}: only \${NAME} is supported`);
      }
      i = end + 1;
      return lookup(inner);
    }
    if (next === "'") throw fail("$'...' quoting is not supported: use single or double quotes");
    if (next !== undefined && SPECIAL_PARAMETER.test(next)) {
      throw fail(`special parameter $${next} is not supported`);
    }
    i++;
    const name = readName();
    if (name === null) return "$"; // a lone "$" is literal, as in sh
    i += name.length;
    return lookup(name);
  };

  const lookup = (name: string): string => {
    const value = defined.get(name);
    if (value === undefined) {
      throw fail(`$${name} is not assigned earlier in this file: only such variables can be expanded`);
    }
    return value;
  };

  const readSingleQuoted = (): string => {
    const start = line;
    const end = text.indexOf("'", i + 1);
    if (end < 0) throw fail("unterminated single quote", start);
    const content = text.slice(i + 1, end);
    line += content.split("\n").length - 1;
    i = end + 1;
    return content;
  };

  const readDoubleQuoted = (): string => {
    const start = line;
    let value = "";
    i++;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') {
        i++;
        return value;
      }
      if (c === "\\") {
        const d = text[i + 1];
        if (d === undefined) break;
        if (d === "\n") line++;
        else if (d === "$" || d === "`" || d === '"' || d === "\\") value += d;
        else value += `\\${d}`; // inside double quotes a backslash before any other character stays
        i += 2;
        continue;
      }
      if (c === "$") {
        value += readDollar();
        continue;
      }
      if (c === "`") throw fail("command substitution `...` is not run: write the value literally");
      if (c === "\n") line++;
      value += c;
      i++;
    }
    throw fail("unterminated double quote", start);
  };

  const readValue = (): string => {
    let value = "";
    while (i < text.length) {
      const c = text[i];
      if (c === " " || c === "\t" || c === "\r" || c === "\n" || c === ";") break;
      if (c === "'") {
        value += readSingleQuoted();
      } else if (c === '"') {
        value += readDoubleQuoted();
      } else if (c === "\\") {
        const d = text[i + 1];
        if (d === "\n") line++;
        else if (d !== undefined) value += d;
        i += 2;
      } else if (c === "$") {
        value += readDollar();
      } else if (c === "`") {
        throw fail("command substitution `...` is not run: write the value literally");
      } else if ("|&<>()".includes(c)) {
        throw fail(`unsupported shell syntax "${c}": quote the value if it is meant literally`);
      } else {
        value += c;
        i++;
      }
    }
    return value;
  };

  while (i < text.length) {
    const c = text[i];
    if (c === "\n" || c === ";") {
      if (c === "\n") line++;
      exporting = false;
      i++;
      continue;
    }
    if (c === " " || c === "\t" || c === "\r") {
      i++;
      continue;
    }
    if (c === "\\" && text[i + 1] === "\n") {
      line++;
      i += 2;
      continue;
    }
    if (c === "#") {
      const end = text.indexOf("\n", i);
      i = end < 0 ? text.length : end;
      continue;
    }

    const start = line;
    const name = readName();
    const after = name === null ? undefined : text[i + name.length];
    if (name !== null && after === "=") {
      i += name.length + 1;
      const value = readValue();
      defined.set(name, value);
      assignments.push({ name, value, line: start, exported: exporting });
      continue;
    }
    const atWordEnd = after === undefined || /[ \t\r\n;#]/.test(after);
    if (name === "export" && atWordEnd && !exporting) {
      exporting = true;
      i += name.length;
      continue;
    }
    if (name !== null && exporting && atWordEnd) {
      i += name.length; // `export NAME`: nothing to record
      continue;
    }
    if (
      name !== null && (after === " " || after === "\t") && /^[ \t]*\+?=/.test(text.slice(i + name.length))
    ) {
      throw fail(`no spaces are allowed around "=" in the assignment to ${name}`);
    }
    if (name !== null && after === "+" && text[i + name.length + 1] === "=") {
      throw fail(`"+=" is not supported in the assignment to ${name}`);
    }
    throw fail(`expected NAME=value, found "${restOfLine(i)}"`);
  }
  return assignments;
}

/**
 * Splits a setting value into an argument vector by shell word rules: blanks separate words, single
 * quotes keep everything, double quotes and backslashes escape. Nothing is expanded or run: `$` and
 * backticks are ordinary characters here. Throws an `Error` (the caller names file and key) on an
 * unterminated quote.
 */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new Error("unterminated single quote");
      word += text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new Error("unterminated double quote");
        const d = text[i];
        if (d === '"') break;
        if (d === "\\" && i + 1 < text.length && '"\\$`\n'.includes(text[i + 1])) {
          if (text[i + 1] !== "\n") word += text[i + 1];
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
      i++;
    } else if (c === "\\") {
      if (i + 1 < text.length && text[i + 1] !== "\n") word += text[i + 1];
      i += 2;
    } else {
      word += c;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}
