/**
 * `onestor doctor`: every check, in order. The front-end's own checks run locally; every host
 * gets one probe script (one SSH round trip, hosts probed in parallel, at most
 * {@linkcode PARALLEL} at once) whose answer feeds the host, cache, disk and SSH-mesh findings;
 * `--deep` re-reads a sample of cache entries; `--fix` then removes what is provably garbage.
 *
 * @module
 */

import type { Config } from "../../config/load.ts";
import { OneStorError, RemoteError } from "../errors.ts";
import { metricsDir } from "../metrics/store.ts";
import { DatastoreView, HostView } from "../one/objects.ts";
import type { OneClient } from "../one/xmlrpc.ts";
import { xpathNodes } from "../one/xml.ts";
import type { HostRunner } from "../remote/runner.ts";
import { cacheFindings, deepFindings, folderStates, type HolderCheck } from "./cache_findings.ts";
import { configFindings, type ConfigPlace, frontendTools, metricsStoreFinding } from "./config_findings.ts";
import { finding, type Result, sortFindings } from "./finding.ts";
import { removeGarbage } from "./fix.ts";
import { normalizePath, tmConfinement } from "../remote/confine.ts";
import { chainFindings, clockFinding, folderFindings, tempFindings, toolFindings } from "./host_findings.ts";
import { buildPlan, type DoctorPlan, type HostPlan, type Inventory, type Selection } from "./plan.ts";
import { type HostFacts, parseProbe, probeScript } from "./probe.ts";
import { recoveryFindings } from "./recovery_findings.ts";
import { frontendPublicKey, sshFailure, type SshFixContext, sshOk } from "./ssh_findings.ts";

/** Hosts probed at once. */
export const PARALLEL = 8;

/** Entries re-read per replica by `--deep`. */
export const DEEP_SAMPLE = 8;

/** What the doctor runs with. */
export interface DoctorContext {
  client: OneClient;
  /** Runs the probes; built without connection sharing, so every host key is really checked. */
  runner: HostRunner;
  place: ConfigPlace;
  /** Checksum program of TRANSFER_CHECKSUM. */
  checksum: (config: Config) => string;
  selection: Selection;
  deep: boolean;
  fix: boolean;
  /** TM driver names this installation serves. */
  tmNames: readonly string[];
  /** Command prefix in fix lines (`onestor` or the installed launcher). */
  command: string;
  /** Name hosts reach the front-end by. */
  frontend: string;
  user: string;
  home: string | undefined;
  /** Called with each fix as it is done (the report lists them too). */
  onFixed?: (f: Result) => void;
}

/** Reads the host and datastore pools. */
export async function readInventory(client: OneClient): Promise<Inventory> {
  const [hostPool, dsPool] = await Promise.all([client.hostPoolInfo(), client.datastorePoolInfo()]);
  return {
    hosts: xpathNodes(hostPool, "/HOST_POOL/HOST").map((h) => new HostView(h)),
    datastores: xpathNodes(dsPool, "/DATASTORE_POOL/DATASTORE").map((d) => new DatastoreView(d)),
  };
}

/** Runs `fn` over `items`, at most `limit` at a time, results in order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The longest timeout of the configuration, in seconds: older temporary files are no copy's. */
export function longestTimeout(config: Config): number {
  return Math.max(
    60,
    config.sshControlTimeout,
    config.sshTransferTimeout,
    config.replicaCopyLockTimeout,
    config.replicaLeaseSeconds,
  );
}

/** Whether a lease holder still runs: known only for processes of this front-end. */
export function localHolderCheck(hostname: string): HolderCheck {
  return (frontend, pid) => {
    if (frontend !== hostname || !(pid > 0)) return "unknown";
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
      // A recycled pid of another program is not the filler.
      return /onestor|main\.ts/.test(cmdline) ? "alive" : "dead";
    } catch {
      return "dead";
    }
  };
}

interface Probed {
  plan: HostPlan;
  facts: HostFacts | null;
  /** Host clock minus front-end clock, seconds. */
  skew: number | null;
  /** Front-end clock when the probe answered (seconds). */
  at: number;
}

