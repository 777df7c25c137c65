/**
 * Attribution (Anthropic, "Circuit Tracing", 2025; circuit-tracer 0.5.0 `attribute`): the direct
 * effects A[s -> t] = (a_s d_s) . J . v_t between the nodes of a local replacement model, where J is
 * the frozen model's Jacobian from the source's write site to the target's read site and v_t the
 * target's read vector (a feature's encoder column through the frozen pre-feedforward norm, or a
 * logit's demeaned unembedding row through the frozen final norm).
 *
 * Nodes, in this order: active features (replacement.ts order), error nodes (layer-major,
 * layer * T + position), token embeddings (position), logit targets. Rows of the adjacency matrix
 * are targets, columns sources. Rows are computed with batched backward passes (one target per
 * batch row): first the logits, then features in order of their estimated influence on the logits
 * (recomputed from the rows so far every `updateInterval` batches), up to `maxFeatureNodes`. Rows
 * of features never visited stay zero, as do token and error rows.
 */
import { CircuitError } from "../core/errors.js";
import { matmul } from "../core/ops/linalg.js";
import { narrow } from "../core/ops/shape.js";
import { makeF32 } from "../core/ops/util.js";
import type { Tensor } from "../core/tensor.js";
import { backward, type Seed } from "./linear.js";
import type { LocalReplacement } from "./replacement.js";

export interface LogitTarget {
  readonly token: number;
  readonly probability: number;
  /** The demeaned logit on the prompt: logit[token] - mean over the vocabulary. */
  readonly value: number;
}

export interface AttributionOptions {
  /** Most logit targets (default 10). */
  readonly maxLogits?: number;
  /** Logits are taken, most probable first, until their probabilities sum to this (default 0.95). */
  readonly logitProbability?: number;
  /** Most feature rows computed (default 7500, as circuit-tracer's `attribute`). */
  readonly maxFeatureNodes?: number;
  /** Targets per backward pass (default 256, as circuit-tracer's command line). */
  readonly batchSize?: number;
  /** Batches computed between two rankings of the features by influence (default 4, as circuit-tracer). */
  readonly updateInterval?: number;
  readonly onProgress?: (done: number, total: number) => void;
}

export interface Attribution {
  readonly replacement: LocalReplacement;
  readonly logits: readonly LogitTarget[];
  /** Node counts and offsets. */
  readonly nFeatures: number;
  readonly nErrors: number;
  readonly nTokens: number;
  readonly nLogits: number;
  readonly nNodes: number;
  /**
   * The computed rows: rows[r * nNodes + s] = A[s -> rowNodes[r]] (float32). Rows exist for the
   * logits and the visited features only; every other node's row is zero.
   */
  readonly rows: Float32Array;
  readonly rowNodes: Int32Array;
  /** The row of a node, or -1. */
  readonly rowOf: Int32Array;
  /**
   * Per node: the part of its value that comes from no node: b_dec writes carried through the
   * frozen model, plus b_enc for a feature. value = sum of its row + bias (computed rows only).
   */
  readonly bias: Float32Array;
  /** Feature nodes whose rows were computed, in visiting order. */
  readonly visited: Int32Array;
}

/** A[s -> t] (0 where t's row was not computed). */
export function edge(a: Attribution, s: number, t: number): number {
  const r = a.rowOf[t];
  return r < 0 ? 0 : a.rows[r * a.nNodes + s];
}

/** Node index helpers. */
export const nodeIndex = {
  error: (a: Pick<Attribution, "nFeatures" | "replacement">, layer: number, position: number) =>
    a.nFeatures + layer * a.replacement.length + position,
  token: (a: Pick<Attribution, "nFeatures" | "nErrors">, position: number) =>
    a.nFeatures + a.nErrors + position,
  logit: (a: Pick<Attribution, "nFeatures" | "nErrors" | "nTokens">, k: number) =>
    a.nFeatures + a.nErrors + a.nTokens + k,
};

/** Logit targets: most probable first, until `p` cumulative probability or `max` of them. */
export function logitTargets(logits: Float32Array, max: number, p: number): LogitTarget[] {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of logits) m = Math.max(m, v);
  let z = 0;
  let mean = 0;
  for (const v of logits) {
    z += Math.exp(v - m);
    mean += v;
  }
  mean /= logits.length;
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  const out: LogitTarget[] = [];
  let cum = 0;
  for (const token of order) {
    if (out.length >= max || cum >= p) break;
    const probability = Math.exp(logits[token] - m) / z;
    out.push({ token, probability, value: logits[token] - mean });
    cum += probability;
  }
  return out;
}

