/**
 * Feature steering (src/features/steering.ts) against the properties that define it, on the bundled
 * tiny-gemma3 and its dictionaries: an add moves the write site by exactly alpha * d / |d| at the
 * chosen positions and nowhere else (earlier positions' logits bit-identical); a clamp moves it by
 * (c - f(x)) d, equals the splice reference (keepError + editActs), and re-encodes to c on an SAE
 * whose encoder inverts its decoder; an ablation removes exactly f(x) d; a CLT feature writes to
 * every target layer; a feature with a clear logit effect raises its token's probability; and the
 * `glassbox steer` CLI prints both generations and names the bad argument.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { availableBackends, defaultBackend } from "../../src/backends/index.js";
import type { Backend } from "../../src/core/backend.js";
import { fromStorage, type Tensor } from "../../src/core/tensor.js";
import { jumpRelu } from "../../src/dictionaries/activations/jumprelu.js";
import { Sae } from "../../src/dictionaries/architectures/sae.js";
import { FeatureActs } from "../../src/dictionaries/feature-acts.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { splice } from "../../src/dictionaries/splice.js";
import type { Dictionary } from "../../src/dictionaries/types.js";
import { isLayerwise } from "../../src/dictionaries/types.js";
import { buildFeatureDatabase } from "../../src/features/build.js";
import { FeatureDatabase } from "../../src/features/db.js";
import { decoderMatrix, logitEffects } from "../../src/features/directions.js";
import {
  featureDirection,
  maxActivation,
  type SteerSpec,
  scaleToMaxActivation,
  statisticsSpace,
  steeringInterventions,
} from "../../src/features/steering.js";
import { Tokenizer } from "../../src/io/tokenizer.js";
import { generate } from "../../src/model/gemma3/generate.js";
import { capture, type Intervention } from "../../src/model/gemma3/interventions.js";
import { type Gemma3Model, loadGemma3 } from "../../src/model/gemma3/model.js";
import { type Site, sites } from "../../src/model/gemma3/sites.js";
import { fixture, runCli } from "../io/helpers.js";
import { writeCorpus } from "./helpers.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const repoRoot = import.meta.url.endsWith(".js") ? join(here, "..", "..", "..") : join(here, "..", "..");
const MODEL = join(repoRoot, "models", "tiny-gemma3");
const GS = join(MODEL, "gemma-scope");
const SAE3 = join(GS, "resid_post", "layer_3_width_1k_l0_small");
const SAE5 = join(GS, "resid_post", "layer_5_width_1k_l0_big");
const TC2 = join(GS, "transcoder", "layer_2_width_1k_l0_medium");
const SKIP2 = join(GS, "transcoder", "layer_2_width_1k_l0_medium_affine");
const CLT = join(GS, "clt", "width_3k_l0_medium");
const FOREIGN = fixture("dictionaries", "gemma-scope-2-tiny", "resid_post", "layer_2_width_128_l0_small");
const EPS = 2 ** -23;

const tok = Tokenizer.fromDir(MODEL);
const PROMPT = "The old man walked slowly to the river and sat down by the water.";
const IDS = tok.encode(PROMPT);

/** Rows [rows, d] of a [batch, seq, d] activation as one flat array. */
function flat(t: Tensor): Float32Array {
  return t.toFloat32Array();
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

/**
 * Runs the prompt with `steer` and captures `at` both just before the steering (a capture
 * intervention ahead of it) and after it (the forward's capture): their difference is exactly
 * what the steering wrote, whatever it changed upstream.
 */
function beforeAfter(
  model: Gemma3Model,
  at: readonly Site[],
  steer: readonly Intervention[],
): { before: Map<string, Float32Array>; after: Map<string, Float32Array>; logits: Float32Array } {
  const before = new Map<string, Float32Array>();
  const pre = at.map((s) => capture(s, (x) => before.set(s.name, x.toFloat32Array())));
  const r = model.forward([IDS], { interventions: [...pre, ...steer], capture: at });
  const afterMap = new Map(at.map((s) => [s.name, flat(r.activations.get(s))]));
  return { before, after: afterMap, logits: r.logits.toFloat32Array() };
}

/** Asserts after - before = expected[r] (a [rows, d] array) within float32 rounding of the sum. */
function assertDelta(
  before: Float32Array,
  afterV: Float32Array,
  expected: Float32Array,
  what: string,
  rtol = 4,
): void {
  assert.equal(before.length, expected.length, `${what}: length`);
  const scale = maxAbs(before) + maxAbs(expected);
  let worst = 0;
  for (let i = 0; i < before.length; i++) {
    if (expected[i] === 0) {
      assert.ok(afterV[i] === before[i], `${what}: entry ${i} changed where nothing was steered`);
      continue;
    }
    worst = Math.max(worst, Math.abs(afterV[i] - before[i] - expected[i]));
  }
  assert.ok(worst <= rtol * EPS * scale, `${what}: delta off by ${worst} (scale ${scale})`);
}

/** [rows, d] with `row * coef[r]` in each row r (0 rows where coef is 0). */
function outer(coef: readonly number[], row: Float32Array): Float32Array {
  const d = row.length;
  const out = new Float32Array(coef.length * d);
  coef.forEach((c, r) => {
    for (let j = 0; j < d; j++) out[r * d + j] = c * row[j];
  });
  return out;
}

function featureValues(
  dict: Dictionary,
  x: Float32Array,
  d: number,
  feature: number,
  layer: number | null,
  B: Backend,
) {
  const rows = x.length / d;
  const t = fromStorage(B, "f32", [rows, d], x);
  const acts = isLayerwise(dict) && layer !== null ? dict.encodeLayer(layer, t) : dict.encode(t);
  const dense = acts.toDense().toFloat32Array();
  return Array.from({ length: rows }, (_, r) => dense[r * acts.width + feature]);
}

/** The most active feature (at row `row`) of the dictionary's read of `x`. */
function mostActive(
  dict: Dictionary,
  x: Float32Array,
  d: number,
  row: number,
  layer: number | null,
  B: Backend,
) {
  const t = fromStorage(B, "f32", [x.length / d, d], x);
  const acts = isLayerwise(dict) && layer !== null ? dict.encodeLayer(layer, t) : dict.encode(t);
  return acts.top(1)[row][0];
}

/** A JumpReLU SAE at `model.layers.3.output` whose encoder is its decoder's transpose, rows orthonormal. */
function orthonormalSae(B: Backend, width: number, d: number): Sae {
  const rows: Float32Array[] = [];
  let s = 12345;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  while (rows.length < width) {
    const v = Float64Array.from({ length: d }, rand);
    for (const u of rows) {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += v[j] * u[j];
      for (let j = 0; j < d; j++) v[j] -= dot * u[j];
    }
    const n = Math.hypot(...v);
    rows.push(Float32Array.from(v, (x) => x / n));
  }
  const wDec = new Float32Array(width * d);
  const wEnc = new Float32Array(d * width);
  rows.forEach((u, f) => {
    wDec.set(u, f * d);
    for (let j = 0; j < d; j++) wEnc[j * width + f] = u[j];
  });
  return new Sae(
    {
      wEnc: fromStorage(B, "f32", [d, width], wEnc),
      bEnc: fromStorage(B, "f32", [width], new Float32Array(width)),
      wDec: fromStorage(B, "f32", [width, d], wDec),
      bDec: fromStorage(B, "f32", [d], new Float32Array(d)),
    },
    jumpRelu(fromStorage(B, "f32", [width], new Float32Array(width).fill(0.25))),
    {
      hookIn: "model.layers.3.output",
      hookOut: "model.layers.3.output",
      l0: null,
      modelName: null,
      source: "memory",
    },
  );
}

for (const B of availableBackends()) {
  describe(`steering on ${B.name}`, () => {
    const model = loadGemma3(MODEL, B);
    const config = model.config;
    const d = config.dModel;
    const T = IDS.length;

    test("add: the site moves by exactly alpha * d/|d| at the chosen positions, nowhere else", () => {
      const sae = loadDictionary(SAE3, B);
      const site = sites.residPost(3);
      const clean = model.forward([IDS], { capture: [site] });
      const x = flat(clean.activations.get(site));
      const feature = 77;
      const alpha = 6.5;
      const positions = [3, 7];
      const steer = steeringInterventions(sae, config, [{ feature, mode: "add", strength: alpha }], {
        positions,
      });
      const r = model.forward([IDS], { interventions: steer, capture: [site] });
      const dir = featureDirection(sae, config, feature);
      assert.equal(dir.targets.length, 1);
      assert.equal(dir.targets[0].site.name, site.name);
      const unit = dir.targets[0].row.map((v) => v / dir.norm);
      const coef = Array.from({ length: T }, (_, p) => (positions.includes(p) ? alpha : 0));
      assertDelta(x, flat(r.activations.get(site)), outer(coef, unit), "resid_post.3");
      // Causal: logits before the first steered position are bit-identical, the steered one moves.
      const V = config.vocab;
      const a = clean.logits.toFloat32Array();
      const b = r.logits.toFloat32Array();
      for (let i = 0; i < 3 * V; i++) assert.ok(a[i] === b[i], `logit ${i} before position 3 changed`);
      assert.ok(maxAbs(a.subarray(3 * V, 4 * V).map((v, i) => v - b[3 * V + i])) > 1e-3);
      // {from: n}: every position from n on.
      const from = steeringInterventions(sae, config, [{ feature, mode: "add", strength: alpha }], {
        positions: { from: 9 },
      });
      const rf = model.forward([IDS], { interventions: from, capture: [site] });
      const coefFrom = Array.from({ length: T }, (_, p) => (p >= 9 ? alpha : 0));
      assertDelta(x, flat(rf.activations.get(site)), outer(coefFrom, unit), "resid_post.3 from 9");
    });

    test("clamp on a JumpReLU SAE: (c - f(x)) d, the splice reference, and c on re-encoding", () => {
      const sae = loadDictionary(SAE5, B);
      const site = sites.residPost(5);
      const x = flat(model.forward([IDS], { capture: [site] }).activations.get(site));
      const top = mostActive(sae, x, d, 4, null, B);
      const c = 3 * top.value;
      const spec: SteerSpec = { feature: top.index, mode: "clamp", value: c };
      const steer = steeringInterventions(sae, config, [spec]);
      const { before, after: afterV } = beforeAfter(model, [site], steer);
      const f = featureValues(sae, x, d, top.index, null, B);
      assert.ok(f[4] > 0);
      const row = featureDirection(sae, config, top.index).targets[0].row;
      assertDelta(
        before.get(site.name) as Float32Array,
        afterV.get(site.name) as Float32Array,
        outer(
          f.map((v) => c - v),
          row,
        ),
        "clamped resid_post.5",
      );
      // The same as splicing with the error kept and the feature's activation set to c.
      const ref = splice(sae, config, {
        keepError: true,
        editActs: (acts) => {
          const dense = acts.toDense().toFloat32Array();
          for (let r = 0; r < acts.rows; r++) dense[r * acts.width + top.index] = c;
          return FeatureActs.dense(fromStorage(B, "f32", acts.shape, dense));
        },
      });
      const viaSplice = flat(
        model.forward([IDS], { interventions: ref.interventions, capture: [site] }).activations.get(site),
      );
      const mine = afterV.get(site.name) as Float32Array;
      const err = maxAbs(mine.map((v, i) => v - viaSplice[i]));
      assert.ok(err <= 1e-5 * maxAbs(viaSplice), `clamp differs from the splice reference by ${err}`);

      // On an SAE whose encoder inverts its decoder, re-encoding gives exactly c where the feature
      // was active (f(x) = its pre-activation), pre + c where it was not (f(x) = 0: the clamp adds
      // c d), and leaves every other feature as it was.
      const ortho = orthonormalSae(B, 32, d);
      const s3 = sites.residPost(3);
      const x3 = flat(model.forward([IDS], { capture: [s3] }).activations.get(s3));
      const dense = (v: Float32Array) =>
        ortho
          .encode(fromStorage(B, "f32", [T, d], v), { dense: true })
          .toDense()
          .toFloat32Array();
      const clean = dense(x3);
      const feature = 5;
      const u = featureDirection(ortho, config, feature).targets[0].row;
      const pre = Array.from({ length: T }, (_, p) => {
        let dot = 0;
        for (let j = 0; j < d; j++) dot += x3[p * d + j] * u[j];
        return dot;
      });
      const active = pre.filter((_, p) => clean[p * 32 + feature] > 0).length;
      assert.ok(active > 0 && active < T, `feature ${feature} active at ${active} of ${T} positions`);
      const jump = (v: number) => (v > 0.25 ? v : 0);
      const value = 7.25;
      for (const mode of ["clamp", "ablate"] as const) {
        const c = mode === "clamp" ? value : 0;
        const want = (p: number) => (clean[p * 32 + feature] > 0 ? c : jump(pre[p] + c));
        const s: SteerSpec = mode === "clamp" ? { feature, mode, value } : { feature, mode };
        const r = model.forward([IDS], {
          interventions: steeringInterventions(ortho, config, [s]),
          capture: [s3],
        });
        const re = dense(flat(r.activations.get(s3)));
        for (let p = 0; p < T; p++) {
          for (let j = 0; j < 32; j++) {
            const got = re[p * 32 + j];
            const expect = j === feature ? want(p) : clean[p * 32 + j];
            assert.ok(
              Math.abs(got - expect) <= 1e-5 * 80,
              `${mode}: position ${p} feature ${j} is ${got}, want ${expect}`,
            );
          }
        }
      }
    });

    test("ablate: the site loses exactly f(x) d at the chosen position; earlier positions unchanged", () => {
      const sae = loadDictionary(SAE3, B);
      const site = sites.residPost(3);
      const clean = model.forward([IDS], { capture: [site] });
      const x = flat(clean.activations.get(site));
      const top = mostActive(sae, x, d, 6, null, B);
      const steer = steeringInterventions(sae, config, [
        { feature: top.index, mode: "ablate", positions: [6] },
      ]);
      const r = model.forward([IDS], { interventions: steer, capture: [site, sites.residPost(5)] });
      const row = featureDirection(sae, config, top.index).targets[0].row;
      const coef = Array.from({ length: T }, (_, p) => (p === 6 ? -top.value : 0));
      assertDelta(x, flat(r.activations.get(site)), outer(coef, row), "ablated resid_post.3");
      const a = clean.logits.toFloat32Array();
      const b = r.logits.toFloat32Array();
      for (let i = 0; i < 6 * config.vocab; i++)
        assert.ok(a[i] === b[i], `logit ${i} before position 6 changed`);
    });

    test("CLT: an add writes alpha d_t/|d| to every target layer t >= l, nothing below", () => {
      const clt = loadDictionary(CLT, B);
      const layer = 2;
      const feature = 40;
      const alpha = 5;
      const outs = Array.from({ length: config.layers }, (_, l) => sites.mlpOut(l));
      const steer = steeringInterventions(clt, config, [{ feature, layer, mode: "add", strength: alpha }]);
      const { before, after: afterV } = beforeAfter(model, outs, steer);
      const dir = featureDirection(clt, config, feature, layer);
      assert.deepEqual(
        dir.targets.map((t) => t.site.name),
        outs.slice(layer).map((s) => s.name),
      );
      let written = 0;
      for (const s of outs) {
        const target = dir.targets.find((t) => t.site.name === s.name);
        const coef = new Array<number>(T).fill(target === undefined ? 0 : alpha / dir.norm);
        const row = target?.row ?? new Float32Array(d);
        assertDelta(
          before.get(s.name) as Float32Array,
          afterV.get(s.name) as Float32Array,
          outer(coef, row),
          s.name,
        );
        if (target !== undefined) for (const v of row) written += (alpha / dir.norm) ** 2 * v * v;
      }
      assert.ok(Math.abs(Math.sqrt(written) - alpha) < 1e-4, "the whole write has norm alpha");
    });

    test("CLT clamp: (c - f(x_l)) d_t at every target, as the splice reference writes it", () => {
      const clt = loadDictionary(CLT, B);
      const layer = 1;
      const inSite = sites.mlpIn(layer);
      const x = flat(model.forward([IDS], { capture: [inSite] }).activations.get(inSite));
      const top = mostActive(clt, x, d, 5, layer, B);
      const c = 2 * top.value;
      const positions = [5, 8];
      const steer = steeringInterventions(
        clt,
        config,
        [{ feature: top.index, layer, mode: "clamp", value: c }],
        {
          positions,
        },
      );
      const outs = Array.from({ length: config.layers }, (_, l) => sites.mlpOut(l));
      const { before, after: afterV } = beforeAfter(model, [...outs, inSite], steer);
      const f = featureValues(clt, before.get(inSite.name) as Float32Array, d, top.index, layer, B);
      const dir = featureDirection(clt, config, top.index, layer);
      for (const s of outs) {
        const target = dir.targets.find((t) => t.site.name === s.name);
        const coef = f.map((v, p) => (target !== undefined && positions.includes(p) ? c - v : 0));
        assertDelta(
          before.get(s.name) as Float32Array,
          afterV.get(s.name) as Float32Array,
          outer(coef, target?.row ?? new Float32Array(d)),
          s.name,
        );
      }
      const ref = splice(clt, config, {
        keepError: true,
        positions,
        editActs: (acts, info) => {
          if (info.layer !== layer) return acts;
          const dense = acts.toDense().toFloat32Array();
          for (let r = 0; r < acts.rows; r++) dense[r * acts.width + top.index] = c;
          return FeatureActs.dense(fromStorage(B, "f32", acts.shape, dense));
        },
      });
      const r = model.forward([IDS], { interventions: ref.interventions, capture: outs });
      const mine = model.forward([IDS], { interventions: steer, capture: outs });
      for (const s of outs) {
        const a = flat(mine.activations.get(s));
        const b = flat(r.activations.get(s));
        const err = maxAbs(a.map((v, i) => v - b[i]));
        assert.ok(err <= 1e-5 * maxAbs(b), `${s.name}: differs from the splice reference by ${err}`);
      }
    });

    test("transcoder and skip-transcoder clamp: mlp_out moves by (c - f(mlp_in)) d; adds and clamps mix", () => {
      for (const path of [TC2, SKIP2]) {
        const tc = loadDictionary(path, B);
        const inSite = sites.mlpIn(2);
        const outSite = sites.mlpOut(2);
        const x = flat(model.forward([IDS], { capture: [inSite] }).activations.get(inSite));
        const top = mostActive(tc, x, d, 4, null, B);
        const other = (top.index + 1) % tc.spec.width;
        const c = 0.5 * top.value;
        const alpha = 3;
        const steer = steeringInterventions(tc, config, [
          { feature: top.index, mode: "clamp", value: c, positions: [4] },
          { feature: other, mode: "add", strength: alpha, positions: [4, 6] },
        ]);
        const { before, after: afterV } = beforeAfter(model, [inSite, outSite], steer);
        const f = featureValues(tc, before.get(inSite.name) as Float32Array, d, top.index, null, B);
        const rowC = featureDirection(tc, config, top.index).targets[0].row;
        const dirA = featureDirection(tc, config, other);
        const expected = outer(
          f.map((v, p) => (p === 4 ? c - v : 0)),
          rowC,
        );
        const added = outer(
          Array.from({ length: T }, (_, p) => (p === 4 || p === 6 ? alpha / dirA.norm : 0)),
          dirA.targets[0].row,
        );
        for (let i = 0; i < expected.length; i++) expected[i] += added[i];
        assertDelta(
          before.get(outSite.name) as Float32Array,
          afterV.get(outSite.name) as Float32Array,
          expected,
          path,
        );
        // The read site is left alone.
        assert.deepEqual(before.get(inSite.name), afterV.get(inSite.name));
      }
    });

    test("bad specs: unknown feature, missing or needless layer, a dictionary for another model", () => {
      const sae = loadDictionary(SAE3, B);
      const clt = loadDictionary(CLT, B);
      assert.throws(
        () => steeringInterventions(sae, config, [{ feature: 1024, mode: "ablate" }]),
        /feature 1024 is out of range: the dictionary has 1024 features/,
      );
      assert.throws(
        () => steeringInterventions(clt, config, [{ feature: 3, mode: "ablate" }]),
        /cross-layer transcoder: a feature needs its source layer/,
      );
      assert.throws(
        () => steeringInterventions(sae, config, [{ feature: 3, layer: 1, mode: "ablate" }]),
        /only a cross-layer transcoder's features have a source layer/,
      );
      assert.throws(
        () => steeringInterventions(sae, config, [{ feature: 3, mode: "ablate" }], { positions: [-1] }),
        /positions must be integers >= 0/,
      );
      assert.throws(
        () => steeringInterventions(loadDictionary(FOREIGN, B), config, [{ feature: 3, mode: "ablate" }]),
        /d_in is 48 but site blocks.2.resid_post has width 256/,
      );
    });
  });
}

describe("steering on tiny-gemma3 (default backend)", () => {
  const B = defaultBackend();
  const model = loadGemma3(MODEL, B);
  const config = model.config;

  test("the feature with the clearest logit effect raises its top token's probability", () => {
    const sae = loadDictionary(SAE5, B);
    const effects = logitEffects(model, decoderMatrix(sae, null).residual, 2);
    // Clearest: the largest lead of its top promoted token over the second (feature 714, "s").
    let best = 0;
    const lead = (f: number) => effects.top[f][0].value - effects.top[f][1].value;
    for (let f = 1; f < effects.top.length; f++) if (lead(f) > lead(best)) best = f;
    const token = effects.top[best][0].id;
    const ids = tok.encode("Hello world");
    const prob = (logits: Float32Array) => {
      let m = Number.NEGATIVE_INFINITY;
      for (const v of logits) m = Math.max(m, v);
      let s = 0;
      for (const v of logits) s += Math.exp(v - m);
      return Math.exp(logits[token] - m) / s;
    };
    const base = prob(model.forward([ids], { logits: "last" }).logits.toFloat32Array());
    const steer = steeringInterventions(sae, config, [{ feature: best, mode: "add", strength: 80 }], {
      positions: [ids.length - 1],
    });
    const steered = prob(
      model.forward([ids], { logits: "last", interventions: steer }).logits.toFloat32Array(),
    );
    // Measured: 0.0017 -> 0.159 (feature 714, token "s", native and reference backends).
    assert.ok(steered - base > 0.05, `p(top token) ${base} -> ${steered}`);
    assert.ok(steered > 20 * base, `p(top token) ${base} -> ${steered}`);
  });

  test("generation: the same seed gives the baseline without steering; positions >= prompt only from the second token", () => {
    const sae = loadDictionary(SAE5, B);
    const options = { maxNewTokens: 8, temperature: 0.8, seed: 3 };
    const a = generate(model, IDS, options);
    const b = generate(model, IDS, options);
    assert.deepEqual(a.tokens, b.tokens);
    const strong = [{ feature: 714, mode: "add", strength: 120 }] as const;
    const all = generate(model, IDS, {
      ...options,
      interventions: steeringInterventions(sae, config, strong),
    });
    assert.notDeepEqual(all.tokens, a.tokens);
    const gen = generate(model, IDS, {
      ...options,
      interventions: steeringInterventions(sae, config, strong, { positions: { from: IDS.length } }),
    });
    // The first new token is predicted at the prompt's last position, which {from: prompt length} leaves alone.
    assert.equal(gen.tokens[0][0], a.tokens[0][0]);
    assert.notDeepEqual(gen.tokens, a.tokens);
  });

  describe("statistics and the CLI", () => {
    const dir = mkdtempSync(join(tmpdir(), "glassbox-steer-"));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const stats = join(dir, "run.sqlite");
    before(async () => {
      await buildFeatureDatabase(stats, {
        model,
        modelDir: MODEL,
        tokenizer: tok,
        chatTemplate: null,
        dictionaries: [SAE5, CLT].map((path) => ({ path, dictionary: loadDictionary(path, B) })),
        data: {
          path: writeCorpus(join(dir, "corpus.jsonl"), 64),
          format: "jsonl",
          textField: "text",
        },
        maxTokens: 2048,
        context: 64,
        batch: 8,
        logitCount: 3,
        neighbourCount: 2,
      });
    });

    test("--times-max: strengths scale by the feature's max activation from the database", () => {
      const sae = loadDictionary(SAE5, B);
      const db = FeatureDatabase.open(stats, { readonly: true });
      try {
        const space = statisticsSpace(db, SAE5, sae.spec, null);
        const m = maxActivation(db, space, 95);
        assert.ok(m > 0);
        const { specs, maxActivations } = scaleToMaxActivation(sae, config, SAE5, db, [
          { feature: 95, mode: "add", strength: 2 },
          { feature: 95, mode: "clamp", value: 0.5 },
          { feature: 95, mode: "ablate" },
        ]);
        assert.deepEqual(maxActivations, [m, m, m]);
        const norm = featureDirection(sae, config, 95).norm;
        assert.deepEqual(specs, [
          { feature: 95, mode: "add", strength: 2 * m * norm },
          { feature: 95, mode: "clamp", value: 0.5 * m },
          { feature: 95, mode: "ablate" },
        ]);
        const clt = loadDictionary(CLT, B);
        assert.equal(statisticsSpace(db, CLT, clt.spec, 3).layer, 3);
        assert.throws(
          () => statisticsSpace(db, SAE3, loadDictionary(SAE3, B).spec, null),
          /no statistics for/,
        );
      } finally {
        db.close();
      }
    });

    interface Generation {
      generated_ids: number[];
      generated_tokens: (string | null)[];
      text: string;
      finish_reason: string;
    }
    interface Report {
      dictionary: { architecture: string; writes: string[] };
      steering: {
        feature: number;
        layer?: number;
        mode: string;
        strength?: number;
        value?: number;
        multiple?: number;
        max_activation?: number;
      }[];
      positions: unknown;
      prompt_ids: number[];
      baseline: Generation;
      steered: Generation;
    }
    const steerCli = (args: string[]) => runCli(["steer", "--model", MODEL, ...args]);

    test("glassbox steer --json prints both generations (same seed)", () => {
      const r = steerCli([
        "--dict",
        SAE5,
        "--feature",
        "714",
        "--strength",
        "80",
        "--steer",
        "95=0",
        "--max-tokens",
        "6",
        "--json",
        PROMPT,
      ]);
      assert.equal(r.status, 0, r.stderr);
      const rep = JSON.parse(r.stdout) as Report;
      assert.deepEqual(rep.prompt_ids, IDS);
      assert.deepEqual(rep.steering, [
        { feature: 714, mode: "add", strength: 80 },
        { feature: 95, mode: "ablate" },
      ]);
      assert.equal(rep.positions, "all");
      for (const g of [rep.baseline, rep.steered]) {
        assert.equal(g.generated_ids.length, 6);
        assert.equal(g.generated_tokens.length, 6);
        assert.equal(typeof g.text, "string");
      }
      const plain = generate(model, IDS, { maxNewTokens: 6 });
      assert.deepEqual(rep.baseline.generated_ids, plain.tokens[0]);
      assert.notDeepEqual(rep.steered.generated_ids, rep.baseline.generated_ids);

      const clt = steerCli([
        "--dict",
        CLT,
        "--steer",
        "L2/40:30",
        "--feature",
        "7",
        "--layer",
        "0",
        "--clamp",
        "1",
        "--times-max",
        "--stats",
        stats,
        "--positions",
        "generated",
        "--max-tokens",
        "4",
        "--json",
        PROMPT,
      ]);
      assert.equal(clt.status, 0, clt.stderr);
      const c = JSON.parse(clt.stdout) as Report;
      assert.equal(c.dictionary.architecture, "clt");
      assert.deepEqual(c.positions, { from: IDS.length });
      assert.deepEqual(
        c.steering.map((s) => [s.feature, s.layer, s.mode, s.multiple]),
        [
          [7, 0, "clamp", 1],
          [40, 2, "add", 30],
        ],
      );
      assert.ok(c.steering.every((s) => (s.max_activation ?? 0) > 0));
      const text = steerCli([
        "--dict",
        SAE5,
        "--feature",
        "714",
        "--strength",
        "80",
        "--max-tokens",
        "4",
        PROMPT,
      ]);
      assert.equal(text.status, 0, text.stderr);
      assert.match(text.stdout, /feature 714: add 80/);
      assert.match(text.stdout, /baseline +\| steered/);
    });

    test("glassbox steer names the bad argument", () => {
      const cases: [string[], RegExp][] = [
        [["--dict", SAE5, "--feature", "1024", "--strength", "4"], /--feature: feature 1024 is out of range/],
        [["--dict", SAE5, "--steer", "2000:4"], /--steer: feature 2000 is out of range/],
        [
          ["--dict", CLT, "--feature", "3", "--ablate"],
          /--layer: the dictionary is a cross-layer transcoder.*--layer L/,
        ],
        [["--dict", CLT, "--steer", "3=1"], /--steer: .*write L<layer>\/3/],
        [["--dict", CLT, "--feature", "3", "--layer", "6", "--ablate"], /--layer: layer 6 is out of range/],
        [
          ["--dict", SAE5, "--feature", "3", "--layer", "1", "--ablate"],
          /--layer: only a cross-layer transcoder/,
        ],
        [["--dict", SAE5, "--feature", "3", "--strength", "4", "--times-max"], /--times-max: .*--stats/],
        [["--dict", FOREIGN, "--feature", "3", "--ablate"], /--dict: the dictionary does not fit the model/],
        [["--dict", SAE5, "--feature", "3"], /--feature: give one of --strength/],
        [["--dict", SAE5, "--feature", "3", "--strength", "1", "--ablate"], /--ablate: give only one of/],
        [["--dict", SAE5, "--steer", "3~1"], /--steer: "3~1" is not a steering spec/],
        [["--dict", SAE5], /nothing to steer/],
        [
          ["--dict", SAE5, "--feature", "3", "--ablate", "--positions", "1,x"],
          /--positions: must be all, generated/,
        ],
        [
          ["--dict", SAE3, "--feature", "3", "--strength", "1", "--times-max", "--stats", stats],
          /no statistics for/,
        ],
      ];
      for (const [args, want] of cases) {
        const r = steerCli([...args, "--max-tokens", "2", PROMPT]);
        assert.equal(r.status, 1, `${args.join(" ")}: exit ${r.status}\n${r.stdout}`);
        assert.match(r.stderr, want, args.join(" "));
      }
    });
  });
});
