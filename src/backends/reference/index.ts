/**
 * The pure TypeScript reference backend: the readable definition of every kernel in
 * `core/backend.ts`. No Node imports (it runs in a browser); the native backend is tested against it.
 */
import type { Backend } from "../../core/backend.js";
import { affine, binary, unary, where } from "./elementwise.js";
import { gather, scatterAdd, topk } from "./indexing.js";
import { matmul } from "./matmul.js";
import { copy, floatToHalf, halfToFloat } from "./memory.js";
import { argReduce, logSoftmax, reduce, rmsnorm, rope, softmax } from "./reduce.js";
import { sparseMatmul, thresholdCount, thresholdSelect } from "./sparse.js";
import { adamUpdate, kthLargest, normalizeRows, projectOutRows, sparseDot } from "./training.js";

export const referenceBackend: Backend = {
  name: "reference",
  matmul,
  matmulAsync: async (a, b, out, args) => matmul(a, b, out, args),
  unary,
  binary,
  where,
  affine,
  reduce,
  argReduce,
  softmax,
  logSoftmax,
  rmsnorm,
  rope,
  gather,
  scatterAdd,
  topk,
  copy,
  halfToFloat,
  floatToHalf,
  sparseMatmul,
  thresholdCount,
  thresholdSelect,
  sparseDot,
  kthLargest,
  adamUpdate,
  projectOutRows,
  normalizeRows,
};
