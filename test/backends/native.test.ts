/**
 * Kernel-level tests of the native backend against the reference backend: every kernel on seeded
 * random inputs (odd sizes, sizes large enough to use the thread pool, broadcasting, transposes,
 * batch strides, bf16/f16 sources) and special values (NaN, +-inf, -0, ties). Exact kernels are
 * compared bit for bit (any NaN matches any NaN); the transcendental ones and matmul with tolerances.
 * Skipped, with the reason, when the addon is not built.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { tryLoadNative } from "../../src/backends/native/index.js";
import { referenceBackend as R } from "../../src/backends/reference/index.js";
import type { Backend, BinaryOp, MatmulArgs, UnaryOp } from "../../src/core/backend.js";
import type { HalfDType } from "../../src/core/dtype.js";
import { TensorError } from "../../src/core/errors.js";
import { neg } from "../../src/core/ops/index.js";
import { fromStorage } from "../../src/core/tensor.js";

const load = tryLoadNative();
const skip = "error" in load ? `native backend unavailable: ${load.error}` : false;
// Only dereferenced inside tests, which are skipped when the addon is missing.
const N = ("backend" in load ? load.backend : R) as Backend;

/** mulberry32: a tiny seeded generator, so every run sees the same inputs. */
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
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/** Small integers in [0, levels): many ties. */
function ties(n: number, seed: number, levels: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * levels);
  return out;
}

/** Overwrites every `every`-th element (from `offset`) with the special values in turn. */
function sprinkle(x: Float32Array, values: readonly number[], every: number, offset = 0): Float32Array {
  for (let i = offset, v = 0; i < x.length; i += every, v++) x[i] = values[v % values.length];
  return x;
}

const SPECIAL = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0, -0, 1e-40, -1e-40, 3e38];

type Num = ArrayLike<number>;

/** Shows -0 as "-0" so bit-level mismatches read clearly. */
function show(v: number): string {
  return Object.is(v, -0) ? "-0" : String(v);
}

function same(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

/** Bit-for-bit equality (-0 differs from +0), except that any NaN matches any NaN. */
function assertSame(actual: Num, expected: Num, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!same(actual[i], expected[i]))
      assert.fail(`${label}: [${i}] native ${show(actual[i])} reference ${show(expected[i])}`);
  }
}

/** |a - e| <= atol + rtol |e|; NaN and infinities must match exactly. Returns the worst error. */
function assertClose(actual: Num, expected: Num, rtol: number, atol: number, label: string): number {
  assert.equal(actual.length, expected.length, `${label}: length`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      if (!same(a, e)) assert.fail(`${label}: [${i}] native ${show(a)} reference ${show(e)}`);
      continue;
    }
    const err = Math.abs(a - e);
    if (err > atol + rtol * Math.abs(e))
      assert.fail(`${label}: [${i}] native ${a} reference ${e} (error ${err})`);
    worst = Math.max(worst, err);
  }
  return worst;
}

/** Runs the same kernel on both backends with fresh copies of `out` and returns both results. */
function both<T extends Float32Array | Int32Array | Uint16Array>(
  init: T,
  run: (b: Backend, out: T) => void,
): [T, T] {
  const n = init.slice() as T;
  const r = init.slice() as T;
  run(N, n);
  run(R, r);
  return [n, r];
}

const SIZES = [1, 7, 33, 1000, 70001];

