/**
 * Loads every onestor setting from the files named in the schema ({@link ./schema.ts}), validates
 * and converts each value, and returns one typed, frozen {@linkcode Config}.
 *
 * Rules: a missing file means its defaults; an empty value means the key's default (as upstream's
 * `${VAR:-default}`); the last assignment of a key wins; tmrc keys set in the environment win over
 * tmrc (one_tm exports that file). Unknown keys are refused in onestor.conf and warned about in the
 * stock files, which other OpenNebula drivers read too. Reads are synchronous: every driver action
 * is a new process and this runs first.
 *
 * @module
 */

import { ConfigError } from "../core/errors.ts";
import { logWarn } from "../core/one/log.ts";
import {
  CONFIG_FILES,
  type ConfigFileId,
  type ConfigValues,
  fieldName,
  isListType,
  patternPrefix,
  SETTING_TYPES,
  type SettingKey,
  SETTINGS,
  type SettingSpec,
  type SettingValue,
  type ValueOfKey,
} from "./schema.ts";
import { onedDatastoreLocation } from "./oned_conf.ts";
import { parseShellVars, splitWords } from "./shell_vars.ts";

/** Options of {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /** Prefix of every configuration path (tests); default `$ONESTOR_CONFIG_ROOT`, else none. */
  root?: string;
  /** Environment to read tmrc overrides, ONESTOR_CONFIG_ROOT and ONE_LOCATION from; default the process's. */
  env?: Record<string, string>;
  /** Where warnings go besides `config.warnings`; default a `WARN:` log line. */
  warn?: (message: string) => void;
}

/** Where a value came from. */
export type ValueSource =
  | { from: "default" }
  | { from: "file"; path: string; line: number }
  | { from: "environment"; name: string };

/** A configuration file as resolved on this machine. */
export interface ConfigFileInfo {
  /** Full path that was read (root and ONE_LOCATION applied). */
  path: string;
  /** Whether it existed. */
  found: boolean;
}

/** The loaded configuration: one typed field per setting plus lookup helpers. */
export type Config = ConfigValues & {
  /** Value of a setting by key, including `FS_OPTS_<FS>` keys (`[]` when unset). */
  get<K extends SettingKey>(key: K): ValueOfKey<K>;
  get(key: string): SettingValue;
  /** mkfs options for a file system (`FS_OPTS_<fs>`), `[]` when unset. */
  fsOpts(fs: string): string[];
  /** Where each value came from, by key. */
  readonly sources: Readonly<Record<string, ValueSource>>;
  /** Problems found in the shared stock files (also logged as `WARN:` lines). */
  readonly warnings: readonly string[];
  /** The files that were looked for. */
  readonly files: Readonly<Record<ConfigFileId, ConfigFileInfo>>;
};

const FIXED: readonly SettingSpec[] = SETTINGS.filter((s: SettingSpec) => !s.pattern);
const FAMILIES: readonly SettingSpec[] = SETTINGS.filter((s: SettingSpec) => s.pattern === true);
const BY_KEY = new Map<string, SettingSpec>(FIXED.map((s) => [s.key, s]));
const SUFFIX = /^[A-Za-z0-9_]+$/;

/** The schema entry for a key (a fixed key or a member of a family), if any. */
export function findSetting(key: string): SettingSpec | undefined {
  const fixed = BY_KEY.get(key);
  if (fixed) return fixed;
  return FAMILIES.find((s) => {
    const prefix = patternPrefix(s);
    return key.startsWith(prefix) && SUFFIX.test(key.slice(prefix.length));
  });
}

/** Full path of a configuration file: `root` prefixed, `$ONE_LOCATION` layout when given. */
export function configFilePath(
  id: ConfigFileId,
  options: { root?: string; oneLocation?: string } = {},
): string {
  const file = CONFIG_FILES[id];
  const path = options.oneLocation
    ? `${options.oneLocation.replace(/\/+$/, "")}/${file.selfContainedPath}`
    : file.path;
  return `${(options.root ?? "").replace(/\/+$/, "")}${path}`;
}

