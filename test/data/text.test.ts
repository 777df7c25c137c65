import assert from "node:assert/strict";
import { test } from "node:test";
import {
  countCharacters,
  countWords,
  normalizeText,
  splitChapters,
  stripGutenberg,
  stripUnderscoreItalics,
  unwrap,
} from "../../src/data/text.js";

test("unwrap joins the lines of a paragraph, keeps paragraph breaks and indented verse", () => {
  const text = [
    "It is a truth universally acknowledged, that a single man in",
    "possession of a good fortune, must be in want of a wife.",
    "",
    "",
    "His name was Richard--",
    "and he was twenty-",
    "one years old.",
    "",
    "     Oh, the rare old Whale,",
    "     In his ocean home will be",
    "",
    "Last.",
  ].join("\r\n");
  assert.equal(
    unwrap(text, 0),
    [
      "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
      "His name was Richard--and he was twenty-one years old.",
      "Oh, the rare old Whale,\nIn his ocean home will be",
      "Last.",
    ].join("\n\n"),
  );
});

test("unwrap's default base indent is the text's most common one", () => {
  const text = "   one\n   two\n\n      code line\n      code line 2\n\n   three";
  assert.equal(unwrap(text), "one two\n\ncode line\ncode line 2\n\nthree");
});

test("Gutenberg header and footer are dropped", () => {
  const book = [
    "The Project Gutenberg EBook of X",
    "licence text",
    "*** START OF THIS PROJECT GUTENBERG EBOOK X ***",
    "Body line.",
    "End of Project Gutenberg's X",
    "*** END OF THIS PROJECT GUTENBERG EBOOK X ***",
    "more licence",
  ].join("\n");
  assert.equal(stripGutenberg(book), "Body line.");
  assert.equal(stripGutenberg("no markers\nhere"), "no markers\nhere");
});

test("chapters: front matter, volume headings and end matter dropped", () => {
  const book =
    "TITLE\n\nVOLUME I\n\nCHAPTER I\n\nOne.\n\nVOLUME II\n\nCHAPTER II\n\nTwo.\n\nTHE END\n\nNote.";
  const ch = splitChapters(book, { heading: /^CHAPTER [IVX]+$/, end: /^THE END$/, drop: /^VOLUME [IVX]+$/ });
  assert.deepEqual(
    ch.map((c) => [c.heading, c.body.trim()]),
    [
      ["CHAPTER I", "One."],
      ["CHAPTER II", "Two."],
    ],
  );
});

test("normalizeText: NFC, CRLF, controls, overstrike, spaces, blank lines", () => {
  const bs = String.fromCharCode(8);
  const input = `\uFEFF  Cafe\u0301\tau  lait \r\n\r\n\r\n\r\nB${bs}Bold\u0007 x\u00ADy  \n`;
  assert.equal(normalizeText(input), "Café au lait\n\nBold xy");
  assert.equal(stripUnderscoreItalics("It was _them_ and not_this_one."), "It was them and not_this_one.");
});

test("counts: words by whitespace, characters by code point", () => {
  assert.equal(countWords("  a b\n\nc  "), 3);
  assert.equal(countWords(""), 0);
  assert.equal(countCharacters("é😀"), 2);
});
