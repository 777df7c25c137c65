// The sparse coder's hand-written step against `grad` on the dense formulation of every loss:
// JumpReLU (straight-through estimators, quadratic L0 and frequency penalties), TopK and BatchTopK
// with AuxK, Matryoshka prefixes, pre-encoder bias, skip connections and a two-layer CLT.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { customGrad, noGrad, valueAndGrad } from "../../src/core/autograd.js";
import type { Backend } from "../../src/core/backend.js";
import * as ops from "../../src/core/ops/index.js";
import { Rng } from "../../src/core/random.js";
import { type Tensor, tensor } from "../../src/core/tensor.js";
import { type CoderShape, SparseCoder } from "../../src/training/coder.js";
import { GEMMA_SCOPE_ADAM } from "../../src/training/optim.js";
import { BatchTopKRule } from "../../src/training/rules/batchtopk.js";
import { JumpReluRule } from "../../src/training/rules/jumprelu.js";
import type { ActivationRule } from "../../src/training/rules/rule.js";
import { TopKRule } from "../../src/training/rules/topk.js";

const B = 16;
const D = 6;
const M = 10;
const EPS = 0.2;
const SCALE_IN = 1.7;
const SCALE_OUT = 0.6;

type RuleKind = "jumprelu" | "topk" | "batchtopk";

interface Case {
  readonly name: string;
  readonly rule: RuleKind;
  readonly shape: CoderShape;
}

const jumpSpec = {
  kind: "jumprelu",
  targetL0: 3,
  sparsityCoefficient: 0.7,
  frequencyCoefficient: 0.3,
  frequencyThreshold: 0.2,
  bandwidth: EPS,
  initialThreshold: 0.3,
} as const;

function makeRule(kind: RuleKind): (w: number) => ActivationRule {
  if (kind === "jumprelu") return (w) => new JumpReluRule(jumpSpec, w);
  if (kind === "topk") return (w) => new TopKRule({ kind: "topk", k: 3, auxK: 2, auxCoefficient: 0.25 }, w);
  return (w) =>
    new BatchTopKRule({ kind: "batchtopk", k: 2.5, auxK: 3, auxCoefficient: 0.5, thresholdRate: 0.01 }, w);
}

const cases: Case[] = [
  {
    name: "JumpReLU SAE, pre-encoder bias, Matryoshka",
    rule: "jumprelu",
    shape: {
      inputs: ["x"],
      outputs: ["x"],
      dIn: D,
      dOut: D,
      width: M,
      groups: [4, 6],
      groupWeights: [0.5, 1],
      preEncoderBias: true,
    },
  },
  {
    name: "JumpReLU skip-transcoder",
    rule: "jumprelu",
    shape: { inputs: ["x"], outputs: ["y"], dIn: D, dOut: D, width: M, skip: true },
  },
  {
    name: "TopK SAE with AuxK",
    rule: "topk",
    shape: { inputs: ["x"], outputs: ["x"], dIn: D, dOut: D, width: M },
  },
  {
    name: "BatchTopK two-layer CLT, Matryoshka, AuxK",
    rule: "batchtopk",
    shape: {
      inputs: ["x", "x1"],
      outputs: ["y", "y1"],
      dIn: D,
      dOut: D,
      width: M,
      groups: [3, 7],
      groupWeights: [1, 2],
    },
  },
];

/** Fills every parameter with seeded values (thresholds near 0.3, so the STE band is positive). */
function randomise(coder: SparseCoder, seed: number): void {
  const rng = new Rng(seed);
  for (const [name, p] of Object.entries(coder.params)) {
    for (let i = 0; i < p.data.length; i++) {
      p.data[i] = name.endsWith("threshold") ? 0.2 + 0.2 * rng.uniform() : 0.5 * rng.normal();
    }
  }
}

function batchOf(backend: Backend, sites: readonly string[], seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  void backend;
  return new Map(sites.map((s) => [s, Float32Array.from({ length: B * D }, () => rng.normal())]));
}

