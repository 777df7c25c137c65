/**
 * A pruned attribution graph as Neuronpedia graph JSON, the format circuit-tracer 0.5.0 writes
 * (`create_graph_files`) and Neuronpedia's / circuit-tracer's graph frontend reads:
 * `{ metadata, qParams, nodes, links }`.
 *
 * As circuit-tracer builds them: node ids are feature `{layer}_{feature}_{pos}`, error
 * `0_{layer}_{pos}`, embedding `E_{token}_{pos}`, logit `{layers + 1}_{token}_{pos}`; `layer` is a
 * string ("E" for embeddings, layers + 1 for logits); `jsNodeId` is `{layer}_{feature}-0` for
 * features, `{layer}_{pos}-0` for errors, `E_{token}-{pos}` and `L_{token}-{pos}`; `feature` is the
 * Cantor pairing of (layer, feature) for features, -1 for errors, 0 for embeddings and the token id
 * for logits; `influence` is the node's cumulative share of the total influence, nodes sorted by
 * influence (null for logits); `feature_type` is "cross layer transcoder" for every feature
 * (circuit-tracer's label, also for per-layer transcoders), "mlp reconstruction error",
 * "embedding" or "logit". Nodes are the kept ones that have a link, plus every embedding and logit.
 * Links are `{ source, target, weight }` with node ids and raw edge weights. Metadata carries
 * circuit-tracer's fields (slug, scan, transcoder_list, prompt_tokens, prompt, node_threshold,
 * schema_version 1) and Neuronpedia's generation and pruning settings.
 */
import type { Graph, GraphNode } from "./graph.js";
import type { PrunedGraph } from "./prune.js";

export interface NeuronpediaNode {
  readonly node_id: string;
  readonly feature: number | null;
  readonly layer: string;
  readonly ctx_idx: number;
  readonly feature_type: "cross layer transcoder" | "mlp reconstruction error" | "embedding" | "logit";
  readonly jsNodeId: string;
  readonly clerp: string;
  readonly influence: number | null;
  readonly activation: number | null;
  readonly token_prob: number;
  readonly is_target_logit: boolean;
  readonly run_idx: number;
  readonly reverse_ctx_idx: number;
}

export interface NeuronpediaLink {
  readonly source: string;
  readonly target: string;
  readonly weight: number;
}

export interface NeuronpediaGraph {
  readonly metadata: {
    readonly slug: string;
    readonly scan: string;
    readonly prompt_tokens: readonly string[];
    readonly prompt: string;
    readonly node_threshold: number;
    readonly schema_version: number;
    readonly transcoder_list: readonly string[];
    readonly info: Readonly<Record<string, string>>;
    readonly generation_settings: {
      readonly max_n_logits: number;
      readonly desired_logit_prob: number;
      readonly batch_size: number;
      readonly max_feature_nodes: number;
    };
    readonly pruning_settings: { readonly node_threshold: number; readonly edge_threshold: number };
  };
  readonly qParams: {
    readonly pinnedIds: readonly string[];
    readonly supernodes: readonly (readonly string[])[];
    readonly linkType: string;
    readonly clickedId: string;
    readonly sg_pos: string;
  };
  readonly nodes: readonly NeuronpediaNode[];
  readonly links: readonly NeuronpediaLink[];
}

export interface NeuronpediaGraphOptions {
  readonly slug: string;
  /** The model id Neuronpedia knows it by (e.g. "gemma-3-270m"). */
  readonly scan: string;
  readonly prompt: string;
  /** Display string of each prompt token. */
  readonly promptTokens: readonly string[];
  /** Display string of a vocabulary id (logit and embedding labels). */
  readonly tokenText: (id: number) => string;
  readonly generation: {
    maxLogits: number;
    logitProbability: number;
    batchSize: number;
    maxFeatureNodes: number;
  };
  /** The dictionaries, as `metadata.transcoder_list`. */
  readonly transcoderList?: readonly string[];
  /** A label per feature node index (e.g. from the feature statistics), else "". */
  readonly featureLabel?: (node: Extract<GraphNode, { kind: "feature" }>) => string;
}

/** node_id of a graph node, as circuit-tracer writes it. */
export function nodeId(node: GraphNode, layers: number): string {
  switch (node.kind) {
    case "feature":
      return `${node.layer}_${node.feature}_${node.position}`;
    case "error":
      return `0_${node.layer}_${node.position}`;
    case "token":
      return `E_${node.token}_${node.position}`;
    case "logit":
      return `${layers + 1}_${node.token}_${node.position}`;
  }
}

