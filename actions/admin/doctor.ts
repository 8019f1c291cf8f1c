/**
 * `onestor doctor [--json] [--cluster ID] [--host NAME] [--deep] [--fix]`: checks the storage
 * end to end and prints one finding per check (ok, warn or fail, with the cause and the fix); the
 * exit code is the worst: 0 ok, 1 warn, 2 fail. The work is in core/doctor.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "../../core/errors.ts";
import { runDoctor } from "../../core/doctor/doctor.ts";
import { buildReport, plainLines, tableLines } from "../../core/doctor/render.ts";
import { OneClient } from "../../core/one/xmlrpc.ts";
import { HostRunner, localHostNames } from "../../core/remote/runner.ts";
import { ciphersSetting, SshClient } from "../../core/remote/ssh.ts";
import { contentAlgorithm, getConfig } from "../../core/runtime.ts";
import { HASH_PROGRAMS } from "../../core/transfer/hashes.ts";
import type { Config } from "../../config/load.ts";

/** Usage text. */
export const DOCTOR_USAGE = `Usage: onestor doctor [--json] [--cluster ID] [--host NAME] [--deep] [--fix]

Checks the configuration, the front-end, oned, every host (programs, folders, markers, clock, disks'
backing chains, onestor's temporary files), the replica caches (space, records, leases) and every SSH
hop that must work (front-end <-> hosts, replica -> hypervisors, hypervisor <-> hypervisor).

  --json         the report as JSON (docs/operations.md describes it)
  --cluster ID   only the hosts and datastores of this cluster
  --host NAME    only this host (and the hops of other hosts to it)
  --deep         also re-read a sample of cache entries and compare their checksums
  --fix          remove what is provably garbage: stale leases of dead fillers, temporary files of
                 interrupted copies older than the longest timeout, cache records without files

Exit code: 0 all ok, 1 warnings, 2 failures (or a wrong invocation).`;

function stdoutIsTerminal(): boolean {
  try {
    return Deno.stdout.isTerminal();
  } catch {
    return false;
  }
}

/** The installed launcher (for fix lines) and the TM names it serves, from how we were started. */
function installation(): { command: string; tmNames: string[] } {
  const argv0 = Deno.env.get("ONESTOR_ARGV0") ?? "";
  const m = argv0.match(/\/tm\/([^/]+)\/[^/]+$/);
  const names = new Set(["onestor", "ssh"]);
  if (m) names.add(m[1]);
  return { command: m ? argv0 : "onestor", tmNames: [...names] };
}

function probeRunner(config: Config): HostRunner {
  // No shared connections: a master opened before a host key changed would hide the change.
  const ssh = new SshClient({
    configFile: Deno.env.get("ONESTOR_SSH_CONFIG") || undefined,
    controlPersist: 0,
    connectTimeout: config.sshConnectTimeout,
    options: [...config.sshOpts, "-o", "ControlMaster=no", "-o", "ControlPath=none"],
    forwardAgent: config.sshForwardAgent,
    ciphers: ciphersSetting(config.sshCiphers),
  });
  const extra = (Deno.env.get("ONESTOR_FRONTEND_NAMES") ?? "").split(/[\s,]+/).filter((n) => n !== "");
  return new HostRunner(ssh, localHostNames(extra));
}

/** Runs the doctor subcommand. */
export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        json: { type: "boolean", default: false },
        cluster: { type: "string" },
        host: { type: "string" },
        deep: { type: "boolean", default: false },
        fix: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message} (usage: onestor doctor --help)`);
  }
  if (values.help) {
    console.log(DOCTOR_USAGE);
    return 0;
  }
  if (values.cluster !== undefined && !/^[0-9]+$/.test(values.cluster)) {
    throw new UsageError(`--cluster takes a cluster id, not '${values.cluster}'`);
  }
  if (values.host !== undefined && values.host.trim() === "") {
    throw new UsageError("--host needs a host name");
  }
  const started = new Date();
  const t0 = performance.now();
  let config: Config | null = null;
  try {
    config = getConfig();
  } catch {
    // Reported by the configuration check; the probes then use the defaults.
  }
  const { command, tmNames } = installation();
  let hostname = "frontend";
  try {
    hostname = Deno.hostname();
  } catch {
    // Keep the generic name.
  }
  const runner = config
    ? probeRunner(config)
    : new HostRunner(new SshClient({ controlPersist: 0 }), localHostNames());
  const findings = await runDoctor({
    client: new OneClient(),
    runner,
    place: {
      root: Deno.env.get("ONESTOR_CONFIG_ROOT") || undefined,
      oneLocation: Deno.env.get("ONE_LOCATION") || undefined,
    },
    // The program of the content checksum (xxhsum by default: a host without it falls back to b2sum).
    checksum: () => HASH_PROGRAMS[contentAlgorithm()][0],
    selection: {
      cluster: values.cluster === undefined ? null : Number(values.cluster),
      host: values.host ?? null,
    },
    deep: values.deep,
    fix: values.fix,
    tmNames,
    command,
    frontend: hostname,
    user: Deno.env.get("USER") || "oneadmin",
    home: Deno.env.get("HOME"),
  });
  const report = buildReport(findings, started, (performance.now() - t0) / 1000);
  let lines: string[];
  if (values.json) lines = [JSON.stringify(report, null, 2)];
  else if (stdoutIsTerminal()) lines = tableLines(report, !Deno.env.get("NO_COLOR"));
  else lines = plainLines(report);
  const bytes = new TextEncoder().encode(lines.join("\n") + "\n");
  for (let off = 0; off < bytes.length;) off += Deno.stdout.writeSync(bytes.subarray(off));
  return report.exit_code;
}
