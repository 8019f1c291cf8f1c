/**
 * The `kind` label of `errors_total`: why an action failed, from the typed error it failed with.
 * Errors are told apart by their class name, so that this module imports nothing of the modules
 * that define them (main.ts loads it for every action).
 *
 * @module
 */

const BY_CLASS: Record<string, string> = {
  LockError: "lock",
  UsageError: "usage",
  InputError: "input",
  ConfigError: "config",
  CopyError: "copy",
  OnedError: "oned",
  OnedCallError: "oned",
  ToolError: "tool",
};

/** The kind of a failure: the SSH failure kind of a RemoteError, else from the error's class. */
export function errorKind(error: unknown): string {
  if (!(error instanceof Error)) return "other";
  const remoteKind = (error as { kind?: unknown }).kind;
  if (error.name === "RemoteError" && typeof remoteKind === "string") return remoteKind;
  const kind = BY_CLASS[error.name];
  if (kind) return kind;
  // A generic wrapper ("Error restoring VM disks: ...") fails for the reason of what it wraps.
  return error.cause !== undefined ? errorKind(error.cause) : "other";
}
