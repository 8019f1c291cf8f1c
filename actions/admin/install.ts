/**
 * `onestor install --remotes DIR [--tm-name NAME] [--ds-name NAME] [--recovery-unit [--unit-dir
 * DIR] [--user USER]] [--uninstall]`: lays the launcher and one symlink per action under
 * DIR/tm/NAME and DIR/datastore/NAME, and prints the oned.conf lines to add. With
 * `--recovery-unit` it also lays the systemd unit of `onestor recovery daemon`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "../../core/errors.ts";
import { installDrivers, onedConfLines, uninstallDrivers } from "../../core/install/installer.ts";
import { installUnit, removeUnit, UNIT_DIR, UNIT_NAME } from "../../core/install/recovery_unit.ts";

const USAGE = "onestor install --remotes DIR [--tm-name NAME] [--ds-name NAME] " +
  "[--recovery-unit [--unit-dir DIR] [--user USER]] [--uninstall]";

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
        "recovery-unit": { type: "boolean", default: false },
        "unit-dir": { type: "string", default: UNIT_DIR },
        user: { type: "string", default: "oneadmin" },
      },
      strict: true,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message} (usage: ${USAGE})`);
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
    if (values["recovery-unit"] && await removeUnit(values["unit-dir"]!) && !values.quiet) {
      console.log(`Removed ${values["unit-dir"]}/${UNIT_NAME} (run: systemctl daemon-reload)`);
    }
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
  if (values["recovery-unit"]) {
    const user = values.user!;
    const path = await installUnit(values["unit-dir"]!, {
      launcher: `${options.remotes.replace(/\/+$/, "")}/tm/${options.tmName}/.onestor`,
      user,
      group: user,
      home: user === "oneadmin" ? "/var/lib/one" : `/home/${user}`,
    });
    if (!values.quiet) {
      console.log("");
      console.log(
        `Laid ${path}; start it with: systemctl daemon-reload && systemctl enable --now ${UNIT_NAME}`,
      );
    }
  }
  return 0;
}
