/**
 * Evaluating a dictionary on held-out text: per batch of sequences, one clean forward pass
 * capturing the read and write sites, the dictionary's reconstruction of the write site from the
 * read site, then two more passes with the write site replaced at the evaluated tokens by the
 * reconstruction (spliced) and by zeros (zero ablation). Metrics and their definitions: metrics.ts
 * and docs/evaluation.md.
 *
 * Single-site dictionaries (SAE, transcoder, skip-transcoder) read one site and write one. A
 * cross-layer transcoder reads every layer's MLP input and writes every layer's MLP output; its
 * reconstruction metrics come from the clean pass, and in the spliced pass each layer encodes the
 * MLP input it actually sees there (so later layers see earlier layers' reconstructions: the
 * replacement model of "Circuit Tracing").
 *
 * Evaluated tokens are those the harvesting masks keep (sequences.ts: BOS, pad, chat template
 * tokens out); only there are write sites replaced. Losses are taken at the evaluated positions
 * that have a next token: the prediction of token p + 1 from position p.
 */

import type { SequenceSource } from "../activations/harvest.js";
import { type Sequence, sequenceStream } from "../activations/sequences.js";
import { EvaluationError } from "../core/errors.js";
import { logSoftmax } from "../core/ops/nn.js";
import type { CsrRows } from "../core/ops/sparse.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import type { FeatureActs } from "../dictionaries/feature-acts.js";
import { dictionarySites } from "../dictionaries/sites.js";
import { type Dictionary, isLayerwise } from "../dictionaries/types.js";
import type { Intervention } from "../model/gemma3/interventions.js";
import type { Gemma3Model } from "../model/gemma3/model.js";
import type { Site } from "../model/gemma3/sites.js";
import {
  type DensityHistogram,
  FiringStats,
  type HistogramOptions,
  LossStats,
  ReconstructionStats,
} from "./metrics.js";

export interface EvalOptions extends SequenceSource {
  readonly model: Gemma3Model;
  readonly dictionary: Dictionary;
  /** Sequences per forward pass (default 8). */
  readonly batch?: number;
  /** Stop after the batch in which this many tokens have been evaluated (default: all data). */
  readonly tokens?: number;
  /** Latents firing on more than this fraction of tokens are dense (default 0.1). */
  readonly denseThreshold?: number;
  readonly histogram?: HistogramOptions;
  readonly onProgress?: (tokens: number) => void;
}

/** Evaluation results; JSON keys as printed by `glassbox eval --json`. */
export interface EvalResult {
  readonly read_site: string;
  readonly write_site: string;
  /** 1, or the layers a cross-layer transcoder spans (its sites are then "blocks.*.<kind>"). */
  readonly layers: number;
  /** Features per layer. */
  readonly width: number;
  /** Tokens evaluated (reconstruction and firing statistics). */
  readonly tokens: number;
  /** Positions whose next-token loss entered the CE/KL metrics. */
  readonly loss_tokens: number;
  /** Mean active latents per token (summed over layers for a cross-layer transcoder). */
  readonly l0: number;
  /** Mean squared error per element (averaged over layers). */
  readonly mse: number;
  /** Fraction of variance unexplained: summed squared errors over summed variances of all layers. */
  readonly fvu: number;
  readonly explained_variance: number;
  /** Latents that never fired. */
  readonly dead_fraction: number;
  /** Latents firing on more than `dense_threshold` of tokens. */
  readonly dense_fraction: number;
  readonly dense_threshold: number;
  readonly density_histogram: DensityHistogram;
  /** Per-layer L0, MSE and FVU of a cross-layer transcoder; null for single-site dictionaries. */
  readonly per_layer: { readonly l0: number[]; readonly mse: number[]; readonly fvu: number[] } | null;
  readonly ce_clean: number;
  readonly ce_spliced: number;
  readonly ce_ablated: number;
  /** ce_spliced - ce_clean. */
  readonly delta_lm_loss: number;
  /** (ce_ablated - ce_spliced) / (ce_ablated - ce_clean). */
  readonly ce_loss_recovered: number;
  readonly kl_spliced: number;
  readonly kl_ablated: number;
  /** (kl_ablated - kl_spliced) / kl_ablated. */
  readonly kl_score: number;
  readonly seconds: number;
}

