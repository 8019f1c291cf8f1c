/**
 * `onestor install --remotes DIR [--tm-name NAME] [--ds-name NAME] [--uninstall]`: lays the
 * launcher and one symlink per action under DIR/tm/NAME and DIR/datastore/NAME, and prints the
 * oned.conf lines to add.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "../../core/errors.ts";
import { installDrivers, onedConfLines, uninstallDrivers } from "../../core/install/installer.ts";

/** Runs the install subcommand. */
export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        remotes: { type: "string" },
        "tm-name": { type: "string", default: "onestor" },
        "ds-name": { type: "string", default: "onestor" },
        uninstall: { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
      },
      strict: true,
    }));
  } catch (error) {
    throw new UsageError(
      `${
        (error as Error).message
      } (usage: onestor install --remotes DIR [--tm-name NAME] [--ds-name NAME] [--uninstall])`,
    );
  }
  if (!values.remotes) {
    throw new UsageError("Missing --remotes DIR (OpenNebula's remotes folder, usually /var/lib/one/remotes)");
  }
  const options = {
    remotes: values.remotes,
    tmName: values["tm-name"]!,
    dsName: values["ds-name"]!,
  };
  if (values.uninstall) {
    const removed = await uninstallDrivers(options);
    if (!values.quiet) console.log(`Removed ${removed} entries laid by onestor under ${options.remotes}`);
    return 0;
  }
  const report = await installDrivers(options);
  if (!values.quiet) {
    console.log(`Installed onestor ${report.version} under ${options.remotes}:`);
    console.log(`  ${report.tmDir} (${report.tmActions} TM actions)`);
    console.log(`  ${report.dsDir} (${report.dsActions} datastore actions)`);
    console.log(
      report.bundle
        ? `  actions run from the bundle ${report.bundle} (run install again after updating onestor)`
        : "  actions run main.ts (no bundle could be built here)",
    );
    if (report.backedUp > 0) {
      console.log(`  ${report.backedUp} stock files kept in .onestor-backup/ (restored by --uninstall)`);
    }
    console.log("");
    console.log(onedConfLines(options));
  }
  return 0;
}
