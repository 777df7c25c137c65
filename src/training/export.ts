/**
 * Exporting a trained coder as a `Dictionary` of `src/dictionaries` (saved in Gemma Scope 2 format
 * by `saveGemmaScope2`): the training-time input scales, and any pre-encoder bias, are folded into
 * the weights so the export runs on raw activations with the published forward
 *   pre = x @ w_enc + b_enc;  f = (pre > threshold) * relu(pre);  y = f @ w_dec + b_dec (+ x @ A).
 *
 * Trained on x' = s_in x with targets y'_o = s_o y_o, with u = s_(output of the feature's own layer):
 *   w_enc = W_enc s_in / u,  b_enc = (b_enc - b_dec W_enc) / u,  thresholds / u   (acts = f' / u)
 *   w_dec[l -> o] = W_dec[l -> o] u / s_o,  b_dec_o = b_dec_o / s_o,  A_o = W_skip s_in / s_o
 * so for SAEs and transcoders the exported decoder rows keep unit norm.
 */
import type { Backend } from "../core/backend.js";
import { TrainingError } from "../core/errors.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import { CrossLayerTranscoder } from "../dictionaries/architectures/clt.js";
import { Sae } from "../dictionaries/architectures/sae.js";
import { SkipTranscoder } from "../dictionaries/architectures/skip-transcoder.js";
import { Transcoder } from "../dictionaries/architectures/transcoder.js";
import type { DictionaryMeta } from "../dictionaries/single-layer.js";
import type { Dictionary } from "../dictionaries/types.js";
import type { SparseCoder } from "./coder.js";

/** What the exported config records besides the weights. */
export interface ExportMeta {
  /** `hf_hook_point_in` / `_out` (a CLT's with `{all}` for the layer). */
  readonly hookIn: string;
  readonly hookOut: string;
  readonly modelName: string | null;
  /** The L0 target (config `l0`). */
  readonly l0: number | null;
}

interface FoldedLayer {
  readonly wEnc: Float32Array; // [dIn, width]
  readonly bEnc: Float32Array;
  readonly wDec: Float32Array; // [width, dOut] or [width, layers, dOut]
  readonly bDec: Float32Array;
  readonly skip: Float32Array | null;
  readonly unit: number;
}

function scaleOf(scales: ReadonlyMap<string, number>, key: string): number {
  const s = scales.get(key);
  if (s === undefined || !(s > 0)) throw new TrainingError(`no input scale for site ${key}`);
  return s;
}

function fold(
  coder: SparseCoder,
  l: number,
  scales: ReadonlyMap<string, number>,
  cltLayout: boolean,
): FoldedLayer {
  const { dIn, dOut, width: M, inputs, outputs, preEncoderBias } = coder.shape;
  const L = coder.layers.length;
  const layer = coder.layers[l];
  const sIn = scaleOf(scales, inputs[l]);
  const unit = scaleOf(scales, outputs[l]);
  const encT = layer.encT.data;
  const wEnc = new Float32Array(dIn * M);
  const bEnc = new Float32Array(M);
  const bDecL = layer.bDec.data;
  for (let i = 0; i < M; i++) {
    let shift = 0;
    for (let c = 0; c < dIn; c++) {
      const w = encT[i * dIn + c];
      wEnc[c * M + i] = (w * sIn) / unit;
      if (preEncoderBias) shift += bDecL[c] * w;
    }
    bEnc[i] = (layer.bEnc.data[i] - shift) / unit;
  }
  const D = (L - l) * dOut;
  const dec = layer.dec.data;
  const wDec = new Float32Array(M * (cltLayout ? L : 1) * dOut);
  for (let o = l; o < L; o++) {
    const k = unit / scaleOf(scales, outputs[o]);
    const at = cltLayout ? o * dOut : 0;
    const stride = cltLayout ? L * dOut : dOut;
    for (let i = 0; i < M; i++) {
      for (let c = 0; c < dOut; c++) wDec[i * stride + at + c] = dec[i * D + (o - l) * dOut + c] * k;
    }
  }
  const sOut = scaleOf(scales, outputs[l]);
  const bDec = Float32Array.from(bDecL, (v) => v / sOut);
  const skip = layer.skip === null ? null : Float32Array.from(layer.skip.data, (v) => (v * sIn) / sOut);
  return { wEnc, bEnc, wDec, bDec, skip, unit };
}

/** The coder as a dictionary on raw activations (see the module comment for the folding). */
export function exportDictionary(
  backend: Backend,
  coder: SparseCoder,
  scales: ReadonlyMap<string, number>,
  meta: ExportMeta,
): Dictionary {
  const { dIn, dOut, width: M, skip } = coder.shape;
  const L = coder.layers.length;
  const t = (data: Float32Array, shape: number[]): Tensor<"f32"> => fromStorage(backend, "f32", shape, data);
  const dictMeta: DictionaryMeta = {
    hookIn: meta.hookIn,
    hookOut: meta.hookOut,
    l0: meta.l0,
    modelName: meta.modelName,
    source: "memory",
  };
  const isClt = L > 1;
  if (isClt) {
    const layers = coder.layers.map((_, l) => fold(coder, l, scales, true));
    const activation = coder.layers[0].rule.exported(backend, layers[0].unit);
    return new CrossLayerTranscoder(
      {
        layers: L,
        dIn,
        dOut,
        width: M,
        skip,
        dtype: "f32",
        activation: activation.info,
        load: (l) => ({
          wEnc: t(layers[l].wEnc, [dIn, M]),
          bEnc: t(layers[l].bEnc, [M]),
          wDec: t(layers[l].wDec, [M, L, dOut]),
          bDec: t(layers[l].bDec, [dOut]),
          skip: layers[l].skip === null ? null : t(layers[l].skip as Float32Array, [dIn, dOut]),
          activation: coder.layers[l].rule.exported(backend, layers[l].unit),
        }),
      },
      dictMeta,
    );
  }
  const f = fold(coder, 0, scales, false);
  const params = {
    wEnc: t(f.wEnc, [dIn, M]),
    bEnc: t(f.bEnc, [M]),
    wDec: t(f.wDec, [M, dOut]),
    bDec: t(f.bDec, [dOut]),
    skip: f.skip === null ? null : t(f.skip, [dIn, dOut]),
  };
  const activation = coder.layers[0].rule.exported(backend, f.unit);
  const isSae = coder.shape.inputs[0] === coder.shape.outputs[0];
  if (isSae) return new Sae(params, activation, dictMeta);
  return skip
    ? new SkipTranscoder(params, activation, dictMeta)
    : new Transcoder(params, activation, dictMeta);
}
