/** Dictionary evaluation (docs/evaluation.md). */
export { type EvalOptions, type EvalResult, evalTable, evaluateDictionary } from "./evaluate.js";
export {
  type DensityHistogram,
  FiringStats,
  type HistogramOptions,
  klDivergence,
  LossStats,
  logSoftmax as logSoftmaxRow,
  ReconstructionStats,
} from "./metrics.js";
