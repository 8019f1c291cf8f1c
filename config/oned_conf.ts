/**
 * DATASTORE_LOCATION as oned sees it: the value of oned.conf when the driver can read it, else
 * oned's own default. oned (NebulaTemplate.cc) defaults it to `<var>/datastores` where `<var>` is
 * `/var/lib/one/` for a system-wide install and `$ONE_LOCATION/var/` for a self-contained one (hence
 * the double slash in oned's default paths, normalised here). oned.conf lives in `/etc/one/` or
 * `$ONE_LOCATION/etc/`.
 *
 * oned.conf is OpenNebula's template syntax, not shell: `NAME = value` or `NAME = "value"` at the top
 * level, `#` comments, vectors `NAME = [ ... ]` over several lines. Only the top-level
 * DATASTORE_LOCATION is read; oned takes the first one.
 *
 * @module
 */

/** The value and where it came from. */
export interface DatastoreLocation {
  /** Absolute path, slashes normalised. */
  value: string;
  /** The oned.conf line it was read from, or null for oned's default. */
  source: { path: string; line: number } | null;
}

/** Path of oned.conf for an install (`root` prefixes it, for tests). */
export function onedConfPath(options: { root?: string; oneLocation?: string } = {}): string {
  const base = options.oneLocation ? `${options.oneLocation.replace(/\/+$/, "")}/etc` : "/etc/one";
  return `${(options.root ?? "").replace(/\/+$/, "")}${base}/oned.conf`;
}

/** oned's default DATASTORE_LOCATION for an install. */
export function defaultDatastoreLocation(oneLocation?: string): string {
  return oneLocation ? `${normalizeSlashes(oneLocation)}/var/datastores` : "/var/lib/one/datastores";
}

function normalizeSlashes(path: string): string {
  const collapsed = path.replace(/\/+/g, "/");
  return collapsed.length > 1 ? collapsed.replace(/\/$/, "") : collapsed;
}

/** The top-level DATASTORE_LOCATION of oned.conf text with its line number, or null. */
export function parseOnedDatastoreLocation(text: string): { value: string; line: number } | null {
  let depth = 0;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    if (depth === 0) {
      const m = /^DATASTORE_LOCATION\s*=\s*(?:"([^"]*)"|([^\s#"[]+))/.exec(line);
      if (m) return { value: m[1] ?? m[2], line: i + 1 };
    }
    // Track vectors so that a DATASTORE_LOCATION inside one (none exists today) is not taken.
    for (const ch of line.replace(/"[^"]*"/g, "")) {
      if (ch === "[") depth++;
      else if (ch === "]") depth = Math.max(0, depth - 1);
    }
  }
  return null;
}

/**
 * DATASTORE_LOCATION for this install: oned.conf's (when readable, absolute and free of control
 * characters) or oned's default. `warn` hears about an oned.conf value that cannot be used.
 */
export function onedDatastoreLocation(
  options: { root?: string; oneLocation?: string; warn?: (message: string) => void } = {},
): DatastoreLocation {
  const path = onedConfPath(options);
  let text: string | null = null;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    // Unreadable or absent (a driver user without access, a front-end without oned): the default.
  }
  const found = text === null ? null : parseOnedDatastoreLocation(text);
  // deno-lint-ignore no-control-regex
  if (found && found.value.startsWith("/") && !/[\x00-\x1f]/.test(found.value)) {
    return { value: normalizeSlashes(found.value), source: { path, line: found.line } };
  }
  if (found) {
    options.warn?.(
      `${path}:${found.line}: DATASTORE_LOCATION "${found.value}" is not an absolute path; ` +
        `using ${defaultDatastoreLocation(options.oneLocation)}`,
    );
  }
  return { value: defaultDatastoreLocation(options.oneLocation), source: null };
}
