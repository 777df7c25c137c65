/** Every tensor op, re-exported from one place. */
export { cast } from "./cast.js";
export {
  abs,
  add,
  affine,
  div,
  eq,
  exp,
  ge,
  geluTanh,
  gt,
  le,
  log,
  lt,
  maximum,
  minimum,
  mul,
  ne,
  neg,
  pow,
  reciprocal,
  relu,
  rsqrt,
  sigmoid,
  sign,
  sqrt,
  square,
  step,
  sub,
  tanh,
  where,
} from "./elementwise.js";
export { embedding, indexSelect, scatterAdd, topk } from "./indexing.js";
export {
  addInPlace,
  affineInPlace,
  assignNarrow,
  assignRegion,
  empty,
  fillOutsideBands,
  geluTanhInPlace,
  mulInPlace,
  rmsnormInPlace,
  ropeInPlace,
  softmaxInPlace,
} from "./inplace.js";
export { type MatmulOptions, matmul, matmulAsync } from "./linalg.js";
export {
  causalMask,
  logSoftmax,
  type MaskOptions,
  type RmsnormOptions,
  type RopeOptions,
  rmsnorm,
  rope,
  ropeTables,
  softmax,
} from "./nn.js";
export { type Axes, argmax, argmin, max, mean, min, sum, sumTo } from "./reduce.js";
export {
  broadcastTo,
  concat,
  expand,
  narrow,
  permute,
  reshape,
  type SliceRange,
  select,
  slice,
  squeeze,
  stack,
  transpose,
  unsqueeze,
} from "./shape.js";
export {
  type CsrRows,
  checkCsr,
  type SparseMatmulOptions,
  sparseMatmul,
  type ThresholdOptions,
  thresholdSparse,
} from "./sparse.js";
export type { Operand } from "./util.js";
