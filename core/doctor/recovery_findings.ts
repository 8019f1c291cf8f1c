/**
 * Recovery point age against each disk's RECOVERY_SNAPSHOT_FREQ. Recovery snapshots are built
 * separately (core/recovery, `onestor recovery status --json`); until that command exists in this
 * installation the check reports nothing. When it does, its JSON is read: a list of recovery
 * points, each with the VM and disk, the frequency in seconds and the time of the last good point
 * (field names accepted: `vm`/`vm_id`, `disk`/`disk_id`, `freq`/`freq_seconds`,
 * `last`/`last_at`/`timestamp`; epoch seconds, null when none was taken yet).
 *
 * A point older than twice its frequency warns, older than four times (or none at all) fails: a
 * recreated VM would lose that much.
 *
 * @module
 */

import { runCommand } from "../remote/process.ts";
import { age, finding, type Result } from "./finding.ts";

const RECOVERY_ACTION = new URL("../../actions/admin/recovery.ts", import.meta.url);
const MAIN = new URL("../../main.ts", import.meta.url);

interface Point {
  vm: number;
  disk: number;
  freq: number;
  last: number | null;
}

function pick(o: Record<string, unknown>, ...keys: string[]): unknown {
  for (const k of keys) if (o[k] !== undefined) return o[k];
  return undefined;
}

/** Parses the status document (an array, or an object with a `points` array). */
export function parsePoints(text: string): Point[] {
  const doc = JSON.parse(text);
  const list: unknown[] = Array.isArray(doc) ? doc : Array.isArray(doc?.points) ? doc.points : [];
  return list.flatMap((item) => {
    if (typeof item !== "object" || item === null) return [];
    const o = item as Record<string, unknown>;
    const vm = Number(pick(o, "vm", "vm_id"));
    const disk = Number(pick(o, "disk", "disk_id"));
    const freq = Number(pick(o, "freq", "freq_seconds", "frequency"));
    const lastRaw = pick(o, "last", "last_at", "timestamp", "taken_at");
    const last = lastRaw === null || lastRaw === undefined ? null : Number(lastRaw);
    if (!Number.isFinite(vm) || !Number.isFinite(disk) || !(freq > 0)) return [];
    return [{ vm, disk, freq, last: last !== null && Number.isFinite(last) ? last : null }];
  });
}

/** Judges points at time `now` (epoch seconds). */
export function pointFindings(points: readonly Point[], now: number, command: string): Result[] {
  return points.map((p) => {
    const subject = `VM ${p.vm} disk ${p.disk}`;
    if (p.last === null) {
      return finding(
        "recovery-points",
        subject,
        null,
        "fail",
        `no recovery point yet (RECOVERY_SNAPSHOT_FREQ=${p.freq})`,
        `${command} recovery status --json shows why; check SSH from the VM's host to its replica`,
      );
    }
    const old = now - p.last;
    if (old <= 2 * p.freq) {
      return finding("recovery-points", subject, null, "ok", `last point ${age(old)} ago`);
    }
    return finding(
      "recovery-points",
      subject,
      null,
      old > 4 * p.freq ? "fail" : "warn",
      `last recovery point ${age(old)} ago, RECOVERY_SNAPSHOT_FREQ is ${
        age(p.freq)
      }: a recreate would lose that much`,
      `${command} recovery status --json shows why the points stopped`,
      { age_seconds: Math.round(old) },
    );
  });
}

/** The findings, or none when recovery snapshots are not part of this installation. */
export async function recoveryFindings(command: string): Promise<Result[]> {
  try {
    Deno.statSync(RECOVERY_ACTION);
  } catch {
    return [];
  }
  const run = await runCommand(
    [Deno.execPath(), "run", "-A", "--no-check", "--quiet", MAIN.pathname, "recovery", "status", "--json"],
    { timeoutMs: 60_000 },
  );
  if (run.code !== 0) {
    return [
      finding(
        "recovery-points",
        "recovery status",
        null,
        "warn",
        `onestor recovery status failed: ${run.stderr.trim().split("\n").pop() ?? `exit ${run.code}`}`,
        `${command} recovery status --json`,
      ),
    ];
  }
  try {
    return pointFindings(parsePoints(run.stdout), Date.now() / 1000, command);
  } catch (error) {
    return [
      finding(
        "recovery-points",
        "recovery status",
        null,
        "warn",
        `cannot read onestor recovery status --json: ${(error as Error).message}`,
        "",
      ),
    ];
  }
}
