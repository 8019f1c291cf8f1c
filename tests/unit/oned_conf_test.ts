/** DATASTORE_LOCATION: onestor.conf, else oned.conf, else oned's default for the install. */
import assert from "node:assert/strict";
import { loadConfig } from "../../config/load.ts";
import { onedConfPath, parseOnedDatastoreLocation } from "../../config/oned_conf.ts";

async function withRoot(files: Record<string, string>, fn: (root: string) => void | Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "onestor_oned_conf_" });
  try {
    for (const [path, text] of Object.entries(files)) {
      await Deno.mkdir(`${root}${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
      await Deno.writeTextFile(`${root}${path}`, text);
    }
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const ONED_CONF = `#*******************
# DATASTORE_LOCATION = /commented/out
LOG = [
  SYSTEM      = "file",
  DEBUG_LEVEL = 3
]
TM_MAD = [
    EXECUTABLE = "one_tm",
    ARGUMENTS = "-t 15 -d dummy,ssh"
]
DATASTORE_LOCATION  = "/srv/one//datastores/"
DATASTORE_LOCATION  = /second/one/is/ignored
`;

Deno.test("parseOnedDatastoreLocation() takes the first top-level value, quoted or not", () => {
  assert.deepEqual(parseOnedDatastoreLocation(ONED_CONF), { value: "/srv/one//datastores/", line: 11 });
  assert.deepEqual(parseOnedDatastoreLocation("DATASTORE_LOCATION=/d # comment\n"), { value: "/d", line: 1 });
  assert.equal(parseOnedDatastoreLocation("X = [\n DATASTORE_LOCATION = /in/vector\n]\n"), null);
  assert.equal(parseOnedDatastoreLocation(""), null);
});

Deno.test("onedConfPath() follows the install layout", () => {
  assert.equal(onedConfPath(), "/etc/one/oned.conf");
  assert.equal(onedConfPath({ oneLocation: "/opt/one/", root: "/r" }), "/r/opt/one/etc/oned.conf");
});

Deno.test("DATASTORE_LOCATION comes from oned.conf, normalised, with its line as source", async () => {
  await withRoot({ "/etc/one/oned.conf": ONED_CONF }, (root) => {
    const config = loadConfig({ root, env: {}, warn: () => {} });
    assert.equal(config.datastoreLocation, "/srv/one/datastores");
    assert.deepEqual(config.sources.DATASTORE_LOCATION, {
      from: "file",
      path: `${root}/etc/one/oned.conf`,
      line: 11,
    });
  });
});

Deno.test("DATASTORE_LOCATION defaults to oned's default for the install when oned.conf says nothing", async () => {
  await withRoot({}, (root) => {
    assert.equal(loadConfig({ root, env: {} }).datastoreLocation, "/var/lib/one/datastores");
    const selfContained = loadConfig({ root, env: { ONE_LOCATION: "/opt/one" } });
    assert.equal(selfContained.datastoreLocation, "/opt/one/var/datastores");
    assert.deepEqual(selfContained.sources.DATASTORE_LOCATION, { from: "default" });
  });
  await withRoot({ "/opt/one/etc/oned.conf": "DATASTORE_LOCATION = relative/path\n" }, (root) => {
    const warnings: string[] = [];
    const config = loadConfig({ root, env: { ONE_LOCATION: "/opt/one" }, warn: (m) => warnings.push(m) });
    assert.equal(config.datastoreLocation, "/opt/one/var/datastores");
    assert.match(
      warnings.join("\n"),
      /oned\.conf:1: DATASTORE_LOCATION "relative\/path" is not an absolute path/,
    );
  });
});

Deno.test("DATASTORE_LOCATION in onestor.conf wins over oned.conf", async () => {
  await withRoot({
    "/etc/one/oned.conf": ONED_CONF,
    "/var/lib/one/remotes/etc/onestor/onestor.conf": "DATASTORE_LOCATION=/data/ds/\n",
  }, (root) => {
    const config = loadConfig({ root, env: {} });
    assert.equal(config.datastoreLocation, "/data/ds");
    assert.equal(config.sources.DATASTORE_LOCATION.from, "file");
  });
});
