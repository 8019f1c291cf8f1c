/**
 * `onestor config [--check] [--json]`: the effective configuration, each value with where it came
 * from, and the problems found in the files. `--check` exits non-zero when a file has a problem
 * (an unknown key, a bad value), so administrators can validate an edit before oned runs it.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadConfig } from "../../config/load.ts";
import { SETTINGS, type SettingSpec } from "../../config/schema.ts";
import { UsageError } from "../../core/errors.ts";

function show(value: unknown): string {
  if (value === null || value === undefined) return "(unset)";
  if (Array.isArray(value)) return value.length === 0 ? "(empty)" : value.join(" ");
  return String(value);
}

/** Runs the config subcommand. */
export function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { check: { type: "boolean", default: false }, json: { type: "boolean", default: false } },
      strict: true,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message} (usage: onestor config [--check] [--json])`);
  }
  const warnings: string[] = [];
  // A ConfigError (bad value, unknown key in onestor.conf) propagates: one line, exit 255.
  const config = loadConfig({ warn: (m) => warnings.push(m) });
  const rows = (SETTINGS as readonly SettingSpec[]).filter((s) => !s.pattern).map((s) => {
    const source = config.sources[s.key];
    const from = !source || source.from === "default"
      ? "default"
      : source.from === "file"
      ? `${source.path}:${source.line}`
      : `environment ${source.name}`;
    return { key: s.key, value: config.get(s.key), from };
  });
  for (const fs of config.supportedFs) {
    const opts = config.fsOpts(fs);
    if (opts.length > 0) rows.push({ key: `FS_OPTS_${fs}`, value: opts, from: "datastore.conf" });
  }
  if (values.json) {
    console.log(JSON.stringify({ settings: rows, warnings, files: config.files }, null, 2));
  } else if (!values.check) {
    const width = Math.max(...rows.map((r) => r.key.length));
    for (const r of rows) console.log(`${r.key.padEnd(width)}  ${show(r.value)}  [${r.from}]`);
    for (const w of warnings) console.log(`warning: ${w}`);
  } else {
    for (const w of warnings) console.error(w);
    if (warnings.length === 0) console.log("configuration OK");
  }
  return Promise.resolve(values.check && warnings.length > 0 ? 1 : 0);
}
