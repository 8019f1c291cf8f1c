/**
 * What every action receives: how it was invoked, its arguments, stdin, and a way to print its
 * result. Services (configuration, SSH, oned lookups) come from `core/runtime.ts`.
 *
 * @module
 */

/** Which family an action belongs to: transfer manager, datastore, or onestor's own commands. */
export type ActionKind = "tm" | "ds" | "admin";

/** The invocation of one action. */
export interface ActionContext {
  /** Action name as oned knows it (`clone`, `cp`, ...). */
  readonly name: string;
  /** Family of the action. */
  readonly kind: ActionKind;
  /** Driver name it was installed as (`onestor`, `ssh`, `fs`); `onestor` for subcommands. */
  readonly driver: string;
  /** Positional arguments, exactly as oned passed them. */
  readonly args: readonly string[];
  /** Reads all of standard input as text (once). */
  stdin(): Promise<string>;
  /** Writes the action's result to standard output. */
  print(text: string): void;
}

/** The entry point every action module exports as `run`. */
export type ActionRun = (context: ActionContext) => Promise<void>;

/** Creates the context of an action run by this process. */
export function processContext(
  name: string,
  kind: ActionKind,
  driver: string,
  args: readonly string[],
): ActionContext {
  let input: Promise<string> | undefined;
  const encoder = new TextEncoder();
  return {
    name,
    kind,
    driver,
    args,
    stdin() {
      input ??= new Response(Deno.stdin.readable).text();
      return input;
    },
    print(text: string) {
      const bytes = encoder.encode(text.endsWith("\n") || text === "" ? text : text + "\n");
      let off = 0;
      while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
    },
  };
}
