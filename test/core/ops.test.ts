// Every op on every available backend, against float64 expectations computed here with plain loops.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends, referenceBackend } from "../../src/backends/index.js";
import type { Backend } from "../../src/core/backend.js";
import type { DType } from "../../src/core/dtype.js";
import { TensorError } from "../../src/core/errors.js";
import { bf16ToF32, f16ToF32, f32ToBf16 } from "../../src/core/half.js";
import * as ops from "../../src/core/ops/index.js";
import { Rng } from "../../src/core/random.js";
import {
  arange,
  fromStorage,
  full,
  ones,
  shapeSize,
  type Tensor,
  tensor,
  zeros,
} from "../../src/core/tensor.js";
import {
  assertClose,
  assertShape,
  bf16Value,
  bIndex,
  expectBroadcast,
  f16Value,
  npBroadcast,
  randn,
  randu,
  ravel,
  unravel,
  vals,
} from "./helpers.js";

const F32 = { rtol: 1e-5, atol: 1e-6 };
// Transcendentals computed in float32 by a native backend may differ from float64 by a few ulps.
const F32_FN = { rtol: 2e-5, atol: 2e-6 };

/** Expected op(A) @ op(B) with broadcast batch dims, plus the sum of |terms| per element. */
function refMatmul(
  a: { shape: readonly number[]; values: ArrayLike<number> },
  b: { shape: readonly number[]; values: ArrayLike<number> },
  transA: boolean,
  transB: boolean,
) {
  const [a0, a1] = a.shape.slice(-2);
  const [b0, b1] = b.shape.slice(-2);
  const [m, k] = transA ? [a1, a0] : [a0, a1];
  const n = transB ? b0 : b1;
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const batch = npBroadcast(aBatch, bBatch);
  const shape = [...batch, m, n];
  const values = new Float64Array(shapeSize(shape));
  const scale = new Float64Array(values.length);
  for (let t = 0; t < shapeSize(batch); t++) {
    const bi = unravel(t, batch);
    const aOff = bIndex(bi, aBatch) * m * k;
    const bOff = bIndex(bi, bBatch) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        let sa = 0;
        for (let p = 0; p < k; p++) {
          const av = a.values[aOff + (transA ? p * m + i : i * k + p)];
          const bv = b.values[bOff + (transB ? j * k + p : p * n + j)];
          s += av * bv;
          sa += Math.abs(av * bv);
        }
        values[(t * m + i) * n + j] = s;
        scale[(t * m + i) * n + j] = sa;
      }
    }
  }
  return { shape, values, scale };
}

function assertMatmul(actual: Tensor, exp: ReturnType<typeof refMatmul>, what: string): void {
  assertShape(actual, exp.shape, what);
  const got = vals(actual);
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - exp.values[i]);
    assert.ok(err <= 1e-5 * exp.scale[i] + 1e-6, `${what}[${i}]: got ${got[i]}, want ${exp.values[i]}`);
  }
}

const other: Backend = { ...referenceBackend, name: "other" };

