/**
 * The linear map of a local replacement model (replacement.ts), both ways:
 * - `backward`: vector-Jacobian products for a batch of targets (one per row), from each target's
 *   read vector back to the gradient at every write site: resid_post of every layer (where feature,
 *   error and bias writes land) and the embedding. This is what attribution runs.
 * - `propagate`: the forward map of additive writes to every later read: the independent
 *   implementation the tests check the backward against, and what graph interventions use.
 *
 * Per layer (Gemma 3 block, attention patterns P and norm denominators frozen, MLP features fixed):
 *   mid  = pre + Npost(O(P V Nin(pre)))      post = mid + mlp_out,  mlp_out ∋ Npre(mid) @ A (skip)
 * with N(x)[p] = x[p] * rinv[p] * g, V = v_proj, O = o_proj, heads grouped over kv heads as in
 * transformers' repeat_kv.
 */
import { mul } from "../core/ops/elementwise.js";
import { matmul } from "../core/ops/linalg.js";
import { sum } from "../core/ops/reduce.js";
import { broadcastTo, permute, reshape } from "../core/ops/shape.js";
import { makeF32 } from "../core/ops/util.js";
import type { Tensor } from "../core/tensor.js";
import type { FrozenNorm, LocalReplacement } from "./replacement.js";

/** A read vector: the target's value is vector . x at `site` position `position`. */
export interface Seed {
  /** "mid" reads resid_mid of `layer` (through the frozen pre-feedforward norm: a feature); "final" reads the final norm's input (a logit). */
  readonly at: "mid" | "final";
  readonly layer: number;
  readonly position: number;
  /** [d_model], applied after the frozen norm (an encoder column or an unembedding row). */
  readonly vector: Float32Array;
}

/** Frozen norm scale as a [1, T, D] tensor: rinv[p] * g[j]. */
function scale(rep: LocalReplacement, n: FrozenNorm): Tensor<"f32"> {
  const T = rep.length;
  const D = n.g.length;
  const s = new Float32Array(T * D);
  for (let p = 0; p < T; p++) for (let j = 0; j < D; j++) s[p * D + j] = n.rinv[p] * n.g[j];
  return makeF32(rep.backend, [1, T, D], s);
}

/** Per-layer scale tensors, built once per replacement. */
export interface Scales {
  readonly input: Tensor<"f32">[];
  readonly post: Tensor<"f32">[];
  readonly pre: Tensor<"f32">[];
}

const scaleCache = new WeakMap<LocalReplacement, Scales>();

/** The frozen norms' scales as [1, T, D] tensors (input, post-attention, pre-feedforward per layer), built once per replacement. */
export function scales(rep: LocalReplacement): Scales {
  let s = scaleCache.get(rep);
  if (s === undefined) {
    s = {
      input: rep.layers.map((l) => scale(rep, l.input)),
      post: rep.layers.map((l) => scale(rep, l.postAttention)),
      pre: rep.layers.map((l) => scale(rep, l.preFeedforward)),
    };
    scaleCache.set(rep, s);
  }
  return s;
}

/** g [B, T, D] at resid_mid of layer l -> its part at resid_pre through attention. */
function attentionBackward(rep: LocalReplacement, l: number, g: Tensor<"f32">): Tensor<"f32"> {
  const c = rep.model.config;
  const w = rep.model.weights.layers[l];
  const s = scales(rep);
  const B = g.shape[0];
  const T = rep.length;
  const gO = mul(g, s.post[l]);
  const gZ = matmul(gO, w.oProj); // [B, T, H*dh]
  const gZh = permute(reshape(gZ, [B, T, c.heads, c.headDim]), [0, 2, 1, 3]);
  const gVh = matmul(rep.layers[l].pattern, gZh, { transA: true }); // [B, H, T, dh]
  const group = c.heads / c.kvHeads;
  const gV = group === 1 ? gVh : sum(reshape(gVh, [B, c.kvHeads, group, T, c.headDim]), 2);
  const gVf = reshape(permute(gV, [0, 2, 1, 3]), [B, T, c.kvHeads * c.headDim]);
  return mul(matmul(gVf, w.vProj), s.input[l]);
}

