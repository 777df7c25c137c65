/**
 * Every format and architecture against the Python reference fixtures (official formula in
 * float64, cross-checked with sae-lens and circuit-tracer): feature activations and reconstructions
 * within 1e-5 of the activation scale, identical active sets, on every backend, from sparse and
 * from dense activations.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { sub } from "../../src/core/ops/elementwise.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import type { Dictionary } from "../../src/dictionaries/types.js";
import {
  AFFINE,
  assertCloseToScale,
  assertSameSupport,
  CLT,
  expected,
  GS1,
  GS1_TRANSCODER,
  RESID,
  SAELENS,
  TRANSCODER,
} from "./helpers.js";

const RTOL = 1e-5;

for (const backend of availableBackends()) {
  describe(`dictionary fixtures on ${backend.name}`, () => {
    function check(dict: Dictionary, name: string, maxPreFloats?: number): void {
      const e = expected(name, backend);
      const acts = dict.encode(e.x, maxPreFloats === undefined ? {} : { maxPreFloats });
      assert.ok(acts.isSparse);
      assert.deepEqual([...acts.shape], [...e.acts.shape]);
      const dense = acts.toDense().data;
      assertSameSupport(dense, e.acts.toFloat32Array(), `${name} active set`);
      assertCloseToScale(dense, e.acts, RTOL, `${name} acts`);
      assertCloseToScale(dict.decode(acts, e.x), e.recon, RTOL, `${name} recon (sparse decode)`);
      const denseActs = dict.encode(e.x, { dense: true });
      assert.ok(!denseActs.isSparse);
      assertCloseToScale(dict.decode(denseActs, e.x), e.recon, RTOL, `${name} recon (dense decode)`);
      assertCloseToScale(dict.reconstruct(e.x), e.recon, RTOL, `${name} reconstruct`);
    }

    test("resid_post JumpReLU SAE: Gemma Scope 2, Gemma Scope 1 npz and SAELens give the same outputs", () => {
      for (const path of [RESID, GS1, SAELENS]) {
        const d = loadDictionary(path, backend);
        assert.equal(d.spec.architecture, "sae");
        assert.equal(d.spec.activation.kind, "jumprelu");
        assert.deepEqual([d.spec.dIn, d.spec.dOut, d.spec.width], [48, 48, 128]);
        check(d, "resid_post_layer_2");
        check(d, "resid_post_layer_2", 40 * 50);
        check(d, "resid_post_layer_2", 7);
      }
      const d = loadDictionary(RESID, backend);
      assert.equal(d.spec.hookIn, "model.layers.2.output");
      assert.equal(d.spec.l0, 20);
      const e = expected("resid_post_layer_2", backend);
      const err = d.error(e.x);
      assertCloseToScale(err, sub(e.x, e.recon), RTOL, "error = x - recon");
    });

    test("transcoder (Gemma Scope 2 and Gemma Scope 1 npz)", () => {
      for (const d of [
        loadDictionary(TRANSCODER, backend),
        loadDictionary(GS1_TRANSCODER, backend, { gemmaScope1: { architecture: "transcoder" } }),
      ]) {
        assert.equal(d.spec.architecture, "transcoder");
        assert.equal(d.spec.reconstructsInput, false);
        check(d, "transcoder_layer_5");
        check(d, "transcoder_layer_5", 40 * 50);
        const e = expected("transcoder_layer_5", backend);
        assert.throws(() => d.error(e.x), /needs the true output/);
        assertCloseToScale(d.error(e.x, e.target), sub(e.target, e.recon), RTOL, "error = target - recon");
      }
    });

    test("skip-transcoder applies x @ affine_skip_connection as stored", () => {
      const d = loadDictionary(AFFINE, backend);
      assert.equal(d.spec.architecture, "skip_transcoder");
      assert.equal(d.spec.skip, true);
      check(d, "transcoder_layer_5_affine");
      const e = expected("transcoder_layer_5_affine", backend);
      assert.throws(() => d.decode(d.encode(e.x)), /decodes with its input/);
    });

    test("cross-layer transcoder: each layer's features write to every later layer", () => {
      const d = loadDictionary(CLT, backend);
      assert.equal(d.spec.architecture, "clt");
      assert.equal(d.spec.layers, 7);
      assert.deepEqual([d.spec.dIn, d.spec.dOut, d.spec.width], [48, 48, 64]);
      assert.equal(d.spec.hookIn, "model.layers.{all}.pre_feedforward_layernorm.output");
      check(d, "clt");
      check(d, "clt", 3);
      const e = expected("clt", backend);
      assertCloseToScale(d.error(e.x, e.target), sub(e.target, e.recon), RTOL, "CLT error");
    });
  });
}
