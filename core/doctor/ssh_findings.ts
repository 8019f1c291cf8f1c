/**
 * SSH failures as the doctor reports them: the cause as OpenSSH gave it (in batch mode, host keys
 * checked: the doctor never turns StrictHostKeyChecking off, nor answers a prompt) and the exact
 * command that fixes it, run where it has to be run.
 *
 * @module
 */

import type { RemoteFailureKind } from "../errors.ts";
import { lastLines } from "../remote/process.ts";
import { classifySshFailure } from "../remote/ssh.ts";
import { finding, type Result, type Status } from "./finding.ts";

/** Who connects to whom. */
export interface SshPair {
  /** Source host name, null for the front-end. */
  from: string | null;
  /** Target host name. */
  to: string;
  /** Address connected to (REPLICA_STORAGE_IP or the name). */
  address: string;
  /** Why they must talk. */
  why: string;
  /** Status when the hop fails. */
  level: Status;
}

/** Context for the fix lines. */
export interface SshFixContext {
  /** The user the drivers run as (oneadmin). */
  user: string;
  /** The front-end user's public key file, if one was found. */
  publicKey: string | null;
}

function where(from: string | null): string {
  return from ?? "the front-end";
}

function subjectOf(pair: SshPair): string {
  const target = pair.address === pair.to ? pair.to : `${pair.to} (${pair.address})`;
  return `${pair.from ?? "front-end"} → ${target}`;
}

/** The finding of a hop that worked. */
export function sshOk(pair: SshPair): Result {
  return finding("ssh", subjectOf(pair), pair.from, "ok", pair.why);
}

/** The finding of a failed hop, from the ssh client's exit code and stderr. */
export function sshFailure(
  pair: SshPair,
  failure: { kind?: RemoteFailureKind; code: number; stderr: string; timedOut?: boolean },
  ctx: SshFixContext,
): Result {
  const kind = failure.kind ?? classifySshFailure(failure.code, failure.stderr, failure.timedOut ?? false);
  const detail = lastLines(failure.stderr.replace(/^ssh: /gm, "").replace(/^@+$/gm, ""), 1);
  const src = where(pair.from);
  const on = pair.from === null ? `on the front-end as ${ctx.user}` : `on ${pair.from} as ${ctx.user}`;
  const key = pair.from === null
    ? (ctx.publicKey ?? `~${ctx.user}/.ssh/id_ed25519.pub`)
    : `${pair.from}:~${ctx.user}/.ssh/id_*.pub`;
  let cause: string;
  let fix: string;
  switch (kind) {
    case "auth":
      cause = `${pair.to} refuses ${src}'s key (${detail || "permission denied"}), needed for ${pair.why}`;
      fix = pair.from === null
        ? `${on}: ssh-copy-id -i ${key} ${ctx.user}@${pair.address} (or append ${key} to ~${ctx.user}/.ssh/authorized_keys on ${pair.to})`
        : `append ${key} (the key ${pair.from} uses) to ~${ctx.user}/.ssh/authorized_keys on ${pair.to}`;
      break;
    case "hostkey":
      if (/CHANGED|has changed|does not match/i.test(failure.stderr)) {
        cause =
          `the host key of ${pair.to} (${pair.address}) changed since ${src} recorded it in known_hosts: ` +
          `SSH refuses the connection`;
        fix = `if ${pair.to} was reinstalled or its key replaced, ${on}: ssh-keygen -R ${pair.address} && ` +
          `ssh-keyscan -H ${pair.address} >>~/.ssh/known_hosts, after comparing the fingerprint with ` +
          `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on ${pair.to}; otherwise find out who answers ` +
          `for ${pair.address} first`;
      } else {
        cause = `${src} does not know the host key of ${pair.to} (${pair.address}): ${
          detail || "not in known_hosts"
        }`;
        fix = `${on}: ssh-keyscan -H ${pair.address} >>~/.ssh/known_hosts, after checking the fingerprint ` +
          `against ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on ${pair.to}`;
      }
      break;
    case "unreachable":
      cause = `${src} cannot reach ${pair.to} (${pair.address}) over SSH: ${detail || "connection failed"}`;
      fix = `start sshd on ${pair.to}, or fix the name resolution and routing from ${src} to ${pair.address}`;
      break;
    case "timeout":
      cause = `${pair.to} (${pair.address}) did not answer ${src} in time`;
      fix = `check that ${pair.to} is up and its sshd answers (ssh -v ${pair.address} true ${on})`;
      break;
    default:
      cause = `SSH from ${src} to ${pair.to} failed (exit ${failure.code}): ${detail || "no message"}`;
      fix = `run ssh -v ${pair.address} true ${on} and read why`;
  }
  return finding("ssh", subjectOf(pair), pair.from, pair.level, cause, fix);
}

/** The front-end user's public key file (ed25519, ecdsa or rsa), or null. */
export function frontendPublicKey(home: string | undefined): string | null {
  if (!home) return null;
  for (const name of ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]) {
    try {
      if (Deno.statSync(`${home}/.ssh/${name}`).isFile) return `${home}/.ssh/${name}`;
    } catch {
      // Next kind.
    }
  }
  return null;
}
