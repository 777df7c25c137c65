/** Feature statistics, search, export and steering: the public API. */
export {
  type BuildDictionary,
  type BuildOptions as FeatureBuildOptions,
  type BuildProgress as FeatureBuildProgress,
  type BuildSummary as FeatureBuildSummary,
  buildFeatureDatabase,
  type StoreData,
} from "./build.js";
export { escapeHtml, featureDashboardHtml, tokenAlpha } from "./dashboard-html.js";
export { FEATURES_FORMAT, FEATURES_FORMAT_VERSION, FeatureDatabase, type SpaceRow } from "./db.js";
export {
  type DecoderMatrix,
  decoderMatrix,
  logitEffects,
  type Neighbour,
  nearestByCosine,
  type TokenValue,
  writesResidual,
} from "./directions.js";
export {
  type NeuronpediaActivation,
  type NeuronpediaBatch,
  type NeuronpediaFeature,
  type NeuronpediaOptions,
  neuronpediaBatch,
  neuronpediaFeature,
} from "./neuronpedia.js";
export type {
  ActivationHistogram,
  ContextExample,
  FeaturePage,
  FeatureSpaceInfo,
  IntervalGroup,
  LogitEffect,
  NeighbourFeature,
} from "./page.js";
export {
  type ContextHit,
  type DirectionHit,
  type FeatureRef,
  featuresByContext,
  featuresByLogit,
  featuresNearDirection,
  featuresOnText,
  type LogitHit,
  type TextToken,
  type TokenHit,
} from "./search.js";
export { DEFAULT_STATS_OPTIONS, FeatureStats, type StatsOptions } from "./stats.js";
export {
  type AblateSpec,
  type AddSpec,
  type ClampSpec,
  type FeatureDirection,
  type FeatureTarget,
  featureDirection,
  maxActivation,
  type ScaledSpecs,
  type SteeringOptions,
  type SteerPositions,
  type SteerSpec,
  scaleToMaxActivation,
  statisticsSpace,
  steeringInterventions,
} from "./steering.js";