/** Heaviside and JumpReLU with the rectangle-kernel straight-through gradients. */
function steFunctions(eps: number) {
  const rect = (z: Tensor, th: Tensor) => {
    const u = ops.div(ops.sub(z, th), eps);
    return ops.mul(ops.gt(u, -0.5), ops.lt(u, 0.5));
  };
  const jump = customGrad(
    (z: Tensor, th: Tensor) => ops.mul(z, ops.step(ops.sub(z, th))),
    (g, [z, th]) => [
      ops.mul(g, ops.step(ops.sub(z, th))),
      ops.sumTo(ops.mul(g, ops.mul(rect(z, th), ops.div(ops.neg(th), eps))), th.shape),
    ],
  );
  const heaviside = customGrad(
    (z: Tensor, th: Tensor) => ops.step(ops.sub(z, th)),
    (g, [z, th]) => [null, ops.sumTo(ops.mul(g, ops.mul(rect(z, th), -1 / eps)), th.shape)],
  );
  return { jump, heaviside };
}

/** 0/1 mask [B, M] of the k largest positive entries per row. */
function rowTopMask(pre: Float32Array, k: number, among?: (i: number) => boolean): Float32Array {
  const mask = new Float32Array(B * M);
  for (let t = 0; t < B; t++) {
    const order = Array.from({ length: M }, (_, i) => i)
      .filter((i) => among === undefined || among(i))
      .sort((a, b) => pre[t * M + b] - pre[t * M + a] || a - b);
    for (const i of order.slice(0, k)) if (pre[t * M + i] > 0) mask[t * M + i] = 1;
  }
  return mask;
}

function batchTopMask(pre: Float32Array, keep: number): Float32Array {
  const pos = Array.from(pre)
    .filter((v) => v > 0)
    .sort((a, b) => b - a);
  const kth = pos[Math.min(keep, pos.length) - 1];
  return Float32Array.from(pre, (v) => (v > 0 && v >= kth ? 1 : 0));
}

/** The loss of `c` written densely with ops, differentiated by `grad`. */
function denseLoss(
  backend: Backend,
  c: Case,
  coder: SparseCoder,
  batch: Map<string, Float32Array>,
  sparsityScale: number,
) {
  const s = c.shape;
  const L = s.inputs.length;
  const G = s.groups ?? [M];
  const W = s.groupWeights ?? G.map(() => 1);
  const t2 = (v: Float32Array, shape: number[]) => tensor(backend, v, { shape });
  const xin = s.inputs.map((k) => ops.mul(t2(batch.get(k)!, [B, D]), SCALE_IN));
  const ys = s.outputs.map((k) =>
    ops.mul(t2(batch.get(k)!, [B, D]), s.inputs.includes(k) ? SCALE_IN : SCALE_OUT),
  );
  const { jump, heaviside } = steFunctions(EPS);
  const prefixMasks = G.map((_, m) => {
    const end = G.slice(0, m + 1).reduce((a, b) => a + b, 0);
    return t2(
      Float32Array.from({ length: M }, (_, i) => (i < end ? 1 : 0)),
      [M],
    );
  });
  const params: Record<string, Tensor> = {};
  for (const [k, p] of Object.entries(coder.params)) params[k] = t2(p.data.slice(), [...p.shape]);
  return valueAndGrad((p: Record<string, Tensor>) => {
    const encIn = (l: number) => (s.preEncoderBias ? ops.sub(xin[l], p[`layer${l}.b_dec`]) : xin[l]);
    const pres = xin.map((_, l) =>
      ops.add(ops.matmul(encIn(l), p[`layer${l}.w_enc_t`], { transB: true }), p[`layer${l}.b_enc`]),
    );
    let extra = tensor(backend, 0);
    const fs = pres.map((pre, l) => {
      if (c.rule === "jumprelu") {
        const th = p[`layer${l}.threshold`];
        const h = heaviside(pre, th);
        const l0 = ops.sum(h, 1);
        const lam = jumpSpec.sparsityCoefficient * sparsityScale;
        const mu = jumpSpec.frequencyCoefficient * sparsityScale;
        const quad = ops.mul(
          ops.sum(ops.square(ops.sub(l0, jumpSpec.targetL0))),
          (lam * 2) / jumpSpec.targetL0 / B,
        );
        const freq = ops.mul(
          ops.sum(ops.relu(ops.sub(ops.div(ops.sum(h, 0), B), jumpSpec.frequencyThreshold))),
          mu,
        );
        extra = ops.add(extra, ops.add(quad, freq));
        return jump(pre, th);
      }
      const pv = noGrad(() => pre.toFloat32Array());
      const mask = c.rule === "topk" ? rowTopMask(pv, 3) : batchTopMask(pv, Math.round(2.5 * B));
      return ops.mul(pre, t2(mask, [B, M]));
    });
    let loss = tensor(backend, 0);
    const full: Tensor[] = [];
    G.forEach((_, m) => {
      for (let o = 0; o < L; o++) {
        const skip = p[`layer${o}.w_skip`];
        let yhat = ops.add(
          skip === undefined ? ops.mul(ys[o], 0) : ops.matmul(xin[o], skip),
          p[`layer${o}.b_dec`],
        );
        for (let l = 0; l <= o; l++) {
          const dec = ops.narrow(p[`layer${l}.w_dec`], 1, (o - l) * D, D);
          yhat = ops.add(yhat, ops.matmul(ops.mul(fs[l], prefixMasks[m]), dec));
        }
        const err = ops.sub(yhat, ys[o]);
        loss = ops.add(loss, ops.mul(ops.sum(ops.square(err)), W[m] / B));
        if (m === G.length - 1) full.push(yhat);
      }
    });
    if (c.rule !== "jumprelu") {
      // AuxK with every latent dead (dead window 0): top auxK pre-activations per row.
      const auxK = c.rule === "topk" ? 2 : 3;
      const coef = (c.rule === "topk" ? 0.25 : 0.5) * Math.min(M / auxK, 1);
      pres.forEach((pre, l) => {
        const pv = noGrad(() => pre.toFloat32Array());
        const fa = ops.mul(pre, t2(rowTopMask(pv, auxK), [B, M]));
        const eHat = ops.matmul(fa, p[`layer${l}.w_dec`]);
        const resid = ops.concat(
          full.slice(l).map((yh, j) =>
            ops.sub(
              ys[l + j],
              noGrad(() => t2(yh.toFloat32Array(), [B, D])),
            ),
          ),
          1,
        );
        loss = ops.add(loss, ops.mul(ops.sum(ops.square(ops.sub(eHat, resid))), coef / B));
      });
    }
    return ops.add(loss, extra);
  })(params);
}

