import assert from "node:assert/strict";
import { test } from "node:test";
import { isValidation, splitPosition } from "../../src/data/split.js";

test("split position is SHA-256 based, in [0, 1) and stable", () => {
  // SHA-256("a") = ca978112ca1b...; first 48 bits / 2^48.
  assert.equal(splitPosition("a"), 0xca978112ca1b / 2 ** 48);
  assert.equal(splitPosition("brown/ca01"), splitPosition("brown/ca01"));
});

test("fraction respected roughly; same id always on the same side; monotone in the fraction", () => {
  const ids = Array.from({ length: 20000 }, (_, i) => `src/${i}`);
  for (const f of [0, 0.02, 0.1, 0.5, 1]) {
    const n = ids.filter((id) => isValidation(id, f)).length;
    assert.ok(Math.abs(n / ids.length - f) < 0.01, `fraction ${f}: got ${n / ids.length}`);
  }
  for (const id of ids.slice(0, 500)) {
    assert.equal(isValidation(id, 0.1), isValidation(id, 0.1));
    if (isValidation(id, 0.02)) assert.ok(isValidation(id, 0.1));
  }
});