/** Reads all configuration files and returns the validated, typed configuration. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? processEnv();
  const warn = options.warn ?? logWarn;
  const root = options.root ?? env.ONESTOR_CONFIG_ROOT ?? "";
  const oneLocation = env.ONE_LOCATION || undefined;

  const values = new Map<string, SettingValue>();
  const sources: Record<string, ValueSource> = {};
  const warnings: string[] = [];
  const files = {} as Record<ConfigFileId, ConfigFileInfo>;
  const pathOf = (id: ConfigFileId) => configFilePath(id, { root, oneLocation });

  for (const spec of FIXED) {
    values.set(spec.key, emptyValue(spec));
    sources[spec.key] = { from: "default" };
  }

  for (const id of Object.keys(CONFIG_FILES) as ConfigFileId[]) {
    const file = CONFIG_FILES[id];
    const path = pathOf(id);
    const text = readIfPresent(path);
    files[id] = { path, found: text !== null };
    // A problem in a file other drivers share must not stop them, nor us: warn. Our own file: refuse.
    const report = (message: string) => {
      if (!file.shared) throw new ConfigError(message);
      warnings.push(message);
      warn(message);
    };

    for (const { name, value, line } of text === null ? [] : parseShellVars(text, path)) {
      const spec = findSetting(name);
      if (spec === undefined) {
        report(unknownKeyMessage(name, path, id, pathOf));
      } else if (spec.file !== id) {
        report(`${name} is read from ${pathOf(spec.file)}, not from ${path}`);
      } else if (!spec.ignored) {
        values.set(name, convert(spec, value, `${path}:${line}: ${name}`));
        sources[name] = { from: "file", path, line };
      }
    }

    if (file.fromEnvironment) {
      for (const spec of FIXED) {
        const value = env[spec.key];
        if (spec.file !== id || value === undefined) continue;
        values.set(spec.key, convert(spec, value, `Environment variable ${spec.key}`));
        sources[spec.key] = { from: "environment", name: spec.key };
      }
    }
  }

  checkFsOpts(values, sources, (message) => {
    warnings.push(message);
    warn(message);
  });

  // Derived default: what oned itself uses (oned.conf, else oned's default for this install).
  if (values.get("DATASTORE_LOCATION") === null) {
    const location = onedDatastoreLocation({
      root,
      oneLocation,
      warn: (message) => {
        warnings.push(message);
        warn(message);
      },
    });
    values.set("DATASTORE_LOCATION", location.value);
    if (location.source) sources.DATASTORE_LOCATION = { from: "file", ...location.source };
  }

  const config: Record<string, unknown> = {};
  for (const spec of FIXED) config[fieldName(spec.key)] = values.get(spec.key);
  config.get = (key: string): SettingValue => {
    if (values.has(key)) return values.get(key)!;
    const spec = findSetting(key);
    if (spec === undefined) throw new Error(`Unknown setting ${key}`);
    return emptyValue(spec);
  };
  config.fsOpts = (fs: string): string[] =>
    SUFFIX.test(fs) ? (config.get as (key: string) => string[])(`FS_OPTS_${fs}`) : [];
  config.sources = Object.freeze(sources);
  config.warnings = Object.freeze(warnings);
  config.files = Object.freeze(files);
  return Object.freeze(config) as unknown as Config;
}

function processEnv(): Record<string, string> {
  try {
    return Deno.env.toObject();
  } catch {
    return {}; // no env permission: defaults and files only
  }
}

function readIfPresent(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new ConfigError(`Cannot read ${path}: ${error instanceof Error ? error.message : error}`);
  }
}

/** FS_OPTS_<fs> for an fs missing from SUPPORTED_FS is never used: most likely a typo. */
function checkFsOpts(
  values: Map<string, SettingValue>,
  sources: Record<string, ValueSource>,
  warn: (message: string) => void,
): void {
  const supported = values.get("SUPPORTED_FS") as string[];
  for (const key of values.keys()) {
    if (!key.startsWith("FS_OPTS_")) continue;
    const fs = key.slice("FS_OPTS_".length);
    if (supported.includes(fs)) continue;
    const source = sources[key];
    const where = source.from === "file" ? `${source.path}:${source.line}: ` : "";
    const close = supported.find((s) => s.toLowerCase() === fs.toLowerCase());
    warn(
      `${where}${key} has no effect: ${fs} is not in SUPPORTED_FS` +
        (close ? ` (did you mean FS_OPTS_${close}?)` : ""),
    );
  }
}

function unknownKeyMessage(
  name: string,
  path: string,
  id: ConfigFileId,
  pathOf: (id: ConfigFileId) => string,
): string {
  const suggestion = suggest(name, id);
  if (suggestion === undefined) return `Unknown key ${name} in ${path}`;
  const elsewhere = suggestion.file === id ? "" : ` in ${pathOf(suggestion.file)}`;
  return `Unknown key ${name} in ${path} (did you mean ${suggestion.key}${elsewhere}?)`;
}

