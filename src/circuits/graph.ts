/**
 * An attribution graph: the nodes of an attribution that pruning and the outputs work on, with a
 * square adjacency matrix. Feature nodes are the visited features only (the ones whose incoming
 * edges were computed), as in circuit-tracer's Graph; errors, tokens and logits are all kept.
 * Node order: features (by layer, position, index), errors (layer-major), tokens, logits.
 */
import { type Attribution, nodeIndex } from "./attribute.js";

export type GraphNode =
  | {
      readonly kind: "feature";
      readonly layer: number;
      readonly position: number;
      readonly feature: number;
      readonly activation: number;
    }
  | { readonly kind: "error"; readonly layer: number; readonly position: number }
  | { readonly kind: "token"; readonly position: number; readonly token: number }
  | {
      readonly kind: "logit";
      readonly position: number;
      readonly token: number;
      readonly probability: number;
    };

export interface Graph {
  /** Prompt token ids. */
  readonly ids: readonly number[];
  readonly layers: number;
  readonly nodes: readonly GraphNode[];
  /** adjacency[t * n + s] = A[s -> t] over `nodes` (n = nodes.length). */
  readonly adjacency: Float32Array;
  /** Index of the first error, token and logit node. */
  readonly firstError: number;
  readonly firstToken: number;
  readonly firstLogit: number;
}

export function toGraph(a: Attribution): Graph {
  const rep = a.replacement;
  const f = rep.features;
  const T = rep.length;
  const L = rep.layers.length;
  const feats = Array.from(a.visited).sort(
    (x, y) => f.layer[x] - f.layer[y] || f.position[x] - f.position[y] || f.feature[x] - f.feature[y],
  );
  const nodes: GraphNode[] = [];
  const from: number[] = [];
  for (const i of feats) {
    nodes.push({
      kind: "feature",
      layer: f.layer[i],
      position: f.position[i],
      feature: f.feature[i],
      activation: f.activation[i],
    });
    from.push(i);
  }
  const firstError = nodes.length;
  for (let l = 0; l < L; l++)
    for (let p = 0; p < T; p++) {
      nodes.push({ kind: "error", layer: l, position: p });
      from.push(nodeIndex.error(a, l, p));
    }
  const firstToken = nodes.length;
  for (let p = 0; p < T; p++) {
    nodes.push({ kind: "token", position: p, token: rep.ids[p] });
    from.push(nodeIndex.token(a, p));
  }
  const firstLogit = nodes.length;
  a.logits.forEach((l, k) => {
    nodes.push({ kind: "logit", position: T - 1, token: l.token, probability: l.probability });
    from.push(nodeIndex.logit(a, k));
  });
  const n = nodes.length;
  const adjacency = new Float32Array(n * n);
  for (let t = 0; t < n; t++) {
    const r = a.rowOf[from[t]];
    if (r < 0) continue;
    const src = a.rows.subarray(r * a.nNodes, (r + 1) * a.nNodes);
    const dst = adjacency.subarray(t * n, (t + 1) * n);
    for (let s = 0; s < n; s++) dst[s] = src[from[s]];
  }
  return { ids: [...rep.ids], layers: L, nodes, adjacency, firstError, firstToken, firstLogit };
}