/** x [B, T, D] at resid_pre of layer l -> attention's output (after its frozen norm). */
function attentionForward(rep: LocalReplacement, l: number, x: Tensor<"f32">): Tensor<"f32"> {
  const c = rep.model.config;
  const w = rep.model.weights.layers[l];
  const s = scales(rep);
  const B = x.shape[0];
  const T = rep.length;
  const v = matmul(mul(x, s.input[l]), w.vProj, { transB: true }); // [B, T, KV*dh]
  let vh = permute(reshape(v, [B, T, c.kvHeads, c.headDim]), [0, 2, 1, 3]); // [B, KV, T, dh]
  const group = c.heads / c.kvHeads;
  if (group > 1)
    vh = reshape(
      broadcastTo(reshape(vh, [B, c.kvHeads, 1, T, c.headDim]), [B, c.kvHeads, group, T, c.headDim]),
      [B, c.heads, T, c.headDim],
    );
  const zh = matmul(rep.layers[l].pattern, vh); // [B, H, T, dh]
  const z = reshape(permute(zh, [0, 2, 1, 3]), [B, T, c.heads * c.headDim]);
  return mul(matmul(z, w.oProj, { transB: true }), s.post[l]);
}

/** Skip path of layer l, backward: g at resid_post -> its part at resid_mid (x = Npre(mid), out += x @ A). */
function skipBackward(rep: LocalReplacement, l: number, g: Tensor<"f32">): Tensor<"f32"> | null {
  const A = rep.transcoders.skip(l);
  if (A === null) return null;
  return mul(matmul(g, A, { transB: true }), scales(rep).pre[l]);
}

/** Skip path of layer l, forward: a change at resid_mid -> its part at resid_post (null without skip). */
export function skipForward(rep: LocalReplacement, l: number, mid: Tensor<"f32">): Tensor<"f32"> | null {
  const A = rep.transcoders.skip(l);
  if (A === null) return null;
  return matmul(mul(mid, scales(rep).pre[l]), A);
}

