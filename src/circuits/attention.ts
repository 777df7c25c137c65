/**
 * Attention attribution, an extension beyond circuit-tracer (whose users ask for it): for an edge
 * of the frozen replacement model (replacement.ts), which attention heads carry it, and what makes
 * those heads attend.
 *
 * - `headSplit`: an edge from a source at position p_s to a target splits exactly by the
 *   (layer, head) where its signal first leaves p_s. Its write is followed forward through the
 *   frozen model while it stays at p_s. At each layer every head's output away from p_s is taken
 *   out and carried to the target on its own. The parts sum to the edge, plus a "stayed" part
 *   that never left p_s (zero unless the target is at p_s).
 * - `qkContributions`: with the norm denominators frozen (input norm, q_norm, k_norm), a head's
 *   query and key are linear in the residual stream: q = R_q(g_q r_q W_Q N_in(x_q)), and the same
 *   for k with RoPE R. So the pre-softmax score s = (q . k) / sqrt(query_pre_attn_scalar)
 *   splits exactly over whatever makes up the key's (or query's) residual stream. Each source's
 *   share is q . k(its part of resid_pre at the key position).
 *
 * The tests check that the head parts sum to the edge and that a direct single-head construction
 * agrees. They also check that the linear query and key maps reproduce the real model's q and k.
 */
import { CircuitError } from "../core/errors.js";
import { mul } from "../core/ops/elementwise.js";
import { matmul } from "../core/ops/linalg.js";
import { rope, ropeTables } from "../core/ops/nn.js";
import { narrow } from "../core/ops/shape.js";
import { makeF32 } from "../core/ops/util.js";
import { fromStorage } from "../core/tensor.js";
import { layerAttention } from "../model/gemma3/config.js";
import { propagate, readSeed, type Seed, scales, skipForward, type Write } from "./linear.js";
import type { LocalReplacement } from "./replacement.js";

/** The skip path of layer l applied to a change at resid_mid [T * D] (null without skip connections). */
function skipOf(rep: LocalReplacement, l: number, mid: Float32Array): Float32Array | null {
  return (
    skipForward(rep, l, makeF32(rep.backend, [1, rep.length, rep.model.config.dModel], mid))?.data ?? null
  );
}

/** Head h of layer l applied to x [T * D] at resid_pre: its share of attn_out (after the frozen post-norm). */
export function headOutput(rep: LocalReplacement, l: number, h: number, x: Float32Array): Float32Array {
  const c = rep.model.config;
  const w = rep.model.weights.layers[l];
  const T = rep.length;
  const dh = c.headDim;
  const kv = Math.floor(h / (c.heads / c.kvHeads));
  const xin = mul(makeF32(rep.backend, [T, c.dModel], x), scales(rep).input[l]);
  const v = matmul(xin, narrow(w.vProj, 0, kv * dh, dh), { transB: true }); // [T, dh]
  const pattern = narrow(rep.layers[l].pattern, 1, h, 1); // [1, 1, T, T]
  const z = matmul(makeF32(rep.backend, [T, T], pattern.toFloat32Array()), v); // [T, dh]
  const oCols = narrow(w.oProj, 1, h * dh, dh).toFloat32Array(); // [D, dh]
  const o = matmul(z, makeF32(rep.backend, [c.dModel, dh], oCols), { transB: true }); // [T, D]
  return mul(o, scales(rep).post[l]).data;
}

export interface HeadSplit {
  /** parts[l][h]: the share of the edge that first leaves the source position through head h of layer l. */
  readonly parts: Float64Array[];
  /** The share that never leaves the source position. */
  readonly stayed: number;
  /** The whole edge (the same as `attribute` gives). */
  readonly total: number;
}

