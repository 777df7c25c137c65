/**
 * matmul with `aBf16` (left operand rounded to bf16) on every backend, against float64 loops over
 * the rounded values: the native bf16 dot-product kernels (bf16 B stored [n, k], untransposed A; all
 * row/column tails of the tiled kernel's 8 x 32 tiles and of the packed-A kernel's 32 x 8 ones,
 * several column blocks, keys in passes, accumulate, merged batches) and the
 * fallbacks (odd k, f32 B, transposed A, unmergeable batches). With `bBf16` an f32 B is rounded
 * too: the batched kernel (both layouts of B, odd k, batches with their own or a shared B, several
 * row blocks) and its fallbacks. Also the op-level options and their gradients (the rounding is
 * treated as the identity).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { grad } from "../../src/core/autograd.js";
import type { MatmulArgs } from "../../src/core/backend.js";
import { bf16ToF32, f32ToBf16 } from "../../src/core/half.js";
import { cast } from "../../src/core/ops/cast.js";
import { matmul } from "../../src/core/ops/linalg.js";
import { sum } from "../../src/core/ops/reduce.js";
import { Rng } from "../../src/core/random.js";
import { fromStorage } from "../../src/core/tensor.js";

function uniform(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => 2 * r.uniform() - 1);
}

const round = (x: number) => bf16ToF32(f32ToBf16(x));

/** float64 out = op(round(A)) @ op(B) (+ init), per MatmulArgs. */
function expected(a: Float32Array, b: Float32Array, init: Float32Array, g: MatmulArgs): Float64Array {
  const { batch, m, k, n } = g;
  const out = Float64Array.from(init);
  const rounded = (x: Float32Array) => x.map(round);
  const ar = g.aBf16 ? rounded(a) : a;
  const br = g.bBf16 ? rounded(b) : b;
  // Element (i, p) of op(A) and (p, j) of op(B): offset i * ai + p * ap and j * bj + p * bp.
  const [ai, ap] = g.transA ? [1, m] : [k, 1];
  const [bj, bp] = g.transB ? [k, 1] : [1, n];
  for (let t = 0; t < batch; t++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        const a0 = t * g.aBatchStride + i * ai;
        const b0 = t * g.bBatchStride + j * bj;
        for (let p = 0; p < k; p++) s += ar[a0 + p * ap] * br[b0 + p * bp];
        const o = t * m * n + i * n + j;
        out[o] = (g.accumulate ? out[o] : 0) + s;
      }
    }
  }
  return out;
}

const base: MatmulArgs = {
  batch: 1,
  m: 1,
  k: 2,
  n: 1,
  transA: false,
  transB: true,
  aBatchStride: 0,
  bBatchStride: 0,
  bDtype: "bf16",
  accumulate: false,
  aBf16: true,
};

const CASES: [string, Partial<MatmulArgs>][] = [
  ["single row (decoding)", { m: 1, k: 64, n: 70 }],
  ["few rows, k not a multiple of 32", { m: 3, k: 38, n: 9 }],
  ["row and column tails", { m: 11, k: 6, n: 33 }],
  ["full tiles, several column blocks", { m: 16, k: 40, n: 96 }],
  ["two register-transposed pack steps", { m: 10, k: 64, n: 64 }],
  ["more rows than one row block", { m: 300, k: 10, n: 40 }],
  ["few column blocks: rows cut into chunks, a short last chunk", { m: 37, k: 16, n: 100 }],
  ["many column blocks over several row blocks", { m: 600, k: 16, n: 1000 }],
  ["accumulate", { m: 9, k: 8, n: 31, accumulate: true }],
  // The packed-A kernel (a few hundred rows, at least 512 columns): 32-row blocks with a short
  // last one, 8-column groups with a short last one.
  ["packed A: row and column tails", { m: 60, k: 20, n: 517 }],
  ["packed A: accumulate", { m: 30, k: 16, n: 600, accumulate: true }],
  // Keys in passes of 1,024 pairs (the last of 2), rows in super-blocks of 2 blocks (3 blocks).
  ["packed A: keys in passes", { m: 96, k: 2052, n: 512 }],
  ["packed A: accumulate over keys in passes (tiled kernel)", { m: 32, k: 2050, n: 512, accumulate: true }],
  ["merged batches sharing B", { batch: 3, m: 5, k: 12, n: 20, aBatchStride: 60 }],
  ["odd k (fallback)", { m: 4, k: 7, n: 9 }],
  ["f32 B (fallback)", { m: 4, k: 8, n: 9, bDtype: "f32" }],
  ["untransposed B (batched kernel)", { m: 4, k: 8, n: 9, transB: false }],
  ["transposed A (fallback)", { m: 4, k: 8, n: 9, transA: true }],
  ["batched B (batched kernel)", { batch: 2, m: 3, k: 8, n: 5, aBatchStride: 24, bBatchStride: 40 }],
  // A bf16 KV cache: keys [n, k] and values [k, n] per batch entry, read as stored.
  ["bf16 B [k, n], odd k", { m: 10, k: 9, n: 20, transB: false }],
  [
    "bf16 B, batches with their own B [n, k]",
    { batch: 3, m: 12, k: 16, n: 45, aBatchStride: 200, bBatchStride: 800 },
  ],
  [
    "bf16 B, batches with their own B [k, n], odd k",
    { batch: 2, m: 5, k: 33, n: 8, aBatchStride: 170, bBatchStride: 270, transB: false },
  ],
  ["bf16 B [k, n], one shared B", { batch: 2, m: 70, k: 12, n: 40, aBatchStride: 840, transB: false }],
  ["without rounding", { m: 9, k: 8, n: 33, aBf16: false }],
  ["both rounded, B [n, k]", { m: 11, k: 6, n: 33, bDtype: "f32", bBf16: true }],
  ["both rounded, B [k, n]", { m: 9, k: 8, n: 40, bDtype: "f32", bBf16: true, transB: false }],
  ["both rounded, odd k, B [n, k]", { m: 10, k: 7, n: 35, bDtype: "f32", bBf16: true }],
  ["both rounded, odd k, B [k, n]", { m: 10, k: 9, n: 20, bDtype: "f32", bBf16: true, transB: false }],
  [
    "both rounded, batches with their own B (attention)",
    { batch: 3, m: 12, k: 16, n: 45, aBatchStride: 200, bBatchStride: 800, bDtype: "f32", bBf16: true },
  ],
  [
    "both rounded, batches with their own B [k, n]",
    {
      batch: 2,
      m: 5,
      k: 33,
      n: 8,
      aBatchStride: 170,
      bBatchStride: 270,
      bDtype: "f32",
      bBf16: true,
      transB: false,
    },
  ],
  [
    "both rounded, one shared B, several row blocks",
    { batch: 2, m: 150, k: 12, n: 70, aBatchStride: 1800, bDtype: "f32", bBf16: true },
  ],
  ["both rounded, accumulate", { m: 9, k: 10, n: 31, bDtype: "f32", bBf16: true, accumulate: true }],
  // More than the batched kernel packs per thread (32 MiB of bf16 pairs): rounded copies instead.
  ["both rounded, B too large to pack (fallback)", { m: 1, k: 256, n: 65600, bDtype: "f32", bBf16: true }],
  ["both rounded, transposed A (fallback)", { m: 6, k: 8, n: 9, bDtype: "f32", bBf16: true, transA: true }],
  ["only B rounded (fallback)", { m: 6, k: 8, n: 9, bDtype: "f32", bBf16: true, aBf16: false }],
];

