/**
 * What a feature page takes from the decoder alone: logit effects, the top and bottom tokens of
 * W_U (g * d_i) with g = 1 + w the final norm's gain (Gemma's RMSNorm scale; shared/reference/
 * algorithms.md, "Features and steering"), and nearest features by decoder cosine.
 *
 * Decoder rows come from the dictionary's Gemma Scope 2 form (`w_dec`), so every architecture is
 * handled the same way: [width, d_out] for single-site dictionaries, [width, layers, d_out] for a
 * cross-layer transcoder's source layer (its rows to layers below the source are zero). A CLT
 * feature's direct effect on the residual stream is the sum of its decoders over target layers;
 * its cosine neighbours compare the decoders concatenated over targets.
 */
import type { Backend } from "../core/backend.js";
import { FeaturesError } from "../core/errors.js";
import { matmul } from "../core/ops/linalg.js";
import { fromStorage } from "../core/tensor.js";
import type { DictionarySites } from "../dictionaries/sites.js";
import type { Dictionary, DictionarySpec } from "../dictionaries/types.js";
import type { Gemma3Config } from "../model/gemma3/config.js";
import type { Gemma3Model } from "../model/gemma3/model.js";

/** Site kinds whose activations live in the residual stream's basis (they are added into it, or are it). */
const RESIDUAL_KINDS: ReadonlySet<string> = new Set([
  "resid_pre",
  "resid_mid",
  "resid_post",
  "attn_out",
  "mlp_out",
]);

/** Whether the dictionary writes in the residual stream's basis, so W_U applies to its decoder. */
export function writesResidual(spec: DictionarySpec, sites: DictionarySites, config: Gemma3Config): boolean {
  return spec.dOut === config.dModel && sites.write.every((s) => RESIDUAL_KINDS.has(s.kind));
}

export interface DecoderMatrix {
  readonly width: number;
  /** [width, d_out]: the direct write into the residual stream (summed over a CLT's targets). */
  readonly residual: Float32Array;
  readonly dOut: number;
  /** [width, targets * d_out]: the decoders concatenated (targets = 1 for single-site dictionaries). */
  readonly concatenated: Float32Array;
  readonly concatWidth: number;
}

/** The decoder rows of a dictionary's features (of source layer `layer` for a CLT, else null). */
export function decoderMatrix(dict: Dictionary, layer: number | null): DecoderMatrix {
  const form = dict.gemmaScope2Form();
  const file = form.files.find((f) => f.layer === layer);
  if (file === undefined) {
    throw new FeaturesError(
      `the dictionary has no parameters for ${layer === null ? "its features" : `source layer ${layer}`}`,
      dict.spec.source,
    );
  }
  const wDec = file.tensors().w_dec;
  if (wDec === undefined) throw new FeaturesError("the dictionary has no w_dec", dict.spec.source);
  const width = dict.spec.width;
  const dOut = dict.spec.dOut;
  const all = wDec.toFloat32Array();
  if (wDec.shape[0] !== width || all.length % (width * dOut) !== 0) {
    throw new FeaturesError(
      `w_dec is [${wDec.shape.join(", ")}], expected ${width} rows of ${dOut}`,
      dict.spec.source,
    );
  }
  const targets = all.length / (width * dOut);
  const residual = new Float32Array(width * dOut);
  for (let f = 0; f < width; f++) {
    for (let t = 0; t < targets; t++) {
      const src = (f * targets + t) * dOut;
      for (let j = 0; j < dOut; j++) residual[f * dOut + j] += all[src + j];
    }
  }
  return { width, residual, dOut, concatenated: all, concatWidth: targets * dOut };
}

export interface TokenValue {
  readonly id: number;
  readonly value: number;
}

/** Feature blocks multiplied by W_U at once (a block's logits are [block, vocab] floats). */
const BLOCK = 64;

/** Per feature the `count` largest and smallest entries of W_U (g * d_f), [width] lists. */
export function logitEffects(
  model: Gemma3Model,
  decoder: Float32Array,
  count: number,
): { top: TokenValue[][]; bottom: TokenValue[][] } {
  const d = model.config.dModel;
  const width = decoder.length / d;
  const gain = model.weights.finalNorm.toFloat32Array();
  const backend = model.backend;
  const vocab = model.config.vocab;
  const top: TokenValue[][] = [];
  const bottom: TokenValue[][] = [];
  for (let f0 = 0; f0 < width; f0 += BLOCK) {
    const n = Math.min(BLOCK, width - f0);
    const scaled = new Float32Array(n * d);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < d; j++) scaled[i * d + j] = decoder[(f0 + i) * d + j] * (1 + gain[j]);
    const logits = matmul(fromStorage(backend, "f32", [n, d], scaled), model.weights.lmHead, {
      transB: true,
    }).data;
    for (let i = 0; i < n; i++) {
      const row = logits.subarray(i * vocab, (i + 1) * vocab);
      top.push(extremes(row, count, 1));
      bottom.push(extremes(row, count, -1));
    }
  }
  return { top, bottom };
}

/** The `count` entries of `row` with the largest sign * value (ties: lower id first). */
export function extremes(row: Float32Array, count: number, sign: 1 | -1): TokenValue[] {
  const kept: TokenValue[] = [];
  const worse = (a: TokenValue, b: TokenValue) =>
    sign * a.value < sign * b.value || (a.value === b.value && a.id > b.id);
  for (let id = 0; id < row.length; id++) {
    const v = row[id];
    if (Number.isNaN(v)) continue;
    const e = { id, value: v };
    if (kept.length < count) {
      kept.push(e);
      if (kept.length === count) kept.sort((a, b) => (worse(a, b) ? -1 : 1));
      continue;
    }
    if (!worse(kept[0], e)) continue;
    kept[0] = e;
    // keep ascending by "worse first"
    for (let i = 0; i + 1 < kept.length && worse(kept[i + 1], kept[i]); i++) {
      const t = kept[i];
      kept[i] = kept[i + 1];
      kept[i + 1] = t;
    }
  }
  return kept.sort((a, b) => sign * (b.value - a.value) || a.id - b.id);
}

export interface Neighbour {
  readonly feature: number;
  readonly cosine: number;
}

/** Per feature the `count` other features of highest decoder cosine (rows [width, dim]), in blocks of matmuls. */
export function nearestByCosine(
  backend: Backend,
  rows: Float32Array,
  dim: number,
  count: number,
): Neighbour[][] {
  const width = rows.length / dim;
  const unit = new Float32Array(rows.length);
  for (let f = 0; f < width; f++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += rows[f * dim + j] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < dim; j++) unit[f * dim + j] = rows[f * dim + j] * inv;
  }
  const all = fromStorage(backend, "f32", [width, dim], unit);
  const k = Math.min(count, width - 1);
  const out: Neighbour[][] = [];
  for (let f0 = 0; f0 < width; f0 += 4 * BLOCK) {
    const n = Math.min(4 * BLOCK, width - f0);
    const block = fromStorage(backend, "f32", [n, dim], unit.subarray(f0 * dim, (f0 + n) * dim));
    const sims = matmul(block, all, { transB: true }).data;
    for (let i = 0; i < n; i++) {
      const row = sims.subarray(i * width, (i + 1) * width);
      row[f0 + i] = Number.NaN;
      out.push(extremes(row, k, 1).map((e) => ({ feature: e.id, cosine: e.value })));
    }
  }
  return out;
}
