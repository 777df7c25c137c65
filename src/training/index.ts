/** Training sparse dictionaries: the public API. */
export { CHECKPOINT_FILE, type CheckpointState, readCheckpoint, writeCheckpoint } from "./checkpoint.js";
export {
  type CoderOptions,
  type CoderShape,
  SparseCoder,
  type StepMetrics,
} from "./coder.js";
export {
  checkAgainstSource,
  type DictionaryConfig,
  parseTrainingConfig,
  RUN_DEFAULTS as TRAINING_DEFAULTS,
  type TrainingConfig,
} from "./config.js";
export { type ExportMeta, exportDictionary } from "./export.js";
export {
  Adam,
  type AdamOptions,
  GEMMA_SCOPE_ADAM,
  learningRate,
  type Param,
  type ParamSet,
  type Schedule,
  sparsityWarmup,
} from "./optim.js";
export { BatchTopKRule, type BatchTopKSpec } from "./rules/batchtopk.js";
export { makeRule, type RuleSpec, targetL0 } from "./rules/index.js";
export { JUMPRELU_DEFAULTS, JumpReluRule, type JumpReluSpec } from "./rules/jumprelu.js";
export type { ActivationRule, Auxiliary, RuleContext, Selection } from "./rules/rule.js";
export { TopKRule, type TopKSpec } from "./rules/topk.js";
export {
  type ActivationBatch as TrainingBatch,
  ArraySource,
  type BatchSource,
  type SourceCursor,
} from "./source.js";
export {
  bestCosines,
  type PlantedDictionary,
  type PlantedOptions,
  PlantedSource,
  plantDictionary,
  plantedSite,
} from "./synthetic.js";
export {
  type DictionaryMetrics,
  estimateScales,
  METRICS_FILE,
  type MetricsLine,
  Trainer,
  type TrainerOptions,
  type TrainResult,
} from "./trainer.js";
