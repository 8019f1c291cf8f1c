import assert from "node:assert/strict";
import { InputError } from "../../core/errors.ts";
import {
  childText,
  escapeXml,
  parseXml,
  XmlParseError,
  xpathAll,
  xpathNodes,
  xpathText,
} from "../../core/one/xml.ts";
import { imageDisk, vmXml, volatileDisk } from "../support/fixtures.ts";

// `onevm show -x` style: indented, CDATA values, comments and a declaration.
const PRETTY = `<?xml version="1.0" encoding="UTF-8"?>
<!-- dumped by onevm show -x -->
<VM>
  <ID>7</ID>
  <NAME>web &amp; db</NAME>
  <TEMPLATE>
    <DISK>
      <DISK_ID><![CDATA[0]]></DISK_ID>
      <SIZE><![CDATA[2048]]></SIZE>
    </DISK>
    <DISK>
      <DISK_ID><![CDATA[1]]></DISK_ID>
      <SIZE><![CDATA[512]]></SIZE>
      <TYPE><![CDATA[swap]]></TYPE>
    </DISK>
  </TEMPLATE>
  <HISTORY_RECORDS>
    <HISTORY><SEQ>0</SEQ><DS_ID>100</DS_ID><HOSTNAME>host1</HOSTNAME></HISTORY>
    <HISTORY><SEQ>1</SEQ><DS_ID>101</DS_ID><HOSTNAME>host2</HOSTNAME></HISTORY>
    <HISTORY><SEQ>2</SEQ><DS_ID>102</DS_ID><HOSTNAME>host3</HOSTNAME></HISTORY>
  </HISTORY_RECORDS>
</VM>
`;

Deno.test("`parseXml()` builds the element tree and drops indentation", () => {
  const vm = parseXml(PRETTY);
  assert.equal(vm.name, "VM");
  assert.deepEqual(vm.children.map((c) => c.name), ["ID", "NAME", "TEMPLATE", "HISTORY_RECORDS"]);
  assert.equal(childText(vm, "ID"), "7");
  assert.equal(vm.text, "");
  assert.equal(vm.children[2].children.length, 2);
});

Deno.test("`parseXml()` decodes named and numeric entities", () => {
  const el = parseXml("<A>&lt;b&gt; &amp; &quot;c&quot; &apos;d&apos; &#65;&#x42;&#x1F600; &#x0d;</A>");
  assert.equal(el.text, `<b> & "c" 'd' AB\u{1F600} \r`);
});

Deno.test("`parseXml()` keeps CDATA verbatim, including ']]' and entity-like text", () => {
  const el = parseXml("<A><![CDATA[a]]b ]] &amp; <x> ]]]></A>");
  assert.equal(el.text, "a]]b ]] &amp; <x> ]");
  // oned never splits "]]>" but a well-formed producer does; both halves join.
  assert.equal(parseXml("<A><![CDATA[x]]]]><![CDATA[>y]]></A>").text, "x]]>y");
});

Deno.test("`parseXml()` accepts ']]>' and '>' in plain text, as xmlrpc-c sends escaped XML", () => {
  assert.equal(parseXml("<string>&lt;S&gt;&lt;![CDATA[1]]>&lt;/S></string>").text, "<S><![CDATA[1]]></S>");
});

Deno.test("`parseXml()` joins text and CDATA pieces", () => {
  assert.equal(parseXml("<A>a<![CDATA[<b>]]>c&amp;</A>").text, "a<b>c&");
});

Deno.test("`parseXml()` keeps attributes with either quote", () => {
  const el = parseXml(`<A x="1" y = 'two &amp; "3"'><B z="&lt;"/></A>`);
  assert.deepEqual({ ...el.attrs }, { x: "1", y: 'two & "3"' });
  assert.deepEqual({ ...el.children[0].attrs }, { z: "<" });
});

Deno.test("`parseXml()` handles self-closing elements and empty documents inside", () => {
  const el = parseXml("<VM><HISTORY_RECORDS/><SCHED_ACTIONS></SCHED_ACTIONS><X /></VM>");
  assert.deepEqual(el.children.map((c) => [c.name, c.text, c.children.length]), [
    ["HISTORY_RECORDS", "", 0],
    ["SCHED_ACTIONS", "", 0],
    ["X", "", 0],
  ]);
  assert.equal(parseXml("<A/>").name, "A");
});

Deno.test("`parseXml()` keeps whitespace of leaf values", () => {
  assert.equal(parseXml("<A>  spaced  </A>").text, "  spaced  ");
  assert.equal(parseXml("<A><![CDATA[ ]]></A>").text, " ");
});

