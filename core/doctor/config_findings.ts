/**
 * Findings about the front-end itself: every configuration file read line by line (each unknown
 * or misspelt key named with the key it most likely meant; a value onestor refuses), the metrics
 * store, and the programs the front-end runs.
 *
 * @module
 */

import { type Config, configFilePath, findSetting, loadConfig, suggest } from "../../config/load.ts";
import { CONFIG_FILES, type ConfigFileId } from "../../config/schema.ts";
import { parseShellVars } from "../../config/shell_vars.ts";
import { finding, type Result } from "./finding.ts";

/** Where the configuration is read from (as loadConfig resolves it). */
export interface ConfigPlace {
  root?: string;
  oneLocation?: string;
}

/** Reads every configuration file; returns the findings and the configuration (null when unusable). */
export function configFindings(place: ConfigPlace): { findings: Result[]; config: Config | null } {
  const out: Result[] = [];
  for (const id of Object.keys(CONFIG_FILES) as ConfigFileId[]) {
    const path = configFilePath(id, place);
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      out.push(
        finding("config", path, null, "fail", `cannot read it: ${(error as Error).message}`, `check ${path}`),
      );
      continue;
    }
    let vars;
    try {
      vars = parseShellVars(text, path);
    } catch (error) {
      out.push(finding("config", path, null, "fail", (error as Error).message, `fix the syntax of ${path}`));
      continue;
    }
    const shared = CONFIG_FILES[id].shared;
    for (const v of vars) {
      const spec = findSetting(v.name);
      if (spec && spec.file === id) continue;
      const where = `${path}:${v.line}`;
      if (spec) {
        out.push(finding(
          "config",
          `${where}: ${v.name}`,
          null,
          shared ? "warn" : "fail",
          `${v.name} is read from ${
            configFilePath(spec.file, place)
          }, not from ${path}: here it has no effect`,
          `move the line to ${configFilePath(spec.file, place)}`,
        ));
        continue;
      }
      const guess = suggest(v.name, id);
      out.push(finding(
        "config",
        `${where}: ${v.name}`,
        null,
        shared ? "warn" : "fail",
        `unknown key ${v.name}` +
          (shared
            ? ": onestor ignores it (other drivers read this file too)"
            : ": onestor refuses this file, every action fails"),
        guess
          ? `rename it to ${guess.key}${guess.file === id ? "" : ` in ${configFilePath(guess.file, place)}`}`
          : `remove it (onestor config lists the known keys; docs/configuration.md explains them)`,
      ));
    }
  }
  let config: Config | null = null;
  try {
    config = loadConfig({ root: place.root, warn: () => {} });
  } catch (error) {
    // A value onestor refuses (an unknown key of onestor.conf is already reported above).
    const message = (error as Error).message;
    if (!/^Unknown key | is read from /.test(message)) {
      out.push(
        finding("config", "settings", null, "fail", message, "correct the value (onestor config --check)"),
      );
    }
  }
  if (config && out.length === 0) {
    const files = Object.values(config.files).filter((f) => f.found).length;
    out.push(
      finding("config", "settings", null, "ok", `${files} configuration file(s) read, every key known`),
    );
  }
  return { findings: out, config };
}

/** The metrics store must be writable, or actions record nothing. */
export function metricsStoreFinding(dir: string): Result {
  try {
    Deno.mkdirSync(dir, { recursive: true });
    const probe = `${dir}/.doctor-${Deno.pid}`;
    Deno.writeTextFileSync(probe, "");
    Deno.removeSync(probe);
    return finding("metrics-store", dir, null, "ok", "writable");
  } catch (error) {
    return finding(
      "metrics-store",
      dir,
      null,
      "warn",
      `actions cannot record their metrics there: ${(error as Error).message}`,
      `let the user the drivers run as write in ${dir} (or set ONESTOR_METRICS_DIR)`,
    );
  }
}

/** Programs the front-end runs, alternatives grouped (`xorriso` or `genisoimage`). */
export function frontendTools(config: Config, checksum: string): string[][] {
  const tools = [["ssh"], ["tar"], ["qemu-img"], ["bash"], ["xorriso", "genisoimage"], ["flock"]];
  if (checksum !== "none") tools.push([checksum]);
  if (config.transferCompression !== "none") tools.push([config.transferCompression]);
  for (const fs of config.supportedFs) tools.push([`mkfs.${fs}`]);
  return tools;
}
