/**
 * Local process execution with the guarantees every caller needs: stdout and stderr are drained
 * together (a chatty stderr cannot deadlock the child, upstream #1964), capture is bounded, every
 * call can time out, and a missing program is a clear error.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import { ToolError } from "../errors.ts";

/** What to feed a child's standard input. */
export type StdinSource = string | Uint8Array | ReadableStream<Uint8Array>;

/** Options of {@linkcode runCommand}. */
export interface RunOptions {
  /** Data for standard input; without it stdin is /dev/null. */
  stdin?: StdinSource;
  /** Kill the child after this many milliseconds (0 or absent: no limit). */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Bytes kept of each stream (default 1 MiB): the head of stdout, the tail of stderr. */
  captureLimit?: number;
  /** Where stdout goes: captured (default) or handed to a consumer as a stream. */
  stdout?: "capture" | ((stream: ReadableStream<Uint8Array>) => Promise<void>);
  /** Called with each chunk of stderr as it arrives (for live progress). */
  onStderr?: (chunk: Uint8Array) => void;
  /** Aborts the child (it is killed) when signalled. */
  signal?: AbortSignal;
}

/** Outcome of {@linkcode runCommand}. */
export interface RunResult {
  /** Exit code; 128+N when killed by signal N; -1 after a timeout. */
  code: number;
  /** Captured standard output (UTF-8, bounded). */
  stdout: string;
  /** Captured standard error (UTF-8, bounded, tail kept). */
  stderr: string;
  /** Raw captured standard output. */
  stdoutBytes: Uint8Array;
  /** True when the child was killed because of the timeout. */
  timedOut: boolean;
  /** True when a stream produced more than the capture limit. */
  truncated: boolean;
}

const DEFAULT_CAPTURE = 1 << 20;

/** Debian packages that provide the programs onestor runs, for the error hint. */
const PACKAGE_OF: Record<string, string> = {
  "qemu-img": "qemu-utils",
  "qemu-io": "qemu-utils",
  ssh: "openssh-client",
  virsh: "libvirt-clients",
  xorriso: "xorriso",
  genisoimage: "genisoimage",
  "mkfs.xfs": "xfsprogs",
  "mkfs.vfat": "dosfstools",
};

class Capture {
  #chunks: Uint8Array[] = [];
  #size = 0;
  truncated = false;
  constructor(private readonly limit: number, private readonly keep: "head" | "tail") {}
  push(chunk: Uint8Array): void {
    if (this.keep === "head") {
      if (this.#size >= this.limit) {
        this.truncated = true;
        return;
      }
      const room = this.limit - this.#size;
      if (chunk.length > room) {
        this.truncated = true;
        chunk = chunk.subarray(0, room);
      }
      this.#chunks.push(chunk.slice());
      this.#size += chunk.length;
      return;
    }
    this.#chunks.push(chunk.slice());
    this.#size += chunk.length;
    while (this.#size - this.#chunks[0].length >= this.limit) {
      this.#size -= this.#chunks.shift()!.length;
      this.truncated = true;
    }
  }
  bytes(): Uint8Array {
    const out = concatBytes(this.#chunks);
    if (this.keep === "tail" && out.length > this.limit) return out.subarray(out.length - this.limit);
    return out;
  }
}

async function drain(stream: ReadableStream<Uint8Array>, sink: (c: Uint8Array) => void): Promise<void> {
  for await (const chunk of stream) sink(chunk);
}

async function feed(stdin: WritableStream<Uint8Array>, source: StdinSource): Promise<void> {
  try {
    if (source instanceof ReadableStream) {
      await source.pipeTo(stdin);
      return;
    }
    const writer = stdin.getWriter();
    await writer.write(typeof source === "string" ? new TextEncoder().encode(source) : source);
    await writer.close();
  } catch {
    // The child closed its stdin early (it exited or did not need it): its exit code tells.
  }
}

/** Whether `program` is an executable file on PATH (or a path to one). */
function onPath(program: string, path = Deno.env.get("PATH") ?? ""): boolean {
  const candidates = program.includes("/")
    ? [program]
    : path.split(":").filter((d) => d).map((d) => `${d}/${program}`);
  return candidates.some((c) => {
    try {
      return Deno.statSync(c).isFile;
    } catch {
      return false;
    }
  });
}

/** Runs a program, feeding stdin and draining both output streams concurrently. */
export async function runCommand(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [program, ...args] = argv;
  const limit = options.captureLimit ?? DEFAULT_CAPTURE;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args,
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      env: options.env,
      cwd: options.cwd,
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound && !onPath(program, options.env?.PATH)) {
      const pkg = PACKAGE_OF[program];
      throw new ToolError(
        `Cannot run ${program}: not found in PATH${pkg ? ` (install the ${pkg} package)` : ""}`,
      );
    }
    throw new ToolError(`Cannot run ${program}: ${(error as Error).message}`, { cause: error });
  }
  const out = new Capture(limit, "head");
  const err = new Capture(limit, "tail");
  let timedOut = false;
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  };
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    kill("SIGTERM");
    killTimer ??= setTimeout(() => kill("SIGKILL"), 2000);
  };
  const timer = options.timeoutMs && options.timeoutMs > 0
    ? setTimeout(() => {
      timedOut = true;
      stop();
    }, options.timeoutMs)
    : undefined;
  const onAbort = () => stop();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const tasks: Promise<void>[] = [];
  if (options.stdin !== undefined) tasks.push(feed(child.stdin, options.stdin));
  if (typeof options.stdout === "function") tasks.push(options.stdout(child.stdout));
  else tasks.push(drain(child.stdout, (c) => out.push(c)));
  tasks.push(drain(child.stderr, (c) => {
    err.push(c);
    options.onStderr?.(c);
  }));
  let status: Deno.CommandStatus;
  try {
    status = await child.status;
    // The child is gone, but a process it handed its pipes to (an SSH ControlMaster does that)
    // may keep them open: give the streams a short grace, then stop reading.
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<"grace">((resolve) => {
      graceTimer = setTimeout(() => resolve("grace"), timedOut ? 2000 : 30_000);
    });
    const all = Promise.allSettled(tasks);
    const outcome = await Promise.race([all, grace]);
    clearTimeout(graceTimer);
    if (outcome === "grace") {
      for (const stream of [child.stdout, child.stderr]) stream.cancel().catch(() => {});
    } else {
      const failed = outcome.find((s) => s.status === "rejected");
      if (failed && !timedOut) throw (failed as PromiseRejectedResult).reason;
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    if (killTimer !== undefined) clearTimeout(killTimer);
    options.signal?.removeEventListener("abort", onAbort);
  }
  const decoder = new TextDecoder();
  const stdoutBytes = out.bytes();
  return {
    code: timedOut ? -1 : status.signal ? 128 + signalNumber(status.signal) : status.code,
    stdout: decoder.decode(stdoutBytes),
    stderr: decoder.decode(err.bytes()),
    stdoutBytes,
    timedOut,
    truncated: out.truncated || err.truncated,
  };
}