for (const backend of availableBackends()) {
  describe(`matmul aBf16 (${backend.name})`, () => {
    CASES.forEach(([label, over], c) => {
      test(label, () => {
        const g: MatmulArgs = { ...base, ...over };
        const a = uniform((g.batch - 1) * g.aBatchStride + g.m * g.k, 10 + c);
        const bf = uniform((g.batch - 1) * g.bBatchStride + g.k * g.n, 100 + c);
        // Unless B is rounded by the op, it holds exactly representable bf16 values, so only A's
        // rounding is in question.
        const bExact = g.bBf16 ? bf : Float32Array.from(bf, round);
        let b: Float32Array | Uint16Array = bExact;
        if (g.bDtype === "bf16") b = Uint16Array.from(bf, f32ToBf16);
        const init = g.accumulate
          ? uniform(g.batch * g.m * g.n, 7)
          : new Float32Array(g.batch * g.m * g.n).fill(Number.NaN);
        const out = Float32Array.from(init);
        backend.matmul(a, b, out, g);
        const want = expected(a, bExact, init, g);
        for (let i = 0; i < out.length; i++) {
          assert.ok(
            Math.abs(out[i] - want[i]) <= 2e-6 * g.k + 1e-6,
            `${label}[${i}]: ${out[i]} vs ${want[i]}`,
          );
        }
        if (g.aBf16 || g.bBf16) {
          // The rounding matters: the product without it differs somewhere.
          const plain = expected(a, bExact, init, { ...g, aBf16: false, bBf16: false });
          assert.ok(plain.some((v, i) => Math.abs(v - want[i]) > 1e-4));
        }
      });
    });

    test("op option and gradient", () => {
      const x = fromStorage(backend, "f32", [5, 8], uniform(40, 3));
      const w = cast(fromStorage(backend, "f32", [6, 8], uniform(48, 4)), "bf16");
      const y = matmul(x, w, { transB: true, aBf16: true }).toFloat32Array();
      const yr = matmul(fromStorage(backend, "f32", [5, 8], x.toFloat32Array().map(round)), w, {
        transB: true,
      });
      const r = yr.toFloat32Array();
      for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i] - r[i]) <= 1e-5, `y[${i}]`);
      const gx = grad((p: { x: typeof x }) => sum(matmul(p.x, w, { transB: true, aBf16: true })))({ x }).x;
      const gPlain = grad((p: { x: typeof x }) => sum(matmul(p.x, w, { transB: true })))({ x }).x;
      assert.deepEqual(Array.from(gx.toFloat32Array()), Array.from(gPlain.toFloat32Array()));
    });

    test("both operands rounded: op option and gradients", () => {
      const q = fromStorage(backend, "f32", [2, 5, 8], uniform(80, 5));
      const k = fromStorage(backend, "f32", [2, 7, 8], uniform(112, 6));
      const y = matmul(q, k, { transB: true, aBf16: true, bBf16: true }).toFloat32Array();
      const r = (t: typeof q) => fromStorage(backend, "f32", t.shape, t.toFloat32Array().map(round));
      const yr = matmul(r(q), r(k), { transB: true }).toFloat32Array();
      for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i] - yr[i]) <= 1e-5, `y[${i}]`);
      const f = (o: { aBf16?: boolean; bBf16?: boolean }) =>
        grad((p: { q: typeof q; k: typeof k }) => sum(matmul(p.q, p.k, { transB: true, ...o })))({ q, k });
      const gr = f({ aBf16: true, bBf16: true });
      const gp = f({});
      assert.deepEqual(Array.from(gr.q.toFloat32Array()), Array.from(gp.q.toFloat32Array()));
      assert.deepEqual(Array.from(gr.k.toFloat32Array()), Array.from(gp.k.toFloat32Array()));
    });
  });
}
