/**
 * Transfer progress for a person at a terminal. oned reads the driver's stderr line by line, so
 * nothing is printed unless stderr is a terminal.
 *
 * @module
 */

const encoder = new TextEncoder();
const MIB = 1048576;

/** Formats bytes as MiB with one decimal. */
function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

/** A progress line on stderr, redrawn at most five times a second. */
export class Progress {
  readonly #label: string;
  readonly #enabled: boolean;
  readonly #start = Date.now();
  #total: number | null;
  #done = 0;
  #last = 0;

  /** `enabled` defaults to whether stderr is a terminal. */
  constructor(label: string, total: number | null, enabled = Deno.stderr.isTerminal()) {
    this.#label = label;
    this.#total = total;
    this.#enabled = enabled;
  }

  /** Sets the expected total once known. */
  setTotal(total: number | null): void {
    this.#total = total;
  }

  /** Adds `bytes` to the count and redraws when due. */
  add(bytes: number): void {
    this.#done += bytes;
    const now = Date.now();
    if (this.#enabled && now - this.#last >= 200) {
      this.#last = now;
      this.#draw(false);
    }
  }

  /** Bytes counted so far. */
  get bytes(): number {
    return this.#done;
  }

  /** Draws the final line. */
  finish(): void {
    if (this.#enabled) this.#draw(true);
  }

  #draw(final: boolean): void {
    const seconds = Math.max((Date.now() - this.#start) / 1000, 0.001);
    const rate = `${mib(this.#done / seconds)}/s`;
    const of = this.#total
      ? ` of ${mib(this.#total)} (${Math.min(100, (100 * this.#done) / this.#total).toFixed(0)}%)`
      : "";
    const line = `\r${this.#label}: ${mib(this.#done)}${of}, ${rate}\x1b[K${final ? "\n" : ""}`;
    Deno.stderr.writeSync(encoder.encode(line));
  }
}