for (const B of availableBackends()) {
  const T = (v: Parameters<typeof tensor>[1], shape?: readonly number[]) =>
    tensor(B, v, shape === undefined ? {} : { shape });

  describe(`ops on the ${B.name} backend`, () => {
    test("factories and conversions", () => {
      const t = T([
        [1, 2, 3],
        [4, 5, 6],
      ]);
      assertShape(t, [2, 3]);
      assert.deepEqual(t.toArray(), [
        [1, 2, 3],
        [4, 5, 6],
      ]);
      assert.deepEqual(t.toFlatArray(), [1, 2, 3, 4, 5, 6]);
      assert.equal(T(7).item(), 7);
      assertShape(T(7), []);
      assert.throws(() => t.item(), TensorError);
      assert.throws(() => T([[1, 2], [3]]), TensorError);
      assert.throws(() => tensor(B, [1.5], { dtype: "i32" }), TensorError);
      assert.throws(() => T([1, 2, 3], [2, 2]), TensorError);
      assert.deepEqual(zeros(B, [2, 2]).toFlatArray(), [0, 0, 0, 0]);
      assert.deepEqual(ones(B, [3], "i32").toFlatArray(), [1, 1, 1]);
      assert.deepEqual(full(B, [2], 2.5, "bf16").toFlatArray(), [2.5, 2.5]);
      assert.deepEqual(arange(B, 4).toFlatArray(), [0, 1, 2, 3]);
      assert.deepEqual(arange(B, 1, 2, 0.25).toFlatArray(), [1, 1.25, 1.5, 1.75]);
      assert.deepEqual(arange(B, 5, 0, -2, "i32").toFlatArray(), [5, 3, 1]);
      const storage = new Uint16Array([f32ToBf16(1.5), f32ToBf16(-2)]);
      const s = fromStorage(B, "bf16", [2], storage);
      assert.equal(s.data, storage, "fromStorage must not copy");
      assert.deepEqual(s.toFlatArray(), [1.5, -2]);
      assert.throws(() => fromStorage(B, "f32", [3], new Float32Array(2)), TensorError);
      const wrongType = (): DType => "i32";
      assert.throws(() => fromStorage(B, wrongType(), [2], new Float32Array(2)), TensorError);
    });

    test("elementwise binary ops broadcast like numpy", () => {
      const cases: [readonly number[], readonly number[]][] = [
        [
          [2, 3, 4],
          [3, 1],
        ],
        [[4], [2, 3, 4]],
        [
          [2, 1, 4],
          [1, 3, 1],
        ],
        [[], [3]],
        [
          [0, 3],
          [1, 3],
        ],
        [[5], [5]],
      ];
      const fns: [string, (a: ops.Operand, b: ops.Operand) => Tensor, (a: number, b: number) => number][] = [
        ["add", ops.add, (a, b) => a + b],
        ["sub", ops.sub, (a, b) => a - b],
        ["mul", ops.mul, (a, b) => a * b],
        ["div", ops.div, (a, b) => a / b],
        ["maximum", ops.maximum, Math.max],
        ["minimum", ops.minimum, Math.min],
        ["eq", ops.eq, (a, b) => +(a === b)],
        ["ne", ops.ne, (a, b) => +(a !== b)],
        ["lt", ops.lt, (a, b) => +(a < b)],
        ["le", ops.le, (a, b) => +(a <= b)],
        ["gt", ops.gt, (a, b) => +(a > b)],
        ["ge", ops.ge, (a, b) => +(a >= b)],
      ];
      let seed = 1;
      for (const [sa, sb] of cases) {
        // Rounded to a 1/4 grid so that comparisons see ties.
        const a = ops.mul(ops.cast(ops.cast(ops.mul(randn(B, sa, seed++), 4), "i32"), "f32"), 0.25);
        const b = ops.add(
          ops.mul(ops.cast(ops.cast(ops.mul(randn(B, sb, seed++), 4), "i32"), "f32"), 0.25),
          0.125,
        );
        for (const [name, f, g] of fns) {
          const exp = expectBroadcast(
            [
              { shape: sa, values: vals(a) },
              { shape: sb, values: vals(b) },
            ],
            g,
          );
          const got = f(a, b);
          assertShape(got, exp.shape, `${name} ${sa} ${sb}`);
          assertClose(got, exp.values, F32, `${name} ${sa} ${sb}`);
        }
      }
      const x = randu(B, [3, 4], 9, 0.5, 2);
      const y = randn(B, [4], 10);
      assertClose(
        ops.pow(x, y),
        expectBroadcast(
          [
            { shape: [3, 4], values: vals(x) },
            { shape: [4], values: vals(y) },
          ],
          Math.pow,
        ).values,
        F32_FN,
      );
      // Number operands on either side.
      const xv = vals(x);
      assertClose(
        ops.add(x, 1.5),
        xv.map((v) => v + 1.5),
        F32,
      );
      assertClose(
        ops.sub(2, x),
        xv.map((v) => 2 - v),
        F32,
      );
      assertClose(
        ops.mul(-3, x),
        xv.map((v) => -3 * v),
        F32,
      );
      assertClose(
        ops.div(x, 3),
        xv.map((v) => v / 3),
        F32,
      );
      assertClose(
        ops.div(1, x),
        xv.map((v) => 1 / v),
        F32,
      );
      assertClose(
        ops.pow(x, 2),
        xv.map((v) => v * v),
        F32_FN,
      );
      assertClose(
        ops.maximum(x, 1),
        xv.map((v) => Math.max(v, 1)),
        F32,
      );
      assertClose(
        ops.gt(x, 1),
        xv.map((v) => +(v > 1)),
        F32,
      );
      assertClose(
        ops.affine(x, 2, -1),
        xv.map((v) => 2 * v - 1),
        F32,
      );
      // NaN propagates through maximum/minimum and fails every comparison but ne.
      const n = T([Number.NaN, 1]);
      assertClose(ops.maximum(n, 0), [Number.NaN, 1]);
      assertClose(ops.minimum(0, n), [Number.NaN, 0]);
      assertClose(ops.eq(n, n), [0, 1]);
      assertClose(ops.ne(n, n), [1, 0]);
      assert.throws(() => ops.add(T([1, 2, 3]), T([1, 2])), /do not broadcast/);
      assert.throws(() => ops.add(T([1]), tensor(B, [1], { dtype: "i32" })), /must be f32/);
      assert.throws(() => ops.add(T([1]), tensor(other, [1])), /different backends/);
    });

    test("unary ops", () => {
      const x = randn(B, [3, 5], 3, 2);
      const pos = randu(B, [3, 5], 4, 0.1, 4);
      const xv = vals(x);
      const pv = vals(pos);
      const c = Math.sqrt(2 / Math.PI);
      const cases: [string, (t: Tensor) => Tensor, (v: number) => number, Tensor, Float64Array][] = [
        ["neg", ops.neg, (v) => -v, x, xv],
        ["exp", ops.exp, Math.exp, x, xv],
        ["log", ops.log, Math.log, pos, pv],
        ["sqrt", ops.sqrt, Math.sqrt, pos, pv],
        ["rsqrt", ops.rsqrt, (v) => 1 / Math.sqrt(v), pos, pv],
        ["abs", ops.abs, Math.abs, x, xv],
        ["sign", ops.sign, Math.sign, x, xv],
        ["square", ops.square, (v) => v * v, x, xv],
        ["reciprocal", ops.reciprocal, (v) => 1 / v, pos, pv],
        ["tanh", ops.tanh, Math.tanh, x, xv],
        ["sigmoid", ops.sigmoid, (v) => 1 / (1 + Math.exp(-v)), x, xv],
        ["relu", ops.relu, (v) => Math.max(v, 0), x, xv],
        ["geluTanh", ops.geluTanh, (v) => 0.5 * v * (1 + Math.tanh(c * (v + 0.044715 * v ** 3))), x, xv],
        ["step", ops.step, (v) => (v > 0 ? 1 : 0), x, xv],
      ];
      for (const [name, f, g, input, iv] of cases) {
        const got = f(input);
        assertShape(got, input.shape, name);
        assertClose(got, iv.map(g), F32_FN, name);
      }
      // gelu_tanh_grad kernel against a central difference of the float64 formula.
      const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(c * (v + 0.044715 * v ** 3)));
      const d = new Float32Array(xv.length);
      B.unary("gelu_tanh_grad", x.data, d);
      assertClose(
        d,
        xv.map((v) => (gelu(v + 1e-6) - gelu(v - 1e-6)) / 2e-6),
        { rtol: 1e-4, atol: 1e-5 },
        "gelu'",
      );
      const special = T([Number.NEGATIVE_INFINITY, 0, -1, Number.NaN, 100, -100]);
      assertClose(ops.exp(special), [
        0,
        1,
        Math.exp(-1),
        Number.NaN,
        Number.POSITIVE_INFINITY,
        Math.exp(-100),
      ]);
      assertClose(ops.log(T([0, -1, 1])), [Number.NEGATIVE_INFINITY, Number.NaN, 0]);
      assertClose(ops.sigmoid(special), [0, 0.5, 1 / (1 + Math.E), Number.NaN, 1, 0], {
        rtol: 1e-5,
        atol: 1e-30,
      });
      assertClose(ops.relu(special), [0, 0, 0, Number.NaN, 100, 0]);
      assertClose(ops.step(special), [0, 0, 0, 0, 1, 0]);
      assertClose(ops.sign(special), [-1, 0, -1, Number.NaN, 1, -1]);
      assertClose(ops.tanh(special), [-1, 0, Math.tanh(-1), Number.NaN, 1, -1]);
    });

    test("where", () => {
      const c = T([[1], [0], [1]]);
      const a = randn(B, [3, 4], 5);
      const b = randn(B, [4], 6);
      const exp = expectBroadcast(
        [
          { shape: [3, 1], values: vals(c) },
          { shape: [3, 4], values: vals(a) },
          { shape: [4], values: vals(b) },
        ],
        (cv, av, bv) => (cv !== 0 ? av : bv),
      );
      assertClose(ops.where(c, a, b), exp.values, { rtol: 0, atol: 0 });
      assertClose(ops.where(T([0, 2, -1]), 7, T([1, 2, 3])), [1, 7, 7]);
      assert.throws(() => ops.where(T([1, 0]), T([1, 2, 3]), 0), /do not broadcast/);
    });

    test("reductions over one, several and all axes", () => {
      const shape = [2, 3, 4, 5];
      const x = randn(B, shape, 11);
      const xv = vals(x);
      const axesCases: (number | number[] | undefined)[] = [
        0,
        1,
        -1,
        [0, 2],
        [1, 2],
        [0, 1, 2, 3],
        undefined,
        [3, 1],
      ];
      for (const axes of axesCases) {
        const list =
          axes === undefined
            ? [0, 1, 2, 3]
            : (typeof axes === "number" ? [axes] : axes).map((a) => (a + 4) % 4);
        const kept = shape.map((d, i) => (list.includes(i) ? 1 : d));
        const dropped = shape.filter((_, i) => !list.includes(i));
        const acc = {
          sum: new Float64Array(shapeSize(kept)),
          max: new Float64Array(shapeSize(kept)).fill(Number.NEGATIVE_INFINITY),
          min: new Float64Array(shapeSize(kept)).fill(Number.POSITIVE_INFINITY),
        };
        for (let i = 0; i < xv.length; i++) {
          const o = ravel(
            unravel(i, shape).map((v, d) => (list.includes(d) ? 0 : v)),
            kept,
          );
          acc.sum[o] += xv[i];
          acc.max[o] = Math.max(acc.max[o], xv[i]);
          acc.min[o] = Math.min(acc.min[o], xv[i]);
        }
        const count = list.reduce((n, a) => n * shape[a], 1);
        for (const keep of [false, true]) {
          const what = `axes ${JSON.stringify(axes)} keep ${keep}`;
          const outShape = keep ? kept : dropped;
          const s = ops.sum(x, axes, keep);
          assertShape(s, outShape, what);
          assertClose(s, acc.sum, { rtol: 1e-5, atol: 1e-5 }, `sum ${what}`);
          assertClose(
            ops.mean(x, axes, keep),
            acc.sum.map((v) => v / count),
            { rtol: 1e-5, atol: 1e-6 },
            `mean ${what}`,
          );
          assertClose(ops.max(x, axes, keep), acc.max, F32, `max ${what}`);
          assertClose(ops.min(x, axes, keep), acc.min, F32, `min ${what}`);
        }
      }
      assert.throws(() => ops.sum(x, 4), /out of range/);
      assert.throws(() => ops.sum(x, [1, -3]), /repeated axis/);
      assert.throws(() => ops.max(zeros(B, [2, 0]), 1), /empty axis/);
      assert.deepEqual(ops.sum(zeros(B, [2, 0]), 1).toFlatArray(), [0, 0]);
      assertClose(ops.max(T([1, Number.NaN, 3])), [Number.NaN]);
    });

    test("argmax / argmin: ties pick the first, NaN never wins", () => {
      const x = randn(B, [3, 4, 5], 12);
      const xv = vals(x);
      for (const axis of [0, 1, 2]) {
        const shape = [3, 4, 5];
        const outShape = shape.filter((_, d) => d !== axis);
        const am = ops.argmax(x, axis);
        const an = ops.argmin(x, axis, true);
        assert.equal(am.dtype, "i32");
        assertShape(am, outShape);
        assertShape(
          an,
          shape.map((d, i) => (i === axis ? 1 : d)),
        );
        const amv = vals(am);
        const anv = vals(an);
        for (let o = 0; o < amv.length; o++) {
          const idx = unravel(o, outShape);
          let best = 0;
          let worst = 0;
          for (let i = 0; i < shape[axis]; i++) {
            const at = (j: number) => xv[ravel([...idx.slice(0, axis), j, ...idx.slice(axis)], shape)];
            if (at(i) > at(best)) best = i;
            if (at(i) < at(worst)) worst = i;
          }
          assert.equal(amv[o], best);
          assert.equal(anv[o], worst);
        }
      }
      assert.deepEqual(ops.argmax(T([1, 3, 3, Number.NaN, 2])).toFlatArray(), [1]);
      assert.deepEqual(ops.argmin(T([Number.NaN, 2, 1, 1])).toFlatArray(), [2]);
      assert.deepEqual(ops.argmax(T([Number.NaN, Number.NaN])).toFlatArray(), [0]);
    });

    test("softmax and logSoftmax over the last axis", () => {
      const x = ops.mul(randn(B, [4, 7], 13), 5);
      const rows = [...vals(x)];
      const big = T([
        [1000, 1001, 999],
        [-1e4, Number.NEGATIVE_INFINITY, -1e4 + 1],
      ]);
      for (const [input, data, cols] of [
        [x, rows, 7],
        [big, [...vals(big)], 3],
      ] as const) {
        const sm = new Float64Array(data.length);
        const lsm = new Float64Array(data.length);
        for (let r = 0; r < data.length / cols; r++) {
          const row = data.slice(r * cols, (r + 1) * cols);
          const m = Math.max(...row);
          const z = row.reduce((s, v) => s + Math.exp(v - m), 0);
          row.forEach((v, j) => {
            sm[r * cols + j] = Math.exp(v - m) / z;
            lsm[r * cols + j] = v - m - Math.log(z);
          });
        }
        assertClose(ops.softmax(input), sm, F32_FN, "softmax");
        assertClose(ops.logSoftmax(input), lsm, F32_FN, "logSoftmax");
      }
      const s = vals(ops.sum(ops.softmax(x), -1));
      assertClose(s, [1, 1, 1, 1], F32);
    });

    test("rmsnorm with Gemma's 1 + w offset, plain and without weight", () => {
      const x = randn(B, [2, 3, 8], 14, 3);
      const w = randn(B, [8], 15, 0.5);
      const xv = vals(x);
      const wv = vals(w);
      const expect = (offset: number, weight: ArrayLike<number> | null, eps: number) => {
        const out = new Float64Array(xv.length);
        for (let r = 0; r < 6; r++) {
          let ss = 0;
          for (let j = 0; j < 8; j++) ss += xv[r * 8 + j] ** 2;
          const inv = 1 / Math.sqrt(ss / 8 + eps);
          for (let j = 0; j < 8; j++)
            out[r * 8 + j] = xv[r * 8 + j] * inv * (weight ? offset + weight[j] : 1);
        }
        return out;
      };
      assertClose(ops.rmsnorm(x, w, { weightOffset: 1 }), expect(1, wv, 1e-6), F32_FN, "offset 1");
      assertClose(ops.rmsnorm(x, w, { eps: 0.5 }), expect(0, wv, 0.5), F32_FN, "offset 0");
      assertClose(ops.rmsnorm(x, null), expect(0, null, 1e-6), F32_FN, "no weight");
      const wb = ops.cast(w, "bf16");
      assertClose(ops.rmsnorm(x, wb, { weightOffset: 1 }), expect(1, vals(wb), 1e-6), F32_FN, "bf16 weight");
      // The kernel's invRms output.
      const inv = new Float32Array(6);
      B.rmsnorm(x.data, null, new Float32Array(48), 6, 8, 1e-6, 0, inv);
      const want = Array.from({ length: 6 }, (_, r) => {
        let ss = 0;
        for (let j = 0; j < 8; j++) ss += xv[r * 8 + j] ** 2;
        return 1 / Math.sqrt(ss / 8 + 1e-6);
      });
      assertClose(inv, want, F32_FN, "invRms");
      assert.throws(() => ops.rmsnorm(x, randn(B, [7], 1)), /does not match/);
    });

    test("rope tables and rotation (non-interleaved rotate_half)", () => {
      const dim = 8;
      const positions = tensor(B, [0, 1, 5, 17, 63], { dtype: "i32" });
      for (const [base, factor] of [
        [10000, 1],
        [1e6, 8],
      ]) {
        const { cos, sin } = ops.ropeTables(positions, dim, base, factor);
        assertShape(cos, [5, 4]);
        const wantCos: number[] = [];
        const wantSin: number[] = [];
        for (const p of [0, 1, 5, 17, 63]) {
          for (let i = 0; i < dim / 2; i++) {
            const angle = p / base ** ((2 * i) / dim) / factor;
            wantCos.push(Math.cos(angle));
            wantSin.push(Math.sin(angle));
          }
        }
        assertClose(cos, wantCos, { rtol: 0, atol: 2e-5 }, "cos");
        assertClose(sin, wantSin, { rtol: 0, atol: 2e-5 }, "sin");
      }
      const { cos, sin } = ops.ropeTables(positions, dim, 10000);
      const x = randn(B, [2, 3, 5, dim], 16);
      const xv = vals(x);
      const cv = vals(cos);
      const sv = vals(sin);
      const want = new Float64Array(xv.length);
      for (let r = 0; r < 6; r++) {
        for (let t = 0; t < 5; t++) {
          const o = (r * 5 + t) * dim;
          for (let j = 0; j < dim; j++) {
            // x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1], tables repeated over both halves.
            const half = dim / 2;
            const rot = j < half ? -xv[o + j + half] : xv[o + j - half];
            want[o + j] = xv[o + j] * cv[t * half + (j % half)] + rot * sv[t * half + (j % half)];
          }
        }
      }
      const y = ops.rope(x, cos, sin);
      assertClose(y, want, F32, "rope");
      assertClose(ops.rope(y, cos, sin, { inverse: true }), xv, { rtol: 1e-5, atol: 1e-5 }, "inverse");
      assert.throws(() => ops.rope(randn(B, [5, 6], 1), cos, sin), /tables must be/);
    });

    test("causal and sliding-window masks", () => {
      for (const [q, k, offset, window] of [
        [5, 5, undefined, undefined],
        [3, 7, undefined, 3],
        [4, 4, 0, 2],
        [2, 6, 1, undefined],
      ] as const) {
        const opts = {
          ...(offset === undefined ? {} : { queryOffset: offset }),
          ...(window === undefined ? {} : { window }),
        };
        const add = ops.causalMask(B, q, k, opts);
        const bool = ops.causalMask(B, q, k, { ...opts, form: "boolean" });
        assertShape(add, [q, k]);
        const off = offset ?? k - q;
        const w = window ?? Number.POSITIVE_INFINITY;
        const wantBool: number[] = [];
        for (let i = 0; i < q; i++) {
          for (let j = 0; j < k; j++) wantBool.push(j <= i + off && j > i + off - w ? 1 : 0);
        }
        assert.deepEqual(bool.toFlatArray(), wantBool);
        assert.deepEqual(
          add.toFlatArray(),
          wantBool.map((v) => (v ? 0 : Number.NEGATIVE_INFINITY)),
        );
      }
    });

    test("matmul: trans flags, batch broadcasting, 16-bit right operands", () => {
      let seed = 100;
      const cases: [readonly number[], readonly number[], boolean, boolean][] = [
        [[3, 4], [4, 5], false, false],
        [[4, 3], [4, 5], true, false],
        [[3, 4], [5, 4], false, true],
        [[4, 3], [5, 4], true, true],
        [[2, 3, 4], [4, 5], false, false],
        [[2, 3, 4], [6, 4], false, true],
        [[2, 4, 3], [4, 5], true, false],
        [[3, 4], [2, 4, 5], false, false],
        [[2, 1, 3, 4], [3, 4, 5], false, false],
        [[2, 3, 4], [2, 4, 5], false, false],
        [[1, 3, 4], [2, 5, 4], false, true],
        [[2, 1, 4, 3], [1, 3, 5, 4], true, true],
        [[0, 3, 4], [4, 2], false, false],
        [[3, 0], [0, 2], false, false],
      ];
      for (const [sa, sb, ta, tb] of cases) {
        const a = randn(B, sa, seed++);
        const b = randn(B, sb, seed++);
        const what = `${sa}${ta ? "^T" : ""} @ ${sb}${tb ? "^T" : ""}`;
        const exp = refMatmul({ shape: sa, values: vals(a) }, { shape: sb, values: vals(b) }, ta, tb);
        assertMatmul(ops.matmul(a, b, { transA: ta, transB: tb }), exp, what);
        for (const dt of ["bf16", "f16"] as const) {
          const bh = ops.cast(b, dt);
          const bits = bh.data as Uint16Array;
          const bv = Float64Array.from(bits, dt === "bf16" ? bf16Value : f16Value);
          const eh = refMatmul({ shape: sa, values: vals(a) }, { shape: sb, values: bv }, ta, tb);
          assertMatmul(ops.matmul(a, bh, { transA: ta, transB: tb }), eh, `${what} (${dt})`);
        }
      }
      assert.throws(() => ops.matmul(randn(B, [3, 4], 1), randn(B, [5, 6], 2)), /inner dims/);
      assert.throws(() => ops.matmul(randn(B, [4], 1), randn(B, [4, 2], 2)), /at least 2 dims/);
      assert.throws(() => ops.matmul(randn(B, [2, 3, 4], 1), randn(B, [3, 4, 5], 2)), /do not broadcast/);
      assert.throws(
        () => ops.matmul(ops.cast(randn(B, [2, 2], 1), "bf16"), randn(B, [2, 2], 2)),
        /left operand must be f32/,
      );
    });

    test("matmul kernel: accumulate and explicit batch strides", () => {
      const a = randn(B, [2, 3, 4], 30);
      const b = randn(B, [4, 5], 31);
      const exp = refMatmul(
        { shape: [2, 3, 4], values: vals(a) },
        { shape: [4, 5], values: vals(b) },
        false,
        false,
      );
      const out = new Float32Array(30).fill(1);
      B.matmul(a.data, b.data, out, {
        batch: 2,
        m: 3,
        k: 4,
        n: 5,
        transA: false,
        transB: false,
        aBatchStride: 12,
        bBatchStride: 0,
        bDtype: "f32",
        accumulate: true,
      });
      assertClose(
        out,
        exp.values.map((v) => v + 1),
        { rtol: 1e-5, atol: 1e-5 },
      );
    });

    test("matmulAsync equals matmul", async () => {
      const a = randn(B, [2, 8, 16], 40);
      const b = ops.cast(randn(B, [12, 16], 41), "bf16");
      const sync = ops.matmul(a, b, { transB: true });
      const asyncOut = await ops.matmulAsync(a, b, { transB: true });
      assert.deepEqual(asyncOut.toFlatArray(), sync.toFlatArray());
      await assert.rejects(ops.matmulAsync(a, randn(B, [3, 3], 1)), TensorError);
    });

    test("indexSelect, embedding (bf16 storage) and scatterAdd", () => {
      const x = randn(B, [3, 4, 5], 50);
      const xv = vals(x);
      const idx = tensor(
        B,
        [
          [2, 0],
          [2, 3],
        ],
        { dtype: "i32" },
      );
      const iv = [2, 0, 2, 3];
      const got = ops.indexSelect(x, 1, idx);
      assertShape(got, [3, 2, 2, 5]);
      const want: number[] = [];
      for (let o = 0; o < 3; o++)
        for (const i of iv) for (let j = 0; j < 5; j++) want.push(xv[ravel([o, i, j], [3, 4, 5])]);
      assertClose(got, want, { rtol: 0, atol: 0 });
      const sel0 = ops.indexSelect(x, 0, tensor(B, [1], { dtype: "i32" }));
      assertClose(sel0, xv.slice(20, 40), { rtol: 0, atol: 0 });
      const table = ops.cast(randn(B, [10, 6], 51), "bf16");
      const ids = tensor(B, [[9, 0, 9]], { dtype: "i32" });
      const emb = ops.embedding(table, ids);
      assertShape(emb, [1, 3, 6]);
      const bits = table.data as Uint16Array;
      assertClose(
        emb,
        [9, 0, 9].flatMap((r) => Array.from(bits.slice(r * 6, r * 6 + 6), bf16Value)),
        { rtol: 0, atol: 0 },
      );
      const tf16 = ops.cast(randn(B, [4, 3], 52), "f16");
      assertClose(
        ops.indexSelect(tf16, 1, tensor(B, [2], { dtype: "i32" })),
        [0, 1, 2, 3].map((r) => f16Value((tf16.data as Uint16Array)[r * 3 + 2])),
        { rtol: 0, atol: 0 },
      );
      assert.throws(() => ops.indexSelect(x, 1, tensor(B, [4], { dtype: "i32" })), /out of range/);
      assert.throws(() => ops.indexSelect(x, 1, tensor(B, [-1], { dtype: "i32" })), /out of range/);
      assert.throws(() => ops.indexSelect(x, 1, T([0])), /indices must be i32/);

      const target = randn(B, [3, 4], 53);
      const before = vals(target);
      const src = randn(B, [3, 5], 54);
      const sidx = [1, 3, 1, 0, 1];
      const sc = ops.scatterAdd(target, 1, tensor(B, sidx, { dtype: "i32" }), src);
      const sw = Float64Array.from(before);
      const srcv = vals(src);
      for (let o = 0; o < 3; o++) {
        sidx.forEach((t, i) => {
          sw[o * 4 + t] += srcv[o * 5 + i];
        });
      }
      assertClose(sc, sw, F32);
      assertClose(target, before, { rtol: 0, atol: 0 }, "target unchanged");
      assert.throws(() => ops.scatterAdd(target, 1, tensor(B, [0, 1], { dtype: "i32" }), src), /src must be/);
    });

    test("topk: sorted, ties by lower index, NaN last", () => {
      const x = ops.cast(ops.cast(ops.mul(randn(B, [4, 9], 60), 2), "i32"), "f32");
      const xv = vals(x);
      for (const k of [0, 1, 4, 9]) {
        const { values, indices } = ops.topk(x, k);
        assertShape(values, [4, k]);
        assert.equal(indices.dtype, "i32");
        const wantV: number[] = [];
        const wantI: number[] = [];
        for (let r = 0; r < 4; r++) {
          const order = Array.from({ length: 9 }, (_, j) => j).sort(
            (i, j) => xv[r * 9 + j] - xv[r * 9 + i] || i - j,
          );
          for (const j of order.slice(0, k)) {
            wantI.push(j);
            wantV.push(xv[r * 9 + j]);
          }
        }
        assert.deepEqual(indices.toFlatArray(), wantI);
        assert.deepEqual(values.toFlatArray(), wantV);
      }
      // A long row with many ties and NaNs, small and large k.
      const long = ops.cast(ops.cast(ops.mul(randn(B, [3, 200], 61), 3), "i32"), "f32");
      const lv = [...vals(long)].map((v, i) => (i % 17 === 5 ? Number.NaN : v));
      const lt = T(lv, [3, 200]);
      for (const k of [5, 64, 65, 150, 200]) {
        const { values, indices } = ops.topk(lt, k);
        const wantI: number[] = [];
        for (let r = 0; r < 3; r++) {
          const row = lv.slice(r * 200, r * 200 + 200);
          const key = (v: number) => (Number.isNaN(v) ? Number.NEGATIVE_INFINITY : v);
          const order = Array.from({ length: 200 }, (_, j) => j).sort(
            (i, j) => +Number.isNaN(row[i]) - +Number.isNaN(row[j]) || key(row[j]) - key(row[i]) || i - j,
          );
          wantI.push(...order.slice(0, k));
        }
        assert.deepEqual(indices.toFlatArray(), wantI, `k = ${k}`);
        assertClose(
          values,
          wantI.map((j, t) => lv[Math.floor(t / k) * 200 + j]),
          { rtol: 0, atol: 0 },
        );
      }
      const n = ops.topk(T([Number.NaN, 1, Number.NaN, 5, 1]), 5);
      assert.deepEqual(n.indices.toFlatArray(), [3, 1, 4, 0, 2]);
      assert.throws(() => ops.topk(x, 10), /out of range/);
    });

    test("cast: round to nearest even, i32 truncation", () => {
      const rng = new Rng(70);
      const bits = new Uint32Array(4096).map(() => rng.nextU32());
      const f = new Float32Array(bits.buffer).map((v) => (Number.isFinite(v) ? v : 1));
      // Tie cases: exactly halfway between two bf16 / f16 values.
      const ties = [
        1 + 2 ** -8,
        1 + 3 * 2 ** -8,
        1 + 2 ** -11,
        1 + 3 * 2 ** -11,
        -(2 + 2 ** -7),
        65520,
        65519,
        2 ** -25,
        3 * 2 ** -25,
      ];
      const x = T([...f, ...ties]);
      const xv = vals(x);
      for (const [dt, decode, infBits, overflowAt] of [
        ["bf16", bf16Value, 0x7f80, 2 ** 128 - 2 ** 119],
        ["f16", f16Value, 0x7c00, 65520],
      ] as const) {
        const h = ops.cast(x, dt);
        assert.equal(h.dtype, dt);
        const hb = h.data as Uint16Array;
        for (let i = 0; i < xv.length; i++) {
          const v = xv[i];
          const got = decode(hb[i]);
          if (!Number.isFinite(got)) {
            assert.ok(Math.abs(v) >= overflowAt, `${dt}: ${v} overflowed`);
            continue;
          }
          // Same-sign neighbours (magnitude +-1 ulp) must not be closer; on a tie the result is even.
          const sign = hb[i] & 0x8000;
          const mag = hb[i] & 0x7fff;
          const err = Math.abs(got - v);
          for (const nb of [mag - 1, mag + 1]) {
            if (nb < 0 || nb > infBits) continue;
            const nerr = Math.abs(decode(sign | nb) - v);
            assert.ok(err <= nerr, `${dt}: ${v} -> ${got}, but ${decode(sign | nb)} is closer`);
            if (err === nerr) assert.equal(hb[i] & 1, 0, `${dt}: tie for ${v} must round to even`);
          }
        }
        assertClose(ops.cast(h, "f32"), Array.from(hb, decode), { rtol: 0, atol: 0 });
      }
      assert.deepEqual(
        ops.cast(T([1.7, -1.7, 0.5, -0.5, 3e9, Number.NaN]), "i32").toFlatArray(),
        [1, -1, 0, 0, 2147483647, 0],
      );
      assert.deepEqual(ops.cast(tensor(B, [3, -4], { dtype: "i32" }), "f32").toFlatArray(), [3, -4]);
      const bf = ops.cast(T([1, 2.5, 1e-3, 1e5]), "bf16");
      assert.deepEqual(
        Array.from(ops.cast(bf, "f16").data as Uint16Array),
        Array.from(ops.cast(ops.cast(bf, "f32"), "f16").data as Uint16Array),
      );
    });

    test("bf16 and f16 round trips are exact for every bit pattern", () => {
      const all = new Uint16Array(65536).map((_, i) => i);
      for (const [dt, decode] of [
        ["bf16", bf16Value],
        ["f16", f16Value],
      ] as const) {
        const wide = new Float32Array(65536);
        B.halfToFloat(all, dt, wide);
        const back = new Uint16Array(65536);
        B.floatToHalf(wide, dt, back);
        for (let i = 0; i < 65536; i++) {
          const v = decode(i);
          if (Number.isNaN(v)) {
            assert.ok(Number.isNaN(wide[i]), `${dt} ${i} widens to NaN`);
            assert.ok(Number.isNaN(decode(back[i])), `${dt} ${i} stays NaN`);
          } else {
            assert.ok(
              Object.is(wide[i], Math.fround(v)),
              `${dt} ${i.toString(16)} widens to ${v}, got ${wide[i]}`,
            );
            assert.equal(back[i], i, `${dt} ${i.toString(16)} round trip`);
          }
        }
      }
      // Scalar helpers agree with the kernels.
      for (const h of [0, 1, 0x3c00, 0x7bff, 0x8001, 0xfc00]) {
        assert.ok(Object.is(f16ToF32(h), f16Value(h)));
        assert.ok(Object.is(bf16ToF32(h), bf16Value(h)));
        assert.equal(f32ToBf16(bf16Value(h)), h);
      }
    });

    test("shape ops: reshape, squeeze, unsqueeze, permute, transpose", () => {
      const x = randn(B, [2, 3, 4], 80);
      const xv = vals(x);
      const r = ops.reshape(x, [4, -1]);
      assertShape(r, [4, 6]);
      assert.equal(r.data, x.data, "reshape is a view");
      assert.throws(() => ops.reshape(x, [5, -1]), /cannot reshape/);
      assert.throws(() => ops.reshape(x, [-1, -1]), /cannot reshape/);
      assertShape(ops.unsqueeze(x, -1), [2, 3, 4, 1]);
      assertShape(ops.unsqueeze(x, 0), [1, 2, 3, 4]);
      assertShape(ops.squeeze(zeros(B, [1, 3, 1])), [3]);
      assertShape(ops.squeeze(zeros(B, [1, 3, 1]), -1), [1, 3]);
      assert.throws(() => ops.squeeze(x, 0), /not 1/);
      for (const perm of [
        [2, 0, 1],
        [1, 2, 0],
        [0, 2, 1],
        [2, 1, 0],
      ]) {
        const p = ops.permute(x, perm);
        const shape = perm.map((a) => x.shape[a]);
        assertShape(p, shape);
        const want = new Float64Array(xv.length);
        for (let i = 0; i < want.length; i++) {
          const idx = unravel(i, shape);
          const src = new Array<number>(3);
          perm.forEach((a, d) => {
            src[a] = idx[d];
          });
          want[i] = xv[ravel(src, [2, 3, 4])];
        }
        assertClose(p, want, { rtol: 0, atol: 0 }, `permute ${perm}`);
      }
      assert.deepEqual(ops.transpose(x).toFlatArray(), ops.permute(x, [0, 2, 1]).toFlatArray());
      assert.deepEqual(ops.transpose(x, 0, 2).toFlatArray(), ops.permute(x, [2, 1, 0]).toFlatArray());
      assert.throws(() => ops.permute(x, [0, 0, 1]), /not a permutation/);
      // Moving only size-1 axes keeps the element order: the result shares the storage.
      const y = randn(B, [2, 1, 4, 1], 81);
      const moved = ops.permute(y, [1, 0, 3, 2]);
      assertShape(moved, [1, 2, 1, 4]);
      assert.equal(moved.data, y.data, "a size-1 axis move is a view");
      assert.deepEqual(moved.toFlatArray(), y.toFlatArray());
      assert.notEqual(ops.permute(y, [2, 1, 0, 3]).data, y.data, "a real reorder copies");
      const ids = tensor(B, [[1, 2, 3]], { dtype: "i32" });
      assert.deepEqual(ops.transpose(ids).toArray(), [[1], [2], [3]]);
    });

    test("shape ops: slice (steps, negatives), narrow, select", () => {
      const shape = [4, 5, 6];
      const x = randn(B, shape, 81);
      const xv = vals(x);
      const cases: { start?: number; stop?: number; step?: number }[][] = [
        [{ start: 1, stop: 3 }],
        [{}, { start: -3 }, { step: 2 }],
        [{ start: -1, stop: -5 }],
        [
          { start: 0, stop: 100, step: 3 },
          { start: 4, stop: 5 },
          { start: 1, stop: 6, step: 4 },
        ],
      ];
      for (const ranges of cases) {
        const norm = shape.map((n, d) => {
          const r = ranges[d] ?? {};
          const step = r.step ?? 1;
          const c = (v: number) => Math.min(n, Math.max(0, v < 0 ? v + n : v));
          const out: number[] = [];
          for (let i = c(r.start ?? 0); i < c(r.stop ?? n); i += step) out.push(i);
          return out;
        });
        const outShape = norm.map((l) => l.length);
        const got = ops.slice(x, ranges);
        assertShape(got, outShape, JSON.stringify(ranges));
        const want: number[] = [];
        for (let i = 0; i < shapeSize(outShape); i++) {
          const idx = unravel(i, outShape);
          want.push(
            xv[
              ravel(
                idx.map((v, d) => norm[d][v]),
                shape,
              )
            ],
          );
        }
        assertClose(got, want, { rtol: 0, atol: 0 }, JSON.stringify(ranges));
      }
      assert.throws(() => ops.slice(x, [{ step: 0 }]), /step/);
      assert.throws(() => ops.slice(x, [{}, {}, {}, {}]), /ranges/);
      assert.deepEqual(
        ops.narrow(x, 1, 2, 2).toFlatArray(),
        ops.slice(x, [null, { start: 2, stop: 4 }]).toFlatArray(),
      );
      assert.throws(() => ops.narrow(x, 1, 4, 2), /out of bounds/);
      const last = ops.select(x, 0, -1);
      assertShape(last, [5, 6]);
      assertClose(last, xv.slice(90, 120), { rtol: 0, atol: 0 });
      const bf = ops.cast(x, "bf16");
      assert.deepEqual(
        Array.from(ops.slice(bf, [{ start: 1, stop: 2 }]).data as Uint16Array),
        Array.from((bf.data as Uint16Array).slice(30, 60)),
        "bf16 slice moves raw bits",
      );
    });

    test("shape ops: concat, stack, broadcastTo", () => {
      const a = randn(B, [2, 3], 82);
      const b = randn(B, [2, 1], 83);
      const c = randn(B, [2, 2], 84);
      const cat = ops.concat([a, b, c], 1);
      assertShape(cat, [2, 6]);
      const av = vals(a);
      const bv = vals(b);
      const cv = vals(c);
      const want: number[] = [];
      for (let r = 0; r < 2; r++)
        want.push(...av.slice(r * 3, r * 3 + 3), bv[r], ...cv.slice(r * 2, r * 2 + 2));
      assertClose(cat, want, { rtol: 0, atol: 0 });
      assertClose(ops.concat([a, a], 0), [...av, ...av], { rtol: 0, atol: 0 });
      assert.throws(() => ops.concat([a, randn(B, [3, 3], 1)], 1), /differ off axis/);
      assert.throws(() => ops.concat([a, ops.cast(a, "bf16")], 0), /mixed dtypes/);
      assert.throws(() => ops.concat([a, tensor(other, [[1, 2, 3]])], 0), /different backends/);
      const ids = ops.concat([tensor(B, [1, 2], { dtype: "i32" }), tensor(B, [3], { dtype: "i32" })], 0);
      assert.equal(ids.dtype, "i32");
      assert.deepEqual(ids.toFlatArray(), [1, 2, 3]);
      const st = ops.stack([a, a, a], 1);
      assertShape(st, [2, 3, 3]);
      assert.deepEqual(ops.select(st, 1, 2).toFlatArray(), a.toFlatArray());
      const e = ops.broadcastTo(b, [3, 2, 4]);
      assertShape(e, [3, 2, 4]);
      assertClose(
        e,
        Array.from({ length: 24 }, (_, i) => bv[unravel(i, [3, 2, 4])[1]]),
        { rtol: 0, atol: 0 },
      );
      assert.throws(() => ops.broadcastTo(a, [2, 6]), /broadcast/);
      assert.equal(ops.expand, ops.broadcastTo);
    });

    test("copy kernel with offsets and strides", () => {
      const src = Float32Array.from({ length: 24 }, (_, i) => i);
      const out = new Float32Array(30).fill(-1);
      // Read a 3x2 block with a transposed layout from offset 1, write it into rows of 5 from offset 2.
      B.copy(src, out, { shape: [3, 2], srcOffset: 1, srcStrides: [1, 4], dstOffset: 2, dstStrides: [5, 1] });
      const want = Array.from(out, () => -1);
      for (let i = 0; i < 3; i++) for (let j = 0; j < 2; j++) want[2 + i * 5 + j] = 1 + i + 4 * j;
      assert.deepEqual(Array.from(out), want);
      const bc = new Float32Array(6);
      B.copy(src, bc, { shape: [2, 3], srcOffset: 5, srcStrides: [0, 1], dstOffset: 0, dstStrides: [3, 1] });
      assert.deepEqual(Array.from(bc), [5, 6, 7, 5, 6, 7]);
    });
  });
}