function signalNumber(signal: Deno.Signal): number {
  const numbers: Partial<Record<Deno.Signal, number>> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGPIPE: 13 };
  return numbers[signal] ?? 0;
}

/** Runs a program and throws a {@linkcode ToolError} naming it when it fails. */
export async function runChecked(
  argv: readonly string[],
  options: RunOptions & { what?: string } = {},
): Promise<RunResult> {
  const result = await runCommand(argv, options);
  if (result.code !== 0) {
    const detail = lastLines(result.stderr) || lastLines(result.stdout) || `exit code ${result.code}`;
    const what = options.what ?? argv[0];
    throw new ToolError(
      result.timedOut
        ? `${what} timed out after ${(options.timeoutMs ?? 0) / 1000} s`
        : `${what} failed: ${detail}`,
    );
  }
  return result;
}

/** The last non-empty lines of a text, joined, for one-line error messages. */
export function lastLines(text: string, count = 3): string {
  return text.split("\n").map((l) => l.trim()).filter((l) => l !== "").slice(-count).join("; ");
}

/** What {@linkcode streamStdout} hands the starter: where stdout goes and what aborts the child. */
export interface StreamHooks {
  /** Pass as `RunOptions.stdout`. */
  stdout: (stream: ReadableStream<Uint8Array>) => Promise<void>;
  /** Pass as `RunOptions.signal`. */
  signal: AbortSignal;
}

/**
 * Yields a child's standard output chunk by chunk. `start` runs the child (through runCommand or
 * anything built on it) with the given hooks. When the consumer stops early the child is aborted;
 * a failure of the child ends the stream. Returns the child's result once the output is consumed.
 */
export async function* streamStdout<T>(
  start: (hooks: StreamHooks) => Promise<T>,
): AsyncGenerator<Uint8Array, T> {
  const pipe = new TransformStream<Uint8Array, Uint8Array>();
  const abort = new AbortController();
  const done = start({
    signal: abort.signal,
    // Rejects when the reader stops early; runCommand only looks at the tasks once the child is gone.
    stdout: (stream) => stream.pipeTo(pipe.writable).catch(() => {}),
  });
  // A failure ends the pipe too, so the loop below ends and the error surfaces from `done`.
  done.catch((error) => pipe.writable.abort(error).catch(() => {}));
  let complete = false;
  try {
    for await (const chunk of pipe.readable) yield chunk;
    complete = true;
  } finally {
    if (!complete) {
      abort.abort();
      await done.catch(() => {});
    }
  }
  return await done;
}