describe("native backend", { skip }, () => {
  describe("matmul", () => {
    function check(args: MatmulArgs, label: string, seed = 1): void {
      const { batch, m, k, n, aBatchStride, bBatchStride } = args;
      const a = uniform((batch - 1) * aBatchStride + m * k, seed);
      const bf = uniform((batch - 1) * bBatchStride + k * n, seed + 1);
      let b: Float32Array | Uint16Array = bf;
      if (args.bDtype !== "f32") {
        b = new Uint16Array(bf.length);
        R.floatToHalf(bf, args.bDtype, b);
      }
      const init = args.accumulate
        ? uniform(batch * m * n, seed + 2)
        : new Float32Array(batch * m * n).fill(Number.NaN);
      const [got, want] = both(init, (be, out) => be.matmul(a, b, out, args));
      // Float32 sums of k terms of size <= 1 in different orders.
      assertClose(got, want, 1e-5, 2e-6 * k, label);
    }

    const base = {
      batch: 1,
      transA: false,
      transB: false,
      aBatchStride: 0,
      bBatchStride: 0,
      accumulate: false,
    };

    test("shapes, transposes and accumulate", () => {
      for (const [m, k, n] of [
        [1, 1, 1],
        [7, 33, 5],
        [33, 7, 1001],
        [65, 130, 257],
      ]) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            for (const accumulate of [false, true]) {
              const args = { ...base, m, k, n, transA, transB, accumulate, bDtype: "f32" as const };
              check(args, `m${m} k${k} n${n} tA${transA} tB${transB} acc${accumulate}`);
            }
          }
        }
      }
    });

    test("many small batched problems (attention): row blocks, column tails, both B layouts, gaps", () => {
      for (const [m, k, n] of [
        [70, 48, 45],
        [256, 128, 48],
        [5, 3, 33],
      ]) {
        for (const transB of [false, true]) {
          for (const accumulate of [false, true]) {
            const args = {
              ...base,
              batch: 3,
              m,
              k,
              n,
              transB,
              accumulate,
              aBatchStride: m * k + 7,
              bBatchStride: k * n + 3,
              bDtype: "f32" as const,
            };
            check(args, `small batched m${m} k${k} n${n} tB${transB} acc${accumulate}`);
          }
        }
      }
    });

    test("batched: strided, broadcast right operand (merged), broadcast left operand", () => {
      const m = 9;
      const k = 17;
      const n = 23;
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const f32 = { ...base, m, k, n, transA, transB, batch: 3, bDtype: "f32" as const };
          check({ ...f32, aBatchStride: m * k, bBatchStride: k * n }, `strided tA${transA} tB${transB}`);
          check(
            { ...f32, aBatchStride: m * k + 5, bBatchStride: k * n + 3 },
            `padded tA${transA} tB${transB}`,
          );
          check({ ...f32, aBatchStride: m * k, bBatchStride: 0 }, `shared B tA${transA} tB${transB}`);
          check({ ...f32, aBatchStride: 0, bBatchStride: k * n }, `shared A tA${transA} tB${transB}`);
          check(
            { ...f32, aBatchStride: m * k, bBatchStride: 0, accumulate: true },
            `shared B acc tA${transA}`,
          );
        }
      }
    });

    test("bf16 / f16 right operand, including multi-panel widening", () => {
      for (const bDtype of ["bf16", "f16"] as const) {
        for (const transB of [false, true]) {
          for (const transA of [false, true]) {
            // Small m: panels of 256K floats, so k = 1000 splits n = 1000 into 4 panels (256 wide).
            check(
              { ...base, m: 5, k: 1000, n: 1000, transA, transB, bDtype },
              `${bDtype} m5 tA${transA} tB${transB}`,
            );
          }
          // At most 4 rows against a transposed bf16 B: read in place (decoding), any k.
          if (transB && bDtype === "bf16") {
            for (const [m, k] of [
              [1, 1000],
              [4, 37],
              [2, 640],
            ] as const) {
              check({ ...base, m, k, n: 301, transB, bDtype }, `bf16 few rows m${m} k${k}`);
              check({ ...base, m, k, n: 301, transB, bDtype, accumulate: true }, `bf16 few rows m${m} acc`);
              check({ ...base, m, k, n: 301, transB, bDtype, aBf16: true }, `bf16 few rows m${m} A rounded`);
            }
            check(
              { ...base, m: 2, k: 9, n: 33, transB, bDtype, batch: 2, aBatchStride: 18, bBatchStride: 0 },
              "bf16 few rows, merged batches",
            );
          }
          // f32 A against a transposed bf16 B with few column blocks: rows cut into chunks.
          if (transB && bDtype === "bf16") {
            check({ ...base, m: 300, k: 40, n: 40, transB, bDtype }, "bf16 few column blocks, row chunks");
            check({ ...base, m: 37, k: 16, n: 70, transB, bDtype, accumulate: true }, "bf16 row chunks, acc");
          }
          // m >= 64: panels of 2M floats; k = 2100 gives 960-wide panels, n = 1000 two of them.
          check({ ...base, m: 64, k: 2100, n: 1000, transB, bDtype }, `${bDtype} m64 tB${transB}`);
          check(
            { ...base, m: 3, k: 7, n: 11, transB, bDtype, batch: 4, aBatchStride: 21, bBatchStride: 77 },
            `${bDtype} batched`,
          );
          check(
            {
              ...base,
              m: 3,
              k: 7,
              n: 11,
              transB,
              bDtype,
              batch: 4,
              aBatchStride: 21,
              bBatchStride: 0,
              accumulate: true,
            },
            `${bDtype} shared`,
          );
        }
      }
    });

    test("k = 0 gives zeros (or leaves out when accumulating); m = 0 and n = 0 write nothing", () => {
      const out = new Float32Array(6).fill(5);
      N.matmul(new Float32Array(0), new Float32Array(0), out, { ...base, m: 2, k: 0, n: 3, bDtype: "f32" });
      assertSame(out, new Float32Array(6), "k0");
      out.fill(5);
      N.matmul(new Float32Array(0), new Float32Array(0), out, {
        ...base,
        m: 2,
        k: 0,
        n: 3,
        bDtype: "f32",
        accumulate: true,
      });
      assertSame(out, new Float32Array(6).fill(5), "k0 accumulate");
      N.matmul(new Float32Array(4), new Float32Array(0), out, { ...base, m: 2, k: 2, n: 0, bDtype: "f32" });
      assertSame(out, new Float32Array(6).fill(5), "n0");
    });

    test("matmulAsync gives the same result and keeps the event loop running", async () => {
      const args = { ...base, m: 33, k: 65, n: 129, transB: true, bDtype: "f32" as const };
      const a = uniform(33 * 65, 3);
      const b = uniform(65 * 129, 4);
      const sync = new Float32Array(33 * 129);
      const async = new Float32Array(33 * 129);
      N.matmul(a, b, sync, args);
      await N.matmulAsync(a, b, async, args);
      assertSame(async, sync, "async vs sync");

      // A matmul long enough (~1 s at the machine's speed) for a 10 ms interval to tick many times,
      // and the same call made synchronously, during which the interval cannot tick at all.
      const s = 2048;
      const big = { ...base, m: s, k: s, n: s, bDtype: "f32" as const };
      const x = uniform(s * s, 5);
      const y = uniform(s * s, 6);
      const o = new Float32Array(s * s);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      const t0 = performance.now();
      await N.matmulAsync(x, y, o, big);
      const asyncMs = performance.now() - t0;
      const asyncTicks = ticks;
      ticks = 0;
      const o2 = new Float32Array(s * s);
      N.matmul(x, y, o2, big);
      await new Promise((r) => setImmediate(r));
      const syncTicks = ticks;
      clearInterval(timer);
      assertSame(o, o2, "big async vs sync");
      assert.ok(
        asyncTicks >= Math.min(5, Math.floor(asyncMs / 20)),
        `only ${asyncTicks} ticks in ${asyncMs} ms`,
      );
      assert.ok(asyncTicks >= 2, `only ${asyncTicks} ticks during the async matmul`);
      assert.ok(syncTicks <= 1, `interval ticked ${syncTicks} times during a synchronous matmul`);
    });

    test("checks array lengths and types instead of reading out of bounds", async () => {
      const args = { ...base, m: 4, k: 4, n: 4, bDtype: "f32" as const };
      assert.throws(
        () => N.matmul(new Float32Array(15), new Float32Array(16), new Float32Array(16), args),
        RangeError,
      );
      assert.throws(
        () => N.matmul(new Float32Array(16), new Float32Array(16), new Float32Array(15), args),
        RangeError,
      );
      assert.throws(
        () =>
          N.matmul(new Float32Array(16), new Float32Array(16), new Float32Array(16), {
            ...args,
            bDtype: "bf16",
          }),
        TypeError,
      );
      await assert.rejects(
        N.matmulAsync(new Float32Array(16), new Float32Array(3), new Float32Array(16), args),
      );
    });
  });

  describe("elementwise", () => {
    // Tolerances: exact for ops computed the same way; a few ulp for the float exp/log/tanh family.
    const TOL: Readonly<Record<UnaryOp, readonly [number, number]>> = {
      neg: [0, 0],
      exp: [4e-7, 1e-44],
      log: [2e-7, 1e-7],
      sqrt: [0, 0],
      rsqrt: [0, 0],
      abs: [0, 0],
      sign: [0, 0],
      square: [0, 0],
      reciprocal: [0, 0],
      tanh: [4e-7, 1e-7],
      sigmoid: [4e-7, 1e-8],
      relu: [0, 0],
      gelu_tanh: [1e-6, 1e-7],
      gelu_tanh_grad: [1e-6, 2e-7],
      step: [0, 0],
    };

    test("unary: every op, odd sizes, special values", () => {
      const specials = [
        ...SPECIAL,
        88.7,
        88.73,
        -87.5,
        -103.5,
        -110,
        1e-3,
        -1e-3,
        9.5,
        -9.5,
        20,
        -25,
        1e20,
        -1e20,
      ];
      for (const op of Object.keys(TOL) as UnaryOp[]) {
        const [rtol, atol] = TOL[op];
        for (const n of SIZES) {
          const lo = op === "log" || op === "sqrt" || op === "rsqrt" ? 0 : op === "exp" ? -90 : -12;
          const hi = op === "exp" ? 89 : 12;
          const x = sprinkle(uniform(n, n + 7, lo, hi), specials, 5, 2);
          const [got, want] = both(new Float32Array(n), (b, out) => b.unary(op, x, out));
          if (rtol === 0 && atol === 0) assertSame(got, want, `${op} n${n}`);
          else assertClose(got, want, rtol, atol, `${op} n${n}`);
        }
      }
    });

    test("unary may write in place", () => {
      const x = uniform(1000, 9, -3, 3);
      const want = new Float32Array(1000);
      R.unary("gelu_tanh", x, want);
      N.unary("gelu_tanh", x, x);
      assertClose(x, want, 1e-6, 1e-7, "in place");
    });

    test("affine rounds like the reference", () => {
      for (const n of SIZES) {
        const x = sprinkle(uniform(n, n, -100, 100), SPECIAL, 11);
        for (const [s, t] of [
          [1 / 3, 0.1],
          [-2.5, 0],
          [0, 1e-3],
        ]) {
          const [got, want] = both(new Float32Array(n), (b, out) => b.affine(x, s, t, out));
          assertSame(got, want, `affine n${n} s${s} t${t}`);
        }
      }
    });

    const BINARY_OPS: readonly BinaryOp[] = [
      "add",
      "sub",
      "mul",
      "div",
      "max",
      "min",
      "pow",
      "eq",
      "ne",
      "lt",
      "le",
      "gt",
      "ge",
    ];

    /** Contiguous row-major strides of `shape`, with 0 for dims of size 1 marked as broadcast. */
    function strides(shape: readonly number[], broadcast: readonly boolean[] = []): number[] {
      const out = new Array<number>(shape.length);
      let s = 1;
      for (let d = shape.length - 1; d >= 0; d--) {
        out[d] = broadcast[d] ? 0 : s;
        if (!broadcast[d]) s *= shape[d];
      }
      return out;
    }

    function size(shape: readonly number[]): number {
      return shape.reduce((p, s) => p * s, 1);
    }

    // [label, out shape, a strides, b strides, a length, b length]
    const PATTERNS: readonly (readonly [string, number[], number[], number[], number, number])[] = [
      ["same 1-d", [1001], [1], [1], 1001, 1001],
      ["same 2-d big", [70, 1003], strides([70, 1003]), strides([70, 1003]), 70210, 70210],
      ["row broadcast", [33, 70], strides([33, 70]), [0, 1], 2310, 70],
      ["column broadcast", [33, 70], strides([33, 70]), [1, 0], 2310, 33],
      ["scalar b", [7, 9], strides([7, 9]), [0, 0], 63, 1],
      ["scalar a", [7, 9], [0, 0], strides([7, 9]), 1, 63],
      ["3-d mixed", [2, 3, 1000], strides([2, 3, 1000]), [0, 1, 0], 6000, 3],
      ["outer product", [40, 50], [1, 0], [0, 1], 40, 50],
      ["transposed a", [70, 33], [1, 70], strides([70, 33]), 2310, 2310],
      ["size-1 dims", [1, 5, 1, 3], [0, 3, 0, 1], [0, 0, 0, 1], 15, 3],
      ["0-d", [], [], [], 1, 1],
      ["empty", [4, 0, 3], [0, 3, 1], [0, 3, 1], 0, 0],
    ];

    test("binary: every op over broadcasting patterns, bit-exact", () => {
      for (const [label, shape, as, bs, na, nb] of PATTERNS) {
        const a = sprinkle(uniform(na, na + 1, -4, 4), SPECIAL, 7);
        const b = sprinkle(uniform(nb, nb + 2, -4, 4), SPECIAL, 5, 1);
        for (const op of BINARY_OPS) {
          const args = { shape, aStrides: as, bStrides: bs };
          const [got, want] = both(new Float32Array(size(shape)), (be, out) =>
            be.binary(op, a, b, out, args),
          );
          assertSame(got, want, `${op} ${label}`);
        }
      }
    });

    test("binary: max/min order -0 below +0 and propagate NaN; pow edge cases", () => {
      const vals = [
        0,
        -0,
        1,
        -1,
        2,
        -2,
        0.5,
        Number.NaN,
        Number.POSITIVE_INFINITY,
        Number.NEGATIVE_INFINITY,
        3.5,
      ];
      const k = vals.length;
      const a = new Float32Array(k * k);
      const b = new Float32Array(k * k);
      for (let i = 0; i < k; i++) {
        for (let j = 0; j < k; j++) {
          a[i * k + j] = vals[i];
          b[i * k + j] = vals[j];
        }
      }
      const args = { shape: [k * k], aStrides: [1], bStrides: [1] };
      for (const op of BINARY_OPS) {
        const [got, want] = both(new Float32Array(k * k), (be, out) => be.binary(op, a, b, out, args));
        assertSame(got, want, `${op} table`);
      }
    });

    test("where: broadcast condition with NaN and -0", () => {
      const shape = [33, 70];
      const cond = sprinkle(ties(70, 3, 2), [Number.NaN, -0, 0], 4);
      const a = uniform(2310, 4);
      const b = uniform(33, 5);
      const args = { shape, cStrides: [0, 1], aStrides: strides(shape), bStrides: [1, 0] };
      const [got, want] = both(new Float32Array(2310), (be, out) => be.where(cond, a, b, out, args));
      assertSame(got, want, "where");
      const big = { shape: [70001], cStrides: [1], aStrides: [1], bStrides: [0] };
      const c2 = ties(70001, 6, 2);
      const a2 = uniform(70001, 7);
      const [g2, w2] = both(new Float32Array(70001), (be, out) =>
        be.where(c2, a2, new Float32Array([9]), out, big),
      );
      assertSame(g2, w2, "where big");
    });

    test("copy: transpose, slices with offsets, broadcast source, strided destination", () => {
      const src = uniform(5000, 11);
      const cases = [
        { shape: [50, 70], srcOffset: 0, srcStrides: [1, 50], dstOffset: 0, dstStrides: [70, 1], n: 3500 },
        {
          shape: [3, 4, 5],
          srcOffset: 17,
          srcStrides: [100, 10, 1],
          dstOffset: 3,
          dstStrides: [40, 10, 2],
          n: 200,
        },
        { shape: [6, 333], srcOffset: 2, srcStrides: [0, 1], dstOffset: 0, dstStrides: [333, 1], n: 1998 },
        {
          shape: [2, 3, 700],
          srcOffset: 0,
          srcStrides: [2100, 700, 1],
          dstOffset: 700,
          dstStrides: [4200, 1400, 1],
          n: 9000,
        },
        { shape: [], srcOffset: 4999, srcStrides: [], dstOffset: 1, dstStrides: [], n: 2 },
        { shape: [3, 0], srcOffset: 0, srcStrides: [1, 1], dstOffset: 0, dstStrides: [1, 1], n: 4 },
        { shape: [4000], srcOffset: 4999, srcStrides: [-1], dstOffset: 0, dstStrides: [1], n: 4000 },
        // Batched transposes of the last two dims (the tiled path), with ragged tile edges.
        {
          shape: [3, 40, 33],
          srcOffset: 7,
          srcStrides: [1320, 1, 40],
          dstOffset: 0,
          dstStrides: [1320, 33, 1],
          n: 3960,
        },
        {
          shape: [2, 77, 30],
          srcOffset: 0,
          srcStrides: [0, 1, 77],
          dstOffset: 5,
          dstStrides: [2400, 30, 1],
          n: 4800,
        },
      ];
      for (const { n, ...args } of cases) {
        const [got, want] = both(uniform(n, 12), (be, out) => be.copy(src, out, args));
        assertSame(got, want, `copy ${JSON.stringify(args.shape)}`);
      }
      assert.throws(
        () =>
          N.copy(src, new Float32Array(10), {
            shape: [11],
            srcOffset: 0,
            srcStrides: [1],
            dstOffset: 0,
            dstStrides: [1],
          }),
        RangeError,
      );
      assert.throws(
        () =>
          N.copy(src, new Float32Array(10), {
            shape: [2],
            srcOffset: 0,
            srcStrides: [-1],
            dstOffset: 0,
            dstStrides: [1],
          }),
        RangeError,
      );
    });

    test("binary checks strides against array lengths", () => {
      const args = { shape: [4, 4], aStrides: [4, 1], bStrides: [0, 1] };
      assert.throws(
        () => N.binary("add", new Float32Array(15), new Float32Array(4), new Float32Array(16), args),
        RangeError,
      );
      assert.throws(
        () => N.binary("add", new Float32Array(16), new Float32Array(3), new Float32Array(16), args),
        RangeError,
      );
      assert.throws(
        () => N.binary("add", new Float32Array(16), new Float32Array(4), new Float32Array(15), args),
        RangeError,
      );
    });
  });

  describe("reductions and rows", () => {
    const AXES = [
      [1, 1, 1],
      [1, 1000, 1],
      [1, 100003, 1],
      [7, 33, 1],
      [3, 33, 7],
      [2, 1000, 300],
      [5, 0, 3],
      [4000, 20, 1],
    ] as const;

    test("reduce: sum / max / min over [outer, size, inner]", () => {
      for (const [outer, size, inner] of AXES) {
        const n = outer * size * inner;
        const x = uniform(n, n + 3, -10, 10);
        const axis = { outer, size, inner };
        for (const op of ["sum", "max", "min"] as const) {
          const [got, want] = both(new Float32Array(outer * inner), (b, out) => b.reduce(op, x, out, axis));
          if (op === "sum") assertClose(got, want, 1e-6, 1e-6, `sum ${outer}x${size}x${inner}`);
          else assertSame(got, want, `${op} ${outer}x${size}x${inner}`);
        }
      }
    });

    test("reduce: NaN propagates, +0 above -0, infinities", () => {
      const rows = [
        [1, Number.NaN, 3],
        [-0, 0, -0],
        [0, -0, -0],
        [-0, -0, -0],
        [Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY],
        [Number.POSITIVE_INFINITY, 1, Number.NEGATIVE_INFINITY],
        [Number.NaN, Number.NaN, Number.NaN],
      ];
      const x = new Float32Array(rows.flat());
      for (const op of ["sum", "max", "min"] as const) {
        const [g1, w1] = both(new Float32Array(rows.length), (b, out) =>
          b.reduce(op, x, out, { outer: rows.length, size: 3, inner: 1 }),
        );
        assertSame(g1, w1, `${op} rows`);
        // The same values down columns (inner > 1).
        const [g2, w2] = both(new Float32Array(3), (b, out) =>
          b.reduce(op, x, out, { outer: 1, size: rows.length, inner: 3 }),
        );
        assertSame(g2, w2, `${op} columns`);
        // And as one long row split across threads.
        const long = sprinkle(uniform(100003, 4), rows.flat(), 9973);
        const [g3, w3] = both(new Float32Array(1), (b, out) =>
          b.reduce(op, long, out, { outer: 1, size: 100003, inner: 1 }),
        );
        if (op === "sum") assertClose(g3, w3, 1e-6, 1e-6, "sum long");
        else assertSame(g3, w3, `${op} long`);
      }
    });

    test("argReduce: ties pick the first, NaN never wins, all-NaN gives 0", () => {
      for (const [outer, size, inner] of AXES) {
        const n = outer * size * inner;
        const x = sprinkle(ties(n, n + 5, 4), [Number.NaN, -0, Number.NEGATIVE_INFINITY], 3);
        for (const op of ["argmax", "argmin"] as const) {
          const [got, want] = both(new Int32Array(outer * inner), (b, out) =>
            b.argReduce(op, x, out, { outer, size, inner }),
          );
          assertSame(got, want, `${op} ${outer}x${size}x${inner}`);
        }
      }
      const special = new Float32Array([
        Number.NaN,
        Number.NaN,
        Number.NaN,
        Number.NaN,
        Number.NEGATIVE_INFINITY,
        Number.NaN,
        0,
        -0,
        0,
      ]);
      for (const op of ["argmax", "argmin"] as const) {
        const [got, want] = both(new Int32Array(3), (b, out) =>
          b.argReduce(op, special, out, { outer: 3, size: 3, inner: 1 }),
        );
        assertSame(got, want, `${op} special rows`);
        const [g2, w2] = both(new Int32Array(3), (b, out) =>
          b.argReduce(op, special, out, { outer: 1, size: 3, inner: 3 }),
        );
        assertSame(g2, w2, `${op} special columns`);
      }
    });

    test("softmax / logSoftmax, with -inf, +inf and NaN rows", () => {
      for (const [rows, cols] of [
        [1, 1],
        [7, 33],
        [3, 1000],
        [2, 70001],
        [300, 64],
      ]) {
        const x = uniform(rows * cols, cols, -30, 30);
        if (cols > 1) sprinkle(x, [Number.NEGATIVE_INFINITY], 7, 1);
        const [s1, s2] = both(new Float32Array(rows * cols), (b, out) => b.softmax(x, out, rows, cols));
        assertClose(s1, s2, 1e-5, 1e-9, `softmax ${rows}x${cols}`);
        const [l1, l2] = both(new Float32Array(rows * cols), (b, out) => b.logSoftmax(x, out, rows, cols));
        assertClose(l1, l2, 1e-6, 1e-5, `logSoftmax ${rows}x${cols}`);
      }
      const inf = Number.POSITIVE_INFINITY;
      const special = new Float32Array([1, Number.NaN, 2, -inf, -inf, -inf, 1, inf, 2, 5, 5, 5]);
      for (const kind of ["softmax", "logSoftmax"] as const) {
        const [g, w] = both(new Float32Array(12), (b, out) => b[kind](special, out, 4, 3));
        assertClose(g, w, 1e-6, 1e-7, `${kind} special`);
      }
    });

    test("rmsnorm: with and without weight, invRms, zero rows", () => {
      for (const [rows, cols] of [
        [1, 1],
        [7, 33],
        [3, 1152],
        [300, 640],
      ]) {
        const x = uniform(rows * cols, rows + cols, -3, 3);
        x.fill(0, 0, cols);
        const w = uniform(cols, cols, -0.5, 0.5);
        for (const weight of [w, null]) {
          for (const offset of [0, 1]) {
            const inv1 = new Float32Array(rows);
            const inv2 = new Float32Array(rows);
            const o1 = new Float32Array(rows * cols);
            const o2 = new Float32Array(rows * cols);
            N.rmsnorm(x, weight, o1, rows, cols, 1e-6, offset, inv1);
            R.rmsnorm(x, weight, o2, rows, cols, 1e-6, offset, inv2);
            const label = `rmsnorm ${rows}x${cols} w${weight !== null} off${offset}`;
            // Sums of squares in double in a different order: at most one float ulp apart.
            assertClose(inv1, inv2, 1.2e-7, 0, `${label} invRms`);
            assertClose(o1, o2, 2.5e-7, 1e-30, label);
          }
        }
        const [g, want] = both(new Float32Array(rows * cols), (b, out) =>
          b.rmsnorm(x, w, out, rows, cols, 1e-5, 1, null),
        );
        assertClose(g, want, 2.5e-7, 1e-30, "rmsnorm no invRms");
      }
    });

    test("rope, forward and inverse, one or several heads per position", () => {
      for (const [rows, seq, heads, dim] of [
        [1, 1, 1, 2],
        [3, 7, 1, 64],
        [8, 33, 1, 256],
        [2, 5, 3, 8],
        [1, 9, 4, 256],
      ]) {
        const half = dim / 2;
        const ang = uniform(seq * half, dim, -10, 10);
        const cos = ang.map(Math.cos);
        const sin = ang.map(Math.sin);
        const x = uniform(rows * seq * heads * dim, rows + seq);
        for (const inverse of [false, true]) {
          const [got, want] = both(new Float32Array(x.length), (b, out) =>
            b.rope(x, cos, sin, out, rows, seq, dim, inverse, heads),
          );
          const what = `rope ${rows}x${seq}x${heads}x${dim} inverse ${inverse}`;
          assertSame(got, want, what);
          // Every head of position t turns by row t of the tables, as one head alone does.
          const t = seq - 1;
          const h = heads - 1;
          const at = ((rows - 1) * seq + t) * heads + h;
          const one = new Float32Array(dim);
          R.rope(
            x.subarray(at * dim, (at + 1) * dim),
            cos.subarray(t * half, (t + 1) * half),
            sin.subarray(t * half, (t + 1) * half),
            one,
            1,
            1,
            dim,
            inverse,
            1,
          );
          assertSame(got.subarray(at * dim, (at + 1) * dim), one, `${what}, last head`);
        }
      }
    });
  });

  describe("indexing", () => {
    function halfOf(x: Float32Array, dtype: HalfDType): Uint16Array {
      const h = new Uint16Array(x.length);
      R.floatToHalf(x, dtype, h);
      return h;
    }

    test("gather from f32, bf16 and f16 sources", () => {
      for (const [outer, srcSize, size, inner] of [
        [1, 5, 1, 1],
        [1, 300, 33, 1000],
        [3, 17, 40, 7],
        [2, 4, 9000, 3],
      ]) {
        const r = rng(outer * 31 + inner);
        const idx = Int32Array.from({ length: size }, () => Math.floor(r() * srcSize));
        const f = sprinkle(uniform(outer * srcSize * inner, inner, -100, 100), SPECIAL, 13);
        const axis = { outer, size, inner };
        const n = outer * size * inner;
        const [g, w] = both(new Float32Array(n), (b, out) => b.gather(f, "f32", idx, out, axis, srcSize));
        assertSame(g, w, `gather f32 ${outer}x${size}x${inner}`);
        for (const dtype of ["bf16", "f16"] as const) {
          const h = halfOf(f, dtype);
          const [gh, wh] = both(new Float32Array(n), (b, out) => b.gather(h, dtype, idx, out, axis, srcSize));
          assertSame(gh, wh, `gather ${dtype} ${outer}x${size}x${inner}`);
        }
      }
    });

    test("scatterAdd with repeated indices, exact like the reference", () => {
      for (const [outer, outSize, size, inner] of [
        [1, 5, 12, 1],
        [1, 10, 50, 5000],
        [3, 7, 40, 5],
        [64, 3, 8, 300],
      ]) {
        const r = rng(size + inner);
        const idx = Int32Array.from({ length: size }, () => Math.floor(r() * outSize));
        const src = uniform(outer * size * inner, outer + inner);
        const init = uniform(outer * outSize * inner, 7);
        const [g, w] = both(init, (b, out) => b.scatterAdd(src, idx, out, { outer, size, inner }, outSize));
        assertSame(g, w, `scatterAdd ${outer}x${size}x${inner}`);
      }
    });

    test("out-of-range indices throw TensorError and write nothing", () => {
      const out = new Float32Array(6).fill(3);
      const bad = new Int32Array([0, 5]);
      const axis = { outer: 1, size: 2, inner: 3 };
      assert.throws(() => N.gather(new Float32Array(15), "f32", bad, out, axis, 5), TensorError);
      assert.throws(
        () => N.gather(new Float32Array(15), "f32", new Int32Array([-1, 0]), out, axis, 5),
        TensorError,
      );
      assert.throws(() => N.scatterAdd(new Float32Array(6), new Int32Array([1, 2]), out, axis, 2), {
        name: "TensorError",
        message: "index 2 out of range [0, 2)",
      });
      assertSame(out, new Float32Array(6).fill(3), "untouched");
    });

    test("topk: ties by lower index, NaN last, k = 0 and k = cols", () => {
      for (const [rows, cols, k] of [
        [1, 1, 1],
        [3, 33, 5],
        [2, 1000, 1000],
        [4, 5000, 17],
        [64, 300, 3],
        [2, 10, 0],
      ]) {
        const x = sprinkle(
          ties(rows * cols, cols + k, 9),
          [Number.NaN, -0, 0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY],
          6,
        );
        const v = [new Float32Array(rows * k), new Float32Array(rows * k)];
        const i = [new Int32Array(rows * k), new Int32Array(rows * k)];
        N.topk(x, rows, cols, k, v[0], i[0]);
        R.topk(x, rows, cols, k, v[1], i[1]);
        assertSame(v[0], v[1], `topk values ${rows}x${cols} k${k}`);
        assertSame(i[0], i[1], `topk indices ${rows}x${cols} k${k}`);
      }
      const allNaN = new Float32Array(8).fill(Number.NaN);
      const iv = new Int32Array(4);
      N.topk(allNaN, 2, 4, 2, new Float32Array(4), iv);
      assertSame(iv, [0, 1, 0, 1], "all NaN");
    });
  });

  describe("conversion", () => {
    const every = Uint16Array.from({ length: 65536 }, (_, i) => i);

    test("halfToFloat: all 65536 bf16 and f16 patterns", () => {
      for (const dtype of ["bf16", "f16"] as const) {
        const [g, w] = both(new Float32Array(65536), (b, out) => b.halfToFloat(every, dtype, out));
        assertSame(g, w, `${dtype} -> f32`);
      }
    });

    test("floatToHalf: round to nearest even at every tie, subnormals, overflow, NaN bits", () => {
      // Every f16/bf16 value, the midpoints next to it (ties) and values just off the midpoints.
      const wide = new Float32Array(65536);
      for (const dtype of ["bf16", "f16"] as const) {
        R.halfToFloat(every, dtype, wide);
        const vals: number[] = [];
        for (let i = 0; i < 65535; i++) {
          const a = wide[i];
          const b = wide[i + 1];
          if (!Number.isFinite(a) || !Number.isFinite(b) || Math.sign(a) !== Math.sign(b)) continue;
          const mid = Math.fround((a + b) / 2);
          vals.push(a, mid, Math.fround(mid * (1 + 2 ** -23)), Math.fround(mid * (1 - 2 ** -23)));
        }
        vals.push(...SPECIAL, 65504, 65519.99, 65520, 1e-8, -6e-8, 3e-8, 2.98e-8, 3.4e38);
        // NaNs with payloads, quiet and signalling, both signs: the f16 result keeps the top payload bits.
        const nans = new Float32Array(
          new Uint32Array([0x7fc00000, 0xffc00001, 0x7f800001, 0x7fbfffff, 0xff812345]).buffer,
        );
        const all = new Float32Array([...vals, ...nans]);
        const [g, w] = both(new Uint16Array(all.length), (b, out) => b.floatToHalf(all, dtype, out));
        assertSame(g, w, `f32 -> ${dtype}`);
      }
    });
  });

  test("concurrent callers: worker threads and an async matmul share the pool safely", async () => {
    // Two worker threads hammer the addon (elementwise add and row sums, checked in JS) while this
    // thread runs async matmuls and its own kernels: exercises the busy pool's inline path, the
    // matmul mutex and the pool going single-threaded during sgemm.
    let root = dirname(fileURLToPath(import.meta.url));
    while (!existsSync(join(root, "binding.gyp")) && dirname(root) !== root) root = dirname(root);
    const addonPath = join(root, "build", "Release", "glassbox_native.node");
    const code = `
      const { workerData, parentPort } = require("node:worker_threads");
      const m = require(workerData.path);
      const n = 50000 + workerData.id * 777;
      const a = new Float32Array(n).map((_, i) => (i % 97) * 0.25 - 3);
      const b = new Float32Array(n).map((_, i) => (i % 13) * 0.5);
      const out = new Float32Array(n);
      const sums = new Float32Array(10);
      const layout = new Float64Array([1, n, 1, 1]);
      let bad = 0;
      for (let it = 0; it < 200; it++) {
        m.binary(0, a, b, out, layout);
        for (let i = 0; i < n; i += 101) if (out[i] !== Math.fround(a[i] + b[i])) bad++;
        m.reduce(0, a, sums, 10, n / 10 | 0, 1);
        let s = 0;
        for (let i = 0; i < (n / 10 | 0); i++) s += a[i];
        if (Math.abs(sums[0] - s) > 1e-3) bad++;
      }
      parentPort.postMessage(bad);
    `;
    const workers = [0, 1].map(
      (id) =>
        new Promise<number>((resolve, reject) => {
          const w = new Worker(code, { eval: true, workerData: { path: addonPath, id } });
          w.once("message", resolve);
          w.once("error", reject);
        }),
    );
    const s = 512;
    const args = {
      batch: 1,
      m: s,
      k: s,
      n: s,
      transA: false,
      transB: false,
      aBatchStride: 0,
      bBatchStride: 0,
      bDtype: "f32" as const,
      accumulate: false,
    };
    const x = uniform(s * s, 31);
    const y = uniform(s * s, 32);
    const want = new Float32Array(s * s);
    N.matmul(x, y, want, args);
    const soft = uniform(64 * 4096, 33, -5, 5);
    const softWant = new Float32Array(soft.length);
    N.softmax(soft, softWant, 64, 4096);
    for (let it = 0; it < 10; it++) {
      const got = new Float32Array(s * s);
      const pending = N.matmulAsync(x, y, got, args);
      const softGot = new Float32Array(soft.length);
      N.softmax(soft, softGot, 64, 4096);
      await pending;
      assertSame(got, want, `async matmul ${it}`);
      assertSame(softGot, softWant, `softmax beside matmul ${it}`);
    }
    assert.deepEqual(await Promise.all(workers), [0, 0]);
  });

  test("results do not depend on the thread count", () => {
    if (!("backend" in load)) return;
    const nb = load.backend;
    const threads = nb.info().threads;
    const x = uniform(300 * 640, 21, -3, 3);
    const run = () => {
      const o = new Float32Array(x.length);
      nb.softmax(x, o, 300, 640);
      const r = new Float32Array(640);
      nb.reduce("sum", x, r, { outer: 1, size: 300, inner: 640 });
      return [o, r];
    };
    const [a1, b1] = run();
    nb.setThreads(1);
    try {
      assert.equal(nb.info().threads, 1);
      const [a2, b2] = run();
      assertSame(a2, a1, "softmax 1 vs n threads");
      assertSame(b2, b1, "reduce 1 vs n threads");
    } finally {
      nb.setThreads(threads);
    }
  });

  test("recycled outputs: best fit within 2x, poisoned, never twice, never views", () => {
    const alloc = (n: number) => N.allocOutput?.(n) ?? assert.fail("allocOutput missing");
    const recycle = N.recycle?.bind(N) ?? assert.fail("recycle missing");
    const a = alloc(70000);
    a.fill(3);
    recycle(a);
    recycle(a); // a second hand-back of the same array is ignored
    const again = alloc(70000);
    assert.equal(again.buffer, a.buffer);
    assert.equal(again.length, 70000);
    // The test runner poisons outputs; a reused array is poisoned again, never left with old values.
    if (process.env.GLASSBOX_POISON_OUTPUTS === "1") assert.ok(again.every(Number.isNaN));
    assert.notEqual(alloc(70000).buffer, a.buffer, "handed out once only");
    recycle(a); // the stale array from before its buffer was handed out again: ignored
    assert.notEqual(alloc(70000).buffer, a.buffer);

    // A smaller output takes the smallest kept buffer that holds it, as a view of its front...
    const small = alloc(100000);
    const large = alloc(300000);
    recycle(large);
    recycle(small);
    const fit = alloc(90000);
    assert.equal(fit.buffer, small.buffer);
    assert.equal(fit.byteOffset, 0);
    assert.equal(fit.length, 90000);
    // ... but never one more than twice its length, nor a longer one at all when asked for exactly.
    assert.notEqual(alloc(140000).buffer, large.buffer);
    assert.notEqual(N.allocOutput?.(150000, true).buffer, large.buffer, "exact: not a longer buffer");
    assert.equal(alloc(150000).buffer, large.buffer);
    // The view that was handed out comes back whole; a narrower view of it never does.
    recycle(fit.subarray(0, 80000));
    assert.notEqual(alloc(80000).buffer, small.buffer, "a view of a live array is not taken");
    recycle(fit);
    assert.equal(alloc(80000).buffer, small.buffer);

    const whole = new Float32Array(140000);
    recycle(whole.subarray(0, 70000)); // not an array the pool handed out
    recycle(whole);
    assert.notEqual(alloc(70000).buffer, whole.buffer);
    // trimRecycled gives up what nothing took since the previous call, and keeps what came back since.
    const trim = N.trimRecycled?.bind(N) ?? assert.fail("trimRecycled missing");
    trim();
    const [stale, used] = [alloc(200000), alloc(500000)];
    recycle(stale);
    trim();
    recycle(used);
    trim();
    assert.notEqual(alloc(200000).buffer, stale.buffer, "unused since the last trim: given up");
    assert.equal(alloc(500000).buffer, used.buffer, "handed back since the last trim: kept");
    // At most 128 MiB is kept: past it the oldest arrays are given up.
    const big = 12 << 20; // 48 MiB
    const [x, y, z] = [alloc(big), alloc(big), alloc(big)];
    for (const t of [x, y, z]) recycle(t);
    const got = [alloc(big), alloc(big), alloc(big)];
    assert.equal(got[0].buffer, z.buffer);
    assert.equal(got[1].buffer, y.buffer);
    assert.ok([x, y, z].every((t) => t.buffer !== got[2].buffer));
    for (const t of got) recycle(t);

    // limitRecycled gives up what no output of the given length may take (over twice as long),
    // and returns its pages at once: the dead array reads as zeros where they were dropped.
    const limit = N.limitRecycled?.bind(N) ?? assert.fail("limitRecycled missing");
    const [keep, drop] = [alloc(300000), alloc(1 << 20)];
    keep.fill(3);
    drop.fill(5);
    recycle(keep);
    recycle(drop);
    limit(200000);
    if (process.platform === "linux") {
      assert.equal(drop[1 << 19], 0, "pages of a given-up buffer are dropped");
      assert.equal(keep[150000], 3, "a kept buffer is untouched");
    }
    assert.notEqual(alloc(1 << 20).buffer, drop.buffer, "too large for 200000: given up");
    assert.equal(alloc(300000).buffer, keep.buffer, "fits 200000 within twice: kept");

    // discard gives an array's pages back at once and never hands its buffer out again.
    const discard = N.discard?.bind(N) ?? assert.fail("discard missing");
    const gone = alloc(400000);
    gone.fill(7);
    discard(gone);
    if (process.platform === "linux") assert.equal(gone[200000], 0, "pages of a discarded array are dropped");
    recycle(gone); // already given up: ignored
    assert.notEqual(alloc(400000).buffer, gone.buffer);
    const foreign = new Float32Array(400000).fill(7);
    discard(foreign); // not from the pool: left alone
    assert.equal(foreign[200000], 7);
  });

  test("Tensor.dispose hands an op's output back; storage the backend did not hand out stays", () => {
    // An empty pool: two trims give up everything kept.
    N.trimRecycled?.();
    N.trimRecycled?.();
    const x = fromStorage(N, "f32", [70000], uniform(70000, 36));
    const y = neg(x);
    const storage = y.data;
    y.dispose();
    assert.equal(neg(x).data.buffer, storage.buffer, "the next output of that size reuses it");
    const w = fromStorage(N, "f32", [70000], new Float32Array(70000));
    w.dispose();
    assert.notEqual(neg(x).data.buffer, w.data.buffer);
  });

  test("large outputs (advised for huge pages) are written exactly, in place, inside a bigger buffer", () => {
    // 12 MiB: above the size from which the addon advises transparent huge pages for outputs.
    const n = 3 << 20;
    const x = uniform(n, 33);
    const whole = new Float32Array(n + 2).fill(7);
    const out = whole.subarray(1, n + 1);
    N.unary("neg", x, out);
    assert.equal(whole[0], 7);
    assert.equal(whole[n + 1], 7);
    for (let i = 0; i < n; i++) if (out[i] !== -x[i]) assert.fail(`element ${i}: ${out[i]} != ${-x[i]}`);
    const a = uniform(64 * 256, 34);
    const w = uniform(16384 * 256, 35);
    const args: MatmulArgs = {
      batch: 1,
      m: 64,
      k: 256,
      n: 16384,
      transA: false,
      transB: true,
      aBatchStride: 0,
      bBatchStride: 0,
      bDtype: "f32",
      accumulate: false,
    };
    const got = new Float32Array(64 * 16384);
    const want = new Float32Array(64 * 16384);
    N.matmul(a, w, got, args);
    R.matmul(a, w, want, args);
    for (let i = 0; i < got.length; i++)
      if (Math.abs(got[i] - want[i]) > 1e-4) assert.fail(`matmul element ${i}: ${got[i]} != ${want[i]}`);
  });
});