Deno.test("`parseXml()` skips a BOM, comments and processing instructions", () => {
  const el = parseXml("\uFEFF<?xml version='1.0'?><!DOCTYPE VM><A><!-- c --><?pi x?>t</A><!-- end -->\n");
  assert.equal(el.text, "t");
});

Deno.test("`parseXml()` rejects malformed documents with a position", () => {
  const bad: [string, RegExp][] = [
    ["", /no root element/],
    ["<A>", /end of document inside <A>/],
    ["<A></B>", /<\/B> does not match <A>/],
    ["<A>x</A><B/>", /more than one root/],
    ["text<A/>", /text outside the root/],
    ["<A>&nbsp;</A>", /unknown entity '&nbsp;'/],
    ["<A>a & b</A>", /'&' that does not start an entity/],
    ["<A><![CDATA[x</A>", /unterminated CDATA/],
    ["<A x=1/>", /quoted value/],
    ['<A x="1" x="2"/>', /duplicate attribute x/],
    ["<A><!-- x </A>", /unterminated comment/],
    ['<!DOCTYPE A [<!ENTITY e "x">]><A/>', /internal subset/],
    ["<A>&#0;</A>", /unknown entity/],
    ["<A>\n  < B/></A>", /line 2, column 3/],
  ];
  for (const [input, message] of bad) {
    assert.throws(() => parseXml(input), (e: unknown) => {
      assert.ok(e instanceof XmlParseError, `${input}: ${e}`);
      assert.ok(e instanceof InputError);
      assert.match(e.message, /^Malformed XML at line \d+, column \d+: /);
      assert.match(e.message, message, input);
      return true;
    });
  }
});

Deno.test("`xpathText()` reads a disk attribute by DISK_ID predicate", () => {
  const vm = parseXml(PRETTY);
  assert.equal(xpathText(vm, "/VM/TEMPLATE/DISK[DISK_ID=1]/SIZE"), "512");
  assert.equal(xpathText(vm, "/VM/TEMPLATE/DISK[DISK_ID=0]/SIZE"), "2048");
  assert.equal(xpathText(vm, '/VM/TEMPLATE/DISK[DISK_ID="1"]/TYPE'), "swap");
  assert.equal(xpathText(vm, "/VM/TEMPLATE/DISK[DISK_ID='1']/TYPE"), "swap");
  assert.equal(xpathText(vm, "/VM/TEMPLATE/DISK[DISK_ID=01]/TYPE"), "swap", "numbers compare numerically");
  assert.equal(xpathText(vm, '/VM/TEMPLATE/DISK[DISK_ID="01"]/TYPE'), "", "strings compare exactly");
});

Deno.test("`xpathText()` returns an empty string for anything missing", () => {
  const vm = parseXml(PRETTY);
  for (
    const path of [
      "/VM/TEMPLATE/DISK[DISK_ID=5]/SIZE",
      "/VM/TEMPLATE/DISK[DISK_ID=kernel]/SIZE",
      "/VM/TEMPLATE/DISK[DISK_ID=0]/TYPE",
      "/VM/USER_TEMPLATE/X",
      "/HOST/NAME",
      "/VM/HISTORY_RECORDS/HISTORY[last()-3]/DS_ID",
      "/VM/HISTORY_RECORDS/HISTORY[9]/DS_ID",
    ]
  ) {
    assert.equal(xpathText(vm, path), "", path);
  }
});

Deno.test("`xpathText()` supports last(), last()-1 and positions", () => {
  const vm = parseXml(PRETTY);
  assert.equal(xpathText(vm, "/VM/HISTORY_RECORDS/HISTORY[last()]/DS_ID"), "102");
  assert.equal(xpathText(vm, "/VM/HISTORY_RECORDS/HISTORY[last()-1]/DS_ID"), "101");
  assert.equal(xpathText(vm, "/VM/HISTORY_RECORDS/HISTORY[last() - 2]/HOSTNAME"), "host1");
  assert.equal(xpathText(vm, "/VM/HISTORY_RECORDS/HISTORY[1]/HOSTNAME"), "host1");
  assert.equal(xpathText(vm, "/VM/HISTORY_RECORDS/HISTORY[2]/HOSTNAME"), "host2");
  assert.equal(xpathText(vm, "/VM/HISTORY_RECORDS/HISTORY[DS_ID=101][1]/SEQ"), "1");
  assert.equal(xpathText(vm, "/VM/HISTORY_RECORDS/HISTORY[SEQ!=0][last()]/SEQ"), "2");
});

