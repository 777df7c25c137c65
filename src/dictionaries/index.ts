/** Sparse dictionaries: the public API. */
export { type BatchTopKActivation, batchTopK as batchTopKActivation } from "./activations/batchtopk.js";
export { jumpRelu as jumpReluActivation } from "./activations/jumprelu.js";
export { relu as reluActivation } from "./activations/relu.js";
export { topK as topKActivation } from "./activations/topk.js";
export { type CltLayerParams, type CltLayout, CrossLayerTranscoder } from "./architectures/clt.js";
export { Sae } from "./architectures/sae.js";
export { SkipTranscoder } from "./architectures/skip-transcoder.js";
export { Transcoder } from "./architectures/transcoder.js";
export { type ActiveFeatures, FeatureActs } from "./feature-acts.js";
export { foldDecoderNorms } from "./fold.js";
export type { DictionaryInfo } from "./formats/common.js";
export { type GemmaScope1Options, loadGemmaScope1 } from "./formats/gemma-scope-1.js";
export { loadGemmaScope2, saveGemmaScope2 } from "./formats/gemma-scope-2.js";
export { loadSaeLens } from "./formats/saelens.js";
export { inspectDictionary, type LoadOptions, loadDictionary } from "./load.js";
export { ARCHITECTURES, type ArchitectureEntry } from "./registry.js";
export {
  listRepository,
  loadRepositoryEntry,
  type RepositoryEntry,
  type RepositoryListing,
  type RepositoryProblem,
} from "./repository.js";
export type { DictionaryMeta, SingleLayerParams } from "./single-layer.js";
export { type DictionarySites, dictionarySites } from "./sites.js";
export { Splice, type SpliceOptions, type SpliceOutput, splice, spliceAll } from "./splice.js";
export type {
  Activation,
  ActivationInfo,
  Dictionary,
  DictionarySpec,
  EncodeOptions,
  GemmaScope2Form,
  LayerwiseDictionary,
  ParameterFile,
} from "./types.js";
export { isLayerwise } from "./types.js";
