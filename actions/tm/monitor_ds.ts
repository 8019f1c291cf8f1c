/**
 * TM `monitor_ds <DS_DIR>`: runs on a hypervisor through OpenNebula's probe, where it is the plain
 * shell script laid by `install`. Run on the front-end (`onestor tm monitor_ds DIR`) it executes
 * the same script locally, which is how the script is tested.
 *
 * @module
 */

import type { ActionContext } from "../context.ts";
import { monitorDsScript } from "../../core/install/host_scripts.ts";
import { runChecked } from "../../core/remote/process.ts";

/** Runs the action. */
export async function run(context: ActionContext): Promise<void> {
  const result = await runChecked([
    "sh",
    "-c",
    monitorDsScript(context.driver),
    "monitor_ds",
    ...context.args,
  ], {
    what: "monitor_ds",
  });
  context.print(result.stdout);
}