Deno.test("`xpathAll()` returns every match, for %m% style reads", () => {
  const vm = parseXml(PRETTY);
  assert.deepEqual(xpathAll(vm, "/VM/TEMPLATE/DISK/DISK_ID"), ["0", "1"]);
  assert.deepEqual(xpathAll(vm, "/VM/HISTORY_RECORDS/HISTORY/HOSTNAME"), ["host1", "host2", "host3"]);
  assert.deepEqual(xpathAll(vm, "/VM/NOPE/X"), []);
  assert.deepEqual(xpathAll(vm, "/VM/*/DISK/SIZE"), ["2048", "512"]);
});

Deno.test("`xpathNodes()` evaluates relative paths and attribute predicates", () => {
  const doc = parseXml(`<R><E k="a"><V>1</V></E><E k="b"><V>2</V></E><E><V>3</V></E></R>`);
  assert.deepEqual(xpathNodes(doc, "E[@k]").map((e) => e.attrs.k), ["a", "b"]);
  assert.equal(xpathText(doc, 'E[@k="b"]/V'), "2");
  assert.equal(xpathText(doc, "/R/E[last()]/V"), "3");
  assert.equal(xpathNodes(doc, "/R").length, 1);
  assert.equal(xpathNodes(doc, "/X").length, 0);
});

Deno.test("`xpathText()` matches quoted values holding '/' and ']'", () => {
  const doc = parseXml("<R><D><S>/var//lib]x</S><N>1</N></D></R>");
  assert.equal(xpathText(doc, '/R/D[S="/var//lib]x"]/N'), "1");
});

Deno.test("`xpathNodes()` positional predicates count per parent", () => {
  const doc = parseXml("<R><P><C>a</C><C>b</C></P><P><C>c</C></P></R>");
  assert.deepEqual(xpathAll(doc, "/R/P/C[1]"), ["a", "c"]);
  assert.deepEqual(xpathAll(doc, "/R/P/C[last()]"), ["b", "c"]);
});

Deno.test("`xpathNodes()` refuses XPath outside the subset", () => {
  const doc = parseXml("<R/>");
  for (const path of ["//R", "/R//C", "/R/C[", "/R/C[position()<2]", "/R/", "/", "/R/../R", "/R/text()"]) {
    assert.throws(() => xpathNodes(doc, path), TypeError, path);
  }
});

Deno.test("`xpathText()` reads nested DISKs of a fixture VM", () => {
  const vm = parseXml(vmXml({
    id: 3,
    disks: [imageDisk({ DISK_ID: 0, SIZE: 4096 }), volatileDisk({ DISK_ID: 2, TYPE: "swap" })],
    history: [{ dsId: 100 }, { dsId: 101, hostname: "host2" }],
  }));
  assert.equal(xpathText(vm, "/VM/TEMPLATE/DISK[DISK_ID=0]/SIZE"), "4096");
  assert.equal(xpathText(vm, "/VM/TEMPLATE/DISK[DISK_ID=0]/ORIGINAL_SIZE"), "256");
  assert.equal(xpathText(vm, "/VM/TEMPLATE/DISK[DISK_ID=2]/TYPE"), "swap");
  assert.equal(xpathText(vm, "/VM/TEMPLATE/CONTEXT/DISK_ID"), "3");
  assert.equal(xpathText(vm, "/VM/HISTORY_RECORDS/HISTORY[last()]/DS_ID"), "101");
  assert.equal(xpathText(vm, "/VM/HISTORY_RECORDS/HISTORY[last()-1]/DS_ID"), "100");
  assert.equal(xpathText(vm, "/VM/HISTORY_RECORDS/HISTORY[last()]/VM_MAD"), "kvm");
});

Deno.test("`escapeXml()` escapes the five special characters and round-trips", () => {
  const raw = `a<b>&"c"'d'`;
  assert.equal(escapeXml(raw), "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;");
  assert.equal(parseXml(`<A v="${escapeXml(raw)}">${escapeXml(raw)}</A>`).text, raw);
  assert.equal(parseXml(`<A v="${escapeXml(raw)}"/>`).attrs.v, raw);
});

Deno.test("`parseXml()` handles a large pool quickly", () => {
  const hosts = Array.from({ length: 2000 }, (_, i) => `<HOST><ID>${i}</ID><NAME>h${i}</NAME></HOST>`);
  const start = performance.now();
  const pool = parseXml(`<HOST_POOL>${hosts.join("")}</HOST_POOL>`);
  assert.equal(pool.children.length, 2000);
  assert.equal(xpathText(pool, "/HOST_POOL/HOST[NAME=h1999]/ID"), "1999");
  assert.ok(performance.now() - start < 1000);
});
