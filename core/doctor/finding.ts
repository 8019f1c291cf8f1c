/**
 * What `onestor doctor` reports: one finding per thing checked, ok, warn or fail, with the cause
 * and the fix in one line each. The exit code is the worst status: 0 ok, 1 warn, 2 fail.
 *
 * @module
 */

/** Outcome of one check. */
export type Status = "ok" | "warn" | "fail";

/** Check ids, in report order (docs/operations.md describes each). */
export const CHECKS = [
  "config",
  "frontend-tools",
  "oned",
  "metrics-store",
  "ssh",
  "host-tools",
  "datastore-location",
  "monitor-marker",
  "probe-script",
  "clock",
  "replica-space",
  "cache-record",
  "cache-content",
  "lease",
  "temporary",
  "backing-chain",
  "recovery-points",
] as const;

/** A check id. */
export type CheckId = (typeof CHECKS)[number];

/** One finding. The JSON output is an array of these (field names are part of the interface). */
export interface Finding {
  /** Which check. */
  check: CheckId;
  /** What was looked at: `frontend → hv1`, `hv2: qemu-img`, `replica:/var/lib/one/datastores/1/<hash>`. */
  subject: string;
  /** The host where the problem is (where the fix applies); null for the front-end. */
  host: string | null;
  status: Status;
  /** Why (for ok: what was seen, e.g. a version). One line. */
  cause: string;
  /** What to do; empty when ok. One line. */
  fix: string;
  /** Age of a stale lease or temporary file, in seconds. */
  age_seconds?: number;
  /** What `--fix` did about it. */
  fixed?: string;
}

/** Internal companion of a finding: what `--fix` may remove (never serialised). */
export interface Garbage {
  kind: "lease" | "temporary" | "record";
  host: string | null;
  /** Folder of the item (cache folder for leases and records). */
  dir: string;
  /** Name in the folder (lease/record file, temporary entry). */
  name: string;
  /** Record text that must still be there, unchanged (leases, records). */
  text?: string;
  /** Fill folder removed with a lease. */
  fill?: string;
  /** Temporary items: untouched for at least this long when removed. */
  minAgeSeconds?: number;
}

/** A finding with, when provably garbage, what `--fix` removes. */
export interface Result extends Finding {
  garbage?: Garbage;
}

const RANK: Record<Status, number> = { ok: 0, warn: 1, fail: 2 };

/** The worst status of `findings` (ok when empty). */
export function worst(findings: readonly Finding[]): Status {
  let w: Status = "ok";
  for (const f of findings) if (RANK[f.status] > RANK[w]) w = f.status;
  return w;
}

/** Exit code of a status: 0 ok, 1 warn, 2 fail. */
export function exitCodeOf(status: Status): number {
  return RANK[status];
}

/** Report order: by check, then subject. */
export function sortFindings<T extends Finding>(findings: T[]): T[] {
  const order = new Map<string, number>(CHECKS.map((c, i) => [c, i]));
  return findings.sort((a, b) =>
    (order.get(a.check)! - order.get(b.check)!) || a.subject.localeCompare(b.subject, "en")
  );
}

/** A finding (shorthand). */
export function finding(
  check: CheckId,
  subject: string,
  host: string | null,
  status: Status,
  cause = "",
  fix = "",
  extra: Partial<Result> = {},
): Result {
  return { check, subject, host, status, cause, fix, ...extra };
}

/** `3s`, `12m`, `5h`, `2d`: an age for people. */
export function age(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  if (s < 172800) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} days`;
}
