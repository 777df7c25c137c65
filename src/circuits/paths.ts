/**
 * The strongest paths of a pruned graph from the prompt's tokens to a logit: a path's strength is
 * the product of its edges' row-normalised weights |A[s -> t]| / sum_s' |A[s' -> t]| (the share of
 * each target's input the step carries), found by a k-best search over the acyclic graph (every
 * edge goes from a lower layer to a higher one).
 */
import type { Graph } from "./graph.js";
import type { PrunedGraph } from "./prune.js";

export interface GraphPath {
  /** Node indices (into the graph), source token first, logit last. */
  readonly nodes: readonly number[];
  /** Raw edge weights along the path. */
  readonly weights: readonly number[];
  /** Product of the normalised weights. */
  readonly strength: number;
}

/** Layer of a node for ordering: tokens -1, features and errors their layer, logits `layers`. */
function depth(g: Graph, i: number): number {
  const n = g.nodes[i];
  return n.kind === "token" ? -1 : n.kind === "logit" ? g.layers : n.layer;
}

export function topPaths(g: Graph, p: PrunedGraph, logit: number, k = 5): GraphPath[] {
  // Incoming kept edges per target, with normalised weights over the kept inputs.
  const incoming = new Map<number, { s: number; w: number; norm: number }[]>();
  for (let e = 0; e < p.edges.source.length; e++) {
    const t = p.edges.target[e];
    let list = incoming.get(t);
    if (list === undefined) {
      list = [];
      incoming.set(t, list);
    }
    list.push({ s: p.edges.source[e], w: p.edges.weight[e], norm: 0 });
  }
  for (const list of incoming.values()) {
    let total = 0;
    for (const x of list) total += Math.abs(x.w);
    for (const x of list) x.norm = total > 0 ? Math.abs(x.w) / total : 0;
  }
  // Partial paths from the logit backwards: best[node] = up to k (strength, path-to-logit).
  interface Partial {
    readonly strength: number;
    readonly nodes: number[];
    readonly weights: number[];
  }
  const best = new Map<number, Partial[]>([[logit, [{ strength: 1, nodes: [logit], weights: [] }]]]);
  const order = Array.from(p.nodes).sort((a, b) => depth(g, b) - depth(g, a));
  const done: Partial[] = [];
  for (const t of order) {
    const here = best.get(t);
    if (here === undefined) continue;
    if (g.nodes[t].kind === "token") {
      done.push(...here);
      continue;
    }
    for (const { s, w, norm } of incoming.get(t) ?? []) {
      const list = best.get(s) ?? [];
      for (const h of here)
        list.push({ strength: h.strength * norm, nodes: [s, ...h.nodes], weights: [w, ...h.weights] });
      list.sort((a, b) => b.strength - a.strength);
      list.length = Math.min(list.length, k);
      best.set(s, list);
    }
  }
  done.sort((a, b) => b.strength - a.strength);
  return done.slice(0, k).map((d) => ({ nodes: d.nodes, weights: d.weights, strength: d.strength }));
}
