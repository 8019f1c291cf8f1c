/**
 * The Prometheus text exposition format (version 0.0.4) of a {@linkcode Rollup}: one `# HELP` and
 * one `# TYPE` line per family, counters ending in `_total`, histograms as cumulative `_bucket`
 * series with `le` (ending with `+Inf`), `_sum` and `_count`. Every family of the catalogue is
 * listed, with no samples when nothing was recorded yet, so dashboards and alerts see the names
 * from the first scrape on.
 *
 * @module
 */

import { METRIC_PREFIX, METRICS, type MetricSpec } from "./catalog.ts";
import { parseSeriesKey, type Rollup } from "./rollup.ts";

/** Escapes a label value (backslash, double quote, newline). */
export function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** Escapes HELP text (backslash, newline). */
function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

function labelText(labels: Record<string, string>, extra: [string, string][] = []): string {
  const parts = [...Object.entries(labels), ...extra].map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

/** Formats a sample value: shortest round-trip form (Go's ParseFloat reads it), +Inf for infinity. */
export function formatValue(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function seriesOf<T>(record: Record<string, T>, name: string): [Record<string, string>, T][] {
  return Object.keys(record)
    .filter((k) => k.slice(0, k.indexOf("{")) === name)
    .sort()
    .map((k) => [parseSeriesKey(k).labels, record[k]]);
}

/** Renders the whole rollup. */
export function renderPrometheus(rollup: Rollup, extra: { version?: string } = {}): string {
  const lines: string[] = [];
  for (const [name, spec] of Object.entries(METRICS) as [string, MetricSpec][]) {
    const full = METRIC_PREFIX + name;
    lines.push(`# HELP ${full} ${escapeHelp(spec.help)}`, `# TYPE ${full} ${spec.type}`);
    if (spec.type === "counter") {
      for (const [labels, v] of seriesOf(rollup.counters, name)) {
        lines.push(`${full}${labelText(labels)} ${v}`);
      }
    } else if (spec.type === "gauge") {
      for (const [labels, g] of seriesOf(rollup.gauges, name)) {
        lines.push(`${full}${labelText(labels)} ${formatValue(g.v)}`);
      }
    } else {
      const bounds = spec.buckets ?? [];
      for (const [labels, h] of seriesOf(rollup.histograms, name)) {
        let cumulative = 0;
        bounds.forEach((b, i) => {
          cumulative += h.buckets[i] ?? 0;
          lines.push(`${full}_bucket${labelText(labels, [["le", formatValue(b)]])} ${cumulative}`);
        });
        cumulative += h.buckets[bounds.length] ?? 0;
        lines.push(`${full}_bucket${labelText(labels, [["le", "+Inf"]])} ${cumulative}`);
        lines.push(`${full}_sum${labelText(labels)} ${formatValue(h.sum)}`);
        lines.push(`${full}_count${labelText(labels)} ${h.count}`);
      }
    }
  }
  const info = `${METRIC_PREFIX}build_info`;
  lines.push(
    `# HELP ${info} The onestor version that wrote this exposition (always 1).`,
    `# TYPE ${info} gauge`,
    `${info}${labelText({ version: extra.version ?? "" })} 1`,
  );
  const last = `${METRIC_PREFIX}metrics_last_event_timestamp_seconds`;
  lines.push(
    `# HELP ${last} Time of the newest recorded event (0: none yet).`,
    `# TYPE ${last} gauge`,
    `${last} ${formatValue(rollup.lastEvent / 1000)}`,
  );
  return lines.join("\n") + "\n";
}

/**
 * Writes the exposition to `<dir>/onestor.prom` atomically for node_exporter's textfile collector:
 * a temporary name the collector ignores (not ending in .prom) in the same folder, then a rename.
 */
export async function writeTextfile(dir: string, text: string): Promise<string> {
  const target = `${dir.replace(/\/+$/, "")}/onestor.prom`;
  const tmp = `${dir.replace(/\/+$/, "")}/.onestor.prom.${Deno.pid}.tmp`;
  try {
    await Deno.writeTextFile(tmp, text, { mode: 0o644 });
    await Deno.rename(tmp, target);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
  return target;
}
