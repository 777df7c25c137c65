/**
 * Decoder-norm folding (algorithms.md, "Sparse dictionaries"; SAELens `fold_W_dec_norm`): with
 * n_i = ||d_i|| the norm of feature i's decoder row (for a cross-layer transcoder, its decoders to
 * every target layer concatenated), scale encoder column i, b_enc_i and the threshold by n_i and
 * divide d_i by n_i. Pre-activations scale by n_i > 0, so the active set is the same and each
 * reconstruction term a_i d_i is unchanged. Features with a zero decoder keep their weights.
 * `foldDecoderNorms(dict)` asks the dictionary, which knows its own parameters; these are the
 * shared pieces. Results are f32 whatever the stored dtype.
 */
import { DictionaryError } from "../core/errors.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import type { Dictionary } from "./types.js";

/** An equivalent dictionary whose decoder rows have unit norm. */
export function foldDecoderNorms(dict: Dictionary): Dictionary {
  return dict.foldDecoderNorms();
}

/**
 * Per-row norms of w [width, ...] over the columns [start, end) of its trailing dims flattened
 * (all of them by default), as the folding scale: 1 where the norm is 0.
 */
export function decoderScale(w: Tensor, start = 0, end?: number): Tensor<"f32"> {
  if (w.rank < 2) throw new DictionaryError(`decoder must have at least 2 dims, got [${w.shape}]`);
  const width = w.shape[0];
  const stride = w.size / Math.max(width, 1);
  const stop = end ?? stride;
  const data = w.toFloat32Array();
  const out = new Float32Array(width);
  for (let i = 0; i < width; i++) {
    let s = 0;
    for (let c = start; c < stop; c++) s += data[i * stride + c] ** 2;
    out[i] = s > 0 ? Math.sqrt(s) : 1;
  }
  return fromStorage(w.backend, "f32", [width], out);
}

/** w [..., width] with column i multiplied by scale[i] (encoder matrices, biases). */
export function scaleColumns(w: Tensor, scale: Tensor<"f32">): Tensor<"f32"> {
  const width = scale.size;
  const s = scale.data;
  const data = w.toFloat32Array();
  for (let j = 0; j < data.length; j++) data[j] *= s[j % width];
  return fromStorage(w.backend, "f32", w.shape, data);
}

/** w [width, ...] with row i divided by scale[i] (decoders). */
export function divideRows(w: Tensor, scale: Tensor<"f32">): Tensor<"f32"> {
  const width = w.shape[0];
  const stride = w.size / Math.max(width, 1);
  const s = scale.data;
  const data = w.toFloat32Array();
  for (let i = 0; i < width; i++) for (let c = 0; c < stride; c++) data[i * stride + c] /= s[i];
  return fromStorage(w.backend, "f32", w.shape, data);
}
