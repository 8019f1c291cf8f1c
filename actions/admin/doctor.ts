/**
 * `onestor doctor`: runs the checks of core/doctor and prints one line per check; exits 1 when any
 * check fails.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadConfig } from "../../config/load.ts";
import { UsageError } from "../../core/errors.ts";
import {
  checkFrontendTools,
  checkHosts,
  checkReplicaMesh,
  type CheckResult,
  configuredHostTools,
  readInventory,
} from "../../core/doctor/checks.ts";
import { OneClient } from "../../core/one/xmlrpc.ts";
import { contentAlgorithm, controlTimeoutMs, getRunner } from "../../core/runtime.ts";

/** Runs the doctor subcommand. */
export async function run(argv: string[]): Promise<number> {
  try {
    parseArgs({ args: argv, options: {}, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message} (usage: onestor doctor)`);
  }
  const results: CheckResult[] = [];
  const report = (rs: CheckResult[]) => {
    for (const r of rs) {
      const tag = r.status === "ok" ? "ok  " : r.status === "warn" ? "WARN" : "FAIL";
      console.log(`${tag} ${r.name}${r.detail ? `: ${r.detail}` : ""}`);
      results.push(r);
    }
  };
  const warnings: string[] = [];
  try {
    loadConfig({ warn: (m) => warnings.push(m) });
    report([{
      name: "configuration files",
      status: warnings.length ? "warn" : "ok",
      detail: warnings.join("; "),
    }]);
  } catch (error) {
    report([{ name: "configuration files", status: "fail", detail: (error as Error).message }]);
    return 1;
  }
  report(await checkFrontendTools(loadConfig({ warn: () => {} }), contentAlgorithm()));
  const timeout = Math.min(controlTimeoutMs() || 30_000, 30_000);
  let inventory;
  try {
    inventory = await readInventory(new OneClient());
    report([{
      name: `oned answers (${inventory.hosts.length} hosts, ${inventory.datastores.length} datastores)`,
      status: "ok",
    }]);
  } catch (error) {
    report([{ name: "oned answers", status: "fail", detail: (error as Error).message }]);
    return 1;
  }
  const runner = getRunner();
  const config = loadConfig({ warn: () => {} });
  report(
    await checkHosts(
      runner,
      inventory,
      timeout,
      configuredHostTools(contentAlgorithm(), config.transferCompression),
    ),
  );
  report(await checkReplicaMesh(runner, inventory, config, timeout));
  const failed = results.filter((r) => r.status === "fail").length;
  console.log(failed === 0 ? "All checks passed" : `${failed} check(s) failed`);
  return failed === 0 ? 0 : 1;
}
