/**
 * Command line for the test lab (tests/support/lab.ts): several OpenNebula-like hosts on this
 * machine, each with its own namespaces and sshd on a loopback address.
 *
 * ```
 * deno run -A scripts/lab.ts up [--name N] [--hosts a,b,c] [--extra-dir DIR]...
 * deno run -A scripts/lab.ts status
 * deno run -A scripts/lab.ts exec HOST [--name N] [--user oneadmin] [--cwd DIR] -- CMD...
 * deno run -A scripts/lab.ts down [--name N | --all]
 * ```
 *
 * `down --all` kills every lab of this machine, also leftovers of crashed test runs.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { downAllLabs, Lab, LAB_BASE, LAB_HOSTS, labSupport, listLabs } from "../tests/support/lab.ts";

const USAGE = `Usage:
  lab.ts up [--name N] [--hosts a,b,c] [--extra-dir DIR]...   start a lab that outlives this command
  lab.ts status                                               list the labs of this machine
  lab.ts exec HOST [--name N] [--user root|oneadmin] [--cwd DIR] -- CMD...
                                                              run CMD in HOST, print its output
  lab.ts down [--name N | --all]                              stop one lab, or every lab and leftover`;

class UsageError extends Error {}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const dash = argv.indexOf("--");
  const head = dash < 0 ? argv : argv.slice(0, dash);
  const tail = dash < 0 ? [] : argv.slice(dash + 1);
  const { values, positionals } = parseArgs({
    args: head,
    allowPositionals: true,
    options: {
      name: { type: "string" },
      hosts: { type: "string" },
      "extra-dir": { type: "string", multiple: true },
      user: { type: "string" },
      cwd: { type: "string" },
      all: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  if (command !== "exec" && (rest.length || tail.length)) {
    throw new UsageError(`Unexpected arguments: ${rest}`);
  }
  const support = labSupport();
  if (!support.ok && command !== "status") {
    throw new Error(`This machine cannot run a lab: ${support.reason}`);
  }

  switch (command) {
    case "up": {
      const start = performance.now();
      const lab = await Lab.start({
        name: values.name,
        hosts: values.hosts ? values.hosts.split(",").filter(Boolean) : [...LAB_HOSTS],
        extraDirs: values["extra-dir"],
        persistent: true,
      });
      const ms = Math.round(performance.now() - start);
      const state = JSON.parse(await Deno.readTextFile(`${lab.dir}/state.json`));
      const pids = new Map<string, number>(state.hosts.map((h: any) => [h.name, h.init.pid]));
      console.log(`Lab ${lab.name} is up in ${ms} ms (dir ${lab.dir})\n`);
      console.log(table([
        ["HOST", "ADDRESS", "PID 1", "PRIVATE DIRS UNDER"],
        ...[...lab.hosts.values()].map((h) => [h.name, h.address, `${pids.get(h.name)}`, h.root]),
      ]));
      const first = [...lab.hosts.keys()][0];
      console.log(`
ssh in:        ssh -F ${lab.sshConfig} ${first}            (as oneadmin: oneadmin@${first})
enter a host:  nsenter --target ${pids.get(first)} --mount --uts --pid -- bash
run a command: deno run -A scripts/lab.ts exec ${first} --name ${lab.name} -- hostname
stop:          deno run -A scripts/lab.ts down --name ${lab.name}`);
      return 0;
    }
    case "status": {
      const labs = await listLabs();
      if (!labs.length) {
        console.log(`No lab under ${LAB_BASE}`);
        return 0;
      }
      for (const l of labs) {
        const owner = l.persistent ? "persistent" : `test lab of pid ${l.ownerPid}`;
        console.log(`${l.name} (${owner}, ${l.dir})`);
        console.log(table(l.hosts.map((h) => [
          `  ${h.name}`,
          h.address,
          h.alive ? `up, PID 1 = ${h.initPid}` : "DOWN",
        ])));
      }
      return 0;
    }
    case "exec": {
      if (rest.length !== 1 || !tail.length) throw new UsageError("exec needs HOST -- CMD...");
      const user = values.user ?? "root";
      if (user !== "root" && user !== "oneadmin") throw new UsageError(`Unknown user ${user}`);
      const lab = await Lab.open(values.name);
      const r = await lab.exec(rest[0], tail, { user, cwd: values.cwd, timeoutMs: 24 * 3600_000 });
      await Deno.stdout.write(new TextEncoder().encode(r.stdout));
      await Deno.stderr.write(new TextEncoder().encode(r.stderr));
      return r.code;
    }
    case "down": {
      if (values.all) {
        const names = await downAllLabs();
        console.log(
          names.length ? `Stopped ${names.join(", ")}` : "No lab was registered; leftovers removed",
        );
        return 0;
      }
      const lab = await Lab.open(values.name);
      await lab.stop();
      console.log(`Stopped ${lab.name}`);
      return 0;
    }
    default:
      throw new UsageError(`Unknown command ${command}`);
  }
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    // parseArgs reports unknown or malformed options with ERR_PARSE_ARGS_* codes.
    const usage = e instanceof UsageError ||
      String((e as { code?: string }).code).startsWith("ERR_PARSE_ARGS");
    console.error(`lab: ${(e as Error).message}`);
    if (usage) console.error(USAGE);
    Deno.exit(usage ? 2 : 1);
  }
}
