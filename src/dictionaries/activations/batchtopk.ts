/**
 * BatchTopK activation (Bussmann et al. 2024). Training keeps the k x batch largest
 * pre-activations of a whole batch (`selectBatch`); inference applies one global threshold
 * (the running average of the smallest kept activation): f = pre * H(pre - threshold), f > 0.
 * Exported, and folded, as a JumpReLU with that threshold for every feature (scaled per feature
 * when folding), as SAELens does.
 */
import { DictionaryError } from "../../core/errors.js";
import { topk } from "../../core/ops/indexing.js";
import { reshape } from "../../core/ops/shape.js";
import type { CsrRows } from "../../core/ops/sparse.js";
import { thresholdSparse } from "../../core/ops/sparse.js";
import { full, type Tensor } from "../../core/tensor.js";
import type { Activation } from "../types.js";
import { jumpRelu } from "./jumprelu.js";

export interface BatchTopKActivation extends Activation {
  /** Training-time selection: the k x rows largest positive entries of pre [rows, width]. */
  selectBatch(pre: Tensor<"f32">): CsrRows;
}

export function batchTopK(k: number, threshold: number): BatchTopKActivation {
  if (!Number.isInteger(k) || k < 1)
    throw new DictionaryError(`BatchTopK k must be a positive integer, got ${k}`);
  if (!Number.isFinite(threshold))
    throw new DictionaryError(`BatchTopK threshold must be finite, got ${threshold}`);
  return {
    info: { kind: "batchtopk", k, threshold },
    width: null,
    columnwise: true,
    columns: () => batchTopK(k, threshold),
    select: (pre, bias) => thresholdSparse(pre, threshold, bias ? { bias } : {}),
    selectBatch: (pre) => {
      const [rows, width] = pre.shape;
      const keep = Math.min(k * rows, rows * width);
      const { values, indices } = topk(reshape(pre, [1, rows * width]), keep);
      const perRow: number[][] = Array.from({ length: rows }, () => []);
      for (let j = 0; j < keep; j++) {
        if (values.data[j] > 0) perRow[Math.floor(indices.data[j] / width)].push(indices.data[j] % width);
      }
      const offsets = new Int32Array(rows + 1);
      perRow.forEach((cols, r) => {
        cols.sort((a, b) => a - b);
        offsets[r + 1] = offsets[r] + cols.length;
      });
      const flat = Int32Array.from(perRow.flat());
      const vals = Float32Array.from(perRow.flatMap((cols, r) => cols.map((c) => pre.data[r * width + c])));
      return { rows, cols: width, offsets, indices: flat, values: vals };
    },
    fold: (scale) => jumpRelu(full(scale.backend, scale.shape, threshold)).fold(scale),
    gemmaScope2: (backend, width) => ({
      architecture: "jump_relu",
      threshold: full(backend, [width], threshold),
      config: {},
    }),
  };
}
