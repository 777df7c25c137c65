import assert from "node:assert/strict";
import { test } from "node:test";
import { detagBrown, stripTag } from "../../src/data/brown.js";

test("stripTag keeps slashes inside the word", () => {
  assert.equal(stripTag("Atlanta's/np$"), "Atlanta's");
  assert.equal(stripTag("1/2/cd"), "1/2");
  assert.equal(stripTag("//in"), "/");
});

test("detagBrown: tags gone, punctuation and quotes re-spaced, paragraphs kept", () => {
  const file = [
    "",
    "",
    "Biological/jj-hl warfare/nn-hl ",
    "Biological/jj warfare/nn is/bez old/jj ./.",
    "\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, and/cc it/pps left/vbd ./.",
    "He/pps didn't/dod* (/( really/rb )/) care/vb ;/. ;/.",
    "it/pps cost/vbd $/$ 700/cd at/in 20/cd min./nn ./.",
    "",
    "",
    "\t``/`` Right/rb ''/'' ,/, said/vbd the/at man/nn ./. He/pps sang/vbd '/' la/uh '/' ?/.",
  ].join("\n");
  assert.equal(
    detagBrown(file),
    "Biological warfare\n\nBiological warfare is old.\n\n" +
      'The jury said "no evidence," and it left. He didn\'t (really) care; it cost $700 at 20 min.\n\n' +
      "\"Right,\" said the man. He sang 'la'?",
  );
});
