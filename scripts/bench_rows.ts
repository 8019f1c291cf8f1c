/**
 * What the benchmark scripts produce and how docs/benchmarks.md shows it. A row producer is a
 * module exporting `run(rows)` that appends rows (and may return Markdown details): scripts/bench.ts
 * calls scripts/bench_cache.ts and, when present, scripts/bench_oned.ts and
 * scripts/bench_recovery.ts that way.
 *
 * A row holds medians; a row measured by this project's own producers also keeps every run
 * (`runs`), so its ratio is the median of the per-run ratios (each baseline run right next to its
 * onestor run) with the spread, and the CPU seconds each host spent and the SSH commands it served.
 *
 * @module
 */

/** CPU seconds per lab host (user + system), or SSH commands per host. */
export type PerHost = Record<string, number>;

/** One measured row. */
export interface BenchRow {
  name: string;
  baseline: string;
  /** Median seconds of onestor and of the baseline. */
  seconds: number;
  baselineSeconds: number;
  note: string;
  /** Every run (same order on both sides), when the producer kept them. */
  runs?: { seconds: number[]; baselineSeconds: number[] };
  /** The target ratio, e.g. 1.1 ("≤ 1.10x"). */
  target?: number;
  /** Median CPU seconds per host of one onestor run and of one baseline run. */
  cpu?: { onestor: PerHost; baseline: PerHost };
  /** SSH commands (sessions) each host served in one onestor run, and in one baseline run. */
  sessions?: { onestor: PerHost; baseline: PerHost };
}

/**
 * Writes every dirty page of the machine to disk; called before each measured run. The lab's hosts
 * share one filesystem, so data that one run left in the page cache would otherwise be written back
 * during the next one and charged to it: once, oned's fdatasync of its database right after a
 * clone waited 0.7 s for the disk image the clone had just written (on separate machines, a
 * hypervisor's writes never delay the front-end's database).
 */
export async function settle(): Promise<void> {
  await new Deno.Command("sync").output();
}

/** The median of numbers (the lower middle one for an even count). */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)];
}

/** The median per-host value over runs. */
export function medianPerHost(samples: readonly PerHost[]): PerHost {
  const hosts = [...new Set(samples.flatMap((s) => Object.keys(s)))].sort();
  return Object.fromEntries(hosts.map((h) => [h, median(samples.map((s) => s[h] ?? 0))]));
}

/** Ratio of a row: the median of per-run ratios when runs were kept, else of the medians. */
export function ratioOf(row: BenchRow): { ratio: number; min: number; max: number } {
  if (
    row.runs && row.runs.seconds.length === row.runs.baselineSeconds.length && row.runs.seconds.length > 0
  ) {
    const ratios = row.runs.seconds.map((s, i) => s / row.runs!.baselineSeconds[i]);
    return { ratio: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
  }
  const r = row.seconds / row.baselineSeconds;
  return { ratio: r, min: r, max: r };
}

function perHost(p: PerHost | undefined, digits = 2): string {
  if (!p) return "-";
  const hosts = Object.keys(p).filter((h) => p[h] !== 0);
  if (hosts.length === 0) return "0";
  return hosts.map((h) => `${h} ${p[h].toFixed(digits)}`).join(", ");
}

function sum(p: PerHost | undefined): number {
  return p ? Object.values(p).reduce((a, b) => a + b, 0) : NaN;
}

/** The result table: time, ratio with spread and target, CPU and SSH commands per host. */
export function renderRows(rows: readonly BenchRow[]): string[] {
  const lines = [
    "| measurement | baseline | onestor (s) | baseline (s) | ratio (median, min–max) | target | met | note |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const { ratio, min, max } = ratioOf(r);
    const spread = min === max ? "" : ` (${min.toFixed(2)}–${max.toFixed(2)})`;
    const target = r.target === undefined ? "" : `≤ ${r.target.toFixed(2)}`;
    const met = r.target === undefined ? "" : ratio <= r.target ? "yes" : "**no**";
    lines.push(
      `| ${r.name} | ${r.baseline} | ${r.seconds.toFixed(3)} | ${r.baselineSeconds.toFixed(3)} | ` +
        `${ratio.toFixed(2)}${spread} | ${target} | ${met} | ${r.note} |`,
    );
  }
  return lines;
}

/** CPU seconds per host of each row that measured them. */
export function renderCpu(rows: readonly BenchRow[]): string[] {
  const measured = rows.filter((r) => r.cpu);
  if (measured.length === 0) return [];
  return [
    "| measurement | onestor: CPU s per host | total | baseline: CPU s per host | total |",
    "|---|---|---|---|---|",
    ...measured.map((r) =>
      `| ${r.name} | ${perHost(r.cpu!.onestor)} | ${sum(r.cpu!.onestor).toFixed(2)} | ${
        perHost(r.cpu!.baseline)
      } | ${sum(r.cpu!.baseline).toFixed(2)} |`
    ),
  ];
}

/** SSH commands per host of each row that counted them. */
export function renderSessions(rows: readonly BenchRow[]): string[] {
  const counted = rows.filter((r) => r.sessions);
  if (counted.length === 0) return [];
  return [
    "| measurement | onestor: SSH commands per host | total | baseline | total |",
    "|---|---|---|---|---|",
    ...counted.map((r) =>
      `| ${r.name} | ${perHost(r.sessions!.onestor, 0)} | ${sum(r.sessions!.onestor)} | ${
        perHost(r.sessions!.baseline, 0)
      } | ${sum(r.sessions!.baseline)} |`
    ),
  ];
}
