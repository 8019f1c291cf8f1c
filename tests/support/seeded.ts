/**
 * Seeded randomness and run sizes for fault and load tests: the same seed gives the same offsets
 * and choices, so a failure can be replayed (`ONESTOR_SEED=<n>`); `ONESTOR_SOAK=1` (set by
 * `deno task soak`) runs the whole set instead of the bounded subset CI runs.
 *
 * @module
 */

/** Whether the whole soak set runs (`ONESTOR_SOAK=1`), else the bounded CI subset. */
export function soaking(): boolean {
  return Deno.env.get("ONESTOR_SOAK") === "1";
}

/** The seed of this run: `ONESTOR_SEED`, else `fallback` (fixed, so CI runs are repeatable). */
export function seedOf(fallback: number): number {
  const text = Deno.env.get("ONESTOR_SEED");
  return text && /^[0-9]+$/.test(text) ? Number(text) : fallback;
}

/** A small seeded PRNG (mulberry32): `next()` in [0, 1), `int(a, b)` in [a, b], `pick(list)`. */
export class Seeded {
  #state: number;
  /** The seed it started from. */
  readonly seed: number;
  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#state = this.seed;
  }
  /** A number in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [a, b]. */
  int(a: number, b: number): number {
    return a + Math.floor(this.next() * (b - a + 1));
  }
  /** One element of a non-empty list. */
  pick<T>(list: readonly T[]): T {
    return list[Math.floor(this.next() * list.length)];
  }
}
