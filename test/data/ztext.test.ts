import assert from "node:assert/strict";
import { test } from "node:test";
import { DataError } from "../../src/core/errors.js";
import { osisChapters } from "../../src/data/osis.js";
import { parseSwordConf, readVerseIndex, ZTextTestament } from "../../src/data/ztext.js";
import { buildTestament } from "./fixtures.js";

const SLOTS = [
  [
    "",
    '<milestone type="x-importer"/>',
    '<div type="book" osisID="Gen" sID="b1"/><title type="main">The First Book</title>',
    '<chapter n="1" osisID="Gen.1" sID="Gen.1"/><title type="section">A heading</title>',
    '<w lemma="strong:H7225" morph="x">In</w> <w lemma="strong:H0430">the beginning</w>,<note placement="foot"><reference>1:1</reference>A note about <w>words</w>.</note> God made “light”. ',
  ],
  [
    '<div type="x-p" sID="p2"/>¶ It was <transChange type="added">good</transChange> &amp; <divineName>Lord</divineName>.<chapter eID="Gen.1"/>',
    '<chapter n="2" osisID="Gen.2" sID="Gen.2"/><title canonical="true" type="psalm">A song.</title>',
    '<l level="1">Line one,</l><l level="2">line two</l><note>dropped<note>nested</note>still dropped</note>. <chapter eID="Gen.2"/>',
    '<div type="glossary"/>Not in any chapter.',
  ],
];

test("zText indexes and blocks: every slot reads back as written", () => {
  const { bzs, bzv, bzz } = buildTestament(SLOTS);
  const t = new ZTextTestament(bzs, bzv, bzz, "test");
  assert.deepEqual([...t.entries()], SLOTS.flat());
  assert.equal(readVerseIndex(bzv, "test")[5]!.block, 1);
});

test("zText: corrupt indexes raise DataError", () => {
  const { bzs, bzv, bzz } = buildTestament(SLOTS);
  assert.throws(() => new ZTextTestament(bzs.subarray(0, 11), bzv, bzz, "m"), DataError);
  const badSize = Buffer.from(bzs);
  badSize.writeUInt32LE(999, 8); // raw size of block 0
  assert.throws(
    () => new ZTextTestament(badSize, bzv, bzz, "m").entry(4),
    /inflated to \d+ bytes, index says 999/,
  );
});

test("OSIS to prose: chapters from milestones, notes/headings/Strong's dropped, paragraphs kept", () => {
  const { bzs, bzv, bzz } = buildTestament(SLOTS);
  const chapters = osisChapters(new ZTextTestament(bzs, bzv, bzz, "test").entries());
  assert.deepEqual(chapters, [
    { osisID: "Gen.1", text: "In the beginning, God made “light”.\n\nIt was good & Lord." },
    { osisID: "Gen.2", text: "A song.\n\nLine one, line two." },
  ]);
});

test("SWORD .conf: section name and repeated keys", () => {
  const conf = parseSwordConf(
    "# c\n[engX]\nModDrv=zText\nGlobalOptionFilter=A\nGlobalOptionFilter=B\n",
    "x.conf",
  );
  assert.equal(conf.module, "engX");
  assert.deepEqual(conf.values.get("GlobalOptionFilter"), ["A", "B"]);
  assert.throws(() => parseSwordConf("ModDrv=zText\n", "x.conf"), DataError);
});
