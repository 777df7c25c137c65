/**
 * Evaluating a single-site dictionary (SAE, transcoder, skip-transcoder) on held-out text: per
 * batch of sequences, one clean forward pass capturing the read and write sites, the dictionary's
 * reconstruction of the write site from the read site, then two more passes with the write site
 * replaced at the evaluated tokens by that reconstruction (spliced) and by zeros (zero ablation).
 * Metrics and their definitions: metrics.ts and docs/evaluation.md.
 *
 * Evaluated tokens are those the harvesting masks keep (sequences.ts: BOS, pad, chat template
 * tokens out); only there is the write site replaced. Losses are taken at the evaluated positions
 * that have a next token: the prediction of token p + 1 from position p. Because the read site is
 * never downstream of the write site, the reconstruction computed from the clean pass is what the
 * spliced pass would compute itself.
 */

import type { SequenceSource } from "../activations/harvest.js";
import { type Sequence, sequenceStream } from "../activations/sequences.js";
import { EvaluationError } from "../core/errors.js";
import { logSoftmax } from "../core/ops/nn.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import { dictionarySites } from "../dictionaries/sites.js";
import type { Dictionary } from "../dictionaries/types.js";
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
  readonly width: number;
  /** Tokens evaluated (reconstruction and firing statistics). */
  readonly tokens: number;
  /** Positions whose next-token loss entered the CE/KL metrics. */
  readonly loss_tokens: number;
  /** Mean active latents per token. */
  readonly l0: number;
  /** Mean squared error per element. */
  readonly mse: number;
  /** Fraction of variance unexplained. */
  readonly fvu: number;
  readonly explained_variance: number;
  /** Latents that never fired. */
  readonly dead_fraction: number;
  /** Latents firing on more than `dense_threshold` of tokens. */
  readonly dense_fraction: number;
  readonly dense_threshold: number;
  readonly density_histogram: DensityHistogram;
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

export async function evaluateDictionary(o: EvalOptions): Promise<EvalResult> {
  const started = performance.now();
  const { model, dictionary } = o;
  const spec = dictionary.spec;
  if (spec.layers !== null)
    throw new EvaluationError(
      "cross-layer transcoders cannot be evaluated yet (only single-site dictionaries)",
      spec.source,
    );
  const { read, write } = dictionarySites(spec, model.config);
  const readSite = read[0];
  const writeSite = write[0];
  for (const s of [readSite, writeSite]) {
    if (s.axes.length !== 3 || s.axes[1] !== "seq")
      throw new EvaluationError(`site ${s.name} is not [batch, seq, width]`, spec.source);
  }
  const batchSize = o.batch ?? 8;
  if (!Number.isSafeInteger(batchSize) || batchSize <= 0)
    throw new EvaluationError(`batch must be a positive integer, got ${batchSize}`);
  const limit = o.tokens ?? Number.POSITIVE_INFINITY;
  const recon = new ReconstructionStats(spec.dOut);
  const firing = new FiringStats(spec.width);
  const losses = new LossStats();
  const backend = model.backend;

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
    const clean = model.forward(idsT, { attentionMask: maskT, capture: [readSite, writeSite] });
    const x = gather(clean.activations.get(readSite), rows, spec.dIn);
    const target = gather(clean.activations.get(writeSite), rows, spec.dOut);
    const xT = fromStorage(backend, "f32", [rows.length, spec.dIn], x);
    const acts = dictionary.encode(xT);
    const xHat = dictionary.decode(acts, xT).data as Float32Array;
    recon.add(target, xHat);
    const csr = acts.toSparse();
    for (let r = 0; r < csr.rows; r++)
      firing.addToken(csr.indices.subarray(csr.offsets[r], csr.offsets[r + 1]));
    if (lossRows.length === 0) return;
    const spliced = model.forward(idsT, {
      attentionMask: maskT,
      interventions: [replacing(writeSite, rows, spec.dOut, xHat)],
    });
    const ablated = model.forward(idsT, {
      attentionMask: maskT,
      interventions: [replacing(writeSite, rows, spec.dOut, null)],
    });
    const lp = [clean.logits, spliced.logits, ablated.logits].map((l) => logSoftmax(l).data as Float32Array);
    const v = model.config.vocab;
    for (const r of lossRows) {
      const [c, s, a] = lp.map((l) => l.subarray(r * v, (r + 1) * v));
      losses.addToken(c, s, a, ids[r + 1]);
    }
  };

  let pending: Sequence[] = [];
  for await (const s of sequenceStream(o.documents(), o)) {
    pending.push(s);
    if (pending.length === batchSize) {
      runBatch(pending);
      pending = [];
      o.onProgress?.(recon.tokens);
      if (recon.tokens >= limit) break;
    }
  }
  if (pending.length > 0 && recon.tokens < limit) runBatch(pending);
  if (recon.tokens === 0)
    throw new EvaluationError("no tokens to evaluate (the data is empty or every token was masked)");
  if (losses.tokens === 0)
    throw new EvaluationError("no next-token predictions to score (every sequence is too short)");
  const denseThreshold = o.denseThreshold ?? 0.1;
  return {
    read_site: readSite.name,
    write_site: writeSite.name,
    width: spec.width,
    tokens: recon.tokens,
    loss_tokens: losses.tokens,
    l0: firing.l0,
    mse: recon.mse,
    fvu: recon.fvu,
    explained_variance: 1 - recon.fvu,
    dead_fraction: firing.deadFraction,
    dense_fraction: firing.denseFraction(denseThreshold),
    dense_threshold: denseThreshold,
    density_histogram: firing.densityHistogram(o.histogram),
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
  const rows: [string, string][] = [
    ["sites", r.read_site === r.write_site ? r.read_site : `${r.read_site} -> ${r.write_site}`],
    ["width", String(r.width)],
    ["tokens", `${r.tokens} (${r.loss_tokens} next-token predictions)`],
    ["L0", f(r.l0)],
    ["MSE (per element)", f(r.mse)],
    ["FVU", `${f(r.fvu)} (explained variance ${f(r.explained_variance)})`],
    ["dead latents", `${f(r.dead_fraction)} of ${r.width}`],
    [`dense latents (> ${r.dense_threshold * 100} %)`, f(r.dense_fraction)],
    ["CE clean / spliced / ablated", `${f(r.ce_clean)} / ${f(r.ce_spliced)} / ${f(r.ce_ablated)}`],
    ["delta LM loss", f(r.delta_lm_loss)],
    ["CE loss recovered", f(r.ce_loss_recovered)],
    ["KL spliced / ablated", `${f(r.kl_spliced)} / ${f(r.kl_ablated)}`],
    ["KL score", f(r.kl_score)],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const h = r.density_histogram;
  const hist = h.counts
    .map((c, i) => (c > 0 ? `  [${h.edges[i].toFixed(1)}, ${h.edges[i + 1].toFixed(1)})  ${c}` : null))
    .filter((l) => l !== null);
  return `${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n")}\nlog10 firing density (latents; ${h.dead} dead):\n${hist.join("\n")}\n`;
}
