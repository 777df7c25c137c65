import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { maskingRules } from "../../src/activations/sequences.js";
import { referenceBackend } from "../../src/backends/index.js";
import { fromStorage, type Tensor } from "../../src/core/tensor.js";
import { relu } from "../../src/dictionaries/activations/relu.js";
import { Sae } from "../../src/dictionaries/architectures/sae.js";
import type { FeatureActs } from "../../src/dictionaries/feature-acts.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { isLayerwise } from "../../src/dictionaries/types.js";
import { type EvalOptions, evalTable, evaluateDictionary } from "../../src/eval/evaluate.js";
import { klDivergence, logSoftmax } from "../../src/eval/metrics.js";
import type { Intervention } from "../../src/model/gemma3/interventions.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { parseSite } from "../../src/model/gemma3/sites.js";
import { syntheticDocuments } from "../activations/helpers.js";
import { writeTestModel } from "../activations/model-fixture.js";
import { fixture, tempDir } from "../io/helpers.js";

const root = tempDir("glassbox-eval-");
const model = loadGemma3(writeTestModel(join(root, "model")), referenceBackend);
const D = 48;
const LAYER = 3;
const SITE = `model.layers.${LAYER}.output`;
const docs = syntheticDocuments(8, 5);

/**
 * A ReLU SAE on resid_post with W_enc = [I, -I], W_dec = scale * [I; -I]: it reconstructs
 * scale * x exactly, and latent j (or d + j) fires wherever x_j is positive (negative).
 */
function scaledIdentitySae(scale: number, hook = SITE): Sae {
  const wEnc = new Float32Array(D * 2 * D);
  const wDec = new Float32Array(2 * D * D);
  for (let j = 0; j < D; j++) {
    wEnc[j * 2 * D + j] = 1;
    wEnc[j * 2 * D + D + j] = -1;
    wDec[j * D + j] = scale;
    wDec[(D + j) * D + j] = -scale;
  }
  const b = referenceBackend;
  return new Sae(
    {
      wEnc: fromStorage(b, "f32", [D, 2 * D], wEnc),
      bEnc: fromStorage(b, "f32", [2 * D], new Float32Array(2 * D)),
      wDec: fromStorage(b, "f32", [2 * D, D], wDec),
      bDec: fromStorage(b, "f32", [D], new Float32Array(D)),
    },
    relu,
    { hookIn: hook, hookOut: hook, l0: null, modelName: null, source: `identity x ${scale}` },
  );
}

const options = (dictionary: EvalOptions["dictionary"]): EvalOptions => ({
  model,
  dictionary,
  documents: () => docs,
  context: 24,
  bos: 2,
  rules: maskingRules("text", { bos: 2, pad: 0 }),
  longDocuments: "split",
  batch: 4,
});

/** The metrics computed independently: each sequence run alone, with its own interventions. */
function independent(scale: number) {
  const site = parseSite(SITE, model.config);
  const seqs: number[][] = [];
  for (const d of docs) {
    const ids = Array.from(d.ids);
    seqs.push(ids.slice(0, 24));
    for (let at = 24; at < ids.length; at += 23) seqs.push([2, ...ids.slice(at, at + 23)]);
  }
  let tokens = 0;
  let err = 0;
  let sq = 0;
  let active = 0;
  const sum = new Float64Array(D);
  const ce = { clean: 0, spliced: 0, ablated: 0 };
  const kl = { spliced: 0, ablated: 0 };
  let lossTokens = 0;
  for (const ids of seqs) {
    const keep = ids.map((id, p) => p > 0 && id !== 2 && id !== 0);
    const positions = keep.flatMap((k, p) => (k ? [p] : []));
    if (positions.length === 0) continue;
    const clean = model.forward([ids], { capture: [site] });
    const x = clean.activations.get(site).data as Float32Array;
    for (const p of positions) {
      for (let j = 0; j < D; j++) {
        const v = x[p * D + j];
        sum[j] += v;
        sq += v * v;
        err += (v - scale * v) ** 2;
        if (v !== 0) active++;
      }
      tokens++;
    }
    const at = (f: (v: number) => number): Intervention => ({
      site,
      apply: (act) => {
        const out = Float32Array.from(act.data as Float32Array);
        for (const p of positions) for (let j = 0; j < D; j++) out[p * D + j] = f(out[p * D + j]);
        return fromStorage(referenceBackend, "f32", act.shape, out);
      },
    });
    const spliced = model.forward([ids], { interventions: [at((v) => scale * v)] }).logits
      .data as Float32Array;
    const ablated = model.forward([ids], { interventions: [at(() => 0)] }).logits.data as Float32Array;
    const v = model.config.vocab;
    for (const p of positions) {
      if (p + 1 >= ids.length) continue;
      const row = (l: Float32Array) => logSoftmax(l.subarray(p * v, (p + 1) * v));
      const c = row(clean.logits.data as Float32Array);
      const s = row(spliced);
      const a = row(ablated);
      ce.clean -= c[ids[p + 1]];
      ce.spliced -= s[ids[p + 1]];
      ce.ablated -= a[ids[p + 1]];
      kl.spliced += klDivergence(c, s);
      kl.ablated += klDivergence(c, a);
      lossTokens++;
    }
  }
  let meanSq = 0;
  for (const s of sum) meanSq += (s / tokens) ** 2;
  const variance = sq / tokens - meanSq;
  return {
    tokens,
    lossTokens,
    l0: active / tokens,
    fvu: err / tokens / variance,
    mse: err / (tokens * D),
    deltaLm: (ce.spliced - ce.clean) / lossTokens,
    ceRecovered: (ce.ablated - ce.spliced) / (ce.ablated - ce.clean),
    klScore: (kl.ablated - kl.spliced) / kl.ablated,
  };
}

