/**
 * Progress of long work (cache warm, datastore cp, restore, recovery restore), one reporter for
 * all of them:
 *
 * - on a terminal (stderr is a TTY): a bar redrawn in place at most five times a second, with the
 *   bytes done, the total, the rate and the time left;
 * - otherwise (run by oned, or piped): an `INFO:` log line at most every `intervalMs` (15 s by
 *   default) while the work goes on, in plain text: oned's logs get no control characters.
 *
 * Bytes come either from the work itself ({@linkcode ProgressReporter.add}) or from a poll of
 * what arrived at the destination ({@linkcode ProgressReporter.set}, see ./poll.ts).
 *
 * @module
 */

import { logInfo } from "../one/log.ts";

/** How progress is shown. */
export type ProgressMode = "tty" | "log" | "off";

/** Options of a {@linkcode ProgressReporter}. */
export interface ProgressOptions {
  /** What is being done, e.g. `Copying /var/tmp/img.qcow2`. */
  label: string;
  /** Expected bytes, when known. */
  total?: number | null;
  /** Default: `tty` when stderr is a terminal, else `log`. */
  mode?: ProgressMode;
  /** Log mode: least time between two lines (default `$ONESTOR_PROGRESS_INTERVAL` seconds, else 15 s). */
  intervalMs?: number;
  /** TTY mode: where the bar goes (default stderr). */
  write?: (text: string) => void;
  /** Log mode: where lines go (default an `INFO:` log line). */
  log?: (message: string) => void;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

const MIB = 1048576;
const BAR_WIDTH = 24;
const REDRAW_MS = 200;

/** MiB with one decimal. */
export function mib(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}

/** `1:02:03`, `2:03` or `5 s`. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/** Where the work stands. */
export interface ProgressState {
  done: number;
  total: number | null;
  /** Seconds since the start. */
  seconds: number;
}

function rateOf(state: ProgressState): number {
  return state.seconds > 0 ? state.done / state.seconds : 0;
}

function etaOf(state: ProgressState): number | null {
  const rate = rateOf(state);
  if (state.total === null || state.total <= 0 || rate <= 0) return null;
  return Math.max(0, state.total - state.done) / rate;
}

/** The terminal line: `[#####-------]  40%  24.0/60.0 MiB  12.0 MiB/s  ETA 3 s  label`. */
export function barLine(label: string, state: ProgressState, width = BAR_WIDTH): string {
  const rate = `${mib(rateOf(state))} MiB/s`;
  if (state.total === null || state.total <= 0) return `${mib(state.done)} MiB  ${rate}  ${label}`;
  const fraction = Math.min(1, Math.max(0, state.done / state.total));
  const full = Math.round(fraction * width);
  const eta = etaOf(state);
  return `[${"#".repeat(full)}${"-".repeat(width - full)}] ${
    String(Math.floor(fraction * 100)).padStart(3)
  }%  ` +
    `${mib(Math.min(state.done, state.total))}/${mib(state.total)} MiB  ${rate}` +
    `${eta === null ? "" : `  ETA ${duration(eta)}`}  ${label}`;
}

/** The log line: `label: 24.0 of 60.0 MiB (40%), 12.0 MiB/s, 3 s left`. */
export function logLine(label: string, state: ProgressState): string {
  const rate = `${mib(rateOf(state))} MiB/s`;
  if (state.total === null || state.total <= 0) return `${label}: ${mib(state.done)} MiB, ${rate}`;
  const pct = Math.min(100, Math.floor((100 * state.done) / state.total));
  const eta = etaOf(state);
  return `${label}: ${mib(Math.min(state.done, state.total))} of ${mib(state.total)} MiB (${pct}%), ${rate}` +
    (eta === null ? "" : `, ${duration(eta)} left`);
}

const encoder = new TextEncoder();

function defaultInterval(): number {
  let text: string | undefined;
  try {
    text = Deno.env.get("ONESTOR_PROGRESS_INTERVAL");
  } catch {
    // No env permission: the default.
  }
  const seconds = Number(text);
  return text && Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 15_000;
}

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/** The progress of one piece of work (see the module doc). */
export class ProgressReporter {
  readonly mode: ProgressMode;
  readonly #label: string;
  readonly #interval: number;
  readonly #write: (text: string) => void;
  readonly #log: (message: string) => void;
  readonly #now: () => number;
  readonly #start: number;
  #total: number | null;
  #done = 0;
  #lastDraw = 0;
  #lastLog: number;
  #logged = false;
  #drawn = false;
  #finished = false;

  constructor(options: ProgressOptions) {
    this.mode = options.mode ?? (stderrIsTerminal() ? "tty" : "log");
    this.#label = options.label;
    this.#total = options.total ?? null;
    this.#interval = options.intervalMs ?? defaultInterval();
    this.#write = options.write ?? ((text) => {
      const bytes = encoder.encode(text);
      for (let off = 0; off < bytes.length;) off += Deno.stderr.writeSync(bytes.subarray(off));
    });
    this.#log = options.log ?? logInfo;
    this.#now = options.now ?? (() => Date.now());
    this.#start = this.#now();
    this.#lastLog = this.#start;
  }

  /** Bytes done so far. */
  get bytes(): number {
    return this.#done;
  }

  /** Where the work stands now. */
  state(): ProgressState {
    return { done: this.#done, total: this.#total, seconds: (this.#now() - this.#start) / 1000 };
  }

  /** Sets the expected total once known. */
  setTotal(total: number | null): void {
    this.#total = total;
  }

  /** Adds `bytes` done. */
  add(bytes: number): void {
    this.set(this.#done + bytes);
  }

  /** Sets the bytes done (from a poll of the destination). */
  set(bytes: number): void {
    if (this.#finished) return;
    this.#done = bytes;
    const now = this.#now();
    if (this.mode === "tty" && now - this.#lastDraw >= REDRAW_MS) {
      this.#lastDraw = now;
      this.#draw();
    } else if (this.mode === "log" && now - this.#lastLog >= this.#interval) {
      this.#lastLog = now;
      this.#logged = true;
      this.#log(logLine(this.#label, this.state()));
    }
  }

  /** Prints a message on a line of its own (above the bar on a terminal). */
  note(message: string): void {
    if (this.mode === "off") return;
    if (this.mode === "tty") {
      this.#write(`\r\x1b[2K${message}\n`);
      if (this.#drawn) this.#draw();
    } else {
      this.#write(`${message}\n`);
    }
  }

  /**
   * Ends the progress: on a terminal the bar is replaced by `summary` (or drawn a last time); in
   * log mode `summary` is logged, or a last progress line when periodic lines were written.
   */
  finish(summary?: string): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.mode === "tty") {
      this.#write(`\r\x1b[2K${summary ?? barLine(this.#label, this.state())}\n`);
    } else if (this.mode === "log") {
      if (summary !== undefined) this.#write(`${summary}\n`);
      else if (this.#logged) this.#log(logLine(this.#label, this.state()));
    }
  }

  #draw(): void {
    this.#drawn = true;
    this.#write(`\r\x1b[2K${barLine(this.#label, this.state())}`);
  }
}