/** Demeaned unembedding rows of `tokens` [d_model each]: W_U[v] - mean over the vocabulary of W_U. */
export function demeanedUnembedding(rep: LocalReplacement, tokens: readonly number[]): Float32Array[] {
  const w = rep.model.weights.lmHead;
  const [V, D] = w.shape;
  const mean = new Float64Array(D);
  const chunk = Math.max(1, Math.floor((1 << 22) / D));
  for (let r0 = 0; r0 < V; r0 += chunk) {
    const rows = narrow(w, 0, r0, Math.min(chunk, V - r0)).toFloat32Array();
    for (let i = 0; i < rows.length; i++) mean[i % D] += rows[i];
  }
  return tokens.map((t) => {
    const row = narrow(w, 0, t, 1).toFloat32Array();
    for (let j = 0; j < D; j++) row[j] -= mean[j] / V;
    return row;
  });
}

/**
 * Per write layer, per position: the source rows written there (a_s d_{s,t} for features, the error,
 * b_dec) as one [n, D] block, with the node each row belongs to (-1: the bias).
 */
interface WriteBlock {
  readonly nodes: Int32Array;
  /** [n, D] */
  readonly rows: Tensor<"f32">;
}

function writeBlocks(rep: LocalReplacement, nFeatures: number): WriteBlock[][] {
  const c = rep.model.config;
  const T = rep.length;
  const D = c.dModel;
  const f = rep.features;
  const lists: { nodes: number[]; rows: Float32Array[] }[][] = Array.from({ length: c.layers }, () =>
    Array.from({ length: T }, () => ({ nodes: [], rows: [] })),
  );
  for (let i = 0; i < f.count; i++) {
    const rows = rep.transcoders.decoderRows(f.layer[i], f.feature[i]);
    const targets = rep.transcoders.targetLayers(f.layer[i]);
    const a = f.activation[i];
    targets.forEach((t, k) => {
      const row = rows[k];
      for (let j = 0; j < D; j++) row[j] *= a;
      const e = lists[t][f.position[i]];
      e.nodes.push(i);
      e.rows.push(row);
    });
  }
  return lists.map((perPos, l) =>
    perPos.map((e, p) => {
      e.nodes.push(nFeatures + l * T + p);
      e.rows.push(rep.layers[l].error.subarray(p * D, (p + 1) * D));
      e.nodes.push(-1);
      e.rows.push(rep.transcoders.decoderBias(l));
      const rows = new Float32Array(e.rows.length * D);
      for (const [k, r] of e.rows.entries()) rows.set(r, k * D);
      return { nodes: Int32Array.from(e.nodes), rows: makeF32(rep.backend, [e.rows.length, D], rows) };
    }),
  );
}

/**
 * Influence on the targets weighted by `weights` (per node), through row-normalised |A|:
 * w (N + N^2 + ...), N[t, s] = |A[s -> t]| / sum_s' |A[s' -> t]|. `rows` holds the rows of
 * `rowNodes` (row-major, n columns); other nodes have no inputs.
 */
export function influence(
  rows: Float32Array,
  rowNodes: ArrayLike<number>,
  n: number,
  weights: ArrayLike<number>,
): Float64Array {
  const R = rowNodes.length;
  const rowSum = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let s = 0;
    const base = r * n;
    for (let j = 0; j < n; j++) s += Math.abs(rows[base + j]);
    rowSum[r] = s;
  }
  const total = new Float64Array(n);
  let x = Float64Array.from(weights);
  // The graph is acyclic (sources strictly upstream), so the series ends within n steps; in
  // practice within layers + 2.
  for (let step = 0; step < n; step++) {
    const next = new Float64Array(n);
    let any = false;
    for (let r = 0; r < R; r++) {
      const xt = x[rowNodes[r]];
      if (xt === 0 || rowSum[r] === 0) continue;
      any = true;
      const k = xt / rowSum[r];
      const row = rows.subarray(r * n, (r + 1) * n);
      for (let j = 0; j < n; j++) next[j] += k * Math.abs(row[j]);
    }
    if (!any) break;
    for (let j = 0; j < n; j++) total[j] += next[j];
    x = next;
  }
  return total;
}