const close = (a: number, b: number, tol: number, what: string): void => {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
};

test("a dictionary reconstructing 0.7 x: every metric matches its definition computed sequence by sequence", async () => {
  const r = await evaluateDictionary(options(scaledIdentitySae(0.7)));
  const want = independent(0.7);
  assert.equal(r.tokens, want.tokens);
  assert.equal(r.loss_tokens, want.lossTokens);
  close(r.l0, want.l0, 1e-12, "l0");
  close(r.fvu, want.fvu, 1e-4, "fvu");
  close(r.mse, want.mse, 1e-4, "mse");
  close(r.delta_lm_loss, want.deltaLm, 1e-3, "delta LM loss");
  close(r.ce_loss_recovered, want.ceRecovered, 1e-3, "CE loss recovered");
  close(r.kl_score, want.klScore, 1e-3, "KL score");
  assert.equal(r.read_site, `blocks.${LAYER}.resid_post`);
  assert.equal(r.width, 2 * D);
  // Latent j fires where x_j > 0 and D + j where x_j < 0: no latent is dead, each fires on some tokens.
  assert.equal(r.dead_fraction, 0);
  assert.equal(
    r.density_histogram.counts.reduce((a, b) => a + b, 0),
    2 * D,
  );
  assert.match(evalTable(r), /CE loss recovered\s+0\.\d+/);
});

test("perfect reconstruction scores FVU 0, delta LM loss 0, CE recovered 1, KL score 1; zero reconstruction scores 0", async () => {
  const perfect = await evaluateDictionary(options(scaledIdentitySae(1)));
  assert.equal(perfect.fvu, 0);
  assert.equal(perfect.mse, 0);
  close(perfect.delta_lm_loss, 0, 1e-6, "delta");
  close(perfect.ce_loss_recovered, 1, 1e-5, "recovered");
  close(perfect.kl_score, 1, 1e-5, "kl score");
  const zero = await evaluateDictionary(options(scaledIdentitySae(0)));
  close(zero.ce_loss_recovered, 0, 1e-9, "recovered");
  close(zero.kl_score, 0, 1e-9, "kl score");
  close(zero.delta_lm_loss, zero.ce_ablated - zero.ce_clean, 1e-9, "delta");
  const limited = await evaluateDictionary({ ...options(scaledIdentitySae(1)), tokens: 10, batch: 2 });
  assert.ok(limited.tokens >= 10 && limited.tokens < perfect.tokens);
});

test("a Gemma Scope 2 transcoder reads mlp_in and is scored against and spliced into mlp_out", async () => {
  const dict = loadDictionary(
    fixture("dictionaries", "gemma-scope-2-tiny", "transcoder", "layer_5_width_128_l0_small"),
    referenceBackend,
  );
  const r = await evaluateDictionary(options(dict));
  assert.equal(r.read_site, "blocks.5.mlp_in");
  assert.equal(r.write_site, "blocks.5.mlp_out");
  // Independent FVU: reconstruct mlp_out from mlp_in captured in a plain forward pass.
  const mlpIn = parseSite("blocks.5.mlp_in", model.config);
  const mlpOut = parseSite("blocks.5.mlp_out", model.config);
  let err = 0;
  let sq = 0;
  let n = 0;
  const sum = new Float64Array(D);
  for (const d of docs) {
    const ids = Array.from(d.ids).slice(0, 24);
    const acts = model.forward([ids], { capture: [mlpIn, mlpOut] }).activations;
    const x = acts.get(mlpIn);
    const y = acts.get(mlpOut).data as Float32Array;
    const yHat = dict.reconstruct(x).data as Float32Array;
    ids.forEach((id, p) => {
      if (p === 0 || id === 2 || id === 0) return;
      for (let j = 0; j < D; j++) {
        err += (y[p * D + j] - yHat[p * D + j]) ** 2;
        sq += y[p * D + j] ** 2;
        sum[j] += y[p * D + j];
      }
      n++;
    });
  }
  const short = await evaluateDictionary({ ...options(dict), longDocuments: "truncate" });
  assert.equal(short.tokens, n);
  let meanSq = 0;
  for (const s of sum) meanSq += (s / n) ** 2;
  close(short.fvu, err / n / (sq / n - meanSq), 1e-4, "fvu");
  assert.ok(Number.isFinite(r.kl_score) && Number.isFinite(r.ce_loss_recovered));
});

