/**
 * The sparse kernels (sparseMatmul, thresholdCount/Select): kernel level, native against reference
 * (selection bit for bit, products within float32 accumulation error), and op level on every
 * backend against float64 loops written here.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { tryLoadNative } from "../../src/backends/native/index.js";
import { referenceBackend as R } from "../../src/backends/reference/index.js";
import type { SparseMatmulArgs, ThresholdArgs } from "../../src/core/backend.js";
import { TensorError } from "../../src/core/errors.js";
import { f32ToBf16 } from "../../src/core/half.js";
import { type CsrRows, sparseMatmul, thresholdSparse } from "../../src/core/ops/sparse.js";
import { fromStorage, tensor } from "../../src/core/tensor.js";

const load = tryLoadNative();
const skipNative = "error" in load ? `native backend unavailable: ${load.error}` : false;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/** Random CSR rows with about `density` of the columns set (some rows empty, some repeats). */
function randomCsr(rows: number, cols: number, density: number, seed: number): CsrRows {
  const r = rng(seed);
  const offsets = new Int32Array(rows + 1);
  const idx: number[] = [];
  const val: number[] = [];
  for (let i = 0; i < rows; i++) {
    if (i % 7 !== 3) {
      for (let c = 0; c < cols; c++) {
        if (r() < density) {
          idx.push(c);
          val.push(r() * 4 - 1);
        }
      }
      if (i % 5 === 1 && cols > 0) {
        idx.push(cols - 1);
        val.push(0.5);
      }
    }
    offsets[i + 1] = idx.length;
  }
  return { rows, cols, offsets, indices: Int32Array.from(idx), values: Float32Array.from(val) };
}

function expectedProduct(
  a: CsrRows,
  w: ArrayLike<number>,
  stride: number,
  start: number,
  n: number,
): Float64Array {
  const out = new Float64Array(a.rows * n);
  for (let r = 0; r < a.rows; r++) {
    for (let j = a.offsets[r]; j < a.offsets[r + 1]; j++) {
      for (let c = 0; c < n; c++) out[r * n + c] += a.values[j] * w[a.indices[j] * stride + start + c];
    }
  }
  return out;
}

function assertNear(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol * (1 + scale), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

describe("sparse kernels: native against reference", { skip: skipNative }, () => {
  const N = "backend" in load ? load.backend : R;

  test("sparseMatmul: f32 and bf16 rows, column blocks, accumulate, threaded sizes", () => {
    for (const [rows, cols, n, stride, density, seed] of [
      [1, 1, 1, 1, 1, 1],
      [5, 33, 17, 17, 0.3, 2],
      [300, 512, 96, 288, 0.05, 3],
      [2048, 1000, 64, 64, 0.02, 4],
    ] as const) {
      const a = randomCsr(rows, cols, density, seed);
      const w = uniform(cols * stride, seed + 100);
      const wb = Uint16Array.from(w, f32ToBf16);
      for (const accumulate of [false, true]) {
        for (const [src, wDtype] of [
          [w, "f32"],
          [wb, "bf16"],
        ] as const) {
          const args: SparseMatmulArgs = { rows, n, wRows: cols, wRowStride: stride, wDtype, accumulate };
          const start = stride - n;
          const init = uniform(rows * n, seed + 7);
          const outR = Float32Array.from(init);
          const outN = Float32Array.from(init);
          R.sparseMatmul(a.offsets, a.indices, a.values, src.subarray(start), outR, args);
          N.sparseMatmul(a.offsets, a.indices, a.values, src.subarray(start), outN, args);
          assertNear(outN, outR, 1e-5, `rows ${rows} ${wDtype} acc ${accumulate}`);
        }
      }
    }
  });

  test("sparseMatmul rejects out-of-range indices and short arrays", () => {
    const a = randomCsr(4, 8, 0.5, 9);
    const bad = Int32Array.from(a.indices);
    bad[bad.length - 1] = 8;
    const args: SparseMatmulArgs = {
      rows: 4,
      n: 3,
      wRows: 8,
      wRowStride: 3,
      wDtype: "f32",
      accumulate: false,
    };
    const out = new Float32Array(12);
    for (const B of [R, N]) {
      assert.throws(
        () => B.sparseMatmul(a.offsets, bad, a.values, new Float32Array(24), out, args),
        TensorError,
      );
    }
    assert.throws(
      () => N.sparseMatmul(a.offsets, a.indices, a.values, new Float32Array(23), out, args),
      RangeError,
    );
  });

  test("thresholdCount/Select: per-column and scalar thresholds, with and without bias, bit for bit", () => {
    for (const [rows, cols, seed] of [
      [1, 1, 1],
      [7, 130, 2],
      [64, 4099, 3],
      [3, 9000, 4],
    ] as const) {
      const x = uniform(rows * cols, seed, -2, 2);
      const specials = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0, -0, 1e-40];
      for (let i = 0; i < x.length; i += 11) x[i] = specials[(i / 11) % specials.length];
      const tCols = uniform(cols, seed + 1, -0.5, 1);
      tCols[0] = Number.NaN;
      const biasCols = uniform(cols, seed + 2, -0.7, 0.7);
      biasCols[cols - 1] = Number.POSITIVE_INFINITY;
      for (const [t, thresholdStride, bias] of [
        [tCols, 1, null],
        [Float32Array.of(0.25), 0, null],
        [Float32Array.of(-3), 0, null],
        [Float32Array.of(Number.NaN), 0, null],
        [tCols, 1, biasCols],
        [Float32Array.of(0.25), 0, biasCols],
      ] as const) {
        const args: ThresholdArgs = { rows, cols, thresholdStride };
        const cR = new Int32Array(rows);
        const cN = new Int32Array(rows);
        R.thresholdCount(x, bias, t, cR, args);
        N.thresholdCount(x, bias, t, cN, args);
        assert.deepEqual(cN, cR);
        const off = new Int32Array(rows + 1);
        for (let r = 0; r < rows; r++) off[r + 1] = off[r] + cR[r];
        const nnz = off[rows];
        const [iR, vR, iN, vN] = [
          new Int32Array(nnz),
          new Float32Array(nnz),
          new Int32Array(nnz),
          new Float32Array(nnz),
        ];
        R.thresholdSelect(x, bias, t, off, iR, vR, args);
        N.thresholdSelect(x, bias, t, off, iN, vN, args);
        assert.deepEqual(iN, iR);
        assert.deepEqual(vN, vR);
      }
    }
  });

  test("thresholdSelect refuses offsets with too little room", () => {
    const x = Float32Array.of(1, 2, 3, 4);
    const args: ThresholdArgs = { rows: 2, cols: 2, thresholdStride: 0 };
    const off = Int32Array.of(0, 1, 2);
    for (const B of [R, N]) {
      assert.throws(
        () =>
          B.thresholdSelect(x, null, Float32Array.of(0), off, new Int32Array(2), new Float32Array(2), args),
        TensorError,
      );
    }
  });
});

