/**
 * A pruned attribution graph as Neuronpedia graph JSON, the format circuit-tracer 0.5.0 writes
 * (`create_graph_files`) and Neuronpedia's / circuit-tracer's graph frontend reads:
 * `{ metadata, qParams, nodes, links }`.
 *
 * Node ids: feature `{layer}_{feature}_{pos}`, error `0_{layer}_{pos}`, embedding
 * `E_{token}_{pos}`, logit `{layers + 1}_{token}_{pos}`; `layer` is a string ("E" for embeddings,
 * layers + 1 for logits); `jsNodeId` is `{layer}_{feature}-{0}` for features, `{layer}_0-0` for
 * errors... as circuit-tracer builds them; `feature_type` is "cross layer transcoder" for every
 * feature (circuit-tracer's label, also for per-layer transcoders), "mlp reconstruction error",
 * "embedding" or "logit". Links are `{ source, target, weight }` with node ids and raw edge weights.
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
    readonly schema_id: string;
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

export function neuronpediaGraph(g: Graph, p: PrunedGraph, o: NeuronpediaGraphOptions): NeuronpediaGraph {
  let firstLogit = true;
  const toNode = (i: number): NeuronpediaNode => {
    const node = g.nodes[i];
    const influence = p.influence[i];
    const base = { run_idx: 0, reverse_ctx_idx: 0, token_prob: 0, is_target_logit: false };
    switch (node.kind) {
      case "feature":
        return {
          ...base,
          node_id: nodeId(node, g.layers),
          feature: node.feature,
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
          feature: null,
          layer: String(node.layer),
          ctx_idx: node.position,
          feature_type: "mlp reconstruction error",
          jsNodeId: `${node.layer}_0-0`,
          clerp: `Err: mlp "${o.promptTokens[node.position] ?? ""}"`,
          influence,
          activation: null,
        };
      case "token":
        return {
          ...base,
          node_id: nodeId(node, g.layers),
          feature: null,
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
          influence,
          activation: null,
          token_prob: node.probability,
          is_target_logit: target,
        };
      }
    }
  };
  const nodes: NeuronpediaNode[] = [];
  for (const i of p.nodes) nodes.push(toNode(i));
  const ids = Array.from(p.nodes, (i) => nodeId(g.nodes[i], g.layers));
  const idOf = new Map<number, string>();
  Array.from(p.nodes).forEach((node, k) => {
    idOf.set(node, ids[k]);
  });
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
      schema_id: "",
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