/** The write site's activation with rows `rows` ([batch * seq] row indices) replaced by `values` (or zeros). */
function replaceRows(
  act: Tensor<"f32">,
  rows: readonly number[],
  d: number,
  values: Float32Array | null,
): Tensor<"f32"> {
  const out = Float32Array.from(act.data as Float32Array);
  rows.forEach((r, i) => {
    if (values === null) out.fill(0, r * d, (r + 1) * d);
    else out.set(values.subarray(i * d, (i + 1) * d), r * d);
  });
  return fromStorage(act.backend, "f32", act.shape, out);
}

function replacing(
  site: Site,
  rows: readonly number[],
  d: number,
  values: Float32Array | null,
): Intervention {
  return { site, apply: (act) => replaceRows(act, rows, d, values) };
}

/** Gathers rows [rows.length, d] of a [batch, seq, d] activation. */
function gather(act: Tensor<"f32">, rows: readonly number[], d: number): Float32Array {
  const src = act.data as Float32Array;
  const out = new Float32Array(rows.length * d);
  rows.forEach((r, i) => {
    out.set(src.subarray(r * d, (r + 1) * d), i * d);
  });
  return out;
}

/** How the dictionary is applied: one site pair, or one per layer for a cross-layer transcoder. */
interface Plan {
  readonly read: readonly Site[];
  readonly write: readonly Site[];
  /** Feature acts of layer l (0 for single-site dictionaries) from its input rows. */
  encode(l: number, x: Tensor<"f32">): FeatureActs;
  /** Output of layer l from the acts of layers 0..l and layer l's input rows. */
  decode(l: number, acts: readonly FeatureActs[], x: Tensor<"f32">): Tensor<"f32">;
}

function planFor(dictionary: Dictionary, model: Gemma3Model): Plan {
  const spec = dictionary.spec;
  const { read, write } = dictionarySites(spec, model.config);
  for (const s of [...read, ...write]) {
    if (s.axes.length !== 3 || s.axes[1] !== "seq")
      throw new EvaluationError(`site ${s.name} is not [batch, seq, width]`, spec.source);
  }
  if (spec.layers === null)
    return {
      read,
      write,
      encode: (_, x) => dictionary.encode(x),
      decode: (_, acts, x) => dictionary.decode(acts[0], x),
    };
  if (!isLayerwise(dictionary))
    throw new EvaluationError("a multi-layer dictionary must encode and decode layer by layer", spec.source);
  return {
    read,
    write,
    encode: (l, x) => dictionary.encodeLayer(l, x),
    decode: (l, acts, x) => dictionary.decodeLayer(l, acts, x),
  };
}

/** "blocks.3.resid_post", or "blocks.*.mlp_in" for one site per layer. */
function siteLabel(sites: readonly Site[]): string {
  return sites.length === 1 ? sites[0].name : sites[0].name.replace(/^blocks\.\d+\./, "blocks.*.");
}

