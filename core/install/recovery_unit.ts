/**
 * The systemd unit of `onestor recovery daemon` (systemd/onestor-recovery.service in the repo),
 * laid by `onestor install --recovery-unit`: the template with the installed launcher, the user
 * oned runs as and that user's home filled in. The daemon needs nothing else: it reads oned's
 * endpoint and credentials like the drivers do (ONE_XMLRPC / ~/.one/one_auth of that user).
 *
 * @module
 */

import { InputError } from "../errors.ts";

/** Unit file name. */
export const UNIT_NAME = "onestor-recovery.service";
/** Default folder of administrator-installed units. */
export const UNIT_DIR = "/etc/systemd/system";

const MARK = "laid by 'onestor install --recovery-unit'";

/** What the unit runs. */
export interface UnitOptions {
  /** The launcher laid by install (`<remotes>/tm/<name>/.onestor`). */
  launcher: string;
  /** User and group the daemon runs as (oned's, default oneadmin). */
  user: string;
  group: string;
  /** That user's home (default /var/lib/one). */
  home: string;
}

/** The template shipped in the repository. */
export async function unitTemplate(): Promise<string> {
  return await Deno.readTextFile(new URL("../../systemd/onestor-recovery.service", import.meta.url));
}

/** The unit text for `options` (every placeholder filled, values checked). */
export function renderUnit(template: string, options: UnitOptions): string {
  for (const [name, value] of Object.entries(options)) {
    if (!/^[A-Za-z0-9_./@-]+$/.test(value)) {
      throw new InputError(`Invalid ${name} for the systemd unit: '${value}'`);
    }
  }
  const text = template
    .replaceAll("@LAUNCHER@", options.launcher)
    .replaceAll("@USER@", options.user)
    .replaceAll("@GROUP@", options.group)
    .replaceAll("@HOME@", options.home);
  if (/@[A-Z]+@/.test(text)) throw new InputError("The systemd unit template has an unknown placeholder");
  return `# ${MARK}\n${text}`;
}

/** Writes the unit into `dir` (atomically); returns its path. */
export async function installUnit(dir: string, options: UnitOptions): Promise<string> {
  const path = `${dir.replace(/\/+$/, "")}/${UNIT_NAME}`;
  const text = renderUnit(await unitTemplate(), options);
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, text, { mode: 0o644 });
  await Deno.rename(tmp, path);
  return path;
}

/** Removes the unit if onestor laid it; returns whether it did. */
export async function removeUnit(dir: string): Promise<boolean> {
  const path = `${dir.replace(/\/+$/, "")}/${UNIT_NAME}`;
  try {
    if (!(await Deno.readTextFile(path)).includes(MARK)) return false;
  } catch {
    return false;
  }
  await Deno.remove(path);
  return true;
}
