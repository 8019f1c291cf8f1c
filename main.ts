/**
 * onestor: OpenNebula's OneStor storage (ssh transfer driver in replica mode + fs image datastore
 * driver), as one program. oned runs it through symlinks named after the actions; people run it
 * as `onestor <subcommand>`.
 *
 * @module
 */

import { ExitCode, oneLine, OneStorError, UsageError } from "./core/errors.ts";
import { logError, logScope, printFailure, setLogScope } from "./core/one/log.ts";
import { type ActionKind, processContext } from "./actions/context.ts";
import { ARGV0_VARIABLE, resolveInvocation } from "./actions/invocation.ts";
import { type ActionSpec, DS_ACTIONS, findAction, TM_ACTIONS } from "./actions/registry.ts";
import { VERSION } from "./core/version.ts";
import { metrics } from "./core/metrics/metrics.ts";
import { errorKind } from "./core/metrics/error_kind.ts";

/** The driver action this process runs, for its metrics (admin commands are not counted). */
let running = null as { action: string; kind: ActionKind; started: number } | null;

const HELP = `onestor ${VERSION}: OneStor storage for OpenNebula (ssh TM in replica mode + fs datastore)

Usage:
  onestor tm <action> ARGS...          run a transfer manager action as oned does
  onestor ds <action> ID               run a datastore action (base64 DS_DRIVER_ACTION_DATA on stdin)
  onestor install --remotes DIR [--tm-name NAME] [--ds-name NAME] [--uninstall]
                                       lay the launcher and action symlinks under DIR/tm and DIR/datastore
  onestor cache ls|warm|evict|verify   manage the per-cluster replica cache
  onestor doctor [--json] [--cluster ID] [--host NAME] [--deep] [--fix]
                                       check (and --fix) the storage: settings, SSH mesh, tools, caches,
                                       disks; exit 0 ok, 1 warnings, 2 failures
  onestor metrics [--textfile DIR]     counters of every action in the Prometheus text format
  onestor config [--check]             print the effective configuration
  onestor --help | --version

Installed as <remotes>/tm/<name>/<action> or <remotes>/datastore/<name>/<action>, the action is
taken from the name it is invoked by.

TM actions: ${TM_ACTIONS.map((a) => a.name).join(", ")}
DS actions: ${DS_ACTIONS.map((a) => a.name).join(", ")}
`;

/** Admin subcommands, loaded lazily. */
const ADMIN: Record<string, () => Promise<{ run: (args: string[]) => Promise<number | void> }>> = {
  install: () => import("./actions/admin/install.ts"),
  cache: () => import("./actions/admin/cache.ts"),
  doctor: () => import("./actions/admin/doctor.ts"),
  config: () => import("./actions/admin/config.ts"),
  metrics: () => import("./actions/admin/metrics.ts"),
};

async function runAction(spec: ActionSpec, driver: string, args: string[]): Promise<void> {
  const [min, max] = spec.args;
  if (args.length < min || args.length > max) {
    const expected = min === max ? `${min}` : max === Infinity ? `at least ${min}` : `${min} to ${max}`;
    throw new UsageError(
      `Wrong number of arguments for ${spec.kind} action ${spec.name}: got ${args.length}, expected ${expected} (${spec.usage})`,
    );
  }
  const module = await spec.load();
  running = { action: spec.name, kind: spec.kind, started: performance.now() };
  await module.run(processContext(spec.name, spec.kind, driver, args));
}

function unknownAction(kind: ActionKind, name: string): never {
  const list = (kind === "tm" ? TM_ACTIONS : DS_ACTIONS).map((a) => a.name).join(", ");
  throw new UsageError(`Unknown ${kind === "tm" ? "TM" : "datastore"} action '${name}' (known: ${list})`);
}

async function main(argv: string[]): Promise<number> {
  const invokedAs = Deno.env.get(ARGV0_VARIABLE);
  if (invokedAs) {
    const base = invokedAs.split("/").pop() ?? invokedAs;
    // The launcher itself (`.onestor`, or a link named `onestor`) takes subcommands.
    const invocation = base === "onestor" || base === ".onestor"
      ? undefined
      : resolveInvocation(invokedAs, Deno.cwd());
    if (invocation) {
      setLogScope(invocation.action);
      const spec = findAction(invocation.kind, invocation.action) ??
        unknownAction(invocation.kind, invocation.action);
      await runAction(spec, invocation.driver, argv);
      return ExitCode.ok;
    }
    if (base !== "onestor" && base !== ".onestor") {
      throw new UsageError(`Cannot tell which action to run from the name '${invokedAs}'`);
    }
  }
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "-h":
    case "--help":
    case "help":
      Deno.stdout.writeSync(new TextEncoder().encode(HELP));
      return command === undefined ? ExitCode.usage : ExitCode.ok;
    case "-V":
    case "--version":
    case "version":
      console.log(`onestor ${VERSION}`);
      return ExitCode.ok;
    case "tm":
    case "ds": {
      const [name, ...args] = rest;
      if (!name) throw new UsageError(`Missing action name: onestor ${command} <action> ARGS`);
      setLogScope(name);
      const spec = findAction(command, name) ?? unknownAction(command, name);
      await runAction(spec, "onestor", args);
      return ExitCode.ok;
    }
    default: {
      const admin = ADMIN[command];
      if (!admin) throw new UsageError(`Unknown command '${command}' (see onestor --help)`);
      setLogScope(command);
      const code = await (await admin()).run(rest);
      return typeof code === "number" ? code : ExitCode.ok;
    }
  }
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    const message = oneLine(error);
    if (!(error instanceof OneStorError) || Deno.env.get("ONESTOR_DEBUG")) {
      logError(error instanceof Error && error.stack ? error.stack : message);
    } else {
      logError(message);
    }
    printFailure(message);
    code = error instanceof OneStorError ? error.exitCode : ExitCode.failure;
    metrics.count("errors_total", { action: running?.action ?? logScope(), kind: errorKind(error) });
  }
  if (running) {
    const { action, kind, started } = running;
    metrics.count("actions_total", { action, kind, result: code === 0 ? "success" : "failure" });
    metrics.observe("action_duration_seconds", { action }, (performance.now() - started) / 1000);
  }
  Deno.exit(code);
}
