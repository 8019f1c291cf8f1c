/**
 * `onestor metrics [--textfile DIR] [--json]`: the counters every action recorded on this
 * front-end, in the Prometheus text format on stdout, or written atomically to
 * `DIR/onestor.prom` for node_exporter's textfile collector (see docs/operations.md).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "../../core/errors.ts";
import { compactStore, readRollup } from "../../core/metrics/rollup.ts";
import { renderPrometheus, writeTextfile } from "../../core/metrics/prometheus.ts";
import { metricsDir } from "../../core/metrics/store.ts";
import { VERSION } from "../../core/version.ts";

const USAGE = "usage: onestor metrics [--textfile DIR] [--json]";

/** Runs the metrics subcommand. */
export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        textfile: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message} (${USAGE})`);
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const dir = metricsDir();
  compactStore(dir);
  const rollup = readRollup(dir);
  if (values.json) {
    console.log(JSON.stringify({ store: dir, ...rollup }, null, 2));
    return 0;
  }
  const text = renderPrometheus(rollup, { version: VERSION });
  if (values.textfile !== undefined) {
    if (values.textfile === "") throw new UsageError(`--textfile needs a folder (${USAGE})`);
    await writeTextfile(values.textfile, text);
    return 0;
  }
  const bytes = new TextEncoder().encode(text);
  for (let off = 0; off < bytes.length;) off += Deno.stdout.writeSync(bytes.subarray(off));
  return 0;
}
