// Gradients of every differentiable op against central finite differences (float64 loss, float32
// ops), on every available backend; plus the grad API itself: trees, nesting, stopGradient,
// customGrad (a JumpReLU straight-through estimator), errors.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import {
  customGrad,
  grad,
  noGrad,
  stopGradient,
  valueAndGrad,
  valueAndGradWithAux,
} from "../../src/core/autograd.js";
import { TensorError } from "../../src/core/errors.js";
import * as ops from "../../src/core/ops/index.js";
import { Rng } from "../../src/core/random.js";
import { type Tensor, tensor } from "../../src/core/tensor.js";
import { assertClose, randn, randu, vals } from "./helpers.js";

interface CheckOptions {
  readonly eps?: number;
  readonly rtol?: number;
  readonly atol?: number;
}

for (const B of availableBackends()) {
  /** Values spaced at least `gap` apart (shuffled), so max/min/topk have no near-ties. */
  const spaced = (shape: number[], seed: number, gap = 0.25): Tensor<"f32"> => {
    const n = shape.reduce((a, b) => a * b, 1);
    const perm = new Rng(seed).permutation(n);
    return tensor(
      B,
      Array.from(perm, (p) => (p - n / 2) * gap),
      { shape },
    );
  };
  /** Normal values pushed at least `margin` away from 0 (for relu/abs kinks). */
  const awayFromZero = (shape: number[], seed: number, margin = 0.2): Tensor<"f32"> => {
    const x = randn(B, shape, seed);
    return ops.add(x, ops.mul(ops.sign(x), margin));
  };

  /**
   * Checks d/dx_i of L = sum(f(xs) * r) (r random, L summed in float64) against central differences,
   * for every element of every input in `which`.
   */
  const check = (
    name: string,
    f: (...xs: Tensor[]) => Tensor,
    inputs: Tensor<"f32">[],
    which: number[] = inputs.map((_, i) => i),
    opts: CheckOptions = {},
  ): void => {
    const eps = opts.eps ?? 5e-3;
    const rtol = opts.rtol ?? 5e-3;
    const atol = opts.atol ?? 5e-4;
    const out = f(...inputs);
    const r = randn(B, out.shape, 12345);
    const rv = vals(r);
    const lossOf = (xs: Tensor[]): number => {
      const o = vals(f(...xs));
      let s = 0;
      for (let i = 0; i < o.length; i++) s += o[i] * rv[i];
      return s;
    };
    const grads = grad((xs: Tensor[]) => ops.sum(ops.mul(f(...xs), r)))(inputs);
    assert.equal(grads.length, inputs.length);
    for (const i of which) {
      const x = inputs[i];
      const g = vals(grads[i]);
      assert.deepEqual([...grads[i].shape], [...x.shape], `${name}: grad ${i} shape`);
      for (let j = 0; j < x.size; j++) {
        const data = Float32Array.from(x.data);
        const x0 = data[j];
        data[j] = x0 + eps;
        const up = data[j];
        const plus = lossOf(inputs.map((t, k) => (k === i ? tensor(B, data, { shape: x.shape }) : t)));
        data[j] = x0 - eps;
        const down = data[j];
        const minus = lossOf(inputs.map((t, k) => (k === i ? tensor(B, data, { shape: x.shape }) : t)));
        const numeric = (plus - minus) / (up - down);
        const tol = atol + rtol * Math.max(Math.abs(numeric), Math.abs(g[j]));
        assert.ok(
          Math.abs(numeric - g[j]) <= tol,
          `${name}: d/d input ${i}[${j}] analytic ${g[j]} vs numeric ${numeric}`,
        );
      }
    }
  };

  describe(`gradients on the ${B.name} backend`, () => {
    test("binary arithmetic with broadcasting and number operands", () => {
      const a = randn(B, [2, 3], 1);
      const b = randn(B, [3], 2);
      const pos = randu(B, [2, 3], 3, 0.5, 2);
      const posB = randu(B, [3], 4, 0.5, 2);
      check("add", ops.add, [a, b]);
      check("sub", ops.sub, [a, b]);
      check("mul", ops.mul, [a, b]);
      check("div", ops.div, [a, posB]);
      check("pow", ops.pow, [pos, b]);
      // Kinks avoided: b shifted well away from a.
      const far = ops.add(a, tensor(B, [1, -1, 1]));
      check("maximum", ops.maximum, [a, far]);
      check("minimum", ops.minimum, [a, far]);
      check("add number", (x) => ops.add(x, 2), [a]);
      check("sub number", (x) => ops.sub(2, x), [a]);
      check("mul number", (x) => ops.mul(x, -3), [a]);
      check("div number", (x) => ops.div(2, x), [pos]);
      check("pow number", (x) => ops.pow(x, 3), [pos]);
      check("affine", (x) => ops.affine(x, 1.5, -2), [a]);
      check("where", (c, x, y) => ops.where(c, x, y), [tensor(B, [[1], [0]]), a, b], [1, 2]);
    });

    test("unary ops", () => {
      const x = randn(B, [2, 4], 5);
      const pos = randu(B, [2, 4], 6, 0.3, 3);
      const kinked = awayFromZero([2, 4], 7);
      const cases: [string, (t: Tensor) => Tensor, Tensor<"f32">][] = [
        ["neg", ops.neg, x],
        ["exp", ops.exp, x],
        ["log", ops.log, pos],
        ["sqrt", ops.sqrt, pos],
        ["rsqrt", ops.rsqrt, pos],
        ["abs", ops.abs, kinked],
        ["square", ops.square, x],
        ["reciprocal", ops.reciprocal, pos],
        ["tanh", ops.tanh, x],
        ["sigmoid", ops.sigmoid, x],
        ["relu", ops.relu, kinked],
        ["geluTanh", ops.geluTanh, ops.mul(x, 2)],
      ];
      for (const [name, f, input] of cases) check(name, f, [input]);
      // step and sign have zero gradient.
      for (const f of [ops.step, ops.sign]) {
        const [g] = grad((xs: Tensor[]) => ops.sum(ops.mul(f(xs[0]), xs[0])))([kinked]);
        assertClose(g, vals(f(kinked)), { rtol: 0, atol: 0 });
      }
    });

    test("reductions", () => {
      const x = randn(B, [2, 3, 4], 8);
      check("sum all", (t) => ops.sum(t), [x]);
      check("sum axis", (t) => ops.sum(t, 1), [x]);
      check("sum axes keep", (t) => ops.sum(t, [0, 2], true), [x]);
      check("mean", (t) => ops.mean(t, [-1, 0]), [x]);
      const s = spaced([2, 3, 4], 9);
      check("max", (t) => ops.max(t, 1), [s]);
      check("max all", (t) => ops.max(t), [s]);
      check("min keep", (t) => ops.min(t, [0, 2], true), [s]);
      // Tied maxima share the gradient equally.
      const [g] = grad((xs: Tensor[]) => ops.sum(ops.max(xs[0], -1)))([tensor(B, [[1, 3, 3, 2]])]);
      assert.deepEqual(g.toFlatArray(), [0, 0.5, 0.5, 0]);
      check("sumTo", (t) => ops.sumTo(t, [3, 1]), [x]);
    });

    test("softmax, logSoftmax, rmsnorm, rope", () => {
      const x = randn(B, [3, 5], 10, 2);
      check("softmax", ops.softmax, [x]);
      check("logSoftmax", ops.logSoftmax, [x]);
      const h = randn(B, [2, 3, 6], 11);
      const w = randn(B, [6], 12, 0.3);
      check("rmsnorm offset 1", (a, b) => ops.rmsnorm(a, b, { weightOffset: 1 }), [h, w]);
      check("rmsnorm offset 0", (a, b) => ops.rmsnorm(a, b, { eps: 1e-2 }), [h, w]);
      check("rmsnorm no weight", (a) => ops.rmsnorm(a, null), [h]);
      const { cos, sin } = ops.ropeTables(tensor(B, [0, 3, 7], { dtype: "i32" }), 6, 10000);
      check("rope", (a) => ops.rope(a, cos, sin), [h]);
      check("rope inverse", (a) => ops.rope(a, cos, sin, { inverse: true }), [h]);
      // [batch, seq, heads, dim]: heads after positions.
      const hs = randn(B, [2, 3, 2, 6], 13);
      check("rope seqAxis -3", (a) => ops.rope(a, cos, sin, { seqAxis: -3 }), [hs]);
    });

    test("matmul", () => {
      let seed = 20;
      const cases: [number[], number[], boolean, boolean][] = [
        [[3, 4], [4, 2], false, false],
        [[4, 3], [4, 2], true, false],
        [[3, 4], [2, 4], false, true],
        [[4, 3], [2, 4], true, true],
        [[2, 3, 4], [5, 4], false, true],
        [[2, 4, 3], [4, 2], true, false],
        [[2, 4, 3], [2, 4], true, true],
        [[3, 4], [2, 4, 2], false, false],
        [[2, 1, 2, 3], [3, 3, 2], false, false],
        [[1, 2, 3], [2, 2, 3], false, true],
      ];
      for (const [sa, sb, transA, transB] of cases) {
        check(
          `matmul ${sa}${transA ? "^T" : ""} @ ${sb}${transB ? "^T" : ""}`,
          (a, b) => ops.matmul(a, b, { transA, transB }),
          [randn(B, sa, seed++), randn(B, sb, seed++)],
        );
      }
      // A bf16 weight: gradient with respect to the f32 activations.
      const wbf = ops.cast(randn(B, [5, 4], seed++), "bf16");
      check("matmul bf16 weight", (a) => ops.matmul(a, wbf, { transB: true }), [randn(B, [2, 3, 4], seed++)]);
    });

    test("indexing ops", () => {
      const x = randn(B, [3, 4, 2], 30);
      const idx = tensor(
        B,
        [
          [2, 0],
          [2, 2],
        ],
        { dtype: "i32" },
      );
      check("indexSelect", (t) => ops.indexSelect(t, 1, idx), [x]);
      check("embedding", (t) => ops.embedding(t, tensor(B, [1, 1, 0], { dtype: "i32" })), [
        randn(B, [3, 5], 31),
      ]);
      const src = randn(B, [3, 5, 2], 32);
      const sidx = tensor(B, [3, 0, 3, 1, 3], { dtype: "i32" });
      check("scatterAdd", (t, s) => ops.scatterAdd(t, 1, sidx, s), [x, src]);
      check("topk", (t) => ops.topk(t, 3).values, [spaced([2, 6], 33)]);
    });

    test("shape ops", () => {
      const x = randn(B, [2, 3, 4], 40);
      check("reshape", (t) => ops.reshape(t, [4, -1]), [x]);
      check("permute", (t) => ops.permute(t, [2, 0, 1]), [x]);
      check("permute (size-1 axes only)", (t) => ops.permute(t, [1, 0, 2]), [randn(B, [1, 3, 4], 41)]);
      check("transpose", (t) => ops.transpose(t), [x]);
      check("slice", (t) => ops.slice(t, [{ start: 1 }, { step: 2 }, { start: -3, stop: 4, step: 2 }]), [x]);
      check("narrow", (t) => ops.narrow(t, 2, 1, 2), [x]);
      check("select", (t) => ops.select(t, 1, -1), [x]);
      const y = randn(B, [2, 1, 4], 41);
      check("concat", (a, b, c) => ops.concat([a, b, c], 1), [x, y, x]);
      check("stack", (a, b) => ops.stack([a, b], 2), [x, x]);
      check("broadcastTo", (t) => ops.broadcastTo(t, [3, 2, 3, 4]), [y]);
      check("squeeze", (t) => ops.squeeze(t, 1), [y]);
      check("unsqueeze", (t) => ops.unsqueeze(t, -1), [y]);
      // Casting between float formats passes the cotangent through unchanged.
      const r = randn(B, [2, 3, 4], 42);
      const [g] = grad((xs: Tensor[]) => ops.sum(ops.mul(ops.cast(ops.cast(xs[0], "bf16"), "f32"), r)))([x]);
      assertClose(g, vals(r), { rtol: 0, atol: 0 });
    });
  });

  describe(`grad API on the ${B.name} backend`, () => {
    test("parameter trees, unused parameters, repeated use", () => {
      const w = randn(B, [3, 2], 50);
      const b = randn(B, [2], 51);
      const extra = randn(B, [4], 52);
      const x = randn(B, [5, 3], 53);
      const params = { layer: { w, b }, list: [extra, w], scale: 2 };
      const f = valueAndGrad((p: typeof params, input: Tensor) =>
        ops.sum(ops.square(ops.add(ops.matmul(input, p.layer.w), p.layer.b))),
      );
      const { value, grads } = f(params, x);
      const y = ops.add(ops.matmul(x, w), b);
      assertClose(value, [vals(ops.sum(ops.square(y)))[0]], { rtol: 1e-6, atol: 0 });
      // dL/dw = x^T (2y), dL/db = sum_rows 2y, computed here with loops.
      const xv = vals(x);
      const yv = vals(y);
      const dw = new Float64Array(6);
      const db = new Float64Array(2);
      for (let r = 0; r < 5; r++) {
        for (let j = 0; j < 2; j++) {
          db[j] += 2 * yv[r * 2 + j];
          for (let i = 0; i < 3; i++) dw[i * 2 + j] += xv[r * 3 + i] * 2 * yv[r * 2 + j];
        }
      }
      assertClose(grads.layer.w, dw, { rtol: 1e-5, atol: 1e-5 });
      assertClose(grads.layer.b, db, { rtol: 1e-5, atol: 1e-5 });
      assert.deepEqual(grads.list[0].toFlatArray(), [0, 0, 0, 0]);
      // The same tensor elsewhere in the tree is a separate parameter: it was not used.
      assert.deepEqual(grads.list[1].toFlatArray(), [0, 0, 0, 0, 0, 0]);
      assert.equal(grads.scale, 2);

      const [g] = grad((xs: Tensor[]) => ops.sum(ops.mul(xs[0], xs[0])))([b]);
      assertClose(
        g,
        vals(b).map((v) => 2 * v),
        { rtol: 1e-6, atol: 0 },
      );
    });

    test("nested grad: second derivatives", () => {
      const x = randn(B, [5], 60);
      const d2 = grad((y: Tensor) => ops.sum(grad((z: Tensor) => ops.sum(ops.mul(ops.mul(z, z), z)))(y)));
      assertClose(
        d2(x),
        vals(x).map((v) => 6 * v),
        { rtol: 1e-5, atol: 1e-6 },
      );
      const d2tanh = grad((y: Tensor) => ops.sum(grad((z: Tensor) => ops.sum(ops.tanh(z)))(y)));
      assertClose(
        d2tanh(x),
        vals(x).map((v) => -2 * Math.tanh(v) * (1 - Math.tanh(v) ** 2)),
        { rtol: 1e-4, atol: 1e-5 },
      );
      const d2gelu = grad((y: Tensor) => ops.sum(grad((z: Tensor) => ops.sum(ops.geluTanh(z)))(y)));
      assert.throws(() => d2gelu(x), /second derivative/);
    });

    test("stopGradient and noGrad make constants", () => {
      const x = randn(B, [4], 61);
      const [g1] = grad((xs: Tensor[]) => ops.sum(ops.mul(stopGradient(xs[0]), xs[0])))([x]);
      assertClose(g1, vals(x), { rtol: 0, atol: 0 });
      const [g2] = grad((xs: Tensor[]) =>
        ops.sum(
          ops.mul(
            noGrad(() => ops.exp(xs[0])),
            xs[0],
          ),
        ),
      )([x]);
      assertClose(g2, vals(ops.exp(x)), { rtol: 0, atol: 0 });
    });

    test("customGrad: JumpReLU with a straight-through threshold gradient", () => {
      // JumpReLU(x; theta) = x * H(x - theta). d/dx = H(x - theta); the threshold gets the
      // rectangle-kernel pseudo-derivative -(theta / h) K((x - theta) / h), K = 1 on |u| < 1/2.
      const h = 0.5;
      const jumpRelu = customGrad(
        (x: Tensor, theta: Tensor) => ops.mul(x, ops.step(ops.sub(x, theta))),
        (g, [x, theta]) => {
          const u = ops.div(ops.sub(x, theta), h);
          const rect = ops.mul(ops.gt(u, -0.5), ops.lt(u, 0.5));
          return [
            ops.mul(g, ops.step(ops.sub(x, theta))),
            ops.sumTo(ops.mul(g, ops.mul(rect, ops.div(ops.neg(theta), h))), theta.shape),
          ];
        },
      );
      const x = randn(B, [6, 3], 62);
      const theta = tensor(B, [0.1, 0.3, -0.2]);
      const out = jumpRelu(x, theta);
      const xv = vals(x);
      const tv = vals(theta);
      assertClose(
        out,
        xv.map((v, i) => (v > tv[i % 3] ? v : 0)),
        { rtol: 0, atol: 0 },
      );
      const { grads } = valueAndGrad((p: { x: Tensor; theta: Tensor }) => ops.sum(jumpRelu(p.x, p.theta)))({
        x,
        theta,
      });
      assertClose(
        grads.x,
        xv.map((v, i) => (v > tv[i % 3] ? 1 : 0)),
        { rtol: 0, atol: 0 },
      );
      const wantTheta = [0, 0, 0];
      xv.forEach((v, i) => {
        const t = tv[i % 3];
        if (Math.abs((v - t) / h) < 0.5) wantTheta[i % 3] += -t / h;
      });
      assert.ok(
        wantTheta.some((v) => v !== 0),
        "the test data must exercise the threshold gradient",
      );
      assertClose(grads.theta, wantTheta, { rtol: 1e-6, atol: 1e-7 });
    });

    test("errors and aux outputs", () => {
      const x = randn(B, [3], 63);
      assert.throws(() => grad((t: Tensor) => ops.mul(t, 2))(x), /one-element f32/);
      assert.throws(
        () => grad((t: Tensor) => ops.sum(ops.cast(t, "f32")))(tensor(B, [1], { dtype: "i32" })),
        TensorError,
      );
      const r = valueAndGradWithAux((t: Tensor) => {
        const y = ops.square(t);
        return [ops.sum(y), { y }] as const;
      })(x);
      assertClose(
        r.aux.y,
        vals(x).map((v) => v * v),
        { rtol: 1e-6, atol: 0 },
      );
      assertClose(
        r.grads,
        vals(x).map((v) => 2 * v),
        { rtol: 1e-6, atol: 0 },
      );
      // A constant function has zero gradients.
      assert.deepEqual(grad((_t: Tensor) => ops.sum(tensor(B, [1, 2])))(x).toFlatArray(), [0, 0, 0]);
    });
  });
}