async function probeHost(
  ctx: DoctorContext,
  plan: HostPlan,
  dp: DoctorPlan,
  config: Config,
  sshCtx: SshFixContext,
) {
  const findings: Result[] = [];
  let arrival: number | null = null;
  let seen = "";
  const decoder = new TextDecoder();
  try {
    const result = await ctx.runner.run(
      plan.name,
      probeScript(plan, dp.dsLocation, config.sshConnectTimeout),
      {
        check: false,
        timeoutMs: 60_000,
        what: "Doctor probe",
        onStderr: (chunk) => {
          if (arrival !== null) return;
          seen += decoder.decode(chunk, { stream: true });
          if (/ONESTOR_CLOCK \S+\n/.test(seen)) arrival = Date.now() / 1000;
        },
      },
    );
    const facts = parseProbe(result.stdout, result.stderr, plan.cacheDirs);
    findings.push(
      sshOk({ from: null, to: plan.name, address: plan.name, why: "every action", level: "fail" }),
    );
    const probed: Probed = {
      plan,
      facts,
      skew: facts.clock !== null && arrival !== null ? facts.clock - arrival : null,
      at: Date.now() / 1000,
    };
    return { findings, probed };
  } catch (error) {
    const e = error instanceof RemoteError ? error : null;
    findings.push(sshFailure(
      { from: null, to: plan.name, address: plan.name, why: "every action", level: "fail" },
      {
        kind: e?.kind,
        code: e?.status ?? -1,
        stderr: e?.stderr || (error as Error).message,
        timedOut: e?.kind === "timeout",
      },
      sshCtx,
    ));
    return { findings, probed: { plan, facts: null, skew: null, at: Date.now() / 1000 } as Probed };
  }
}

function hostFindings(p: Probed, dp: DoctorPlan, config: Config, ctx: DoctorContext, sshCtx: SshFixContext) {
  const out: Result[] = [];
  const facts = p.facts!;
  const plan = p.plan;
  for (const hop of plan.hops) {
    const pair = { from: plan.name, to: hop.target, address: hop.address, why: hop.why, level: hop.level };
    const r = facts.hops.get(hop.address);
    if (!r) {
      out.push(
        finding(
          "ssh",
          `${plan.name} → ${hop.target}`,
          plan.name,
          "warn",
          "the probe did not report this hop",
          "",
        ),
      );
    } else if (r.code === 0) out.push(sshOk(pair));
    else out.push(sshFailure(pair, { code: r.code, stderr: r.stderr }, sshCtx));
  }
  if (!plan.full) return out;
  const now = facts.clock ?? p.at;
  const threshold = longestTimeout(config);
  out.push(...toolFindings(plan.name, plan.tools, facts));
  out.push(...folderFindings(plan, dp.dsLocation, facts, ctx.user));
  out.push(clockFinding(plan.name, p.skew));
  out.push(...tempFindings(plan.name, facts, now, threshold));
  out.push(...chainFindings(plan.name, facts));
  if (plan.replica) {
    out.push(...cacheFindings(folderStates(facts, now), {
      replica: plan.name,
      limits: {
        maxBytes: config.replicaMaxSizeMb === null ? null : config.replicaMaxSizeMb * 1048576,
        maxUsedPercent: config.replicaMaxUsedPerc,
      },
      thresholdSeconds: threshold,
      holder: localHolderCheck(hostnameOrEmpty()),
      command: ctx.command,
    }, facts.df));
  }
  return out;
}

function hostnameOrEmpty(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}

async function frontendFindings(
  ctx: DoctorContext,
  config: Config,
  dp: DoctorPlan | null,
): Promise<Result[]> {
  const out: Result[] = [];
  const groups = frontendTools(config, ctx.checksum(config));
  const plan: HostPlan = {
    name: "front-end",
    hypervisor: false,
    replica: false,
    full: true,
    tools: groups.flat(),
    systemDirs: [],
    cacheDirs: [],
    probeScripts: [],
    hops: [],
  };
  const location = dp?.dsLocation ?? "/var/lib/one/datastores";
  const result = await ctx.runner.run(null, probeScript(plan, location, config.sshConnectTimeout), {
    check: false,
    timeoutMs: 60_000,
  });
  const facts = parseProbe(result.stdout, result.stderr, []);
  // Alternatives: one of them is enough.
  const missing = groups.filter((g) => g.every((t) => !facts.tools.get(t)?.path)).map((g) => g[0]);
  const present = groups.flat().filter((t) => facts.tools.get(t)?.path);
  out.push(
    ...toolFindings(null, [...present, ...missing], facts).map((f) => {
      const group = groups.find((g) => g.length > 1 && f.subject.endsWith(`: ${g[0]}`));
      return group && f.status !== "ok"
        ? { ...f, cause: f.cause.replace(`${group[0]} is`, `${group.join(" or ")} is`) }
        : f;
    }),
  );
  if (dp) {
    for (const dir of dp.imageDirs) {
      let ok = false;
      try {
        ok = Deno.statSync(dir).isDirectory;
      } catch {
        // Missing.
      }
      if (!ok) {
        out.push(finding(
          "datastore-location",
          `front-end: ${dir}`,
          null,
          "fail",
          `the image datastore folder ${dir} does not exist on the front-end`,
          `mkdir -p ${dir} && chown ${ctx.user}: ${dir}`,
        ));
      }
    }
    out.push(...tempFindings(null, facts, Date.now() / 1000, longestTimeout(config)));
  }
  return out;
}

