/**
 * How onestor was invoked. oned runs `<remotes>/tm/<driver>/<action>` or
 * `<remotes>/datastore/<driver>/<action>`; those are symlinks to the launcher laid by
 * `onestor install`, which exports the path it was run as (`$0`) in ONESTOR_ARGV0, because Deno
 * does not hand a script the name it was invoked by.
 *
 * @module
 */

/** A driver action resolved from the invoked path. */
export interface DriverInvocation {
  /** `tm` or `ds`. */
  kind: "tm" | "ds";
  /** Driver (folder) name, e.g. `onestor`, `ssh`, `fs`. */
  driver: string;
  /** Action name: the file name as invoked, lower-cased. */
  action: string;
}

/** Name of the environment variable the launcher sets to its `$0`. */
export const ARGV0_VARIABLE = "ONESTOR_ARGV0";

function parts(path: string): string[] {
  return path.split("/").filter((p) => p !== "" && p !== ".");
}

/**
 * Resolves a path like `/var/lib/one/remotes/tm/onestor/clone` into (tm, onestor, clone).
 * Returns undefined when the path does not sit in a `tm/<driver>/` or `datastore/<driver>/` folder.
 */
export function resolveInvocation(argv0: string, cwd = "/"): DriverInvocation | undefined {
  const absolute = argv0.startsWith("/") ? argv0 : `${cwd.replace(/\/$/, "")}/${argv0}`;
  const segments: string[] = [];
  for (const p of parts(absolute)) {
    if (p === "..") segments.pop();
    else segments.push(p);
  }
  if (segments.length < 3) return undefined;
  const [family, driver, action] = segments.slice(-3);
  if (family === "tm") return { kind: "tm", driver, action: action.toLowerCase() };
  if (family === "datastore") return { kind: "ds", driver, action: action.toLowerCase() };
  return undefined;
}
