/**
 * The services an action uses, created lazily and once per process: configuration, the SSH client
 * and host runner, oned lookups. Actions take them from here instead of building their own, so
 * every action honours the same settings.
 *
 * @module
 */

import { type Config, loadConfig } from "../config/load.ts";
import { HostRunner, localHostNames } from "./remote/runner.ts";
import { ciphersSetting, hopDefaults, SshClient } from "./remote/ssh.ts";
import { OneLookup } from "./one/lookup.ts";
import { transferDefaults } from "./transfer/copy.ts";
import type { HashAlgorithm } from "./transfer/hashes.ts";

let config: Config | undefined;
let runner: HostRunner | undefined;

/** The effective configuration (loaded on first use). */
export function getConfig(): Config {
  if (!config) {
    config = loadConfig();
    transferDefaults.checksum = checksumProgram();
    transferDefaults.compression = config.transferCompression;
    hopDefaults.ciphers = ciphersSetting(config.sshCiphers);
  }
  return config;
}

/** Replaces the configuration (tests). */
export function setConfig(next: Config | undefined): void {
  config = next;
  runner = undefined;
}

/** The SSH client built from the configuration (ssh_config honoured; ONESTOR_SSH_CONFIG selects another file). */
export function sshClientFrom(cfg: Config): SshClient {
  return new SshClient({
    configFile: Deno.env.get("ONESTOR_SSH_CONFIG") || undefined,
    controlDir: Deno.env.get("ONESTOR_SSH_CONTROL_DIR") || undefined,
    controlPersist: cfg.sshControlPersist,
    connectTimeout: cfg.sshConnectTimeout,
    options: cfg.sshOpts,
    forwardAgent: cfg.sshForwardAgent,
    ciphers: ciphersSetting(cfg.sshCiphers),
  });
}

/** Runs scripts on hosts (over SSH) and on this front-end (directly). */
export function getRunner(): HostRunner {
  if (runner) return runner;
  const extra = (Deno.env.get("ONESTOR_FRONTEND_NAMES") ?? "").split(/[\s,]+/).filter((n) => n !== "");
  runner = new HostRunner(sshClientFrom(getConfig()), localHostNames(extra), {
    debug: getConfig().logLevel === "debug",
  });
  return runner;
}

/** Milliseconds for control commands (mkdir, checks), from SSH_CONTROL_TIMEOUT; 0 means none. */
export function controlTimeoutMs(): number {
  return getConfig().sshControlTimeout * 1000;
}

/** Milliseconds for data transfers, from SSH_TRANSFER_TIMEOUT; 0 means none. */
export function transferTimeoutMs(): number {
  return getConfig().sshTransferTimeout * 1000;
}

/** The content checksum algorithm of TRANSFER_CHECKSUM (`none` means the default: an identity is always needed). */
export function contentAlgorithm(): HashAlgorithm {
  const c = getConfig().transferChecksum;
  return c === "none" ? "xxh128" : c;
}

/** The checksum every copy verifies its files with (TRANSFER_VERIFY=content), or "none". */
export function checksumProgram(): string {
  return getConfig().transferVerify === "content" ? contentAlgorithm() : "none";
}

let lookup: OneLookup | undefined;

/** oned lookups (one XML-RPC call per object per process). */
export function getLookup(): OneLookup {
  lookup ??= new OneLookup();
  return lookup;
}
