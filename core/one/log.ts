/**
 * Log lines in the form OpenNebula's driver runtime parses from stderr: `INFO: <action>: <text>`.
 * Lines in this form go to oned.log; any other stderr line becomes the failure message oned shows
 * in the VM's ERROR attribute (spec §1.4).
 *
 * @module
 */

let scope = "onestor";
const encoder = new TextEncoder();

/** Sets the name printed after the level, normally the action (`clone`, `cp`). */
export function setLogScope(name: string): void {
  scope = name;
}

/** The current log scope. */
export function logScope(): string {
  return scope;
}

function emit(level: string, message: string): void {
  for (const line of message.split("\n")) {
    if (line.trim() === "") continue;
    Deno.stderr.writeSync(encoder.encode(`${level}: ${scope}: ${line}\n`));
  }
}

/** Logs progress or a decision (`INFO:`). */
export function logInfo(message: string): void {
  emit("INFO", message);
}

/** Logs something that went wrong but did not stop the action (`WARN:`). */
export function logWarn(message: string): void {
  emit("WARN", message);
}

/** Logs a detail for LOG_LEVEL=debug (`DEBUG:`); callers check the level. */
export function logDebug(message: string): void {
  emit("DEBUG", message);
}

/** Logs an error (`ERROR:`); the user-facing line is printed separately by {@linkcode printFailure}. */
export function logError(message: string): void {
  emit("ERROR", message);
}

/** Prints the plain failure line that oned stores as the error message. */
export function printFailure(message: string): void {
  Deno.stderr.writeSync(encoder.encode(message.replace(/\s*\n\s*/g, " ").trim() + "\n"));
}
