/**
 * Typed errors. Every failure the administrator can see is one of these: it carries the exit code
 * oned gets and a one-line message that says what went wrong and, where possible, what to do.
 *
 * Exit codes follow OpenNebula's driver conventions: 255 is the generic failure of its shell
 * drivers (`exit -1`), 254 a lock that could not be taken (`exit -2`), 2 a wrong invocation.
 *
 * @module
 */

/** Exit codes used by onestor, following OpenNebula's driver scripts. */
export const ExitCode = {
  ok: 0,
  failure: 255,
  lock: 254,
  usage: 2,
} as const;

/** Base class of every error onestor reports; `message` is the one line oned shows the user. */
export class OneStorError extends Error {
  /** Process exit code to use when this error ends the program. */
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "OneStorError";
    this.exitCode = options.exitCode ?? ExitCode.failure;
  }
}

/** The program was called with an unknown action or the wrong arguments. */
export class UsageError extends OneStorError {
  constructor(message: string) {
    super(message, { exitCode: ExitCode.usage });
    this.name = "UsageError";
  }
}

/** A configuration file holds an unknown key or a value of the wrong type. */
export class ConfigError extends OneStorError {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Input from oned or a template (a path, an FS name, a URL) is refused before anything runs. */
export class InputError extends OneStorError {
  constructor(message: string) {
    super(message);
    this.name = "InputError";
  }
}

/** A lock or lease could not be taken in time. */
export class LockError extends OneStorError {
  constructor(message: string) {
    super(message, { exitCode: ExitCode.lock });
    this.name = "LockError";
  }
}

/** A local program onestor needs is missing or failed. */
export class ToolError extends OneStorError {
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options);
    this.name = "ToolError";
  }
}

/** Why an SSH call failed, as far as the OpenSSH client tells. */
export type RemoteFailureKind =
  | "unreachable"
  | "auth"
  | "hostkey"
  | "timeout"
  | "command";

/** A command on a remote host could not be run or failed; `host` names the host. */
export class RemoteError extends OneStorError {
  /** Host the command was meant for. */
  readonly host: string;
  /** Why it failed. */
  readonly kind: RemoteFailureKind;
  /** Exit status of the remote command (or of ssh), -1 after a timeout. */
  readonly status: number;
  /** Captured standard error of the remote command, bounded. */
  readonly stderr: string;
  constructor(
    message: string,
    details: { host: string; kind: RemoteFailureKind; status: number; stderr?: string },
  ) {
    super(message);
    this.name = "RemoteError";
    this.host = details.host;
    this.kind = details.kind;
    this.status = details.status;
    this.stderr = details.stderr ?? "";
  }
}

/** oned's XML-RPC API could not be reached or answered with an error. */
export class OnedError extends OneStorError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "OnedError";
  }
}

/** Turns any thrown value into a single line suitable for oned's ERROR attribute. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s*\n\s*/g, " ").trim() || "unknown error";
}