/** The target's change when `moved` is added at resid_mid of layer l (attention's output there). */
function fromMid(rep: LocalReplacement, l: number, moved: Float32Array, target: Seed): number {
  const T = rep.length;
  const D = rep.model.config.dModel;
  if (target.at === "mid" && target.layer < l) return 0;
  if (target.at === "mid" && target.layer === l) {
    const mid = rep.layers.map((_, i) => (i === l ? moved : new Float32Array(T * D)));
    return readSeed(rep, { mid, final: new Float32Array(T * D) }, target);
  }
  // resid_post of layer l gets moved + its skip path; `propagate` carries writes at layer l on.
  const post = moved.slice();
  const sk = skipOf(rep, l, moved);
  if (sk !== null) for (let i = 0; i < post.length; i++) post[i] += sk[i];
  const writes: Write[] = [];
  for (let p = 0; p < T; p++) {
    const v = post.subarray(p * D, (p + 1) * D);
    if (v.some((x) => x !== 0)) writes.push({ layer: l, position: p, vector: v });
  }
  return readSeed(rep, propagate(rep, writes), target);
}

/** Splits the edge from `writes` (one source node's writes, all at one position) to `target` by head. */
export function headSplit(rep: LocalReplacement, writes: readonly Write[], target: Seed): HeadSplit {
  const c = rep.model.config;
  const T = rep.length;
  const D = c.dModel;
  if (writes.length === 0) throw new CircuitError("the source writes nothing");
  const ps = writes[0].position;
  if (writes.some((w) => w.position !== ps))
    throw new CircuitError("the writes must all be at one position (one source node)");
  const total = readSeed(rep, propagate(rep, writes), target);
  const parts = Array.from({ length: c.layers }, () => new Float64Array(c.heads));
  // The part still only at p_s, as resid_pre of the current layer.
  let stay = new Float32Array(T * D);
  for (const w of writes) if (w.layer === -1) for (let j = 0; j < D; j++) stay[ps * D + j] += w.vector[j];
  const stayMid: Float32Array[] = [];
  for (let l = 0; l < c.layers; l++) {
    const mid = stay.slice();
    for (let h = 0; h < c.heads; h++) {
      const out = headOutput(rep, l, h, stay);
      const moved = out.slice();
      for (let j = 0; j < D; j++) {
        mid[ps * D + j] += out[ps * D + j];
        moved[ps * D + j] = 0;
      }
      if (moved.some((x) => x !== 0)) parts[l][h] = fromMid(rep, l, moved, target);
    }
    stayMid.push(mid);
    const post = mid.slice();
    const sk = skipOf(rep, l, mid);
    if (sk !== null) for (let j = 0; j < D; j++) post[ps * D + j] += sk[ps * D + j];
    for (const w of writes) if (w.layer === l) for (let j = 0; j < D; j++) post[ps * D + j] += w.vector[j];
    stay = post;
  }
  const stayed = readSeed(rep, { mid: stayMid, final: stay }, target);
  return { parts, stayed, total };
}

/** The frozen linear query or key map of head h (kv head for keys) at layer l, position p, from resid_pre x [D]. */
function projectHead(
  rep: LocalReplacement,
  l: number,
  which: "q" | "k",
  head: number,
  p: number,
  x: Float32Array,
): Float32Array {
  const c = rep.model.config;
  const w = rep.model.weights.layers[l];
  const D = c.dModel;
  const dh = c.headDim;
  const inN = rep.layers[l].input;
  const xin = new Float32Array(D);
  for (let j = 0; j < D; j++) xin[j] = x[j] * inN.rinv[p] * inN.g[j];
  const proj = which === "q" ? w.qProj : w.kProj;
  const raw = matmul(makeF32(rep.backend, [1, D], xin), narrow(proj, 0, head * dh, dh), {
    transB: true,
  }).data;
  // The q/k norm's denominator, frozen at its value on the prompt.
  const r = qkRinv(rep, l, which, head, p);
  const g = (which === "q" ? w.qNorm : w.kNorm).toFloat32Array();
  const normed = new Float32Array(dh);
  for (let j = 0; j < dh; j++) normed[j] = raw[j] * r * (1 + g[j]);
  // RoPE at position p.
  const rp = layerAttention(c, l).rope;
  const tables = ropeTables(fromStorage(rep.backend, "i32", [1], Int32Array.of(p)), dh, rp.theta, rp.factor);
  return rope(makeF32(rep.backend, [1, 1, 1, dh], normed), tables.cos, tables.sin, { seqAxis: -3 }).data;
}

const rinvCache = new WeakMap<LocalReplacement, Map<string, number>>();