/** circuit-tracer's feature number of (layer, feature): the Cantor pairing. */
export function cantor(layer: number, feature: number): number {
  return ((layer + feature) * (layer + feature + 1)) / 2 + feature;
}

/** Each node's cumulative share of the total influence, nodes sorted by influence (descending). */
function cumulativeShares(influence: Float64Array): Float64Array {
  const order = Array.from(influence.keys()).sort((a, b) => influence[b] - influence[a] || a - b);
  let total = 0;
  for (const v of influence) total += v;
  const out = new Float64Array(influence.length);
  let cum = 0;
  for (const i of order) {
    cum += influence[i];
    out[i] = total > 0 ? cum / total : 0;
  }
  return out;
}

export function neuronpediaGraph(g: Graph, p: PrunedGraph, o: NeuronpediaGraphOptions): NeuronpediaGraph {
  let firstLogit = true;
  const shares = cumulativeShares(p.influence);
  const toNode = (i: number): NeuronpediaNode => {
    const node = g.nodes[i];
    const influence = shares[i];
    const base = { run_idx: 0, reverse_ctx_idx: 0, token_prob: 0, is_target_logit: false };
    switch (node.kind) {
      case "feature":
        return {
          ...base,
          node_id: nodeId(node, g.layers),
          feature: cantor(node.layer, node.feature),
          layer: String(node.layer),
          ctx_idx: node.position,
          feature_type: "cross layer transcoder",
          jsNodeId: `${node.layer}_${node.feature}-0`,
          clerp: o.featureLabel?.(node) ?? "",
          influence,
          activation: node.activation,
        };
      case "error":
        return {
          ...base,
          node_id: nodeId(node, g.layers),
          feature: -1,
          layer: String(node.layer),
          ctx_idx: node.position,
          feature_type: "mlp reconstruction error",
          jsNodeId: `${node.layer}_${node.position}-0`,
          clerp: `Err: mlp "${o.promptTokens[node.position] ?? ""}"`,
          influence,
          activation: null,
        };
      case "token":
        return {
          ...base,
          node_id: nodeId(node, g.layers),
          feature: 0,
          layer: "E",
          ctx_idx: node.position,
          feature_type: "embedding",
          jsNodeId: `E_${node.token}-${node.position}`,
          clerp: `Emb: "${o.tokenText(node.token)}"`,
          influence,
          activation: null,
        };
      case "logit": {
        const target = firstLogit;
        firstLogit = false;
        return {
          ...base,
          node_id: nodeId(node, g.layers),
          feature: node.token,
          layer: String(g.layers + 1),
          ctx_idx: node.position,
          feature_type: "logit",
          jsNodeId: `L_${node.token}-${node.position}`,
          clerp: `Output "${o.tokenText(node.token)}" (p=${node.probability.toFixed(3)})`,
          influence: null,
          activation: null,
          token_prob: node.probability,
          is_target_logit: target,
        };
      }
    }
  };
  const linked = new Set<number>([...p.edges.source, ...p.edges.target]);
  const emitted = Array.from(p.nodes).filter((i) => i >= g.firstToken || linked.has(i));
  const nodes: NeuronpediaNode[] = [];
  for (const i of emitted) nodes.push(toNode(i));
  const idOf = new Map<number, string>();
  for (const i of emitted) idOf.set(i, nodeId(g.nodes[i], g.layers));
  const links: NeuronpediaLink[] = [];
  for (let e = 0; e < p.edges.source.length; e++)
    links.push({
      source: idOf.get(p.edges.source[e]) as string,
      target: idOf.get(p.edges.target[e]) as string,
      weight: p.edges.weight[e],
    });
  return {
    metadata: {
      slug: o.slug,
      scan: o.scan,
      prompt_tokens: [...o.promptTokens],
      prompt: o.prompt,
      node_threshold: p.nodeThreshold,
      schema_version: 1,
      transcoder_list: [...(o.transcoderList ?? [])],
      info: { creator_name: "glassbox", creator_url: "", source_urls: "", generator: "glassbox graph" },
      generation_settings: {
        max_n_logits: o.generation.maxLogits,
        desired_logit_prob: o.generation.logitProbability,
        batch_size: o.generation.batchSize,
        max_feature_nodes: o.generation.maxFeatureNodes,
      },
      pruning_settings: { node_threshold: p.nodeThreshold, edge_threshold: p.edgeThreshold },
    },
    qParams: { pinnedIds: [], supernodes: [], linkType: "both", clickedId: "", sg_pos: "" },
    nodes,
    links,
  };
}
