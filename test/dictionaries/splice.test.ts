/**
 * Splicing into the tiny Gemma 3 model the dictionary fixtures were made for: the site receives the
 * reconstruction (or the model's own activation, i.e. reconstruction + error, with the error kept),
 * recorded features match the reference, several dictionaries combine, and a CLT gives a full
 * replacement model.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { add } from "../../src/core/ops/elementwise.js";
import { reshape } from "../../src/core/ops/shape.js";
import { fromStorage, type Tensor } from "../../src/core/tensor.js";
import { FeatureActs } from "../../src/dictionaries/feature-acts.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { splice, spliceAll } from "../../src/dictionaries/splice.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import type { ForwardOptions } from "../../src/model/gemma3/forward.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { sites } from "../../src/model/gemma3/sites.js";
import { assertCloseToScale, CLT, expected, MODEL, RESID, TRANSCODER } from "./helpers.js";

function same(a: Tensor, b: Tensor, what: string): void {
  assert.deepEqual([...a.shape], [...b.shape], `${what}: shape`);
  assert.ok(
    Buffer.from(a.toFloat32Array().buffer).equals(Buffer.from(b.toFloat32Array().buffer)),
    `${what}: not bit-identical`,
  );
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  const x = a.toFloat32Array();
  const y = b.toFloat32Array();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

for (const B of availableBackends()) {
  describe(`splicing on ${B.name}`, () => {
    const model = loadGemma3(MODEL, B);
    const f = SafetensorsFile.open(join(MODEL, "fixture.safetensors"));
    const ids = f.readTensorSync("input_ids", B);
    const mask = f.readTensorSync("attention_mask", B);
    f.close();
    const maskData = mask.toFlatArray();
    const valid = maskData.flatMap((m, i) => (m === 1 ? [i] : []));
    const run = (options: ForwardOptions) => model.forward(ids, options);
    const capture = [
      sites.residPost(2),
      ...Array.from({ length: 7 }, (_, l) => [sites.mlpIn(l), sites.mlpOut(l)]).flat(),
    ];
    const clean = run({ attentionMask: mask, capture });

    /** Rows of [batch, seq, ...] acts at the non-padding tokens, as dense values. */
    function validRows(acts: FeatureActs): Float32Array {
      const d = acts.toDense().toFloat32Array();
      return pickRows(d, valid, acts.width);
    }

    test("the model reproduces the fixtures' dictionary inputs", () => {
      const e = expected("transcoder_layer_5", B);
      const x = clean.activations.get(sites.mlpIn(5)).toFloat32Array();
      assertCloseToScale(pickRows(x, valid, 48), e.x, 1e-5, "mlp_in.5");
    });

    test("transcoder with the error kept: logits unchanged, recon + error = the true MLP output", () => {
      const tc = loadDictionary(TRANSCODER, B);
      const s = splice(tc, model.config, { keepError: true });
      const r = run({ attentionMask: mask, interventions: s.interventions, capture: [sites.mlpOut(5)] });
      same(r.logits, clean.logits, "logits");
      const trueOut = clean.activations.get(sites.mlpOut(5));
      same(r.activations.get(sites.mlpOut(5)), trueOut, "mlp_out.5");
      const out = s.outputs()[0];
      assert.ok(out);
      const sum = add(out.recon, out.error);
      const diff = maxAbsDiff(sum, trueOut);
      assert.ok(diff <= 4e-7 * maxAbs(trueOut), `recon + error differs from the MLP output by ${diff}`);
      same(out.recon, reshape(tc.reconstruct(clean.activations.get(sites.mlpIn(5))), trueOut.shape), "recon");
      const acts = s.acts()[0];
      assert.ok(acts);
      assert.deepEqual([...acts.shape], [3, 20, 128]);
      assertCloseToScale(validRows(acts), expected("transcoder_layer_5", B).acts, 1e-5, "spliced acts");
    });

    test("transcoder without the error: the MLP output becomes the reconstruction and logits move", () => {
      const tc = loadDictionary(TRANSCODER, B);
      const s = splice(tc, model.config);
      const r = run({
        attentionMask: mask,
        interventions: s.interventions,
        capture: [sites.mlpIn(5), sites.mlpOut(5)],
      });
      const recon = reshape(tc.reconstruct(r.activations.get(sites.mlpIn(5))), [3, 20, 48]);
      same(r.activations.get(sites.mlpOut(5)), recon, "mlp_out.5 = recon");
      assert.ok(maxAbsDiff(r.logits, clean.logits) > 1e-3, "splicing without the error changes the logits");
    });

    test("several dictionaries at once; positions; feature edits with the error kept", () => {
      const sae = loadDictionary(RESID, B);
      const tc = loadDictionary(TRANSCODER, B);
      const both = spliceAll([sae, tc], model.config);
      const r = run({ attentionMask: mask, interventions: both.interventions, capture });
      const residClean = clean.activations.get(sites.residPost(2));
      same(
        r.activations.get(sites.residPost(2)),
        reshape(sae.reconstruct(residClean), [3, 20, 48]),
        "resid_post.2",
      );
      const mlpIn5 = r.activations.get(sites.mlpIn(5));
      assert.ok(
        maxAbsDiff(mlpIn5, clean.activations.get(sites.mlpIn(5))) > 1e-4,
        "the SAE's change reaches layer 5",
      );
      same(r.activations.get(sites.mlpOut(5)), reshape(tc.reconstruct(mlpIn5), [3, 20, 48]), "mlp_out.5");

      const at = splice(sae, model.config, { positions: [3] });
      const p = run({ attentionMask: mask, interventions: at.interventions, capture: [sites.residPost(2)] });
      const got = p.activations.get(sites.residPost(2)).toFloat32Array();
      const recon = sae.reconstruct(residClean).toFloat32Array();
      const cleanData = residClean.toFloat32Array();
      for (let b = 0; b < 3; b++) {
        for (let t = 0; t < 20; t++) {
          const o = (b * 20 + t) * 48;
          const want = t === 3 ? recon : cleanData;
          assert.deepEqual(got.subarray(o, o + 48), want.subarray(o, o + 48), `batch ${b} position ${t}`);
        }
      }

      // Ablating one feature with the error kept moves the site by exactly -a_j d_j.
      const acts = sae.encode(residClean);
      const row = acts.row(0);
      const j = row.indices[0];
      const aj = row.values[0];
      const edit = splice(sae, model.config, {
        keepError: true,
        editActs: (a) => {
          const dense = a.toDense().toFloat32Array();
          dense[j] = 0;
          return FeatureActs.dense(fromStorage(B, "f32", a.shape, dense));
        },
      });
      const e = run({
        attentionMask: mask,
        interventions: edit.interventions,
        capture: [sites.residPost(2)],
      });
      const dj = sae
        .gemmaScope2Form()
        .files[0].tensors()
        .w_dec.toFloat32Array()
        .subarray(j * 48, (j + 1) * 48);
      const moved = e.activations.get(sites.residPost(2)).toFloat32Array();
      for (let c = 0; c < 48; c++) {
        assert.ok(Math.abs(moved[c] - (cleanData[c] - aj * dj[c])) < 1e-4, `component ${c}`);
      }
      for (let c = 48; c < 96; c++) assert.ok(Math.abs(moved[c] - cleanData[c]) < 1e-4);
    });

    test("CLT replacement model: every layer's MLP output from the features of that layer and below", () => {
      const clt = loadDictionary(CLT, B);
      const e = expected("clt", B);
      const kept = splice(clt, model.config, { keepError: true });
      const r = run({ attentionMask: mask, interventions: kept.interventions });
      same(r.logits, clean.logits, "logits with the error kept");
      const n = valid.length;
      kept.acts().forEach((a, l) => {
        assert.ok(a);
        const want = e.acts.toFloat32Array().subarray(l * n * 64, (l + 1) * n * 64);
        assertCloseToScale(validRows(a), want, 1e-5, `layer ${l} acts`);
      });
      kept.outputs().forEach((o, l) => {
        assert.ok(o);
        const d = o.recon.toFloat32Array();
        const rows = pickRows(d, valid, 48);
        assertCloseToScale(
          rows,
          e.recon.toFloat32Array().subarray(l * n * 48, (l + 1) * n * 48),
          1e-5,
          `layer ${l} recon`,
        );
      });
      const replaced = splice(clt, model.config);
      const capOut = Array.from({ length: 7 }, (_, l) => sites.mlpOut(l));
      const r2 = run({ attentionMask: mask, interventions: replaced.interventions, capture: capOut });
      replaced.outputs().forEach((o, l) => {
        assert.ok(o);
        same(r2.activations.get(sites.mlpOut(l)), o.recon, `mlp_out.${l} = CLT output`);
      });
      assert.ok(maxAbsDiff(r2.logits, clean.logits) > 1e-3);
    });
  });
}

function maxAbs(t: Tensor): number {
  let m = 0;
  for (const v of t.toFloat32Array()) m = Math.max(m, Math.abs(v));
  return m;
}

/** Rows `rows` (each `w` wide) of `data`, concatenated. */
function pickRows(data: Float32Array, rows: readonly number[], w: number): Float32Array {
  const out = new Float32Array(rows.length * w);
  for (const [i, r] of rows.entries()) out.set(data.subarray(r * w, (r + 1) * w), i * w);
  return out;
}
