import assert from "node:assert/strict";
import { InputError } from "../../core/errors.ts";
import {
  buildDriverActionXml,
  decodeBase64Text,
  encodeBase64Text,
  encodeDriverAction,
  parseBase64Xml,
  parseDriverAction,
  readDriverAction,
  sourceBridgeListXml,
} from "../../core/one/driver_action.ts";
import { ImageType } from "../../core/one/objects.ts";
import {
  datastoreXml,
  driverActionBase64,
  driverActionXml,
  imageXml,
  statImageXml,
} from "../support/fixtures.ts";

Deno.test("`parseDriverAction()` reads image and datastore fields", () => {
  const action = parseDriverAction(driverActionBase64({
    image: imageXml({
      id: 12,
      path: "https://example.com/a.qcow2",
      size: 2048,
      format: "qcow2",
      fs: "ext4",
      type: ImageType.DATABLOCK,
      targetSnapshot: 3,
      source: "/var/lib/one//datastores/1/0123456789abcdef",
      template: { MD5: "d41d8cd98f00b204e9800998ecf8427e", SHA1: "da39a3ee5e6b4b0d3255bfef95601890afd80709" },
    }),
    datastore: datastoreXml({
      id: 1,
      template: { BRIDGE_LIST: "host1  host2", DRIVER: "qcow2", STAGING_DIR: "/var/tmp/st" },
    }),
  }));
  assert.equal(action.imageId, 12);
  assert.equal(action.imagePath, "https://example.com/a.qcow2");
  assert.equal(action.imageSource, "/var/lib/one//datastores/1/0123456789abcdef");
  assert.equal(action.imageSize, 2048);
  assert.equal(action.imageFormat, "qcow2");
  assert.equal(action.imageFs, "ext4");
  assert.equal(action.imageType, ImageType.DATABLOCK);
  assert.equal(action.imageMd5, "d41d8cd98f00b204e9800998ecf8427e");
  assert.equal(action.imageSha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  assert.equal(action.targetSnapshot, 3);
  assert.equal(action.cloningId, -1);
  assert.equal(action.dsId, 1);
  assert.equal(action.dsBasePath, "/var/lib/one//datastores/1");
  assert.equal(action.dsType, 0);
  assert.equal(action.dsMad, "fs");
  assert.equal(action.tmMad, "ssh");
  assert.equal(action.dsTemplate("DRIVER"), "qcow2");
  assert.equal(action.dsTemplate("STAGING_DIR"), "/var/tmp/st");
  assert.equal(action.dsTemplate("NO_DECOMPRESS"), "");
  assert.deepEqual(action.bridgeList, ["host1", "host2"]);
  assert.deepEqual(action.sourceBridgeList, []);
  assert.equal(action.datastore?.name, "default");
  assert.equal(action.get("IMAGE/TEMPLATE/DEV_PREFIX"), "vd");
});

Deno.test("`parseDriverAction()` reads the reduced IMAGE of stat with entity-escaped PATH", () => {
  const action = parseDriverAction(driverActionBase64({ image: statImageXml("/tmp/a&b <c>.img", "") }));
  assert.equal(action.imagePath, "/tmp/a&b <c>.img");
  assert.equal(action.imageSize, null);
  assert.equal(action.imageId, null);
  assert.equal(action.imageSource, "");
});

Deno.test("`parseDriverAction()` reads SOURCE_BRIDGE_LIST and a monitor payload without IMAGE", () => {
  const clone = parseDriverAction(
    driverActionBase64({ image: imageXml({ cloningId: 4 }), extra: sourceBridgeListXml("b1 b2") }),
  );
  assert.deepEqual(clone.sourceBridgeList, ["b1", "b2"]);
  assert.equal(clone.cloningId, 4);
  const monitor = parseDriverAction(driverActionBase64({ datastore: datastoreXml({ id: 100 }) }));
  assert.equal(monitor.image, undefined);
  assert.equal(monitor.imagePath, "");
  assert.equal(monitor.dsType, 1);
});

Deno.test("`parseDriverAction()` accepts base64 with newlines, spaces and no padding", () => {
  const xml = driverActionXml({ image: imageXml({ id: 5 }) });
  const b64 = encodeBase64Text(xml);
  const wrapped = b64.replace(/.{60}/g, "$&\n") + "\n";
  assert.equal(parseDriverAction(wrapped).imageId, 5);
  assert.equal(parseDriverAction(`  ${b64.replace(/.{76}/g, "$&\r\n")}  `).imageId, 5);
  const unpadded = encodeBase64Text(xml + " ").replace(/=+$/, "");
  assert.equal(parseDriverAction(unpadded).imageId, 5);
});

Deno.test("`parseDriverAction()` refuses bad base64, bad XML and a wrong root with one line", () => {
  const cases: [string, RegExp][] = [
    ["", /^No DS_DRIVER_ACTION_DATA on standard input$/],
    ["  \n", /^No DS_DRIVER_ACTION_DATA on standard input$/],
    ["not base64!", /^DS_DRIVER_ACTION_DATA is not valid base64$/],
    ["QUJD=A", /^DS_DRIVER_ACTION_DATA is not valid base64$/],
    ["A", /^DS_DRIVER_ACTION_DATA is not valid base64$/],
    [
      encodeBase64Text("<DS_DRIVER_ACTION_DATA><IMAGE>"),
      /^DS_DRIVER_ACTION_DATA is not valid XML: Malformed XML/,
    ],
    [
      encodeBase64Text("<VM><ID>1</ID></VM>"),
      /^DS_DRIVER_ACTION_DATA has root <VM>, expected <DS_DRIVER_ACTION_DATA>$/,
    ],
  ];
  for (const [input, message] of cases) {
    assert.throws(() => parseDriverAction(input), (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(e.message, message);
      assert.ok(!e.message.includes("\n"));
      return true;
    }, JSON.stringify(input));
  }
});

Deno.test("`encodeDriverAction()` builds what oned sends and round-trips UTF-8", () => {
  const image = imageXml({ name: "déjà vu ✓", path: "/var/tmp/ü.img" });
  const datastore = datastoreXml();
  const b64 = encodeDriverAction({ image, datastore });
  assert.doesNotMatch(b64, /\s/);
  assert.equal(decodeBase64Text(b64, "x"), buildDriverActionXml({ image, datastore }));
  const action = parseDriverAction(b64);
  assert.equal(action.get("IMAGE/NAME"), "déjà vu ✓");
  assert.equal(action.imagePath, "/var/tmp/ü.img");
});

Deno.test("`parseBase64Xml()` decodes the base64 VM XML premigrate gets", () => {
  const root = parseBase64Xml(encodeBase64Text("<VM><ID>3</ID></VM>"), "VM", "VM XML");
  assert.equal(root.children[0].text, "3");
  assert.throws(() => parseBase64Xml("", "VM", "VM XML"), /^InputError: No VM XML on standard input$/);
});

Deno.test("`readDriverAction()` reads base64 from a stream", async () => {
  const b64 = driverActionBase64({ image: imageXml({ id: 9 }) }) + "\n";
  const stream = new Blob([b64]).stream();
  const action = await readDriverAction(stream);
  assert.equal(action.imageId, 9);
});

Deno.test("`readDriverAction()` reads standard input of a real process", async () => {
  const b64 = driverActionBase64({ image: imageXml({ id: 21 }) });
  const script = `import { readDriverAction } from ${
    JSON.stringify(new URL("../../core/one/driver_action.ts", import.meta.url).href)
  };
const a = await readDriverAction(); console.log(a.imageId, a.dsBasePath);`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", script],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(b64.replace(/.{76}/g, "$&\n") + "\n"));
  await writer.close();
  const out = await child.output();
  assert.equal(new TextDecoder().decode(out.stderr), "");
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "21 /var/lib/one//datastores/1");
});
