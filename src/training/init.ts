/**
 * Starting a run from an existing dictionary instead of a random initialisation, as Gemma Scope 2
 * trains its chat-model (IT) dictionaries: fine-tuned from the base-model (PT) ones.
 *
 * This is the inverse of export.ts's folding, under the new run's input scales (site scales s, and
 * u = the scale of each layer's own output site):
 *   W_enc = w_enc u / s_in,  b_enc = b_enc u (+ b_dec W_enc with a pre-encoder bias),
 *   threshold = threshold u,  W_dec[l -> o] = w_dec[l -> o] s_o / u,  b_dec = b_dec s_o,
 *   W_skip = A s_o / s_in
 * so a dictionary exported and then loaded here computes the same function on raw activations.
 * Optimiser state, dead-latent counters and steps start fresh. A JumpReLU rule takes the
 * dictionary's per-feature thresholds (a BatchTopK export's one global threshold for each feature);
 * TopK and BatchTopK rules select by rank and take none.
 */
import type { Backend } from "../core/backend.js";
import { TrainingError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import { CrossLayerTranscoder } from "../dictionaries/architectures/clt.js";
import { SingleLayerDictionary } from "../dictionaries/single-layer.js";
import type { Activation, Dictionary } from "../dictionaries/types.js";
import type { SparseCoder } from "./coder.js";

interface LayerSource {
  readonly wEnc: Tensor; // [dIn, M]
  readonly bEnc: Tensor; // [M]
  /** [M, dOut] for one layer; [M, L, dOut] for a CLT */
  readonly wDec: Tensor;
  readonly bDec: Tensor; // [dOut]
  readonly skip: Tensor | null; // [dIn, dOut]
  readonly activation: Activation;
}

function layersOf(dict: Dictionary, where: string): LayerSource[] {
  if (dict instanceof CrossLayerTranscoder) {
    return Array.from({ length: dict.spec.layers ?? 1 }, (_, l) => dict.layer(l));
  }
  if (dict instanceof SingleLayerDictionary) {
    const p = dict.params;
    return [{ ...p, skip: p.skip ?? null, activation: dict.activation }];
  }
  throw new TrainingError(`cannot start training from a ${dict.spec.architecture} dictionary`, where);
}

function thresholds(a: Activation, width: number, backend: Backend, where: string): Float32Array | null {
  const info = a.info;
  if (info.kind === "batchtopk") return new Float32Array(width).fill(info.threshold);
  if (info.kind !== "jumprelu") return null;
  const t = a.gemmaScope2(backend, width).threshold;
  if (t === null) throw new TrainingError("the JumpReLU dictionary has no thresholds", where);
  return t.toFloat32Array();
}

function scale(scales: ReadonlyMap<string, number>, site: string): number {
  const s = scales.get(site);
  if (s === undefined || !(s > 0)) throw new TrainingError(`no input scale for site ${site}`);
  return s;
}

/**
 * Sets `coder`'s parameters from `dict` (see the module comment). `scales` are the run's input
 * scales by site; `where` names the dictionary's folder in errors.
 */
export function initFromDictionary(
  coder: SparseCoder,
  dict: Dictionary,
  scales: ReadonlyMap<string, number>,
  where: string,
): void {
  const { dIn, dOut, width: M, inputs, outputs, preEncoderBias, skip } = coder.shape;
  const L = coder.layers.length;
  const src = layersOf(dict, where);
  const fail = (msg: string): never => {
    throw new TrainingError(`cannot start from this dictionary: ${msg}`, where);
  };
  const isSae = L === 1 && inputs[0] === outputs[0];
  if (src.length !== L) fail(`it has ${src.length} layer(s), the run's dictionary ${L}`);
  if (dict.spec.reconstructsInput !== isSae)
    fail(isSae ? "it is a transcoder, the run trains an SAE" : "it is an SAE, the run trains a transcoder");
  if (dict.spec.skip !== skip) fail(skip ? "it has no skip connection" : "it has a skip connection");
  for (const [l, p] of src.entries()) {
    const expect = (name: string, t: Tensor, shape: readonly number[]) => {
      if (t.shape.length !== shape.length || t.shape.some((v, i) => v !== shape[i]))
        fail(`layer ${l} ${name} is [${t.shape}], the run needs [${shape}]`);
    };
    expect("w_enc", p.wEnc, [dIn, M]);
    expect("b_enc", p.bEnc, [M]);
    expect("w_dec", p.wDec, L > 1 ? [M, L, dOut] : [M, dOut]);
    expect("b_dec", p.bDec, [dOut]);
    if (p.skip !== null) expect("skip", p.skip, [dIn, dOut]);
  }
  for (const [l, p] of src.entries()) {
    const layer = coder.layers[l];
    const sIn = scale(scales, inputs[l]);
    const u = scale(scales, outputs[l]);
    const sOut = u;
    const bDec = p.bDec.toFloat32Array();
    for (let c = 0; c < dOut; c++) layer.bDec.data[c] = bDec[c] * sOut;
    const wEnc = p.wEnc.toFloat32Array();
    const bEnc = p.bEnc.toFloat32Array();
    const encT = layer.encT.data;
    for (let i = 0; i < M; i++) {
      let shift = 0;
      for (let c = 0; c < dIn; c++) {
        const w = (wEnc[c * M + i] * u) / sIn;
        encT[i * dIn + c] = w;
        if (preEncoderBias) shift += layer.bDec.data[c] * w;
      }
      layer.bEnc.data[i] = bEnc[i] * u + shift;
    }
    const wDec = p.wDec.toFloat32Array();
    const D = (L - l) * dOut;
    const dec = layer.dec.data;
    for (let o = l; o < L; o++) {
      const k = scale(scales, outputs[o]) / u;
      for (let i = 0; i < M; i++) {
        const from = L > 1 ? (i * L + o) * dOut : i * dOut;
        for (let c = 0; c < dOut; c++) dec[i * D + (o - l) * dOut + c] = wDec[from + c] * k;
      }
    }
    if (layer.skip !== null && p.skip !== null) {
      const a = p.skip.toFloat32Array();
      for (let j = 0; j < a.length; j++) layer.skip.data[j] = (a[j] * sOut) / sIn;
    }
    const theta = layer.rule.params.threshold;
    if (theta !== undefined) {
      const t = thresholds(p.activation, M, p.wEnc.backend, where);
      if (t === null) fail(`its ${p.activation.info.kind} activation has no thresholds for a JumpReLU run`);
      else for (let i = 0; i < M; i++) theta.data[i] = t[i] * u;
    }
  }
}
