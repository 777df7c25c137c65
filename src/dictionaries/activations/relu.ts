/** ReLU activation, f = relu(pre) (the "standard" SAE). Folding leaves it unchanged. */
import { thresholdSparse } from "../../core/ops/sparse.js";
import { zeros } from "../../core/tensor.js";
import type { Activation } from "../types.js";

export const relu: Activation = {
  info: { kind: "relu" },
  width: null,
  columnwise: true,
  columns: () => relu,
  select: (pre, bias) => thresholdSparse(pre, 0, bias ? { bias } : {}),
  fold: () => relu,
  // A JumpReLU with zero thresholds is the same function, and the form Gemma Scope 2 readers know.
  gemmaScope2: (backend, width) => ({
    architecture: "jump_relu",
    threshold: zeros(backend, [width]),
    config: {},
  }),
};
