/**
 * The forward pass is differentiable end to end: gradients of the next-token loss with respect to
 * weights of every kind (embedding, norms, projections, q/k norms) match central finite differences
 * on a tiny model, on every backend.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { grad } from "../../src/core/autograd.js";
import type { Tensor } from "../../src/core/tensor.js";
import { fromStorage } from "../../src/core/tensor.js";
import { forward } from "../../src/model/gemma3/forward.js";
import { lossOnTokens } from "../../src/model/gemma3/loss.js";
import type { Gemma3Weights } from "../../src/model/gemma3/weights.js";
import { tinyModel } from "./helpers.js";

const IDS = [
  [2, 7, 11, 3, 19, 23, 5, 31],
  [2, 13, 17, 29, 37, 4, 6, 9],
];
const MASK = [
  [1, 1, 1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 1, 1, 0, 0],
];

interface Params {
  embed: Tensor;
  qNorm: Tensor;
  kProj: Tensor;
  oProj: Tensor;
  gateProj: Tensor;
  postFeedforwardNorm: Tensor;
  finalNorm: Tensor;
}

for (const backend of availableBackends()) {
  describe(`gradients through the forward pass (${backend.name})`, () => {
    const model = tinyModel(backend, {}, 3);
    const w = model.weights;
    const params: Params = {
      embed: w.embed,
      qNorm: w.layers[0].qNorm,
      kProj: w.layers[1].kProj,
      oProj: w.layers[2].oProj,
      gateProj: w.layers[0].gateProj,
      postFeedforwardNorm: w.layers[1].postFeedforwardNorm,
      finalNorm: w.finalNorm,
    };
    const weightsWith = (p: Params): Gemma3Weights => ({
      embed: p.embed,
      lmHead: p.embed,
      finalNorm: p.finalNorm,
      layers: w.layers.map((lw, l) => ({
        ...lw,
        ...(l === 0 ? { qNorm: p.qNorm, gateProj: p.gateProj } : {}),
        ...(l === 1 ? { kProj: p.kProj, postFeedforwardNorm: p.postFeedforwardNorm } : {}),
        ...(l === 2 ? { oProj: p.oProj } : {}),
      })),
    });
    const loss = (p: Params) =>
      lossOnTokens(forward(model.config, weightsWith(p), IDS, { attentionMask: MASK }).logits, IDS, MASK);
    const grads = grad(loss)(params);

    for (const key of Object.keys(params) as (keyof Params)[]) {
      test(key, () => {
        const g = grads[key].toFloat32Array();
        const x = params[key].toFloat32Array();
        const gmax = g.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        assert.ok(gmax > 0, "zero gradient");
        const eps = 1e-2;
        // The largest-gradient coordinate and two spread-out ones.
        const picks = [
          g.indexOf(g.reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a))),
          1,
          Math.floor(x.length / 2),
        ];
        for (const i of picks) {
          const at = (s: number) => {
            const y = Float32Array.from(x);
            y[i] += s;
            return loss({ ...params, [key]: fromStorage(backend, "f32", params[key].shape, y) }).item();
          };
          const fd = (at(eps) - at(-eps)) / (2 * eps);
          assert.ok(
            Math.abs(fd - g[i]) <= 2e-2 * gmax + 2e-4,
            `${key}[${i}]: finite difference ${fd}, gradient ${g[i]}`,
          );
        }
      });
    }
  });
}