export async function evaluateDictionary(o: EvalOptions): Promise<EvalResult> {
  const started = performance.now();
  const { model, dictionary } = o;
  const spec = dictionary.spec;
  const plan = planFor(dictionary, model);
  const layers = plan.read.length;
  const batchSize = o.batch ?? 8;
  if (!Number.isSafeInteger(batchSize) || batchSize <= 0)
    throw new EvaluationError(`batch must be a positive integer, got ${batchSize}`);
  const limit = o.tokens ?? Number.POSITIVE_INFINITY;
  const recon = plan.write.map(() => new ReconstructionStats(spec.dOut));
  const firing = new FiringStats(layers * spec.width);
  const firingPerLayer = plan.read.map(() => new FiringStats(spec.width));
  const losses = new LossStats();
  const backend = model.backend;
  const rowsTensor = (data: Float32Array, d: number): Tensor<"f32"> =>
    fromStorage(backend, "f32", [data.length / d, d], data);

  const runBatch = (seqs: readonly Sequence[]): void => {
    const batch = seqs.length;
    let seq = 0;
    for (const s of seqs) seq = Math.max(seq, s.ids.length);
    const ids = new Int32Array(batch * seq);
    const mask = new Int32Array(batch * seq);
    const rows: number[] = [];
    const lossRows: number[] = [];
    for (const [b, s] of seqs.entries()) {
      ids.set(s.ids, b * seq);
      mask.fill(1, b * seq, b * seq + s.ids.length);
      for (let p = 0; p < s.ids.length; p++) {
        if (!s.keep[p]) continue;
        rows.push(b * seq + p);
        if (p + 1 < s.ids.length) lossRows.push(b * seq + p);
      }
    }
    if (rows.length === 0) return;
    const idsT = fromStorage(backend, "i32", [batch, seq], ids);
    const maskT = fromStorage(backend, "i32", [batch, seq], mask);
    const clean = model.forward(idsT, { attentionMask: maskT, capture: [...plan.read, ...plan.write] });
    const acts: FeatureActs[] = [];
    const csr: CsrRows[] = [];
    for (let l = 0; l < layers; l++) {
      const x = rowsTensor(gather(clean.activations.get(plan.read[l]), rows, spec.dIn), spec.dIn);
      acts.push(plan.encode(l, x));
      const yHat = plan.decode(l, acts, x).data as Float32Array;
      recon[l].add(gather(clean.activations.get(plan.write[l]), rows, spec.dOut), yHat);
      csr.push(acts[l].toSparse());
    }
    for (let r = 0; r < rows.length; r++) {
      const active: number[] = [];
      for (let l = 0; l < layers; l++) {
        const c = csr[l];
        const idx = c.indices.subarray(c.offsets[r], c.offsets[r + 1]);
        firingPerLayer[l].addToken(idx);
        for (const i of idx) active.push(l * spec.width + i);
      }
      firing.addToken(active);
    }
    if (lossRows.length === 0) return;
    // Spliced: each layer's input is read in the spliced pass itself (for a CLT, later layers see
    // the reconstructions of earlier ones); its output is replaced by the reconstruction.
    const spliceActs: FeatureActs[] = [];
    const spliceInputs: Tensor<"f32">[] = [];
    const splice: Intervention[] = [];
    for (let l = 0; l < layers; l++) {
      splice.push({
        site: plan.read[l],
        apply: (act) => {
          spliceInputs[l] = rowsTensor(gather(act, rows, spec.dIn), spec.dIn);
          spliceActs[l] = plan.encode(l, spliceInputs[l]);
          return act;
        },
      });
      splice.push({
        site: plan.write[l],
        apply: (act) =>
          replaceRows(act, rows, spec.dOut, plan.decode(l, spliceActs, spliceInputs[l]).data as Float32Array),
      });
    }
    const spliced = model.forward(idsT, { attentionMask: maskT, interventions: splice });
    const ablated = model.forward(idsT, {
      attentionMask: maskT,
      interventions: plan.write.map((site) => replacing(site, rows, spec.dOut, null)),
    });
    const lp = [clean.logits, spliced.logits, ablated.logits].map((l) => logSoftmax(l).data as Float32Array);
    const v = model.config.vocab;
    for (const r of lossRows) {
      const [c, sp, a] = lp.map((l) => l.subarray(r * v, (r + 1) * v));
      losses.addToken(c, sp, a, ids[r + 1]);
    }
  };

  let pending: Sequence[] = [];
  for await (const s of sequenceStream(o.documents(), o)) {
    pending.push(s);
    if (pending.length === batchSize) {
      runBatch(pending);
      pending = [];
      o.onProgress?.(firing.tokens);
      if (firing.tokens >= limit) break;
    }
  }
  if (pending.length > 0 && firing.tokens < limit) runBatch(pending);
  if (firing.tokens === 0)
    throw new EvaluationError("no tokens to evaluate (the data is empty or every token was masked)");
  if (losses.tokens === 0)
    throw new EvaluationError("no next-token predictions to score (every sequence is too short)");
  const denseThreshold = o.denseThreshold ?? 0.1;
  const sum = (f: (r: ReconstructionStats) => number): number => recon.reduce((a, r) => a + f(r), 0);
  const fvu = sum((r) => r.meanSquaredErrorNorm) / sum((r) => r.variance);
  return {
    read_site: siteLabel(plan.read),
    write_site: siteLabel(plan.write),
    layers,
    width: spec.width,
    tokens: firing.tokens,
    loss_tokens: losses.tokens,
    l0: firing.l0,
    mse: sum((r) => r.mse) / layers,
    fvu,
    explained_variance: 1 - fvu,
    dead_fraction: firing.deadFraction,
    dense_fraction: firing.denseFraction(denseThreshold),
    dense_threshold: denseThreshold,
    density_histogram: firing.densityHistogram(o.histogram),
    per_layer:
      layers === 1
        ? null
        : {
            l0: firingPerLayer.map((f) => f.l0),
            mse: recon.map((r) => r.mse),
            fvu: recon.map((r) => r.fvu),
          },
    ce_clean: losses.ceClean,
    ce_spliced: losses.ceSpliced,
    ce_ablated: losses.ceAblated,
    delta_lm_loss: losses.deltaLmLoss,
    ce_loss_recovered: losses.ceLossRecovered,
    kl_spliced: losses.klSpliced,
    kl_ablated: losses.klAblated,
    kl_score: losses.klScore,
    seconds: (performance.now() - started) / 1000,
  };
}

