/** Attribution graphs: the public API. */
export {
  type HeadSplit,
  headOutput,
  headSplit,
  type QkContributions,
  type QkShare,
  qkContributions,
  queryKey,
  residPreOf,
} from "./attention.js";
export {
  type Attribution,
  type AttributionOptions,
  attribute,
  demeanedUnembedding,
  edge,
  influence,
  type LogitTarget,
  logitTargets,
  nodeIndex,
} from "./attribute.js";
export { type Graph, type GraphNode, toGraph } from "./graph.js";
export {
  GRAPH_BINARY_FORMAT,
  GRAPH_BINARY_VERSION,
  readGraphBinary,
  writeGraphBinary,
} from "./graph-binary.js";
export {
  type GlassboxGraphInfo,
  GRAPH_FORMAT,
  GRAPH_FORMAT_VERSION,
  type GraphFile,
  graphProblems,
  readGraphFile,
  writeGraphFile,
} from "./graph-file.js";
export { activationOf, editWrites, frozenLogits, type GraphEdit, liveInterventions } from "./intervene.js";
export { type FeatureLabeller, featureLabeller } from "./labels.js";
export { backward, type Propagated, propagate, readSeed, type Seed, type Write } from "./linear.js";
export {
  type NeuronpediaGraph,
  type NeuronpediaGraphOptions,
  type NeuronpediaLink,
  type NeuronpediaNode,
  neuronpediaGraph,
  nodeId,
} from "./neuronpedia-graph.js";
export { sourceWrites, targetSeed } from "./nodes.js";
export { type GraphPath, topPaths } from "./paths.js";
export {
  type GraphScores,
  graphScores,
  logitWeights,
  type PrunedGraph,
  type PruneOptions,
  prune,
} from "./prune.js";
export {
  type ActiveFeatures as PromptFeatures,
  type FrozenLayer,
  type FrozenNorm,
  LocalReplacement,
  type ReplacementOptions,
} from "./replacement.js";
export { type TraceOptions, type TraceResult, traceGraph } from "./trace.js";
export { TranscoderSet } from "./transcoders.js";
