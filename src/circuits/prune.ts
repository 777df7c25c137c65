/**
 * Pruning and scores of an attribution graph (Anthropic, "Circuit Tracing", 2025, "Graph pruning";
 * circuit-tracer 0.5.0 graph.py: normalize_matrix, compute_influence, prune_graph,
 * compute_graph_scores).
 *
 * - Normalised adjacency: |A| with each target row divided by its sum.
 * - Influence of a node on the logits: w (N + N^2 + ...), w the logit probabilities.
 * - Nodes: kept most influential first until their cumulative influence reaches `nodeThreshold` of
 *   the total over all nodes; tokens and logits are always kept.
 * - Edges: on the node-pruned normalised graph, an edge's score is its normalised weight times the
 *   influence of its target (plus the target's logit weight); edges are kept, highest first, until
 *   their cumulative score reaches `edgeThreshold` of the total.
 * - Then, until nothing changes, features without a kept edge in or out and error nodes without a
 *   kept edge out are dropped (tokens and logits stay).
 * - Replacement score: the share of the logits' influence that reaches tokens rather than error
 *   nodes. Completeness score: the share of every node's normalised input that does not come from
 *   error nodes (1 for nodes without inputs), weighted by the node's influence plus its logit weight.
 */
import { influence } from "./attribute.js";
import type { Graph } from "./graph.js";

export interface PruneOptions {
  /** Cumulative node influence kept (default 0.8). */
  readonly nodeThreshold?: number;
  /** Cumulative edge score kept (default 0.98). */
  readonly edgeThreshold?: number;
}

export interface PrunedGraph {
  /** Kept nodes (indices into the graph's nodes), ascending. */
  readonly nodes: Int32Array;
  /** Kept edges: source, target (node indices) and raw weight A[s -> t]. */
  readonly edges: { readonly source: Int32Array; readonly target: Int32Array; readonly weight: Float32Array };
  /** Influence of every node of the unpruned graph on the logits. */
  readonly influence: Float64Array;
  readonly nodeThreshold: number;
  readonly edgeThreshold: number;
}

export interface GraphScores {
  readonly replacement: number;
  readonly completeness: number;
}

/** Logit weights as a node vector: the probabilities on the logit nodes, 0 elsewhere. */
export function logitWeights(g: Graph): Float32Array {
  const w = new Float32Array(g.nodes.length);
  g.nodes.forEach((node, i) => {
    if (node.kind === "logit") w[i] = node.probability;
  });
  return w;
}

/** Every node as a row of the square matrix (rows without inputs are skipped by `influence`). */
function allRows(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

/**
 * The smallest score kept when scores are kept highest first up to `fraction` of their sum. Exact,
 * without sorting everything: positive floats order like their bit patterns, so a histogram over
 * the top 16 bits of each float32 finds the bin where the running sum crosses, and only that bin's
 * scores are sorted. (Node influences, float64 and few, are sorted directly.)
 */
function cumulativeCut(scores: Float32Array | Float64Array, fraction: number): number {
  if (scores instanceof Float64Array) {
    const s = scores.filter((v) => v > 0).sort();
    if (s.length === 0) return Number.POSITIVE_INFINITY;
    let total = 0;
    for (const v of s) total += v;
    let cum = 0;
    for (let i = s.length - 1; i >= 0; i--) {
      cum += s[i];
      if (cum >= fraction * total) return s[i];
    }
    return s[0];
  }
  const bits = new Uint32Array(scores.buffer, scores.byteOffset, scores.length);
  const sums = new Float64Array(1 << 16);
  let total = 0;
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i];
    if (v > 0) {
      sums[bits[i] >>> 16] += v;
      total += v;
    }
  }
  if (total === 0) return Number.POSITIVE_INFINITY;
  const want = fraction * total;
  let above = 0;
  let b = (1 << 16) - 1;
  for (; b > 0; b--) {
    if (sums[b] > 0 && above + sums[b] >= want) break;
    above += sums[b];
  }
  let count = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i] > 0 && bits[i] >>> 16 === b) count++;
  const s = new Float32Array(count);
  let k = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i] > 0 && bits[i] >>> 16 === b) s[k++] = scores[i];
  s.sort();
  let cum = above;
  for (let i = s.length - 1; i >= 0; i--) {
    cum += s[i];
    if (cum >= want) return s[i];
  }
  return s[0];
}

function rowNormalised(g: Graph, keep: Uint8Array | null): Float32Array {
  const n = g.nodes.length;
  const A = g.adjacency;
  const out = new Float32Array(n * n);
  for (let t = 0; t < n; t++) {
    if (keep !== null && !keep[t]) continue;
    let s = 0;
    for (let j = 0; j < n; j++) if (keep === null || keep[j]) s += Math.abs(A[t * n + j]);
    if (s === 0) continue;
    for (let j = 0; j < n; j++) if (keep === null || keep[j]) out[t * n + j] = Math.abs(A[t * n + j]) / s;
  }
  return out;
}