/** The closest known key by edit distance, preferring keys of the same file on a tie. */
export function suggest(name: string, id: ConfigFileId): { key: string; file: ConfigFileId } | undefined {
  const upper = name.toUpperCase();
  const candidates: { key: string; file: ConfigFileId }[] = FIXED.map((s) => ({ key: s.key, file: s.file }));
  // A family member keeps the suffix the user wrote: FS_OPT_ext4 → FS_OPTS_ext4.
  const suffix = name.slice(name.lastIndexOf("_") + 1);
  if (suffix !== name && suffix !== "") {
    for (const s of FAMILIES) candidates.push({ key: patternPrefix(s) + suffix, file: s.file });
  }
  const limit = Math.max(2, Math.floor(name.length / 4));
  let best: { key: string; file: ConfigFileId; score: number } | undefined;
  for (const c of candidates) {
    const distance = editDistance(upper, c.key.toUpperCase());
    if (distance > limit) continue;
    const score = distance * 2 + (c.file === id ? 0 : 1);
    if (best === undefined || score < best.score) best = { ...c, score };
  }
  return best && { key: best.key, file: best.file };
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        rows[0].push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, rows[i - 2][j - 2] + 1);
      }
      rows[i].push(d);
    }
  }
  return rows[a.length][b.length];
}

/** Value of an empty setting: its default, or `[]` / `null` when the default is empty. */
function emptyValue(spec: SettingSpec): SettingValue {
  if (spec.default !== "") return convert(spec, spec.default, `Default of ${spec.key}`);
  return isListType(spec.type) ? [] : null;
}

const DD_SIZE = /^[1-9][0-9]*(c|w|b|k|K|kB|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)?$/;

/** Validates and converts one value; `subject` starts the error message (`<file>:<line>: KEY`). */
function convert(spec: SettingSpec, raw: string, subject: string): SettingValue {
  const text = raw.trim();
  if (text === "") return emptyValue(spec);
  const bad = (expected = SETTING_TYPES[spec.type].expected) =>
    new ConfigError(`${subject} must be ${expected}, not "${raw}"`);

  switch (spec.type) {
    case "string":
      return text;
    case "integer": {
      if (!/^[0-9]+$/.test(text)) throw bad(integerExpectation(spec));
      const n = Number(text);
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
        throw bad(integerExpectation(spec));
      }
      return n;
    }
    case "percent": {
      const match = /^([0-9]+)\s*%?$/.exec(text);
      const n = match ? Number(match[1]) : NaN;
      if (!(n >= 1 && n <= 100)) throw bad();
      return n;
    }
    case "boolean": {
      const word = text.toLowerCase();
      if (word === "yes" || word === "true" || word === "1") return true;
      if (word === "no" || word === "false" || word === "0") return false;
      throw bad();
    }
    case "choice": {
      const word = text.toLowerCase();
      if (spec.choices?.includes(word)) return word;
      throw bad(`one of ${spec.choices?.join(", ")}`);
    }
    case "ssh-options":
    case "argv": {
      let words: string[];
      try {
        words = splitWords(text);
      } catch (error) {
        throw bad(`${SETTING_TYPES[spec.type].expected} (${(error as Error).message})`);
      }
      if (spec.type === "ssh-options" && !words[0].startsWith("-")) throw bad();
      return words;
    }
    case "path": {
      if (!text.startsWith("/") || text.includes("\0")) throw bad();
      return text.length > 1 ? text.replace(/\/+$/, "") : text;
    }
    case "list": {
      const items = text.split(",").map((item) => item.trim()).filter((item) => item !== "");
      if (items.some((item) => /\s/.test(item))) throw bad();
      return items;
    }
    case "block-size": {
      if (!DD_SIZE.test(text)) throw bad();
      return text;
    }
  }
}

function integerExpectation(spec: SettingSpec): string {
  const unit = spec.unit ? ` (${spec.unit})` : "";
  if (spec.min !== undefined && spec.max !== undefined) {
    return `a whole number from ${spec.min} to ${spec.max}${unit}`;
  }
  if (spec.min !== undefined) return `a whole number of at least ${spec.min}${unit}`;
  return `a whole number${unit}`;
}
