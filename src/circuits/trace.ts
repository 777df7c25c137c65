/**
 * One call from a prompt to a pruned attribution graph: build the local replacement model,
 * attribute, keep the visited features, prune, score, and find the strongest paths to the top
 * logit. The pieces (replacement.ts, attribute.ts, graph.ts, prune.ts, paths.ts) stay usable alone.
 */
import type { Gemma3Model } from "../model/gemma3/model.js";
import { type Attribution, type AttributionOptions, attribute } from "./attribute.js";
import { type Graph, toGraph } from "./graph.js";
import { type GraphPath, topPaths } from "./paths.js";
import { type GraphScores, graphScores, type PrunedGraph, type PruneOptions, prune } from "./prune.js";
import { LocalReplacement, type ReplacementOptions } from "./replacement.js";
import type { TranscoderSet } from "./transcoders.js";

export interface TraceOptions extends AttributionOptions, PruneOptions, ReplacementOptions {
  /** Paths to the top logit to report (default 5). */
  readonly paths?: number;
}

export interface TraceResult {
  readonly replacement: LocalReplacement;
  readonly attribution: Attribution;
  readonly graph: Graph;
  readonly pruned: PrunedGraph;
  readonly scores: GraphScores;
  readonly paths: readonly GraphPath[];
  readonly seconds: { readonly replacement: number; readonly attribution: number; readonly pruning: number };
}

export function traceGraph(
  model: Gemma3Model,
  transcoders: TranscoderSet,
  ids: readonly number[],
  options: TraceOptions = {},
): TraceResult {
  const t0 = performance.now();
  const replacement = LocalReplacement.build(model, transcoders, ids, options);
  const t1 = performance.now();
  const attribution = attribute(replacement, options);
  const t2 = performance.now();
  const graph = toGraph(attribution);
  const pruned = prune(graph, options);
  const scores = graphScores(graph);
  const paths =
    graph.firstLogit < graph.nodes.length
      ? topPaths(graph, pruned, graph.firstLogit, options.paths ?? 5)
      : [];
  const t3 = performance.now();
  return {
    replacement,
    attribution,
    graph,
    pruned,
    scores,
    paths,
    seconds: { replacement: (t1 - t0) / 1000, attribution: (t2 - t1) / 1000, pruning: (t3 - t2) / 1000 },
  };
}