for (const backend of availableBackends()) {
  describe(`sparse coder gradients (${backend.name})`, () => {
    for (const c of cases) {
      test(c.name, () => {
        const coder = new SparseCoder(backend, {
          shape: c.shape,
          makeRule: makeRule(c.rule),
          schedule: {
            lr: 1e-3,
            lrWarmupSteps: 0,
            lrWarmupFrom: 0.1,
            lrDecaySteps: 0,
            sparsityWarmupSteps: 4,
            totalSteps: 10,
          },
          adam: GEMMA_SCOPE_ADAM,
          deadWindow: 0,
          seed: 5,
        });
        randomise(coder, 11);
        const sites = [...new Set([...c.shape.inputs, ...c.shape.outputs])];
        const batch = batchOf(backend, sites, 12);
        const scales = new Map(sites.map((k) => [k, c.shape.inputs.includes(k) ? SCALE_IN : SCALE_OUT]));
        const want = denseLoss(backend, c, coder, batch, 0.25);
        const { metrics } = coder.computeGradients(batch, B, scales);
        assert.ok(
          Math.abs(metrics.loss - want.value.item()) <= 1e-4 * Math.abs(want.value.item()) + 1e-5,
          `loss ${metrics.loss} vs ${want.value.item()}`,
        );
        let checked = 0;
        for (const [name, g] of Object.entries(coder.gradients)) {
          const w = want.grads[name].toFloat32Array();
          let scale = 0;
          for (const v of w) scale = Math.max(scale, Math.abs(v));
          assert.ok(scale > 0, `${name}: the reference gradient is all zero (the case does not exercise it)`);
          for (let i = 0; i < w.length; i++) {
            assert.ok(
              Math.abs(g.data[i] - w[i]) <= 2e-4 * scale + 1e-5,
              `${name}[${i}]: ${g.data[i]} vs ${w[i]}`,
            );
          }
          checked++;
        }
        assert.equal(checked, Object.keys(want.grads).length);
      });
    }
  });
}
