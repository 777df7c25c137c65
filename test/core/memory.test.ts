// Memory ownership: storage is GC-owned typed arrays, backends keep no per-tensor state and the tape
// is dropped when grad returns, so repeated forward+grad must not grow the heap or ArrayBuffers.
import assert from "node:assert/strict";
import { test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { valueAndGrad } from "../../src/core/autograd.js";
import * as ops from "../../src/core/ops/index.js";
import type { Tensor } from "../../src/core/tensor.js";
import { randn } from "./helpers.js";

const gc = (globalThis as { gc?: () => void }).gc;

function footprint(): number {
  for (let i = 0; i < 3; i++) gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

for (const B of availableBackends()) {
  test(`forward + grad in a loop does not leak (${B.name})`, {
    skip: gc ? false : "run node with --expose-gc",
  }, (t) => {
    // A two-layer MLP with RMSNorm and a softmax cross-entropy-like loss: ~1.3 MB of parameters.
    const d = 128;
    const hidden = 512;
    const params = {
      w1: randn(B, [hidden, d], 1, 0.05),
      w2: randn(B, [d, hidden], 2, 0.05),
      norm: randn(B, [d], 3, 0.1),
    };
    const x = randn(B, [32, d], 4);
    const step = valueAndGrad((p: typeof params, input: Tensor) => {
      const h = ops.geluTanh(
        ops.matmul(ops.rmsnorm(input, p.norm, { weightOffset: 1 }), p.w1, { transB: true }),
      );
      const y = ops.matmul(h, p.w2, { transB: true });
      return ops.mean(ops.neg(ops.logSoftmax(ops.add(y, input))));
    });
    let last = 0;
    for (let i = 0; i < 5; i++) last = step(params, x).value.item();
    const start = footprint();
    let peak = start;
    const iterations = 150;
    for (let i = 0; i < iterations; i++) {
      const { value, grads } = step(params, x);
      last = value.item() + grads.w1.size * 0;
      if (i % 25 === 24) peak = Math.max(peak, footprint());
    }
    const end = footprint();
    assert.ok(Number.isFinite(last));
    // Each iteration allocates ~6 MB of temporaries; a leak of even one activation per step
    // (32 x 512 floats = 64 KB) would exceed the bound over 150 steps.
    const bound = 4 * 1024 * 1024;
    const grew = end - start;
    t.diagnostic(
      `${B.name}: heap+arrayBuffers ${(grew / 1e6).toFixed(2)} MB after ${iterations} steps, peak +${((peak - start) / 1e6).toFixed(2)} MB`,
    );
    assert.ok(
      grew < bound,
      `grew by ${(grew / 1e6).toFixed(2)} MB over ${iterations} steps (peak +${((peak - start) / 1e6).toFixed(2)} MB)`,
    );
  });
}
