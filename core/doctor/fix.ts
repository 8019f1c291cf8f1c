/**
 * `onestor doctor --fix`: removes what is provably garbage, and nothing else:
 *
 * - a stale lease whose filler is dead (gone from this front-end, or not renewed for longer than
 *   the longest timeout), with its fill folder: one conditional transaction under the cache
 *   folder's lock, applied only if the lease is still the very text that was judged;
 * - a cache record whose image file is gone: the same, and only while the image is still absent;
 * - a temporary file or folder of onestor (an interrupted copy's `.onestor-xfer-*`, a dead
 *   filler's `.onestor-fill-*`, ...) untouched for longer than the longest timeout: removed by a
 *   script that checks again, on the host, that nothing in it changed since and that no process
 *   has it open.
 *
 * None of these is ever a VM disk: they are onestor's own names, removed by name.
 *
 * @module
 */

import { leaseName } from "../cache/entry.ts";
import { ReplicaFolder } from "../cache/store.ts";
import { confine, type Confinement } from "../remote/confine.ts";
import type { HostRunner } from "../remote/runner.ts";
import { sh } from "../remote/shell.ts";
import type { Garbage } from "./finding.ts";

/**
 * Removes one piece of garbage; returns what was done, for the report. `confinement` bounds where
 * a temporary item may be removed (DATASTORE_LOCATION); records go through the cache store, which
 * confines its own transactions.
 */
export async function removeGarbage(
  runner: HostRunner,
  g: Garbage,
  timeoutMs: number,
  confinement: Confinement,
): Promise<string> {
  switch (g.kind) {
    case "lease":
    case "record": {
      const folder = new ReplicaFolder(runner, g.host ?? "", g.dir, timeoutMs);
      const image = g.kind === "lease" ? g.name.slice(0, -".onestor-lease.json".length) : g.name.slice(
        0,
        -".onestor.json".length,
      );
      const ops = g.kind === "lease"
        ? [
          { op: "remove" as const, name: g.name },
          ...(g.fill ? [{ op: "remove" as const, name: g.fill }] : []),
        ]
        : [{ op: "remove" as const, name: g.name }];
      const expect: Record<string, string | null> = { [g.name]: g.text ?? null };
      if (g.kind === "record") {
        expect[image] = null; // still without its image file
        expect[leaseName(image)] = null; // and nobody filling it
      }
      const result = await folder.transact({
        expect,
        ops: [{
          op: "log",
          event: { at: folder.now(), event: "doctor-fix", removed: g.name, fill: g.fill ?? null },
        }, ...ops],
      });
      if (result !== "committed") return `left alone: it changed since it was checked (${result})`;
      return g.kind === "lease"
        ? `removed the lease${g.fill ? ` and its fill folder ${g.fill}` : ""}`
        : "removed the record";
    }
    case "temporary": {
      const min = g.minAgeSeconds ?? 0;
      const out = await runner.output(
        g.host,
        sh`${confine(confinement, g.host, { remove: [`${g.dir}/${g.name}`] })}
cd -- ${g.dir} 2>/dev/null || { echo ONESTOR_GONE; exit 0; }
[ -e ${g.name} ] || [ -L ${g.name} ] || { echo ONESTOR_GONE; exit 0; }
newest=$(find ${g.name} -printf '%T@\\n' 2>/dev/null | sort -n | tail -n1)
now=$(date +%s)
if [ $((now - \${newest%.*})) -lt ${min} ]; then echo ONESTOR_RECENT; exit 0; fi
here=$(pwd -P)/${g.name}
open=$(find /proc/[0-9]*/cwd /proc/[0-9]*/fd -maxdepth 1 -type l -printf '%l\\n' 2>/dev/null)
if printf '%s\\n' "$open" | grep -qxF -- "$here" || printf '%s\\n' "$open" | grep -qF -- "$here/"; then
  echo ONESTOR_BUSY; exit 0
fi
rm -rf -- ${g.name} && echo ONESTOR_REMOVED`,
        { timeoutMs, what: `Error removing ${g.dir}/${g.name}` },
      );
      if (out.includes("ONESTOR_REMOVED")) return "removed";
      if (out.includes("ONESTOR_GONE")) return "already gone";
      if (out.includes("ONESTOR_RECENT")) return "left alone: something in it changed since it was checked";
      return "left alone: a process has it open";
    }
  }
}
