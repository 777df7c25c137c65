import assert from "node:assert/strict";
import { test } from "node:test";
import { GlassboxError, SafetensorsError } from "../src/core/errors.js";

test("errors name their subject", () => {
  const e = new SafetensorsError("header length 99 past end of file (10 bytes)", "x.safetensors");
  assert.ok(e instanceof GlassboxError);
  assert.equal(e.name, "SafetensorsError");
  assert.equal(e.message, "x.safetensors: header length 99 past end of file (10 bytes)");
  assert.equal(e.subject, "x.safetensors");
});
