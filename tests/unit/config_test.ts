import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import { ConfigError } from "../../core/errors.ts";
import { CONFIG_FILES, type ConfigFileId, fieldName, SETTINGS } from "../../config/schema.ts";
import { configFilePath, loadConfig } from "../../config/load.ts";
import { parseShellVars, splitWords } from "../../config/shell_vars.ts";
import { configDocsUpToDate } from "../../scripts/gen_config_docs.ts";

/** A temporary configuration root holding the given files; removed by the returned function. */
function tempRoot(files: Partial<Record<ConfigFileId, string>>): { root: string; cleanup: () => void } {
  const root = Deno.makeTempDirSync({ prefix: "onestor_config_" });
  for (const [id, text] of Object.entries(files) as [ConfigFileId, string][]) {
    const path = configFilePath(id, { root });
    Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    Deno.writeTextFileSync(path, text);
  }
  return { root, cleanup: () => Deno.removeSync(root, { recursive: true }) };
}

function withRoot(files: Partial<Record<ConfigFileId, string>>, fn: (root: string) => void): void {
  const { root, cleanup } = tempRoot(files);
  try {
    fn(root);
  } finally {
    cleanup();
  }
}

function values(text: string): Record<string, string> {
  return Object.fromEntries(parseShellVars(text, "f").map((a) => [a.name, a.value]));
}

function configErrorMatching(pattern: RegExp): (error: unknown) => boolean {
  return (error) => {
    ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    ok(pattern.test(error.message), `"${error.message}" does not match ${pattern}`);
    return true;
  };
}

// ---- parseShellVars -------------------------------------------------------------------------------

Deno.test("parseShellVars() reads unquoted, single- and double-quoted values", () => {
  deepStrictEqual(
    values(
      [
        "A=plain",
        "B='single $A \"kept\" \\n'",
        'C="double \\"q\\" \\$A \\\\ \\n $A"',
        "D=a\\ b\\#c",
        "E=",
        "F=mixed\"$A\"'$A'",
      ].join("\n"),
    ),
    {
      A: "plain",
      B: 'single $A "kept" \\n',
      C: 'double "q" $A \\ \\n plain',
      D: "a b#c",
      E: "",
      F: "mixedplain$A",
    },
  );
});

Deno.test("parseShellVars() handles comments, blank lines, export and line numbers", () => {
  const text = [
    "# a comment",
    "",
    "   # indented comment",
    "export A=1",
    "B=2 # trailing comment",
    "C=x#not-a-comment",
    "export B",
    "D=3; E=4 F=5",
    "G='multi",
    "line'",
    "H=after",
  ].join("\n");
  deepStrictEqual(
    parseShellVars(text, "f").map((a) => [a.name, a.value, a.line, a.exported]),
    [
      ["A", "1", 4, true],
      ["B", "2", 5, false],
      ["C", "x#not-a-comment", 6, false],
      ["D", "3", 8, false],
      ["E", "4", 8, false],
      ["F", "5", 8, false],
      ["G", "multi\nline", 9, false],
      ["H", "after", 11, false],
    ],
  );
});

Deno.test("parseShellVars() ignores a byte order mark and CRLF line ends", () => {
  deepStrictEqual(values("\uFEFFA=1\r\nB='2'\r\n"), { A: "1", B: "2" });
});

Deno.test("parseShellVars() expands variables assigned earlier in the same file", () => {
  deepStrictEqual(values('BASE=/srv\nA=$BASE/x\nB="${BASE}y"\nC=$BASE$A\nD=$\nBASE=/new\nE=$BASE'), {
    BASE: "/new",
    A: "/srv/x",
    B: "/srvy",
    C: "/srv/srv/x",
    D: "$",
    E: "/new",
  });
});

