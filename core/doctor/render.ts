/**
 * The doctor's report in three forms: a table for a person at a terminal (status in colour unless
 * NO_COLOR is set), plain lines when piped (`STATUS check subject: cause` and a `fix:` line), and
 * a stable JSON document with `--json` (docs/operations.md describes its fields).
 *
 * @module
 */

import { exitCodeOf, type Finding, type Status, worst } from "./finding.ts";

/** Version of the JSON document; bumped only when a field changes meaning or disappears. */
export const REPORT_VERSION = 1;

/** The JSON document. */
export interface Report {
  version: number;
  /** ISO time of the run. */
  generated_at: string;
  duration_seconds: number;
  /** Worst status. */
  status: Status;
  exit_code: number;
  summary: Record<Status, number>;
  findings: Finding[];
}

/** Builds the JSON document (findings without internal fields). */
export function buildReport(findings: readonly Finding[], started: Date, seconds: number): Report {
  const summary: Record<Status, number> = { ok: 0, warn: 0, fail: 0 };
  for (const f of findings) summary[f.status]++;
  const status = worst(findings);
  return {
    version: REPORT_VERSION,
    generated_at: started.toISOString(),
    duration_seconds: Math.round(seconds * 1000) / 1000,
    status,
    exit_code: exitCodeOf(status),
    summary,
    findings: findings.map((f) => {
      const out: Finding = {
        check: f.check,
        subject: f.subject,
        host: f.host,
        status: f.status,
        cause: f.cause,
        fix: f.fix,
      };
      if (f.age_seconds !== undefined) out.age_seconds = f.age_seconds;
      if (f.fixed !== undefined) out.fixed = f.fixed;
      return out;
    }),
  };
}

const TAG: Record<Status, string> = { ok: "ok", warn: "WARN", fail: "FAIL" };
const COLOUR: Record<Status, string> = { ok: "\x1b[32m", warn: "\x1b[33m", fail: "\x1b[1;31m" };

/** One line of the summary: `2 failed, 1 warning, 30 ok (1.4 s)`. */
export function summaryLine(report: Report): string {
  const { fail, warn, ok } = report.summary;
  return `${fail} failed, ${warn} warning${warn === 1 ? "" : "s"}, ${ok} ok (${
    report.duration_seconds.toFixed(1)
  } s)`;
}

/** Plain lines, for pipes and logs: no alignment, no colour. */
export function plainLines(report: Report): string[] {
  const lines: string[] = [];
  for (const f of report.findings) {
    const text = f.cause ? `${f.subject}: ${f.cause}` : f.subject;
    lines.push(`${TAG[f.status].padEnd(4)} ${f.check} ${text}`);
    if (f.fix) lines.push(`     fix: ${f.fix}`);
    if (f.fixed) lines.push(`     fixed: ${f.fixed}`);
  }
  lines.push(summaryLine(report));
  return lines;
}

/** A table for a terminal (aligned columns, long lines left to the terminal); colour unless `colour` is false. */
export function tableLines(report: Report, colour: boolean): string[] {
  const paint = (s: Status, text: string) => colour ? `${COLOUR[s]}${text}\x1b[0m` : text;
  const checkWidth = Math.max(5, ...report.findings.map((f) => f.check.length));
  const subjectWidth = Math.min(40, Math.max(7, ...report.findings.map((f) => f.subject.length)));
  const indent = " ".repeat(8 + checkWidth + 2 + subjectWidth + 2);
  const lines = [`STATUS  ${"CHECK".padEnd(checkWidth)}  ${"SUBJECT".padEnd(subjectWidth)}  CAUSE / FIX`];
  for (const f of report.findings) {
    const head = `${paint(f.status, TAG[f.status].padEnd(4))}    ${f.check.padEnd(checkWidth)}  `;
    if (f.subject.length > subjectWidth && f.cause) {
      lines.push(`${head}${f.subject}`, `${indent}${f.cause}`);
    } else {
      lines.push(`${head}${f.subject.padEnd(subjectWidth)}  ${f.cause}`.trimEnd());
    }
    if (f.fix) lines.push(`${indent}fix: ${f.fix}`);
    if (f.fixed) lines.push(`${indent}fixed: ${f.fixed}`);
  }
  lines.push(paint(report.status, summaryLine(report)));
  return lines;
}