/** 1 / sqrt(mean(raw^2) + eps) of head `head`'s raw query or key at position p on the prompt. */
function qkRinv(rep: LocalReplacement, l: number, which: "q" | "k", head: number, p: number): number {
  let cache = rinvCache.get(rep);
  if (cache === undefined) {
    cache = new Map();
    rinvCache.set(rep, cache);
  }
  const key = `${l}/${which}/${head}/${p}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const c = rep.model.config;
  const w = rep.model.weights.layers[l];
  const dh = c.headDim;
  // attn_in = resid_pre through the input norm (frozen at the prompt, so exact there).
  const inN = rep.layers[l].input;
  const attnIn = new Float32Array(c.dModel);
  for (let j = 0; j < c.dModel; j++)
    attnIn[j] = rep.layers[l].residPre[p * c.dModel + j] * inN.rinv[p] * inN.g[j];
  const proj = which === "q" ? w.qProj : w.kProj;
  const raw = matmul(makeF32(rep.backend, [1, c.dModel], attnIn.slice()), narrow(proj, 0, head * dh, dh), {
    transB: true,
  }).data;
  let s = 0;
  for (const v of raw) s += v * v;
  const r = Math.fround(1 / Math.sqrt(s / dh + c.rmsNormEps));
  cache.set(key, r);
  return r;
}

/** The query (head h) and key (its kv head) of layer l at positions q and k from resid_pre rows. */
export function queryKey(
  rep: LocalReplacement,
  l: number,
  h: number,
  q: number,
  k: number,
  residQ: Float32Array,
  residK: Float32Array,
): { query: Float32Array; key: Float32Array } {
  const c = rep.model.config;
  const kv = Math.floor(h / (c.heads / c.kvHeads));
  return { query: projectHead(rep, l, "q", h, q, residQ), key: projectHead(rep, l, "k", kv, k, residK) };
}

export interface QkShare {
  /** Index into the given sources. */
  readonly source: number;
  /** Its share of the pre-softmax score through the key side: q . k(its part of resid_pre[k]) * scale. */
  readonly key: number;
  /** Its share through the query side: q(its part of resid_pre[q]) . k * scale. */
  readonly query: number;
}

export interface QkContributions {
  /** The pre-softmax score of query position q to key position k at head (l, h) on the prompt. */
  readonly score: number;
  readonly shares: readonly QkShare[];
}

/**
 * Each source's share of head (l, h)'s score from query q to key k: `sources[i]` are a node's
 * writes (replacement-model `Write`s). Shares of a set of sources that make up the whole residual
 * stream sum to the score, on each side.
 */
export function qkContributions(
  rep: LocalReplacement,
  l: number,
  h: number,
  q: number,
  k: number,
  sources: readonly (readonly Write[])[],
): QkContributions {
  const c = rep.model.config;
  const D = c.dModel;
  if (k > q)
    throw new CircuitError(`key position ${k} is after query position ${q}: causal attention never reads it`);
  const pre = rep.layers[l].residPre;
  const row = (p: number) => pre.slice(p * D, (p + 1) * D);
  const scale = c.queryPreAttnScalar ** -0.5;
  const { query, key } = queryKey(rep, l, h, q, k, row(q), row(k));
  const dot = (a: Float32Array, b: Float32Array) => {
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i] * b[i];
    return s;
  };
  const score = dot(query, key) * scale;
  const shares = sources.map((writes, source) => {
    // This source's part of resid_pre of layer l: the change of resid_mid of layer l - 1 plus the
    // rest of that layer, i.e. propagate the writes and take resid_post of layer l - 1.
    const part = residPreOf(rep, writes, l);
    const kPart = queryKey(rep, l, h, q, k, row(q), part.subarray(k * D, (k + 1) * D)).key;
    const qPart = queryKey(rep, l, h, q, k, part.subarray(q * D, (q + 1) * D), row(k)).query;
    return { source, key: dot(query, kPart) * scale, query: dot(qPart, key) * scale };
  });
  return { score, shares };
}

/** The change of resid_pre of layer l caused by `writes`, in the frozen model [T * D]. */
export function residPreOf(rep: LocalReplacement, writes: readonly Write[], l: number): Float32Array {
  return propagate(rep, writes).pre[l];
}