/** The result as a readable table (metric, value). */
export function evalTable(r: EvalResult): string {
  const f = (v: number) => (Number.isInteger(v) ? String(v) : v.toPrecision(4));
  const total = r.layers * r.width;
  const rows: [string, string][] = [
    ["sites", r.read_site === r.write_site ? r.read_site : `${r.read_site} -> ${r.write_site}`],
    ["width", r.layers > 1 ? `${r.width} per layer` : String(r.width)],
    ["tokens", `${r.tokens} (${r.loss_tokens} next-token predictions)`],
    ...(r.layers > 1 ? [["layers", String(r.layers)] as [string, string]] : []),
    ["L0", f(r.l0)],
    ["MSE (per element)", f(r.mse)],
    ["FVU", `${f(r.fvu)} (explained variance ${f(r.explained_variance)})`],
    ["dead latents", `${f(r.dead_fraction)} (${Math.round(r.dead_fraction * total)} of ${total})`],
    [
      `dense latents (> ${r.dense_threshold * 100} %)`,
      `${f(r.dense_fraction)} (${Math.round(r.dense_fraction * total)} of ${total})`,
    ],
    ["CE clean / spliced / ablated", `${f(r.ce_clean)} / ${f(r.ce_spliced)} / ${f(r.ce_ablated)}`],
    ["delta LM loss", f(r.delta_lm_loss)],
    ["CE loss recovered", f(r.ce_loss_recovered)],
    ["KL spliced / ablated", `${f(r.kl_spliced)} / ${f(r.kl_ablated)}`],
    ["KL score", f(r.kl_score)],
  ];
  if (r.per_layer !== null) {
    rows.push(
      ["L0 per layer", r.per_layer.l0.map(f).join(", ")],
      ["FVU per layer", r.per_layer.fvu.map(f).join(", ")],
    );
  }
  const w = Math.max(...rows.map(([k]) => k.length));
  const h = r.density_histogram;
  const hist = h.counts
    .map((c, i) => (c > 0 ? `  [${h.edges[i].toFixed(1)}, ${h.edges[i + 1].toFixed(1)})  ${c}` : null))
    .filter((l) => l !== null);
  return `${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n")}\nlog10 firing density (latents; ${h.dead} dead):\n${hist.join("\n")}\n`;
}