/** Runs every check (and the fixes); returns the findings in report order. */
export async function runDoctor(ctx: DoctorContext): Promise<Result[]> {
  const findings: Result[] = [];
  const { findings: configResults, config } = configFindings(ctx.place);
  findings.push(...configResults);
  if (!config) return sortFindings(findings);
  findings.push(metricsStoreFinding(metricsDir()));
  let inventory: Inventory | null = null;
  try {
    inventory = await readInventory(ctx.client);
    findings.push(finding(
      "oned",
      ctx.client.endpoint,
      null,
      "ok",
      `${inventory.hosts.length} hosts, ${inventory.datastores.length} datastores`,
    ));
  } catch (error) {
    findings.push(finding(
      "oned",
      ctx.client.endpoint,
      null,
      "fail",
      error instanceof OneStorError ? error.message : String(error),
      "start oned, or point ONE_XMLRPC and ONE_AUTH at it (the user the drivers run as must read ONE_AUTH)",
    ));
  }
  const plan = inventory
    ? buildPlan(inventory, {
      tmNames: ctx.tmNames,
      extraTools: [ctx.checksum(config), config.transferCompression].filter((t) => t !== "none"),
      supportedFs: config.supportedFs,
      replicaSshOpts: config.replicaSshOpts,
      frontend: ctx.frontend,
      isFrontend: (name) => ctx.runner.isLocal(name),
    }, ctx.selection)
    : null;
  const sshCtx: SshFixContext = { user: ctx.user, publicKey: frontendPublicKey(ctx.home) };
  if (plan && config.datastoreLocation && normalizePath(config.datastoreLocation) !== plan.dsLocation) {
    findings.push(finding(
      "datastore-location",
      "DATASTORE_LOCATION",
      null,
      "warn",
      `DATASTORE_LOCATION is ${config.datastoreLocation} but the datastores' BASE_PATH are under ${plan.dsLocation}: ` +
        `unless one is a symlink to the other, every write there is refused`,
      `set DATASTORE_LOCATION=${plan.dsLocation} in onestor.conf (or correct oned.conf)`,
    ));
  }
  const [frontend, probes] = await Promise.all([
    ctx.selection.host === null ? frontendFindings(ctx, config, plan) : Promise.resolve([]),
    plan
      ? mapLimit(plan.hosts, PARALLEL, (h) => probeHost(ctx, h, plan, config, sshCtx))
      : Promise.resolve([]),
  ]);
  findings.push(...frontend);
  for (const { findings: f, probed } of probes) {
    findings.push(...f);
    if (probed.facts && plan) findings.push(...hostFindings(probed, plan, config, ctx, sshCtx));
  }
  if (ctx.deep && plan) {
    for (const { probed } of probes) {
      if (!probed.facts || !probed.plan.replica || !probed.plan.full) continue;
      const states = folderStates(probed.facts, probed.facts.clock ?? probed.at);
      findings.push(
        ...await deepFindings(
          ctx.runner,
          probed.plan.name,
          states,
          DEEP_SAMPLE,
          config.sshTransferTimeout * 1000 || 600_000,
          ctx.command,
        ),
      );
    }
  }
  if (ctx.selection.host === null) findings.push(...await recoveryFindings(ctx.command));
  if (ctx.fix) {
    for (const f of findings) {
      if (!f.garbage) continue;
      try {
        f.fixed = await removeGarbage(
          ctx.runner,
          f.garbage,
          config.sshControlTimeout * 1000 || 60_000,
          tmConfinement(config),
        );
        // Gone: no longer a problem (the cause says what it was).
        if (/^(removed|already gone)/.test(f.fixed)) f.status = "ok";
      } catch (error) {
        f.fixed = `not removed: ${error instanceof Error ? error.message : String(error)}`;
      }
      ctx.onFixed?.(f);
    }
  }
  return sortFindings(findings);
}
