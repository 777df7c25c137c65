/**
 * JumpReLU activation (Rajamanoharan et al. 2024; Gemma Scope 2's only architecture):
 * f_i = pre_i * H(pre_i - threshold_i), kept only where f_i > 0 (the official
 * `(pre > threshold) * relu(pre)`). Folding multiplies each threshold by its feature's scale.
 */
import { DictionaryError } from "../../core/errors.js";
import { thresholdSparse } from "../../core/ops/sparse.js";
import { fromStorage, type Tensor } from "../../core/tensor.js";
import type { Activation } from "../types.js";

export function jumpRelu(threshold: Tensor<"f32">): Activation {
  if (threshold.rank !== 1)
    throw new DictionaryError(`JumpReLU threshold must be [width], got [${threshold.shape}]`);
  return {
    info: { kind: "jumprelu" },
    width: threshold.size,
    columnwise: true,
    columns: (start, count) =>
      jumpRelu(fromStorage(threshold.backend, "f32", [count], threshold.data.subarray(start, start + count))),
    select: (pre, bias) => thresholdSparse(pre, threshold, bias ? { bias } : {}),
    fold: (scale) => {
      const s = scale.data;
      return jumpRelu(
        fromStorage(
          threshold.backend,
          "f32",
          threshold.shape,
          threshold.data.map((v, i) => v * s[i]),
        ),
      );
    },
    gemmaScope2: () => ({ architecture: "jump_relu", threshold, config: {} }),
  };
}
