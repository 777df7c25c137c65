// The training kernels (sparseDot, kthLargest, adamUpdate) on every backend against float64 loops
// written here, including edge cases (empty rows, ties, no positives, NaN, a bad index).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { Rng } from "../../src/core/random.js";

const rand = (rng: Rng, n: number) => Float32Array.from({ length: n }, () => rng.normal());

for (const backend of availableBackends()) {
  describe(`training kernels (${backend.name})`, () => {
    test("sparseDot: one dot product per stored entry, column block of a wider w", () => {
      const rng = new Rng(1);
      const rows = 37;
      const n = 45;
      const stride = 60;
      const wRows = 23;
      const a = rand(rng, rows * n);
      const wFull = rand(rng, wRows * stride);
      const w = wFull.subarray(7);
      const offsets = new Int32Array(rows + 1);
      const idx: number[] = [];
      for (let r = 0; r < rows; r++) {
        const k = r % 5 === 0 ? 0 : rng.int(6);
        for (let j = 0; j < k; j++) idx.push(rng.int(wRows));
        offsets[r + 1] = idx.length;
      }
      const indices = Int32Array.from(idx);
      const out = new Float32Array(idx.length).fill(Number.NaN);
      backend.sparseDot(offsets, indices, a, w, out, { rows, n, wRows, wRowStride: stride });
      for (let r = 0; r < rows; r++) {
        for (let j = offsets[r]; j < offsets[r + 1]; j++) {
          let s = 0;
          for (let c = 0; c < n; c++) s += a[r * n + c] * wFull[7 + indices[j] * stride + c];
          assert.ok(Math.abs(out[j] - s) <= 1e-5 * (1 + Math.abs(s)), `entry ${j}: ${out[j]} vs ${s}`);
        }
      }
      indices[3] = wRows;
      assert.throws(
        () => backend.sparseDot(offsets, indices, a, w, out, { rows, n, wRows, wRowStride: stride }),
        /out of range/,
      );
    });

    test("kthLargest: k-th largest positive value, repeats counted, NaN and non-positives ignored", () => {
      const rng = new Rng(2);
      for (const n of [1, 10, 1000, 200_003]) {
        const x = Float32Array.from({ length: n }, (_, i) =>
          i % 11 === 0 ? Number.NaN : i % 7 === 0 ? 0.5 : rng.normal() * (i % 3 === 0 ? 1e-30 : 10),
        );
        const pos = Array.from(x)
          .filter((v) => v > 0)
          .sort((p, q) => q - p);
        for (const k of [1, 2, 3, Math.ceil(pos.length / 2), pos.length, pos.length + 5]) {
          if (k < 1) continue;
          const want = pos.length === 0 ? 0 : pos[Math.min(k, pos.length) - 1];
          assert.equal(backend.kthLargest(x, n, k), want, `n=${n} k=${k}`);
        }
      }
      assert.equal(backend.kthLargest(new Float32Array([-1, 0, Number.NaN]), 3, 1), 0);
      assert.equal(backend.kthLargest(new Float32Array([3, 1, 2, 9]), 3, 1), 3, "only the first n count");
      assert.equal(backend.kthLargest(new Float32Array([Infinity, 2]), 2, 1), Infinity);
      assert.throws(() => backend.kthLargest(new Float32Array(2), 2, 0));
    });

    for (const beta1 of [0, 0.9]) {
      test(`adamUpdate (beta1 = ${beta1}): moments and update in place`, () => {
        const rng = new Rng(3);
        const n = 100_001;
        const w = rand(rng, n);
        const g = rand(rng, n);
        const m = beta1 === 0 ? null : rand(rng, n);
        const v = Float32Array.from(rand(rng, n), (x) => x * x);
        const args = { beta1, beta2: 0.999, eps: 1e-8, stepSize: 0.01, vScale: 1.3 };
        const w0 = w.slice();
        const m0 = m?.slice();
        const v0 = v.slice();
        backend.adamUpdate(w, g, m, v, args);
        for (let i = 0; i < n; i++) {
          const mi = m0 === undefined ? g[i] : beta1 * m0[i] + (1 - beta1) * g[i];
          const vi = 0.999 * v0[i] + 0.001 * g[i] * g[i];
          const wi = w0[i] - (0.01 * mi) / (Math.sqrt(vi) * 1.3 + 1e-8);
          assert.ok(Math.abs(v[i] - vi) <= 1e-6 * vi, `v[${i}]`);
          if (m !== null) assert.ok(Math.abs(m[i] - mi) <= 1e-6 * (1 + Math.abs(mi)), `m[${i}]`);
          assert.ok(Math.abs(w[i] - wi) <= 1e-6 * (1 + Math.abs(wi)), `w[${i}]: ${w[i]} vs ${wi}`);
        }
      });
    }
  });
}

for (const backend of availableBackends()) {
  test(`projectOutRows and normalizeRows (${backend.name})`, () => {
    const rng = new Rng(5);
    const rows = 300;
    const cols = 37;
    const w = rand(rng, rows * cols);
    w.fill(0, 5 * cols, 6 * cols);
    backend.normalizeRows(w, rows, cols);
    for (let i = 0; i < rows; i++) {
      let n = 0;
      for (let c = 0; c < cols; c++) n += w[i * cols + c] ** 2;
      assert.ok(i === 5 ? n === 0 : Math.abs(n - 1) < 1e-5, `row ${i} norm^2 ${n}`);
    }
    const g = rand(rng, rows * cols);
    const g0 = g.slice();
    backend.projectOutRows(w, g, rows, cols);
    for (let i = 0; i < rows; i++) {
      let dot0 = 0;
      let dot = 0;
      for (let c = 0; c < cols; c++) {
        dot0 += g0[i * cols + c] * w[i * cols + c];
        dot += g[i * cols + c] * w[i * cols + c];
      }
      assert.ok(Math.abs(dot) < 1e-5, `row ${i}: g . w = ${dot} after projection`);
      for (let c = 0; c < cols; c++) {
        const want = g0[i * cols + c] - dot0 * w[i * cols + c];
        assert.ok(Math.abs(g[i * cols + c] - want) < 1e-5, `g[${i}, ${c}]`);
      }
    }
  });
}

test("training kernels: native equals reference", () => {
  const [ref, nat] = availableBackends();
  if (nat === undefined) return;
  const rng = new Rng(4);
  const x = rand(rng, 300_000);
  for (const k of [1, 17, 1000, 149_000])
    assert.equal(nat.kthLargest(x, x.length, k), ref.kthLargest(x, x.length, k));
  // Large enough that the native kernel samples (every other cache line) before selecting.
  const big = rand(rng, 2_500_003);
  for (const k of [1, 5000, 600_000, 2_000_000]) {
    assert.equal(nat.kthLargest(big, big.length, k), ref.kthLargest(big, big.length, k), `k=${k}`);
  }
});
