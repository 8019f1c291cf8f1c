/**
 * A fake `ssh` for unit tests: it runs the remote command locally with bash, so "hosts" are
 * folders of this machine. The host `down-host` answers like a host whose sshd is stopped, and a
 * host whose name ends in `-noxxh` has no working `xxhsum` (like a host without the xxhash package).
 *
 * @module
 */

import { HostRunner } from "../../core/remote/runner.ts";
import { SshClient } from "../../core/remote/ssh.ts";

const FAKE_SSH = `#!/bin/bash
while [ $# -gt 0 ]; do if [ "$1" = -- ]; then shift; break; fi; shift; done
host=$1; shift
if [ "$host" = down-host ]; then echo "ssh: connect to host down-host port 22: Connection refused" >&2; exit 255; fi
case $host in *-noxxh) PATH="$(dirname "$0")/noxxh:$PATH" ;; esac
exec bash -c "$1"
`;

/** Writes the fake ssh into `dir` and returns its path and a runner that uses it. */
export async function fakeSshRunner(dir: string): Promise<{ ssh: string; runner: HostRunner }> {
  const ssh = `${dir}/ssh`;
  await Deno.writeTextFile(ssh, FAKE_SSH);
  await Deno.chmod(ssh, 0o755);
  await Deno.mkdir(`${dir}/noxxh`, { recursive: true });
  await Deno.writeTextFile(`${dir}/noxxh/xxhsum`, "#!/bin/sh\nexit 1\n", { mode: 0o755 });
  return { ssh, runner: new HostRunner(new SshClient({ program: ssh, controlPersist: 0 }), []) };
}