Deno.test("parseShellVars() refuses expansions it cannot do without a shell", () => {
  throws(
    () => parseShellVars("A=1\nB=$(id)", "/etc/x"),
    configErrorMatching(/^\/etc\/x:2: command substitution/),
  );
  throws(() => parseShellVars('A="`id`"', "f"), configErrorMatching(/^f:1: command substitution/));
  throws(() => parseShellVars("A=`id`", "f"), configErrorMatching(/^f:1: command substitution/));
  throws(() => parseShellVars("A=$((1+1))", "f"), configErrorMatching(/^f:1: arithmetic expansion/));
  throws(
    () => parseShellVars("A=${B:-x}", "f"),
    configErrorMatching(/^f:1: unsupported parameter expansion/),
  );
  throws(() => parseShellVars("A=$HOME/x", "f"), configErrorMatching(/^f:1: \$HOME is not assigned earlier/));
  throws(() => parseShellVars("A=$1", "f"), configErrorMatching(/^f:1: special parameter \$1/));
});

Deno.test("parseShellVars() refuses malformed lines with file and line", () => {
  throws(
    () => parseShellVars('A=1\nif [ -z "$ONE_LOCATION" ]; then\n  B=2\nfi\n', "/etc/one/tmrc"),
    configErrorMatching(/^\/etc\/one\/tmrc:2: expected NAME=value, found "if \[ -z/),
  );
  throws(() => parseShellVars("A = 1", "f"), configErrorMatching(/^f:1: no spaces are allowed around "="/));
  throws(() => parseShellVars("\nA+=1", "f"), configErrorMatching(/^f:2: "\+=" is not supported/));
  throws(
    () => parseShellVars("\n\nA='open\n\n", "f"),
    configErrorMatching(/^f:3: unterminated single quote/),
  );
  throws(() => parseShellVars('A="open', "f"), configErrorMatching(/^f:1: unterminated double quote/));
  throws(() => parseShellVars("A=1 echo hi", "f"), configErrorMatching(/^f:1: expected NAME=value/));
  throws(() => parseShellVars("A=x|y", "f"), configErrorMatching(/^f:1: unsupported shell syntax "\|"/));
  throws(() => parseShellVars("1A=2", "f"), configErrorMatching(/^f:1: expected NAME=value/));
});

Deno.test("splitWords() splits by shell word rules without expanding", () => {
  deepStrictEqual(splitWords("-b 4096 -L 'my label'"), ["-b", "4096", "-L", "my label"]);
  deepStrictEqual(splitWords(' -o  "a b"\\ c  $X `id` '), ["-o", "a b c", "$X", "`id`"]);
  deepStrictEqual(splitWords('-L \'\' x"\\"y"'), ["-L", "", 'x"y']);
  deepStrictEqual(splitWords(""), []);
  throws(() => splitWords("-L 'open"), /unterminated single quote/);
});

// ---- schema -----------------------------------------------------------------------------------------

Deno.test("SETTINGS names every key once, in a known file, with a meaning", () => {
  const keys = SETTINGS.map((s) => s.key);
  equal(new Set(keys).size, keys.length);
  for (const spec of SETTINGS) {
    ok(spec.file in CONFIG_FILES, spec.key);
    ok(spec.meaning.length > 20 && spec.usedBy.length > 0, spec.key);
  }
  equal(fieldName("REPLICA_MAX_SIZE_MB"), "replicaMaxSizeMb");
  equal(fieldName("QCOW2_OPTIONS"), "qcow2Options");
});

// ---- loadConfig -------------------------------------------------------------------------------------

Deno.test("loadConfig() returns the defaults when no file exists", () => {
  withRoot({}, (root) => {
    const config = loadConfig({ root, env: {} });
    equal(config.replicaCopyLockTimeout, 600);
    equal(config.replicaRecoverySnapsDir, "/var/lib/one/datastores/replica_snaps");
    deepStrictEqual(config.replicaSshOpts, ["-c", "aes128-gcm@openssh.com", "-m", "umac-64@openssh.com"]);
    deepStrictEqual(config.replicaSshFeOpts, []);
    equal(config.replicaMaxSizeMb, null);
    equal(config.replicaMaxUsedPerc, 90);
    deepStrictEqual(config.qcow2Options, []);
    equal(config.ddBlockSize, "64k");
    deepStrictEqual(config.supportedFs, ["ext2", "ext3", "ext4", "xfs"]);
    deepStrictEqual(config.fsOpts("ext4"), []);
    equal(config.backupBasePath, null);
    equal(config.replicaFallback, true);
    equal(config.replicaLeaseSeconds, 30);
    equal(config.replicaCacheVerify, "size-mtime");
    equal(config.sshConnectTimeout, 10);
    equal(config.sshControlTimeout, 120);
    equal(config.sshTransferTimeout, 0);
    equal(config.sshControlPersist, 60);
    deepStrictEqual(config.sshOpts, []);
    equal(config.sshForwardAgent, false);
    equal(config.transferChecksum, "xxh128");
    equal(config.transferCompression, "none");
    equal(config.logLevel, "info");
    deepStrictEqual(config.sources.REPLICA_MAX_USED_PERC, { from: "default" });
    deepStrictEqual(config.warnings, []);
    equal(config.files.sshrc.found, false);
    equal(config.files.sshrc.path, `${root}/var/lib/one/remotes/etc/tm/ssh/sshrc`);
    equal(config.get("REPLICA_COPY_LOCK_TIMEOUT"), 600);
    deepStrictEqual(config.get("FS_OPTS_xfs"), []);
    throws(() => config.get("NO_SUCH_KEY"), /Unknown setting NO_SUCH_KEY/);
  });
});

Deno.test("loadConfig() reads each stock file and onestor.conf from their paths", () => {
  const files = {
    sshrc: [
      "# replica settings",
      "REPLICA_COPY_LOCK_TIMEOUT=900",
      'REPLICA_RECOVERY_SNAPS_DIR="/srv/snaps/"',
      'REPLICA_SSH_OPTS="-c aes256-gcm@openssh.com"',
      "REPLICA_SSH_FE_OPTS='-o Compression=yes'",
      'REPLICA_MAX_SIZE_MB="2048"',
      "REPLICA_MAX_USED_PERC=85%",
    ].join("\n"),
    tmrc: '# Options sent to qemu-img for clone images\nQCOW2_OPTIONS="-o compat=0.10"\n',
    "fs.conf": "#  Block size for the dd commands\nDD_BLOCK_SIZE=1M\n",
    "datastore.conf": [
      'SUPPORTED_FS="ext4, xfs,vfat"',
      "FS_OPTS_ext4=\"-b 4096 -L 'my label'\"",
      'FS_OPTS_xfs="-K"',
      '#BACKUP_BASE_PATH="/path/in/the/hosts"',
      "BACKUP_BASE_PATH=/var/tmp/backups",
    ].join("\n"),
    "onestor.conf": [
      "REPLICA_FALLBACK=No",
      "REPLICA_LEASE_SECONDS=45",
      "REPLICA_CACHE_VERIFY=CHECKSUM",
      "SSH_CONNECT_TIMEOUT=5",
      "SSH_CONTROL_TIMEOUT=0",
      "SSH_TRANSFER_TIMEOUT=7200",
      "SSH_CONTROL_PERSIST=0",
      "SSH_OPTS=\"-o 'ServerAliveInterval 15'\"",
      "SSH_FORWARD_AGENT=true",
      "TRANSFER_CHECKSUM=md5",
      "TRANSFER_COMPRESSION=zstd",
      "LOG_LEVEL=debug",
    ].join("\n"),
  };
  withRoot(files, (root) => {
    const warnings: string[] = [];
    const config = loadConfig({ root, env: {}, warn: (m) => warnings.push(m) });
    deepStrictEqual(warnings, []);
    equal(config.replicaCopyLockTimeout, 900);
    equal(config.replicaRecoverySnapsDir, "/srv/snaps");
    deepStrictEqual(config.replicaSshOpts, ["-c", "aes256-gcm@openssh.com"]);
    deepStrictEqual(config.replicaSshFeOpts, ["-o", "Compression=yes"]);
    equal(config.replicaMaxSizeMb, 2048);
    equal(config.replicaMaxUsedPerc, 85);
    deepStrictEqual(config.qcow2Options, ["-o", "compat=0.10"]);
    equal(config.ddBlockSize, "1M");
    deepStrictEqual(config.supportedFs, ["ext4", "xfs", "vfat"]);
    deepStrictEqual(config.fsOpts("ext4"), ["-b", "4096", "-L", "my label"]);
    deepStrictEqual(config.fsOpts("xfs"), ["-K"]);
    deepStrictEqual(config.fsOpts("vfat"), []);
    deepStrictEqual(config.get("FS_OPTS_ext4"), ["-b", "4096", "-L", "my label"]);
    equal(config.backupBasePath, "/var/tmp/backups");
    equal(config.replicaFallback, false);
    equal(config.replicaLeaseSeconds, 45);
    equal(config.replicaCacheVerify, "checksum");
    equal(config.sshConnectTimeout, 5);
    equal(config.sshControlTimeout, 0);
    equal(config.sshTransferTimeout, 7200);
    equal(config.sshControlPersist, 0);
    deepStrictEqual(config.sshOpts, ["-o", "ServerAliveInterval 15"]);
    equal(config.sshForwardAgent, true);
    equal(config.transferChecksum, "md5");
    equal(config.transferCompression, "zstd");
    equal(config.logLevel, "debug");
    deepStrictEqual(config.sources.REPLICA_MAX_SIZE_MB, {
      from: "file",
      path: `${root}/var/lib/one/remotes/etc/tm/ssh/sshrc`,
      line: 6,
    });
    deepStrictEqual(config.sources.BACKUP_BASE_PATH, {
      from: "file",
      path: `${root}/var/lib/one/remotes/etc/datastore/datastore.conf`,
      line: 5,
    });
    ok(Object.values(config.files).every((f) => f.found));
  });
});

Deno.test("loadConfig() treats an empty value as the default", () => {
  withRoot({ sshrc: 'REPLICA_COPY_LOCK_TIMEOUT=""\nREPLICA_MAX_SIZE_MB=\nREPLICA_SSH_OPTS=' }, (root) => {
    const config = loadConfig({ root, env: {} });
    equal(config.replicaCopyLockTimeout, 600);
    equal(config.replicaMaxSizeMb, null);
    deepStrictEqual(config.replicaSshOpts, ["-c", "aes128-gcm@openssh.com", "-m", "umac-64@openssh.com"]);
  });
});

Deno.test("loadConfig() refuses an unknown key in onestor.conf with a suggestion", () => {
  withRoot({ "onestor.conf": "REPLICA_FALLBACK=yes\nREPLICA_LEASE_SECOND=40\n" }, (root) => {
    const path = `${root}/var/lib/one/remotes/etc/onestor/onestor.conf`;
    throws(
      () => loadConfig({ root, env: {} }),
      (error: unknown) => {
        ok(error instanceof ConfigError);
        equal(
          error.message,
          `Unknown key REPLICA_LEASE_SECOND in ${path} (did you mean REPLICA_LEASE_SECONDS?)`,
        );
        return true;
      },
    );
  });
  withRoot({ "onestor.conf": "REPLICA_MAX_SIZE=100\n" }, (root) => {
    throws(
      () => loadConfig({ root, env: {} }),
      configErrorMatching(
        /^Unknown key REPLICA_MAX_SIZE in \S+onestor\.conf \(did you mean REPLICA_MAX_SIZE_MB in \S+\/sshrc\?\)$/,
      ),
    );
  });
  withRoot({ "onestor.conf": "log_level=debug\n" }, (root) => {
    throws(() => loadConfig({ root, env: {} }), configErrorMatching(/\(did you mean LOG_LEVEL\?\)$/));
  });
  withRoot({ "onestor.conf": "COMPLETELY_DIFFERENT=1\n" }, (root) => {
    throws(
      () => loadConfig({ root, env: {} }),
      configErrorMatching(/^Unknown key COMPLETELY_DIFFERENT in \S+$/),
    );
  });
  withRoot({ "onestor.conf": "SUPPORTED_FS=ext4\n" }, (root) => {
    throws(
      () => loadConfig({ root, env: {} }),
      configErrorMatching(/^SUPPORTED_FS is read from \S+\/datastore\.conf, not from \S+\/onestor\.conf$/),
    );
  });
});

Deno.test("loadConfig() warns about an unknown key in sshrc and goes on", () => {
  withRoot({ sshrc: "REPLICA_MAX_USED_PERC=80\nREPLICA_MAX_SIZE=100\nREPLICA_FALLBACK=no\n" }, (root) => {
    const warned: string[] = [];
    const config = loadConfig({ root, env: {}, warn: (m) => warned.push(m) });
    const sshrc = `${root}/var/lib/one/remotes/etc/tm/ssh/sshrc`;
    deepStrictEqual(warned, [
      `Unknown key REPLICA_MAX_SIZE in ${sshrc} (did you mean REPLICA_MAX_SIZE_MB?)`,
      `REPLICA_FALLBACK is read from ${root}/var/lib/one/remotes/etc/onestor/onestor.conf, not from ${sshrc}`,
    ]);
    deepStrictEqual(config.warnings, warned);
    equal(config.replicaMaxUsedPerc, 80);
    equal(config.replicaFallback, true);
  });
});

Deno.test("loadConfig() warns about FS_OPTS_<fs> for a file system not in SUPPORTED_FS", () => {
  withRoot({ "datastore.conf": 'SUPPORTED_FS="ext4"\nFS_OPTS_EXT4="-b 4096"\nFS_OPT_ext4=x' }, (root) => {
    const warned: string[] = [];
    loadConfig({ root, env: {}, warn: (m) => warned.push(m) });
    equal(warned.length, 2);
    ok(warned[0].startsWith("Unknown key FS_OPT_ext4 in "), warned[0]);
    ok(warned[0].endsWith("(did you mean FS_OPTS_ext4?)"), warned[0]);
    ok(
      warned[1].endsWith(
        ":2: FS_OPTS_EXT4 has no effect: EXT4 is not in SUPPORTED_FS (did you mean FS_OPTS_ext4?)",
      ),
    );
  });
});

Deno.test("loadConfig() refuses a bad value naming file, line, key and expected type", () => {
  withRoot({ sshrc: "# timeout\nREPLICA_COPY_LOCK_TIMEOUT=ten\n" }, (root) => {
    throws(
      () => loadConfig({ root, env: {} }),
      (error: unknown) => {
        ok(error instanceof ConfigError);
        equal(
          error.message,
          `${root}/var/lib/one/remotes/etc/tm/ssh/sshrc:2: REPLICA_COPY_LOCK_TIMEOUT must be a whole number ` +
            '(seconds), not "ten"',
        );
        return true;
      },
    );
  });
  const bad: [ConfigFileId, string, RegExp][] = [
    ["sshrc", "REPLICA_MAX_USED_PERC=150", /REPLICA_MAX_USED_PERC must be a percentage from 1 to 100/],
    ["sshrc", "REPLICA_MAX_SIZE_MB=-5", /REPLICA_MAX_SIZE_MB must be a whole number of at least 1 \(MiB\)/],
    ["sshrc", "REPLICA_RECOVERY_SNAPS_DIR=snaps", /REPLICA_RECOVERY_SNAPS_DIR must be an absolute path/],
    ["sshrc", "REPLICA_SSH_OPTS=somehost", /REPLICA_SSH_OPTS must be OpenSSH options starting with -/],
    ["onestor.conf", "REPLICA_FALLBACK=maybe", /REPLICA_FALLBACK must be yes or no/],
    [
      "onestor.conf",
      "REPLICA_LEASE_SECONDS=1",
      /REPLICA_LEASE_SECONDS must be a whole number from 5 to 3600 \(seconds\)/,
    ],
    [
      "onestor.conf",
      "TRANSFER_CHECKSUM=sha1",
      /TRANSFER_CHECKSUM must be one of xxh128, blake2b, sha256, md5, none, not "sha1"/,
    ],
    ["fs.conf", "DD_BLOCK_SIZE=64x", /DD_BLOCK_SIZE must be a dd block size/],
    ["datastore.conf", 'FS_OPTS_ext4="-L \'open"', /FS_OPTS_ext4 must be .*unterminated single quote/],
    ["datastore.conf", 'SUPPORTED_FS="ext4 xfs"', /SUPPORTED_FS must be a comma-separated list/],
  ];
  for (const [id, line, pattern] of bad) {
    withRoot({ [id]: line }, (root) => {
      throws(() => loadConfig({ root, env: {} }), configErrorMatching(new RegExp(`:1: ${pattern.source}`)));
    });
  }
});

Deno.test("loadConfig() lets the environment override tmrc keys", () => {
  withRoot({ tmrc: 'QCOW2_OPTIONS="-o compat=0.10"' }, (root) => {
    const config = loadConfig({ root, env: { QCOW2_OPTIONS: "-o compat=1.1 -o lazy_refcounts=on" } });
    deepStrictEqual(config.qcow2Options, ["-o", "compat=1.1", "-o", "lazy_refcounts=on"]);
    deepStrictEqual(config.sources.QCOW2_OPTIONS, { from: "environment", name: "QCOW2_OPTIONS" });
    // Only tmrc keys come from the environment.
    equal(loadConfig({ root, env: { REPLICA_MAX_USED_PERC: "50" } }).replicaMaxUsedPerc, 90);
  });
  withRoot({}, (root) => {
    throws(
      () => loadConfig({ root, env: { QCOW2_OPTIONS: "-o 'x" } }),
      configErrorMatching(/^Environment variable QCOW2_OPTIONS must be/),
    );
  });
});

Deno.test("loadConfig() takes the root from ONESTOR_CONFIG_ROOT and honours ONE_LOCATION", () => {
  withRoot({ "fs.conf": "DD_BLOCK_SIZE=4MiB" }, (root) => {
    equal(loadConfig({ env: { ONESTOR_CONFIG_ROOT: root } }).ddBlockSize, "4MiB");
  });
  equal(configFilePath("tmrc", { oneLocation: "/opt/one/" }), "/opt/one/etc/tmrc");
  equal(
    configFilePath("sshrc", { root: "/r/", oneLocation: "/opt/one" }),
    "/r/opt/one/var/remotes/etc/tm/ssh/sshrc",
  );
});

Deno.test("loadConfig() accepts the stock upstream files as shipped", () => {
  // Assignment lines of OpenNebula 7.x's files, with its layout of comments and quotes.
  const files = {
    sshrc: [
      "# Replica settings (shell syntax)",
      "REPLICA_COPY_LOCK_TIMEOUT=600",
      'REPLICA_RECOVERY_SNAPS_DIR="/var/lib/one/datastores/replica_snaps"',
      'REPLICA_SSH_OPTS="-c aes128-gcm@openssh.com -m umac-64@openssh.com"',
      'REPLICA_SSH_FE_OPTS=""',
      'REPLICA_MAX_SIZE_MB=""',
      "REPLICA_MAX_USED_PERC=90",
      "",
    ].join("\n"),
    tmrc: '# qemu-img options\n#QCOW2_OPTIONS="-o compat=0.10"\n',
    "fs.conf": "#  Block size for the dd commands\nDD_BLOCK_SIZE=64k\n",
    "datastore.conf": [
      '#   (e.g FS_OPTS_ext4="-b 16384"). If not set default MKFS options are used.',
      'SUPPORTED_FS="ext2,ext3,ext4,xfs"',
      "",
      '#BACKUP_BASE_PATH="/path/in/the/hosts"',
      "",
    ].join("\n"),
  };
  withRoot(files, (root) => {
    const defaults = loadConfig({ root: `${root}/none`, env: {} });
    const config = loadConfig({ root, env: {} });
    deepStrictEqual(config.warnings, []);
    for (const spec of SETTINGS) {
      if ("pattern" in spec) continue;
      deepStrictEqual(config.get(spec.key), defaults.get(spec.key), spec.key);
    }
  });
});

Deno.test("docs/configuration.md is up to date with the schema", async () => {
  ok(await configDocsUpToDate(), "run `deno task docs` (deno run -A scripts/gen_config_docs.ts)");
});