export function attribute(rep: LocalReplacement, options: AttributionOptions = {}): Attribution {
  const c = rep.model.config;
  const T = rep.length;
  const D = c.dModel;
  const maxLogits = options.maxLogits ?? 10;
  const logitP = options.logitProbability ?? 0.95;
  const maxFeatureNodes = options.maxFeatureNodes ?? 7500;
  const batchSize = options.batchSize ?? 256;
  const updateInterval = options.updateInterval ?? 4;
  if (!Number.isInteger(maxFeatureNodes) || maxFeatureNodes < 0)
    throw new CircuitError(`must be an integer >= 0, got ${maxFeatureNodes}`, "maxFeatureNodes");
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new CircuitError(`must be an integer >= 1, got ${batchSize}`, "batchSize");
  const logits = logitTargets(rep.lastLogits, maxLogits, logitP);
  const nFeatures = rep.features.count;
  const nErrors = c.layers * T;
  const nTokens = T;
  const nLogits = logits.length;
  const n = nFeatures + nErrors + nTokens + nLogits;
  const budget = Math.min(maxFeatureNodes, nFeatures);
  const rows = new Float32Array((nLogits + budget) * n);
  const rowNodes = new Int32Array(nLogits + budget);
  const rowOf = new Int32Array(n).fill(-1);
  let nRows = 0;
  const bias = new Float32Array(n);
  const blocks = writeBlocks(rep, nFeatures);
  const layout = { nFeatures, nErrors, nTokens, replacement: rep };

  /** Runs one batch of targets (node indices with their seeds) and fills their rows. */
  const run = (targets: readonly number[], seeds: readonly Seed[]) => {
    const B = targets.length;
    const rowBase = targets.map((t) => {
      rowNodes[nRows] = t;
      rowOf[t] = nRows;
      return nRows++ * n;
    });
    const gp = new Float32Array(B * D);
    backward(rep, seeds, (l, g, live) => {
      if (l === -1) {
        for (let b = 0; b < live; b++) {
          const row = rowBase[b];
          for (let p = 0; p < T; p++) {
            let s = 0;
            const gb = (b * T + p) * D;
            for (let j = 0; j < D; j++) s += rep.embedding[p * D + j] * g[gb + j];
            rows[row + nodeIndex.token(layout, p)] += s;
          }
        }
        return;
      }
      for (let p = 0; p < T; p++) {
        if (live === 0) break;
        const blk = blocks[l][p];
        const m = blk.nodes.length;
        for (let b = 0; b < live; b++) gp.set(g.subarray((b * T + p) * D, (b * T + p + 1) * D), b * D);
        // [live, D] @ [m, D]^T through the backend's matmul.
        const out = matmul(makeF32(rep.backend, [live, D], gp.subarray(0, live * D)), blk.rows, {
          transB: true,
        }).data;
        for (let b = 0; b < live; b++) {
          const row = rowBase[b];
          for (let k = 0; k < m; k++) {
            const node = blk.nodes[k];
            if (node < 0) bias[targets[b]] += out[b * m + k];
            else rows[row + node] += out[b * m + k];
          }
        }
      }
    });
  };

  // Logit rows.
  const unembed = demeanedUnembedding(
    rep,
    logits.map((l) => l.token),
  );
  for (let k0 = 0; k0 < nLogits; k0 += batchSize) {
    const ks = Array.from({ length: Math.min(batchSize, nLogits - k0) }, (_, i) => k0 + i);
    run(
      ks.map((k) => nodeIndex.logit(layout, k)),
      ks.map((k) => ({ at: "final", layer: c.layers - 1, position: T - 1, vector: unembed[k] })),
    );
  }

  // Feature rows, most influential first.
  const weights = new Float32Array(n);
  logits.forEach((l, k) => {
    weights[nodeIndex.logit(layout, k)] = l.probability;
  });
  const done = new Uint8Array(nFeatures);
  const visited: number[] = [];
  const f = rep.features;
  // As circuit-tracer: when the budget covers every feature, all are visited in order; otherwise
  // the features are ranked by their influence through the rows so far, and the next
  // `updateInterval` batches of unvisited ones are computed before ranking again.
  const all = budget >= nFeatures;
  while (visited.length < budget) {
    let pending: number[];
    if (all) pending = Array.from({ length: nFeatures }, (_, i) => i);
    else {
      const inf = influence(rows.subarray(0, nRows * n), rowNodes.subarray(0, nRows), n, weights);
      const order = Array.from({ length: nFeatures }, (_, i) => i).filter((i) => !done[i]);
      order.sort((a, b) => inf[b] - inf[a] || a - b);
      pending = order.slice(0, Math.min(updateInterval * batchSize, budget - visited.length));
    }
    for (let k = 0; k < pending.length; k += batchSize) {
      // Highest layer first: the backward pass then runs each layer on the rows that reach it.
      const batch = pending.slice(k, k + batchSize).sort((a, b) => f.layer[b] - f.layer[a] || a - b);
      const seeds: Seed[] = batch.map((i) => ({
        at: "mid",
        layer: f.layer[i],
        position: f.position[i],
        vector: rep.transcoders.encoderColumn(f.layer[i], f.feature[i]),
      }));
      run(batch, seeds);
      for (const i of batch) {
        done[i] = 1;
        visited.push(i);
        bias[i] += rep.transcoders.encoderBias(f.layer[i], f.feature[i]);
      }
      options.onProgress?.(visited.length, budget);
    }
  }
  rep.transcoders.releaseEncoders();
  return {
    replacement: rep,
    logits,
    nFeatures,
    nErrors,
    nTokens,
    nLogits,
    nNodes: n,
    rows: rows.subarray(0, nRows * n),
    rowNodes: rowNodes.subarray(0, nRows),
    rowOf,
    bias,
    visited: Int32Array.from(visited),
  };
}
