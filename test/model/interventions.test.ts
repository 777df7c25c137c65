/**
 * Each intervention against the property that defines it (zero-ablating z equals zeroing o_proj's
 * input weights' effect, projectOut leaves no component along the direction, an edit at position p
 * changes nothing before p, patching a run's residual reproduces that run, ...), several in order,
 * interventions during generation, and gradients through an intervention.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { grad } from "../../src/core/autograd.js";
import { add, mul } from "../../src/core/ops/elementwise.js";
import { narrow } from "../../src/core/ops/shape.js";
import { randomNormal } from "../../src/core/random.js";
import { type Tensor, tensor, zeros } from "../../src/core/tensor.js";
import { forward } from "../../src/model/gemma3/forward.js";
import { generate } from "../../src/model/gemma3/generate.js";
import { interventions as iv } from "../../src/model/gemma3/interventions.js";
import { lossOnTokens } from "../../src/model/gemma3/loss.js";
import { Gemma3Model } from "../../src/model/gemma3/model.js";
import { sites } from "../../src/model/gemma3/sites.js";
import { maxAbsDiff, tinyModel } from "./helpers.js";

const IDS = [
  [2, 7, 11, 3, 19, 23, 5, 31, 8],
  [2, 13, 17, 29, 37, 4, 6, 9, 10],
];

function values(t: Tensor): Float32Array {
  return t.toFloat32Array();
}

for (const backend of availableBackends()) {
  describe(`interventions (${backend.name})`, () => {
    const model = tinyModel(backend);
    const d = model.config.dModel;
    const base = model.forward(IDS);

    test("zero-ablating z of a layer equals running with o_proj's input zeroed (o_proj weights 0)", () => {
      const l = 1;
      const ablated = model.forward(IDS, { interventions: [iv.zeroAblate(sites.z(l))] }).logits;
      const layers = model.weights.layers.map((w, i) =>
        i === l ? { ...w, oProj: zeros(backend, [...w.oProj.shape]) } : w,
      );
      const rewired = new Gemma3Model(model.config, { ...model.weights, layers }, "f32", []);
      assert.deepEqual(values(ablated), values(rewired.forward(IDS).logits));
      assert.ok(maxAbsDiff(ablated, base.logits) > 1e-3, "the ablation must change something");
    });

    test("projectOut leaves no component along the direction", () => {
      const dir = randomNormal(backend, [d], 5);
      const site = sites.residMid(0);
      const out = model.forward(IDS, { interventions: [iv.projectOut(site, dir)], capture: [site] });
      const x = values(out.activations.get(site));
      const u = values(dir);
      const before = values(model.forward(IDS, { capture: [site] }).activations.get(site));
      let worst = 0;
      let moved = 0;
      for (let r = 0; r < x.length / d; r++) {
        let dot = 0;
        let norm = 0;
        for (let i = 0; i < d; i++) {
          dot += x[r * d + i] * u[i];
          norm += x[r * d + i] ** 2;
          moved = Math.max(moved, Math.abs(x[r * d + i] - before[r * d + i]));
        }
        worst = Math.max(worst, Math.abs(dot) / Math.sqrt(norm));
      }
      assert.ok(worst < 1e-5, `residual component ${worst}`);
      assert.ok(moved > 1e-3);
    });

    test("adding at position p changes nothing before p and something from p on", () => {
      const p = 4;
      const v = randomNormal(backend, [d], 6);
      const out = model.forward(IDS, {
        interventions: [iv.add(sites.residPost(0), v, { scale: 3, positions: [p] })],
      });
      assert.deepEqual(values(narrow(out.logits, 1, 0, p)), values(narrow(base.logits, 1, 0, p)));
      assert.ok(maxAbsDiff(narrow(out.logits, 1, p, 1), narrow(base.logits, 1, p, 1)) > 1e-3);
      assert.ok(maxAbsDiff(narrow(out.logits, 1, p + 1, 1), narrow(base.logits, 1, p + 1, 1)) > 1e-6);
    });

    test("add, scale, replace and meanAblate set the captured value as defined; list order matters", () => {
      const site = sites.mlpOut(2);
      const v = randomNormal(backend, [d], 7);
      const plain = model.forward(IDS, { capture: [site] }).activations.get(site);
      const run = (list: Parameters<typeof model.forward>[1]) =>
        model.forward(IDS, { ...list, capture: [site] }).activations.get(site);
      const addThenScale = run({ interventions: [iv.add(site, v, { scale: 2 }), iv.scale(site, 0.5)] });
      assert.ok(maxAbsDiff(addThenScale, mul(add(plain, mul(v, 2)), 0.5)) < 1e-6);
      const scaleThenAdd = run({ interventions: [iv.scale(site, 0.5), iv.add(site, v, { scale: 2 })] });
      assert.ok(maxAbsDiff(scaleThenAdd, add(mul(plain, 0.5), mul(v, 2))) < 1e-6);
      assert.ok(maxAbsDiff(addThenScale, scaleThenAdd) > 1e-3);
      const mean = randomNormal(backend, [d], 8);
      const meaned = values(run({ interventions: [iv.meanAblate(site, mean)] }));
      for (let i = 0; i < meaned.length; i++) assert.equal(meaned[i], values(mean)[i % d]);
      const seen: Tensor[] = [];
      run({ interventions: [iv.scale(site, 3), iv.capture(site, (x) => seen.push(x)), iv.scale(site, 2)] });
      assert.ok(maxAbsDiff(seen[0], mul(plain, 3)) < 1e-6);
    });

    test("patching another run's residual stream reproduces that run downstream", () => {
      const other = [IDS[1], IDS[0]];
      const l = 1;
      const donor = model.forward(other, { capture: [sites.residPost(l)] });
      const patched = model.forward(IDS, {
        interventions: [iv.replace(sites.residPost(l), donor.activations.get(sites.residPost(l)))],
      });
      assert.deepEqual(values(patched.logits), values(donor.logits));
    });

    test("interventions stay active during generation", () => {
      const forced = 17;
      const bias = tensor(
        backend,
        Array.from({ length: model.config.vocab }, (_, i) => (i === forced ? 1e4 : 0)),
      );
      const res = generate(model, IDS[0], {
        maxNewTokens: 5,
        stopTokens: [],
        interventions: [iv.add(sites.logits, bias)],
      });
      assert.deepEqual(res.tokens[0], [forced, forced, forced, forced, forced]);
      const free = generate(model, IDS[0], { maxNewTokens: 5, stopTokens: [] });
      assert.notDeepEqual(free.tokens[0], res.tokens[0]);
    });

    test("gradients flow through an intervention (steering vector) and match finite differences", () => {
      const site = sites.residPost(0);
      const loss = (p: { v: Tensor }) =>
        lossOnTokens(
          forward(model.config, model.weights, IDS, { interventions: [iv.add(site, p.v)] }).logits,
          IDS,
        );
      const v = mul(randomNormal(backend, [d], 9), 0.1);
      const g = values(grad(loss)({ v }).v);
      const eps = 1e-2;
      const gmax = g.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      for (const i of [0, 3, d - 1]) {
        const bump = (s: number) =>
          add(
            v,
            tensor(
              backend,
              Array.from({ length: d }, (_, j) => (j === i ? s : 0)),
            ),
          );
        const fd = (loss({ v: bump(eps) }).item() - loss({ v: bump(-eps) }).item()) / (2 * eps);
        assert.ok(Math.abs(fd - g[i]) <= 2e-2 * gmax + 1e-4, `coordinate ${i}: fd ${fd}, grad ${g[i]}`);
      }
      assert.ok(gmax > 0);
    });
  });
}
