/**
 * Byte helpers shared by the code that collects a stream in pieces (process output, HTTP answers).
 *
 * @module
 */

/** The parts, one after the other, in one array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
