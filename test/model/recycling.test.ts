/**
 * The forward pass hands intermediates back to the backend for reuse (`Backend.recycle`) as soon as
 * their last reader has run. Property: nothing handed back is still in use, so every capture and
 * the logits equal the reference backend's (which recycles nothing), also where a permute or
 * reshape shares storage (one token, one head). Under the test runner every reused output is
 * first filled with NaN, so a buffer freed too early shows as NaN or a wrong value here.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import type { Tensor } from "../../src/core/tensor.js";
import { sites } from "../../src/model/gemma3/sites.js";
import { maxAbsDiff, tinyModel } from "./helpers.js";

const reference = availableBackends().find((b) => b.name === "reference");
assert.ok(reference, "reference backend");

function maxAbs(t: Tensor): number {
  return t.toFloat32Array().reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

for (const backend of availableBackends().filter((b) => b.recycle !== undefined)) {
  describe(`recycled intermediates are never still in use (${backend.name})`, () => {
    const cases = [
      { what: "one token per row", heads: 4, kv: 2, ids: [[5], [9], [17]] },
      { what: "one head", heads: 1, kv: 1, ids: [[5, 9, 17, 3, 8]] },
      { what: "one key head, many tokens", heads: 2, kv: 1, ids: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]] },
    ];
    for (const c of cases) {
      test(c.what, () => {
        const overrides = { num_attention_heads: c.heads, num_key_value_heads: c.kv };
        const got = tinyModel(backend, overrides);
        const want = tinyModel(reference, overrides);
        // Only some sites captured, so that the rest of the pass recycles.
        const capture = [sites.z(0), sites.q(1), sites.mlpHidden(2), sites.residPost(2)];
        const a = got.forward(c.ids, { capture });
        const b = want.forward(c.ids, { capture });
        for (const site of capture) {
          const x = a.activations.get(site);
          const y = b.activations.get(site);
          assert.ok(maxAbsDiff(x, y) <= 1e-5 * maxAbs(y), `${site.name}: ${maxAbsDiff(x, y)}`);
        }
        assert.ok(maxAbsDiff(a.logits, b.logits) <= 1e-5 * maxAbs(b.logits), "logits");
        // And with nothing captured at all.
        const bare = got.forward(c.ids).logits;
        assert.ok(maxAbsDiff(bare, b.logits) <= 1e-5 * maxAbs(b.logits), "logits, no capture");
      });
    }
  });
}