export function prune(g: Graph, options: PruneOptions = {}): PrunedGraph {
  const nodeThreshold = options.nodeThreshold ?? 0.8;
  const edgeThreshold = options.edgeThreshold ?? 0.98;
  for (const [name, v] of [
    ["nodeThreshold", nodeThreshold],
    ["edgeThreshold", edgeThreshold],
  ] as const)
    if (!(v > 0 && v <= 1)) throw new RangeError(`${name} must be in (0, 1], got ${v}`);
  const n = g.nodes.length;
  const w = logitWeights(g);
  const rowsAll = allRows(n);
  const inf = influence(g.adjacency, rowsAll, n, w);
  const firstToken = g.firstToken;
  const isTokenOrLogit = (i: number) => i >= firstToken;

  // Nodes.
  // As circuit-tracer: the cut is over every node's influence (tokens included), then tokens and
  // logits are kept whatever their score.
  const cut = cumulativeCut(inf, nodeThreshold);
  const keep = new Uint8Array(n);
  for (let i = 0; i < n; i++) keep[i] = isTokenOrLogit(i) || inf[i] >= cut ? 1 : 0;

  // Edges, on the node-pruned graph.
  const norm = rowNormalised(g, keep);
  const infPruned = influence(norm, rowsAll, n, w);
  const score = new Float32Array(n * n);
  for (let t = 0; t < n; t++) {
    if (!keep[t]) continue;
    const k = infPruned[t] + w[t];
    if (k === 0) continue;
    for (let s = 0; s < n; s++) score[t * n + s] = norm[t * n + s] * k;
  }
  const edgeCut = cumulativeCut(score, edgeThreshold);
  const edge = new Uint8Array(n * n);
  for (let i = 0; i < n * n; i++) edge[i] = score[i] > 0 && score[i] >= edgeCut ? 1 : 0;

  // Orphans: a feature needs a kept edge in and a kept edge out (to a kept node), an error node a
  // kept edge out; tokens and logits stay. Repeat until stable.
  for (;;) {
    let changed = false;
    const out = new Uint8Array(n);
    const inn = new Uint8Array(n);
    for (let t = 0; t < n; t++) {
      if (!keep[t]) continue;
      for (let s = 0; s < n; s++) {
        if (edge[t * n + s] && keep[s]) {
          out[s] = 1;
          inn[t] = 1;
        }
      }
    }
    for (let i = 0; i < firstToken; i++) {
      if (!keep[i]) continue;
      const feature = i < g.firstError;
      if (!out[i] || (feature && !inn[i])) {
        keep[i] = 0;
        changed = true;
      }
    }
    if (!changed) break;
  }
  const nodes: number[] = [];
  for (let i = 0; i < n; i++) if (keep[i]) nodes.push(i);
  const src: number[] = [];
  const tgt: number[] = [];
  const wt: number[] = [];
  for (const t of nodes)
    for (const s of nodes)
      if (edge[t * n + s]) {
        src.push(s);
        tgt.push(t);
        wt.push(g.adjacency[t * n + s]);
      }
  return {
    nodes: Int32Array.from(nodes),
    edges: { source: Int32Array.from(src), target: Int32Array.from(tgt), weight: Float32Array.from(wt) },
    influence: inf,
    nodeThreshold,
    edgeThreshold,
  };
}

export function graphScores(g: Graph): GraphScores {
  const n = g.nodes.length;
  const w = logitWeights(g);
  const norm = rowNormalised(g, null);
  const inf = influence(norm, allRows(n), n, w);
  const e0 = g.firstError;
  const t0 = g.firstToken;
  const l0 = g.firstLogit;
  let tokens = 0;
  let errors = 0;
  for (let i = e0; i < t0; i++) errors += inf[i];
  for (let i = t0; i < l0; i++) tokens += inf[i];
  let num = 0;
  let den = 0;
  // As circuit-tracer: every node counts, a node without inputs (token, error, unvisited
  // feature) as fully explained.
  for (let t = 0; t < n; t++) {
    const k = inf[t] + w[t];
    if (k === 0) continue;
    let fromErrors = 0;
    for (let s = e0; s < t0; s++) fromErrors += norm[t * n + s];
    num += (1 - fromErrors) * k;
    den += k;
  }
  return {
    replacement: tokens + errors > 0 ? tokens / (tokens + errors) : 0,
    completeness: den > 0 ? num / den : 0,
  };
}
