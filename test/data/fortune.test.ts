import assert from "node:assert/strict";
import { test } from "node:test";
import { DataError } from "../../src/core/errors.js";
import { chunkEntries, readStrfileHeader, splitFortunes } from "../../src/data/fortune.js";
import { parseJargon } from "../../src/data/jargon.js";
import { isProse } from "../../src/data/sources/fortunes.js";

function strfile(flags: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32BE(2, 0);
  b.writeUInt32BE(3, 4);
  b.writeUInt32BE(flags, 16);
  b.write("%", 20);
  return b;
}

test("strfile header: count, rot13 flag, delimiter", () => {
  assert.deepEqual(readStrfileHeader(strfile(0), "x"), {
    version: 2,
    count: 3,
    rotated: false,
    delimiter: "%",
  });
  assert.equal(readStrfileHeader(strfile(0x4), "x").rotated, true);
  assert.throws(() => readStrfileHeader(Buffer.alloc(4), "x.dat"), DataError);
});

test("fortunes split on % lines and chunk in order", () => {
  const entries = splitFortunes("One.\n\t-- A\n%\n%\nTwo\nlines.\n%\nThree.\n");
  assert.deepEqual(entries, ["One.\n\t-- A", "Two\nlines.", "Three.\n"]);
  assert.deepEqual(chunkEntries(entries, 13), ["One.\n\t-- A\n\nTwo\nlines.", "Three."]);
  assert.equal(isProse("A plain\nfortune.  Two spaces."), true);
  assert.equal(isProse("  /\\_/\\\n ( o.o )\n  > ^ <"), false);
  assert.equal(isProse("left col     right col\nmore left    more right"), false);
});

test("jargon: entries as prose, letter indexes and front matter dropped", () => {
  const file = [
    "   Front matter paragraph.",
    "   A",
    "",
    "   :abbrev: /*-breev'/, n.",
    "",
    "   Common abbreviation for",
    "   {abbreviation}.",
    "",
    "   B",
    "",
    "   back door",
    "",
    "   :(TM): //",
    "",
    "   [Usenet] The mark.",
    "",
    "                             Part III. Appendices",
    "   :after: appendix",
  ].join("\n");
  assert.deepEqual(
    parseJargon(file).map((e) => e.text),
    ["abbrev: /*-breev'/, n.\n\nCommon abbreviation for abbreviation.", "(TM)\n\n[Usenet] The mark."],
  );
});
