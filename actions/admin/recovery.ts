/**
 * `onestor recovery run|daemon|status|restore`: recovery points of protected disks (see
 * docs/recovery.md). Thin: parsing, output and exit codes here, the work in core/recovery.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { OneStorError, UsageError } from "../../core/errors.ts";
import { setLogScope } from "../../core/one/log.ts";
import { OneClient } from "../../core/one/xmlrpc.ts";
import { readInventory } from "../../core/recovery/inventory.ts";
import { choosePoint } from "../../core/recovery/restore.ts";
import { runDaemon, runPass } from "../../core/recovery/scheduler.ts";
import { formatStatus, statusReport } from "../../core/recovery/status.ts";
import { tmServices } from "../../core/tm/services.ts";

/** Usage text of the subcommand. */
export const RECOVERY_USAGE = `Usage:
  onestor recovery run [--vm ID]... [--force] [--json]   take the points that are due (one pass)
  onestor recovery daemon                                passes until stopped (the systemd service)
  onestor recovery status [--vm ID]... [--json]          every protected disk: points, age, errors
  onestor recovery restore VMID --point N|latest [--disk ID]
                                                         the point a recreate rebuilds the disk from

A disk is protected when it has RECOVERY_SNAPSHOT_FREQ (seconds) and its VM's system datastore has
REPLICA_HOST. run --force takes a point now even when the last one is younger than FREQ.
Exit codes: run 0 when every period asked for succeeded, 1 when one failed; status 0, or 1 when
a protected disk is failing or stale; 2 usage.`;

function vmIds(values: string[] | undefined): number[] {
  return (values ?? []).map((v) => {
    if (!/^[0-9]+$/.test(v)) throw new UsageError(`--vm takes a VM id, got '${v}'`);
    return Number(v);
  });
}

function parse(
  argv: string[],
  options: NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (error) {
    throw new UsageError(`${(error as Error).message} (see onestor recovery --help)`);
  }
}

/** Runs the recovery subcommand. */
export async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  setLogScope("recovery");
  switch (command) {
    case undefined:
    case "-h":
    case "--help":
    case "help":
      console.log(RECOVERY_USAGE);
      return command === undefined ? 2 : 0;
    case "run": {
      const { values } = parse(rest, {
        vm: { type: "string", multiple: true },
        force: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
      });
      const services = tmServices("onestor");
      const report = await runPass(services, new OneClient(), {
        vms: vmIds(values.vm as string[] | undefined),
        force: values.force as boolean,
      });
      if (values.json) {
        console.log(JSON.stringify(report, null, 2));
      } else {
        for (const o of report.outcomes) {
          const head = `vm ${o.vmId} disk ${o.diskId}:`;
          if (o.status === "done" && o.point) {
            const p = o.point;
            console.log(
              `${head} point ${p.id} (${p.kind}${p.reason ? `: ${p.reason}` : ""}), ` +
                `${(p.bytes / 1048576).toFixed(1)} MiB moved, ${(p.data / 1048576).toFixed(1)} MiB data, ` +
                `${o.seconds.toFixed(1)} s${o.warning ? `; warning: ${o.warning}` : ""}`,
            );
          } else {
            console.log(`${head} ${o.status}: ${o.error}`);
          }
        }
        if (report.outcomes.length === 0) {
          console.log(`No point due (${report.protected} protected disks of running VMs)`);
        }
      }
      return report.outcomes.some((o) => o.status === "failed") ? 1 : 0;
    }
    case "daemon": {
      parse(rest, {});
      const services = tmServices("onestor");
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      Deno.addSignalListener("SIGTERM", onSignal);
      Deno.addSignalListener("SIGINT", onSignal);
      try {
        await runDaemon(services, new OneClient(), stop.signal);
      } finally {
        Deno.removeSignalListener("SIGTERM", onSignal);
        Deno.removeSignalListener("SIGINT", onSignal);
      }
      return 0;
    }
    case "status": {
      const { values } = parse(rest, {
        vm: { type: "string", multiple: true },
        json: { type: "boolean", default: false },
      });
      const wanted = new Set(vmIds(values.vm as string[] | undefined));
      const services = tmServices("onestor");
      const disks = (await readInventory(new OneClient())).filter((d) =>
        wanted.size === 0 || wanted.has(d.vmId)
      );
      const report = await statusReport(
        services.runner,
        services.config.replicaRecoverySnapsDir,
        disks,
        services.controlTimeoutMs,
      );
      console.log(values.json ? JSON.stringify(report, null, 2) : formatStatus(report));
      return report.disks.some((d) => d.state === "failing" || d.state === "stale") ? 1 : 0;
    }
    case "restore": {
      const { values, positionals } = parse(
        rest,
        { point: { type: "string" }, disk: { type: "string" } },
        true,
      );
      if (positionals.length !== 1 || !/^[0-9]+$/.test(positionals[0])) {
        throw new UsageError("Usage: onestor recovery restore VMID --point N|latest [--disk ID]");
      }
      const pointText = values.point as string | undefined;
      if (!pointText || !/^([0-9]+|latest)$/.test(pointText)) {
        throw new UsageError("--point takes a point id (see onestor recovery status) or 'latest'");
      }
      const diskText = values.disk as string | undefined;
      if (diskText !== undefined && !/^[0-9]+$/.test(diskText)) {
        throw new UsageError(`--disk takes a disk id, got '${diskText}'`);
      }
      const vmId = Number(positionals[0]);
      const point = pointText === "latest" ? null : Number(pointText);
      const services = tmServices("onestor");
      const disks = (await readInventory(new OneClient())).filter((d) =>
        d.vmId === vmId && (diskText === undefined || d.diskId === Number(diskText)) && d.problem === null
      );
      if (disks.length === 0) {
        throw new OneStorError(
          `VM ${vmId} has no protected disk${diskText !== undefined ? ` ${diskText}` : ""}`,
        );
      }
      for (const d of disks) {
        const chosen = await choosePoint(services, { vmId, diskId: d.diskId, replica: d.replica }, point);
        console.log(
          chosen
            ? `vm ${vmId} disk ${d.diskId}: a recreate rebuilds the disk from point ${chosen.id} of ${
              new Date(chosen.time * 1000).toISOString()
            } (its files were checked)`
            : `vm ${vmId} disk ${d.diskId}: a recreate rebuilds the disk from the newest point`,
        );
      }
      return 0;
    }
    default:
      throw new UsageError(`Unknown recovery command '${command}' (run, daemon, status, restore)`);
  }
}
