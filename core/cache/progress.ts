/**
 * Progress of a cache fill, for `onestor cache warm`: the replica's fill folder of an image is
 * measured every second (whoever fills it: this process or another one it waits for), and shown
 * as a bar redrawn in place on a terminal.
 *
 * @module
 */

import { sh } from "../remote/shell.ts";
import { FILL_PREFIX } from "./entry.ts";
import type { ReplicaFolder } from "./store.ts";

/** A text bar: `[#########---------]  45%  27.0/60.0 MiB`. */
export function progressBar(done: number, total: number, width = 30): string {
  const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const full = Math.round(fraction * width);
  const mib = (n: number) => (n / 1048576).toFixed(1);
  return `[${"#".repeat(full)}${"-".repeat(width - full)}] ${
    String(Math.floor(fraction * 100)).padStart(3)
  }%  ` +
    `${mib(Math.min(done, total))}/${mib(total)} MiB`;
}

/** Bytes written so far into the fill folders of `image` on the replica. */
export async function filledBytes(folder: ReplicaFolder, image: string): Promise<number> {
  const out = await folder.runner.output(
    folder.replica,
    sh`cd -- ${folder.dir} 2>/dev/null || exit 0
for d in ${FILL_PREFIX}${image}-*; do [ -d "$d" ] && du -sB1 -- "$d" | cut -f1; done`,
    { check: false, timeoutMs: 10_000 },
  );
  return out.split("\n").map(Number).filter((n) => Number.isFinite(n)).reduce((a, b) => a + b, 0);
}

/** Polls {@linkcode filledBytes} every `intervalMs` and reports it, until stopped. */
export function watchFill(
  folder: ReplicaFolder,
  image: string,
  onBytes: (bytes: number) => void,
  intervalMs = 1000,
): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (running) return;
    running = filledBytes(folder, image).then(onBytes, () => {}).finally(() => running = null);
  }, intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      if (running) await running;
    },
  };
}

/** A status line on stderr: redrawn in place on a terminal, printed once per `done` otherwise. */
export class StatusLine {
  readonly #tty: boolean;
  readonly #write: (text: string) => void;
  #drawn = false;
  #last = "";

  constructor(options: { tty?: boolean; write?: (text: string) => void } = {}) {
    this.#tty = options.tty ?? Deno.stderr.isTerminal();
    const encoder = new TextEncoder();
    this.#write = options.write ?? ((text) => Deno.stderr.writeSync(encoder.encode(text)));
  }

  /** Whether the line is redrawn (a terminal). */
  get live(): boolean {
    return this.#tty;
  }

  /** Redraws the line (terminals only). */
  update(text: string): void {
    if (!this.#tty) return;
    this.#last = text;
    this.#write(`\r\x1b[2K${text}`);
    this.#drawn = true;
  }

  /** Prints a message on a line of its own, above the status line (which is redrawn). */
  note(text: string): void {
    if (!this.#tty) {
      this.#write(`${text}\n`);
      return;
    }
    this.#write(`\r\x1b[2K${text}\n${this.#last}`);
  }

  /** Ends the line with its final text. */
  done(text: string): void {
    this.#write(this.#tty && this.#drawn ? `\r\x1b[2K${text}\n` : `${text}\n`);
    this.#drawn = false;
    this.#last = "";
  }
}
