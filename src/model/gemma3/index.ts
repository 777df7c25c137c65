/** Gemma 3: config, weights, hook sites, forward pass, interventions, KV cache, generation, losses. */
export { KVCache, type LayerKeys } from "./cache.js";
export {
  configPath,
  estimateMemory,
  type Gemma3Config,
  type LayerAttention,
  type LayerType,
  layerAttention,
  loadGemma3Config,
  loadGenerationStopIds,
  type MemoryEstimate,
  parseGemma3Config,
  type RopeParams,
} from "./config.js";
export {
  Activations,
  embedScale,
  type ForwardOptions,
  type ForwardResult,
  forward as forwardGemma3,
  type IdBatch,
} from "./forward.js";
export {
  type FinishReason,
  type GenerateOptions,
  type GenerateResult,
  generate,
  generateStream,
  generationSteps,
  pickToken,
  type SamplingOptions,
  type TokenEvent,
} from "./generate.js";
export {
  type AddOptions,
  applyInterventions,
  type Intervention,
  type InterventionContext,
  interventions,
  type PositionOptions,
} from "./interventions.js";
export { lossOnTokens, nextTokenLogprobs } from "./loss.js";
export { Gemma3Model, loadGemma3 } from "./model.js";
export {
  type Axis,
  LAYER_SITE_KINDS,
  type LayerSiteKind,
  listSites,
  type ModelSiteKind,
  parseSite,
  Site,
  type SiteKind,
  sites,
} from "./sites.js";
export {
  detectPrefix,
  type Gemma3Weights,
  type LayerWeights,
  type LoadedWeights,
  loadGemma3Weights,
  TEXT_PREFIXES,
} from "./weights.js";
