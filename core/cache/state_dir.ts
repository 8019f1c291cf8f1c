/**
 * Where the front-end keeps the cache's own state: the checksum sidecars of images and the journal
 * of invalidations that could not reach a replica yet. It is private to one front-end.
 *
 * @module
 */

/**
 * The front-end state folder: `$ONESTOR_STATE_DIR` when set, else `$ONE_LOCATION/var/onestor` for
 * a self-contained installation, else `/var/lib/one/onestor` (oneadmin's home, writable by oned's
 * user).
 */
export function frontendStateDir(): string {
  const explicit = Deno.env.get("ONESTOR_STATE_DIR");
  if (explicit) return explicit.replace(/\/+$/, "");
  const one = Deno.env.get("ONE_LOCATION");
  if (one) return `${one.replace(/\/+$/, "")}/var/onestor`;
  return "/var/lib/one/onestor";
}

/** A file name for `key` (any text): a hex SHA-256 prefix, stable across processes. */
export async function keyFileName(key: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)));
  return [...digest.slice(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