for (const B of availableBackends()) {
  describe(`sparse ops on ${B.name}`, () => {
    test("thresholdSparse selects exactly x > threshold and x > 0, in column order", () => {
      const rows = 9;
      const cols = 37;
      const x = uniform(rows * cols, 21, -1, 1);
      const th = uniform(cols, 22, -0.3, 0.6);
      const bias = uniform(cols, 23, -0.5, 0.5);
      for (const [threshold, b] of [
        [tensor(B, th), null],
        [0.2, null],
        [tensor(B, th), bias],
      ] as const) {
        const s = thresholdSparse(
          fromStorage(B, "f32", [3, 3, cols], x),
          threshold,
          b ? { bias: tensor(B, b) } : {},
        );
        assert.equal(s.rows, rows);
        assert.equal(s.cols, cols);
        for (let r = 0; r < rows; r++) {
          const want: number[] = [];
          for (let c = 0; c < cols; c++) {
            const t = typeof threshold === "number" ? threshold : th[c];
            const v = Math.fround(x[r * cols + c] + (b ? b[c] : 0));
            if (v > t && v > 0) want.push(c);
          }
          const got = Array.from(s.indices.subarray(s.offsets[r], s.offsets[r + 1]));
          assert.deepEqual(got, want, `row ${r}`);
          for (let j = s.offsets[r]; j < s.offsets[r + 1]; j++) {
            assert.equal(s.values[j], Math.fround(x[r * cols + s.indices[j]] + (b ? b[s.indices[j]] : 0)));
          }
        }
      }
    });

    test("sparseMatmul equals the float64 product, with bias, full add and a column block", () => {
      const a = randomCsr(23, 40, 0.2, 31);
      const wData = uniform(40 * 3 * 5, 32);
      const w = fromStorage(B, "f32", [40, 3, 5], wData);
      const full = sparseMatmul(a, w);
      assert.deepEqual(full.shape, [23, 15]);
      assertNear(full.data, expectedProduct(a, wData, 15, 0, 15), 1e-6, "full");
      const bias = uniform(5, 33);
      const block = sparseMatmul(a, w, { columns: { start: 10, count: 5 }, add: tensor(B, bias) });
      const want = expectedProduct(a, wData, 15, 10, 5).map((v, i) => v + bias[i % 5]);
      assertNear(block.data, want, 1e-6, "block + bias");
      const again = sparseMatmul(a, w, { columns: { start: 10, count: 5 }, add: block });
      assertNear(
        again.data,
        want.map((v, i) => v + expectedProduct(a, wData, 15, 10, 5)[i]),
        1e-6,
        "add",
      );
      const wb = fromStorage(B, "bf16", [40, 15], Uint16Array.from(wData, f32ToBf16));
      const widened = Float32Array.from(wb.toFloat32Array());
      assertNear(sparseMatmul(a, wb).data, expectedProduct(a, widened, 15, 0, 15), 1e-6, "bf16");
    });

    test("sparseMatmul validates its operands", () => {
      const a = randomCsr(3, 4, 0.5, 41);
      const w = fromStorage(B, "f32", [4, 2], new Float32Array(8));
      assert.throws(() => sparseMatmul({ ...a, cols: 5 }, w), /5 columns/);
      assert.throws(() => sparseMatmul(a, w, { columns: { start: 1, count: 2 } }), /outside/);
      assert.throws(() => sparseMatmul(a, w, { add: tensor(B, [1, 2, 3]) }), /add must be/);
      const bad = { ...a, indices: Int32Array.from(a.indices, () => 4) };
      assert.throws(() => sparseMatmul(bad, w), /out of range/);
      assert.throws(
        () => sparseMatmul({ ...a, offsets: Int32Array.of(0, 2, 1, a.offsets[3]) }, w),
        /decrease/,
      );
    });
  });
}