function addInto(a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

/** Adds each seed's vector (through its frozen norm) into rows of g [B, T, D]. */
function plantSeeds(
  rep: LocalReplacement,
  g: Float32Array,
  seeds: readonly Seed[],
  at: "mid" | "final",
  layer: number,
): boolean {
  const D = rep.model.config.dModel;
  const T = rep.length;
  let any = false;
  seeds.forEach((s, b) => {
    if (s.at !== at || (at === "mid" && s.layer !== layer)) return;
    const n = at === "final" ? rep.final : rep.layers[layer].preFeedforward;
    const r = n.rinv[s.position];
    const base = (b * T + s.position) * D;
    for (let j = 0; j < D; j++) g[base + j] += s.vector[j] * n.g[j] * r;
    any = true;
  });
  return any;
}

/** The highest layer whose resid_mid a seed's gradient reaches: its own layer, or all for a logit. */
function topLayer(s: Seed, layers: number): number {
  return s.at === "final" ? layers : s.layer;
}

/**
 * Gradients of every seed's target (one per batch row) with respect to the writes: `visit(l, g, k)`
 * is called for l = layers-1 .. 0 with g [B, T, D] = d target / d resid_post_l (what a feature,
 * error or bias written at mlp_out of layer l receives), then `visit(-1, g, k)` with the gradient
 * at the embedding. Only the first k rows can be non-zero. `g` is only valid during the call.
 *
 * A feature's gradient is zero above its own layer, so when the seeds come ordered by layer,
 * highest first (logits first of all), each layer's work runs on the leading rows that reach it.
 */
export function backward(
  rep: LocalReplacement,
  seeds: readonly Seed[],
  visit: (layer: number, g: Float32Array, rows: number) => void,
): void {
  const c = rep.model.config;
  const B = seeds.length;
  const T = rep.length;
  const D = c.dModel;
  const tops = seeds.map((s) => topLayer(s, c.layers));
  const sorted = tops.every((t, i) => i === 0 || tops[i - 1] >= t);
  /** Rows (a prefix when sorted) whose gradient is non-zero at resid_post of layer l (top > l). */
  const reaching = (l: number) => (sorted ? tops.filter((t) => t > l).length : B);
  const start = new Float32Array(B * T * D);
  plantSeeds(rep, start, seeds, "final", c.layers - 1);
  let g = start;
  for (let l = c.layers - 1; l >= 0; l--) {
    const above = reaching(l);
    visit(l, g, above);
    const at = sorted ? tops.filter((t) => t >= l).length : B;
    if (at === 0) continue;
    const mid = makeF32(rep.backend, [at, T, D], g.slice(0, at * T * D));
    if (above > 0) {
      const sk = skipBackward(rep, l, makeF32(rep.backend, [at, T, D], g.subarray(0, at * T * D)));
      if (sk !== null) addInto(mid.data, sk.data);
    }
    plantSeeds(rep, mid.data, seeds.slice(0, at), "mid", l);
    const a = attentionBackward(rep, l, mid);
    addInto(mid.data, a.data);
    const next = new Float32Array(B * T * D);
    next.set(mid.data);
    g = next;
  }
  visit(-1, g, sorted ? tops.filter((t) => t >= 0).length : B);
}

/** An additive write: `vector` [d_model] added at mlp_out of `layer` (or the embedding, layer -1) at `position`. */
export interface Write {
  readonly layer: number;
  readonly position: number;
  readonly vector: Float32Array;
}

/** What `propagate` reads: the change of every resid_pre and resid_mid, and of the final norm input. */
export interface Propagated {
  /** [layers][T * D]: the change of resid_pre of each layer (what attention reads). */
  readonly pre: readonly Float32Array[];
  /** [layers][T * D]: the change of resid_mid of each layer (what features read). */
  readonly mid: readonly Float32Array[];
  /** [T * D]: the change of the final norm's input (resid_post of the last layer). */
  readonly final: Float32Array;
}

/** The forward linear map: the change of every read of the frozen model when `writes` are added. */
export function propagate(rep: LocalReplacement, writes: readonly Write[]): Propagated {
  const c = rep.model.config;
  const T = rep.length;
  const D = c.dModel;
  const at = (l: number) => {
    const x = new Float32Array(T * D);
    for (const w of writes)
      if (w.layer === l) for (let j = 0; j < D; j++) x[w.position * D + j] += w.vector[j];
    return x;
  };
  let r = at(-1);
  const pre: Float32Array[] = [];
  const mid: Float32Array[] = [];
  for (let l = 0; l < c.layers; l++) {
    pre.push(r);
    const x = makeF32(rep.backend, [1, T, D], r);
    const m = attentionForward(rep, l, x).data;
    addInto(m, r);
    mid.push(m);
    const post = m.slice();
    const sk = skipForward(rep, l, makeF32(rep.backend, [1, T, D], m));
    if (sk !== null) addInto(post, sk.data);
    addInto(post, at(l));
    r = post;
  }
  return { pre, mid, final: r };
}

/** A target's value change from `propagate`'s output: seed . N(x) at its site and position. */
export function readSeed(rep: LocalReplacement, p: Pick<Propagated, "mid" | "final">, s: Seed): number {
  const D = rep.model.config.dModel;
  const x = s.at === "final" ? p.final : p.mid[s.layer];
  const n = s.at === "final" ? rep.final : rep.layers[s.layer].preFeedforward;
  const r = n.rinv[s.position];
  let v = 0;
  for (let j = 0; j < D; j++) v += s.vector[j] * n.g[j] * r * x[s.position * D + j];
  return v;
}