test("a cross-layer transcoder: pooled FVU from the clean pass, losses from the closed-loop replacement model", async () => {
  const clt = loadDictionary(
    fixture("dictionaries", "gemma-scope-2-tiny", "clt", "width_64_l0_small"),
    referenceBackend,
  );
  assert.ok(isLayerwise(clt));
  const o = { ...options(clt), longDocuments: "truncate" as const };
  const r = await evaluateDictionary(o);
  const L = model.config.layers;
  assert.equal(r.layers, L);
  assert.equal(r.read_site, "blocks.*.mlp_in");
  assert.equal(r.write_site, "blocks.*.mlp_out");
  assert.equal(r.per_layer?.fvu.length, L);
  // Independently, sequence by sequence.
  const mlpIn = Array.from({ length: L }, (_, l) => parseSite(`blocks.${l}.mlp_in`, model.config));
  const mlpOut = Array.from({ length: L }, (_, l) => parseSite(`blocks.${l}.mlp_out`, model.config));
  const err = new Float64Array(L);
  const sq = new Float64Array(L);
  const sums = Array.from({ length: L }, () => new Float64Array(D));
  let n = 0;
  let active = 0;
  let ceSpliced = 0;
  let ceClean = 0;
  let lossTokens = 0;
  const v = model.config.vocab;
  for (const d of docs) {
    const ids = Array.from(d.ids).slice(0, 24);
    const keep = ids.map((id, p) => p > 0 && id !== 2 && id !== 0);
    const positions = keep.flatMap((k, p) => (k ? [p] : []));
    if (positions.length === 0) continue;
    const rowsOf = (t: Tensor<"f32">): Tensor<"f32"> => {
      const src = t.data as Float32Array;
      const out = new Float32Array(positions.length * D);
      positions.forEach((p, i) => {
        out.set(src.subarray(p * D, (p + 1) * D), i * D);
      });
      return fromStorage(referenceBackend, "f32", [positions.length, D], out);
    };
    const clean = model.forward([ids], { capture: [...mlpIn, ...mlpOut] });
    const xs = mlpIn.map((s) => rowsOf(clean.activations.get(s)));
    const acts = xs.map((x, l) => clt.encodeLayer(l, x));
    for (let l = 0; l < L; l++) {
      const y = rowsOf(clean.activations.get(mlpOut[l])).data as Float32Array;
      const yHat = clt.decodeLayer(l, acts, xs[l]).data as Float32Array;
      for (let i = 0; i < y.length; i++) {
        err[l] += (y[i] - yHat[i]) ** 2;
        sq[l] += y[i] ** 2;
        sums[l][i % D] += y[i];
      }
      active += acts[l].nnz;
    }
    n += positions.length;
    const liveActs: FeatureActs[] = [];
    const liveX: Tensor<"f32">[] = [];
    const interventions: Intervention[] = mlpIn.flatMap((site, l) => [
      {
        site,
        apply: (act: Tensor<"f32">) => {
          liveX[l] = rowsOf(act);
          liveActs[l] = clt.encodeLayer(l, liveX[l]);
          return act;
        },
      },
      {
        site: mlpOut[l],
        apply: (act: Tensor<"f32">) => {
          const out = Float32Array.from(act.data as Float32Array);
          const yHat = clt.decodeLayer(l, liveActs, liveX[l]).data as Float32Array;
          positions.forEach((p, i) => {
            out.set(yHat.subarray(i * D, (i + 1) * D), p * D);
          });
          return fromStorage(referenceBackend, "f32", act.shape, out);
        },
      },
    ]);
    const spliced = model.forward([ids], { interventions }).logits.data as Float32Array;
    for (const p of positions) {
      if (p + 1 >= ids.length) continue;
      ceClean -= logSoftmax((clean.logits.data as Float32Array).subarray(p * v, (p + 1) * v))[ids[p + 1]];
      ceSpliced -= logSoftmax(spliced.subarray(p * v, (p + 1) * v))[ids[p + 1]];
      lossTokens++;
    }
  }
  let unexplained = 0;
  let variance = 0;
  for (let l = 0; l < L; l++) {
    let meanSq = 0;
    for (const x of sums[l]) meanSq += (x / n) ** 2;
    unexplained += err[l] / n;
    variance += sq[l] / n - meanSq;
  }
  assert.equal(r.tokens, n);
  close(r.l0, active / n, 1e-12, "l0 summed over layers");
  close(r.fvu, unexplained / variance, 1e-4, "pooled fvu");
  close(r.delta_lm_loss, (ceSpliced - ceClean) / lossTokens, 1e-3, "delta LM loss");
  assert.match(evalTable(r), /FVU per layer/);
});

test("a dictionary for another site width is refused with a clear error; so is data without tokens", async () => {
  await assert.rejects(
    evaluateDictionary({ ...options(scaledIdentitySae(1)), documents: () => [] }),
    /no tokens to evaluate/,
  );
  await assert.rejects(
    evaluateDictionary(options(scaledIdentitySae(1, "model.layers.3.self_attn.o_proj.input"))),
    /d_in is 48 but site blocks\.3\.z has width 64/,
  );
});
