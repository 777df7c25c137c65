/**
 * Persona / behaviour vectors from contrasting responses (Chen et al. 2025, "Persona vectors";
 * shared/reference/algorithms.md, "Chat-model analyses"): for each conversation (a user prompt and
 * a model response), the mean of resid_pre over the response tokens at every layer; the vector of a
 * layer is mean(positive) - mean(negative) of those per-response means. A layer (not 0, the bare
 * token embedding) is chosen by how well the projection on its vector separates held-out positive
 * from negative responses (the gap of the mean projections over their pooled standard deviation).
 * Monitoring is the projection of resid_pre on the unit vector at every token; steering adds
 * scale * vector at resid_pre of the layer (`additionIntervention` in refusal.ts).
 */
import { ChatError } from "../core/errors.js";
import type { ChatTemplate } from "../io/chat.js";
import type { Tokenizer } from "../io/tokenizer.js";
import type { Intervention } from "../model/gemma3/interventions.js";
import type { Gemma3Model } from "../model/gemma3/model.js";
import { sites } from "../model/gemma3/sites.js";

/** A rendered conversation and which of its tokens are the model's response. */
export interface ResponseExample {
  readonly ids: readonly number[];
  /** Sequence indices of the response's content tokens. */
  readonly response: readonly number[];
  /** Per token: its message's role, or "template". */
  readonly roles: readonly string[];
}

export function responseExample(
  template: ChatTemplate,
  tok: Tokenizer,
  prompt: string,
  response: string,
  system?: string,
): ResponseExample {
  const messages = [
    ...(system === undefined ? [] : [{ role: "system" as const, content: system }]),
    { role: "user" as const, content: prompt },
    { role: "model" as const, content: response },
  ];
  const enc = template.encode(tok, messages, {});
  const response_ = enc.role.flatMap((r, i) => (r === "model" || r === "assistant" ? [i] : []));
  if (response_.length === 0)
    throw new ChatError(`the response ${JSON.stringify(response)} has no tokens after rendering`);
  return { ids: enc.ids, response: response_, roles: enc.role };
}

/** Per example and layer: the mean of resid_pre over the response tokens [examples][layers][D]. */
export function responseMeans(model: Gemma3Model, examples: readonly ResponseExample[]): Float32Array[][] {
  const L = model.config.layers;
  const D = model.config.dModel;
  const capture = Array.from({ length: L }, (_, l) => sites.residPre(l));
  return examples.map((e) => {
    const acts = model.forward([e.ids], { capture, logits: "none" }).activations;
    return capture.map((site) => {
      const x = acts.get(site).toFloat32Array();
      const m = new Float64Array(D);
      for (const t of e.response) for (let j = 0; j < D; j++) m[j] += x[t * D + j];
      return Float32Array.from(m, (v) => v / e.response.length);
    });
  });
}

function meanOf(rows: readonly Float32Array[]): Float32Array {
  const D = rows[0].length;
  const m = new Float64Array(D);
  for (const r of rows) for (let j = 0; j < D; j++) m[j] += r[j];
  return Float32Array.from(m, (v) => v / rows.length);
}

export function unitVector(v: Float32Array): Float32Array {
  let n = 0;
  for (const x of v) n += x * x;
  if (!(n > 0)) throw new ChatError("the vector is zero");
  const s = 1 / Math.sqrt(n);
  return Float32Array.from(v, (x) => x * s);
}

export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += a[j] * b[j];
  return s;
}

/** (mean(a) - mean(b)) / sqrt((var(a) + var(b)) / 2), population variances; 0 when both are constant and equal. */
export function separation(a: readonly number[], b: readonly number[]): number {
  const m = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const v = (xs: readonly number[], mu: number) => xs.reduce((s, x) => s + (x - mu) ** 2, 0) / xs.length;
  const ma = m(a);
  const mb = m(b);
  const pooled = Math.sqrt((v(a, ma) + v(b, mb)) / 2);
  if (pooled === 0) return ma === mb ? 0 : Math.sign(ma - mb) * Number.POSITIVE_INFINITY;
  return (ma - mb) / pooled;
}

export interface VectorFit {
  /** vectors[l]: mean(positive) - mean(negative) at resid_pre of layer l [D]. */
  readonly vectors: readonly Float32Array[];
  /** Separation of the validation responses' projections, per layer (NaN without validation data). */
  readonly separation: readonly number[];
  /** The layer >= 1 with the largest validation separation (or the one asked for). */
  readonly layer: number;
}

export interface VectorSets {
  readonly positive: readonly ResponseExample[];
  readonly negative: readonly ResponseExample[];
}

/** Fits on `train`, scores every layer on `validation`, chooses a layer (or keeps `layer`). */
export function fitVector(
  model: Gemma3Model,
  train: VectorSets,
  validation: VectorSets,
  options: { readonly layer?: number; readonly onProgress?: (done: number, total: number) => void } = {},
): VectorFit {
  if (train.positive.length === 0 || train.negative.length === 0)
    throw new ChatError(
      `empty response set: ${train.positive.length} positive, ${train.negative.length} negative`,
    );
  const L = model.config.layers;
  if (
    options.layer !== undefined &&
    !(Number.isInteger(options.layer) && options.layer >= 0 && options.layer < L)
  )
    throw new ChatError(`layer ${options.layer} is out of range (0-${L - 1})`);
  const total =
    train.positive.length + train.negative.length + validation.positive.length + validation.negative.length;
  let done = 0;
  const means = (xs: readonly ResponseExample[]) => {
    const out = responseMeans(model, xs);
    done += xs.length;
    options.onProgress?.(done, total);
    return out;
  };
  const pos = means(train.positive);
  const neg = means(train.negative);
  const vectors = Array.from({ length: L }, (_, l) => {
    const a = meanOf(pos.map((e) => e[l]));
    const b = meanOf(neg.map((e) => e[l]));
    return a.map((x, j) => x - b[j]);
  });
  const vPos = validation.positive.length > 0 ? means(validation.positive) : [];
  const vNeg = validation.negative.length > 0 ? means(validation.negative) : [];
  const sep = vectors.map((v, l) => {
    if (vPos.length === 0 || vNeg.length === 0) return Number.NaN;
    let n = 0;
    for (const x of v) n += x * x;
    if (!(n > 0)) return 0;
    const u = unitVector(v);
    return separation(
      vPos.map((e) => dot(e[l], u)),
      vNeg.map((e) => dot(e[l], u)),
    );
  });
  // Layer 0's resid_pre is the token embedding: a vector there only says which tokens the
  // responses use, so it is chosen only when asked for (or when the model has one layer).
  let layer = options.layer ?? Math.min(1, L - 1);
  if (options.layer === undefined) for (let l = layer + 1; l < L; l++) if (sep[l] > sep[layer]) layer = l;
  return { vectors, separation: sep, layer };
}

/** Projection of resid_pre(layer) on the unit vector at every token of `ids`. */
export function projections(
  model: Gemma3Model,
  ids: readonly number[],
  layer: number,
  vector: Float32Array,
  interventions: readonly Intervention[] = [],
): Float32Array {
  const u = unitVector(vector);
  const site = sites.residPre(layer).check(model.config);
  const x = model
    .forward([ids], { capture: [site], logits: "none", interventions })
    .activations.get(site)
    .toFloat32Array();
  const D = model.config.dModel;
  return Float32Array.from({ length: ids.length }, (_, t) => dot(x.subarray(t * D, (t + 1) * D), u));
}
