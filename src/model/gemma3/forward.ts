/**
 * The Gemma 3 text forward pass: token ids -> logits, with hook sites (capture, interventions) and
 * an optional KV cache. A pure function of (config, weights, inputs); written entirely with
 * differentiable core ops, so it runs inside `grad()`.
 *
 * Follows transformers 4.57.3 `modeling_gemma3.py` (eager attention) step by step, computing in
 * float32 whatever the weight dtype (see /work/shared/reference/gemma3.md):
 * embed = embed_tokens[ids] * sqrt(d_model) (the scale rounded to the weight dtype first); per layer
 * h = x + post_attention_layernorm(attn(input_layernorm(x))),
 * out = h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h))); RMSNorm scales by
 * (1 + w); q/k RMSNorm per head before RoPE; grouped-query attention scaled by
 * query_pre_attn_scalar^-0.5; sliding layers see keys k with q - window < k <= q, full layers all
 * k <= q (k, q sequence indices); padding keys are masked; final norm, tied lm_head.
 */
import type { Backend } from "../../core/backend.js";
import { ModelError } from "../../core/errors.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../core/half.js";
import { add, affine, div, geluTanh, mul, tanh } from "../../core/ops/elementwise.js";
import { embedding } from "../../core/ops/indexing.js";
import {
  addInPlace,
  affineInPlace,
  assignRegion,
  empty,
  fillOutsideBands,
  geluTanhInPlace,
  mulInPlace,
  rmsnormInPlace,
  ropeInPlace,
  softmaxInPlace,
} from "../../core/ops/inplace.js";
import { matmul } from "../../core/ops/linalg.js";
import { rmsnorm, rope, ropeTables, softmax } from "../../core/ops/nn.js";
import { concat, narrow, permute, reshape, select, stack } from "../../core/ops/shape.js";
import { isRecording } from "../../core/tape.js";
import { fromStorage, shapeSize, type Tensor } from "../../core/tensor.js";
import { type KVCache, type KVDType, type LayerKeys, storageTensor } from "./cache.js";
import { type Gemma3Config, layerAttention, type RopeParams } from "./config.js";
import { applyInterventions, type Intervention } from "./interventions.js";
import { type Site, sites } from "./sites.js";
import type { Gemma3Weights, LayerWeights } from "./weights.js";

/** Token ids or a 0/1 mask: an i32 (or f32) tensor [batch, n], or nested arrays. */
export type IdBatch = Tensor | readonly (readonly number[])[];

export interface ForwardOptions {
  /**
   * 1 for real tokens, 0 for padding: [batch, seq] for the new tokens, or (with a cache)
   * [batch, cached + seq] as transformers takes it (the cached part is then ignored). Default all 1.
   */
  readonly attentionMask?: IdBatch;
  /** RoPE positions [batch, seq]. Default: sequence indices (cache length + 0, 1, ...). */
  readonly positionIds?: IdBatch;
  /** Applied in order at their sites. */
  readonly interventions?: readonly Intervention[];
  /** Sites whose activations (after interventions) are returned. */
  readonly capture?: readonly Site[];
  /** Decoding cache: holds earlier tokens' keys/values and is extended by this call. */
  readonly cache?: KVCache;
  /**
   * "all" (default), "last": the unembedding only for the last position ([batch, 1, vocab]), or
   * "none": no unembedding ([batch, 0, vocab]; interventions and captures at the logits site do not
   * run), for a call run for its activations or cache.
   */
  readonly logits?: "all" | "last" | "none";
  /**
   * Round activations to bf16 where they enter a matmul on a bf16 checkpoint, as transformers' bf16
   * inference does, so the native backend can use bf16 dot products (AVX512-BF16): every
   * projection and the unembedding, and the attention scores (q k^T) and mixing (pattern v).
   * Faster, at bf16 precision for those inputs; products are exact and sums f32. Softmax, norms and
   * the residual stream stay f32. No effect on f32 weights. Default false (exact f32 compute).
   */
  readonly bf16MatmulInputs?: boolean;
  /**
   * Queries per block where a layer attends in blocks (no hook on its pattern, which needs the
   * full matrix, and more than twice as many keys as the block): each block scores only the keys
   * it can see, [0, its last query] on full layers (causal) and its window on sliding layers. The
   * result at real tokens does not depend on it; smaller blocks score fewer keys that the mask
   * hides and need less memory, larger ones take fewer operations. Default 128 (256 measured
   * within 3 % of it on 1,024-token prompts, and its scores take twice the memory).
   */
  readonly attentionBlock?: number;
  /**
   * Rows (batch x sequence positions) the MLP takes at once on inputs of more than twice as many,
   * where nothing observes its hidden activations: its gate and up arrays (the hidden activations
   * are computed in gate's) are [rows, d_mlp] each, so a long prompt's MLP memory stops growing
   * with its length. Each row's result is the same. At least 8; default 256 (each chunk repacks the
   * weights, which costs a few percent at 1,024 rows; larger chunks are faster and take more memory).
   */
  readonly mlpRows?: number;
}

/** Activations captured by a forward call, by site. */
export class Activations {
  private readonly bySite = new Map<string, { site: Site; value: Tensor<"f32"> }>();

  /** @internal */
  set(site: Site, value: Tensor<"f32">): void {
    this.bySite.set(site.name, { site, value });
  }

  has(site: Site): boolean {
    return this.bySite.has(site.name);
  }

  /** The activation at `site`, shaped as `site.shape(...)` documents; throws if it was not captured. */
  get(site: Site): Tensor<"f32"> {
    const e = this.bySite.get(site.name);
    if (e === undefined)
      throw new ModelError(`site was not captured (add it to the capture list)`, site.name);
    return e.value;
  }

  /** Captured sites in forward order. */
  sites(): Site[] {
    return [...this.bySite.values()].map((e) => e.site);
  }

  get size(): number {
    return this.bySite.size;
  }
}

export interface ForwardResult {
  /** [batch, seq, vocab], or [batch, 1, vocab] with `logits: "last"`, [batch, 0, vocab] with "none". */
  readonly logits: Tensor<"f32">;
  readonly activations: Activations;
}

/**
 * Most bytes of copied queries or of scores per attention block of whole sequences (batches of short
 * sequences): enough that a small model's batch goes in one block, small beside a large model's
 * activations.
 */
const GROUP_BYTES = 1 << 20;

/** Float32 min: masked attention logits (finite, so fully masked rows stay NaN-free, as in transformers). */
const MASKED = -3.4028234663852886e38;

interface Batch {
  readonly batch: number;
  readonly seq: number;
  /** [batch * seq] */
  readonly ids: Int32Array;
}

function readIdBatch(
  what: string,
  x: IdBatch,
  backend: Backend,
): { rows: number; cols: number; data: Int32Array } {
  if (Array.isArray(x)) {
    const rows = x.length;
    const cols = rows === 0 ? 0 : (x[0] as readonly number[]).length;
    const data = new Int32Array(rows * cols);
    (x as readonly (readonly number[])[]).forEach((row, r) => {
      if (row.length !== cols)
        throw new ModelError(`${what}: rows have different lengths (${cols} and ${row.length})`);
      for (let i = 0; i < cols; i++) {
        if (!Number.isInteger(row[i])) throw new ModelError(`${what}: ${row[i]} is not an integer`);
        data[r * cols + i] = row[i];
      }
    });
    return { rows, cols, data };
  }
  const t = x as Tensor;
  if (t.backend !== backend)
    throw new ModelError(`${what}: tensor is on backend ${t.backend.name}, the model on ${backend.name}`);
  if (t.rank !== 2) throw new ModelError(`${what}: must be [batch, seq], got ${t.rank} dims`);
  const data =
    t.dtype === "i32" ? (t.data as Int32Array) : Int32Array.from(t.toFloat32Array(), (v) => Math.round(v));
  return { rows: t.shape[0], cols: t.shape[1], data };
}

function readIds(ids: IdBatch, config: Gemma3Config, backend: Backend): Batch {
  const { rows, cols, data } = readIdBatch("input ids", ids, backend);
  if (rows === 0 || cols === 0)
    throw new ModelError(`input ids must be a non-empty [batch, seq], got [${rows}, ${cols}]`);
  for (let i = 0; i < data.length; i++) {
    if (data[i] < 0 || data[i] >= config.vocab) {
      throw new ModelError(`token id ${data[i]} is outside the vocabulary [0, ${config.vocab})`);
    }
  }
  return { batch: rows, seq: cols, ids: data };
}

/** The 0/1 validity of the new tokens, one array per row. */
function readMask(b: Batch, offset: number, mask: IdBatch | undefined, backend: Backend): Uint8Array[] {
  const rows = Array.from({ length: b.batch }, () => new Uint8Array(b.seq).fill(1));
  if (mask === undefined) return rows;
  const m = readIdBatch("attention mask", mask, backend);
  const skip = m.cols === b.seq ? 0 : m.cols === offset + b.seq ? offset : -1;
  if (m.rows !== b.batch || skip < 0) {
    throw new ModelError(
      `attention mask is [${m.rows}, ${m.cols}]; expected [${b.batch}, ${b.seq}]` +
        (offset > 0 ? ` or [${b.batch}, ${offset + b.seq}]` : ""),
    );
  }
  for (let r = 0; r < b.batch; r++) {
    for (let i = 0; i < b.seq; i++) {
      const v = m.data[r * m.cols + skip + i];
      if (v !== 0 && v !== 1) throw new ModelError(`attention mask values must be 0 or 1, got ${v}`);
      rows[r][i] = v;
    }
  }
  return rows;
}

function readPositions(
  b: Batch,
  offset: number,
  positionIds: IdBatch | undefined,
  backend: Backend,
): Int32Array {
  if (positionIds === undefined) {
    const out = new Int32Array(b.batch * b.seq);
    for (let r = 0; r < b.batch; r++) for (let i = 0; i < b.seq; i++) out[r * b.seq + i] = offset + i;
    return out;
  }
  const p = readIdBatch("position ids", positionIds, backend);
  if (p.rows !== b.batch || p.cols !== b.seq) {
    throw new ModelError(`position ids are [${p.rows}, ${p.cols}]; expected [${b.batch}, ${b.seq}]`);
  }
  return p.data;
}

/** The embedding scale sqrt(d_model), rounded to the table's dtype as transformers does. */
export function embedScale(dModel: number, dtype: Tensor["dtype"]): number {
  const s = Math.fround(Math.sqrt(dModel));
  if (dtype === "bf16") return bf16ToF32(f32ToBf16(s));
  if (dtype === "f16") return f16ToF32(f32ToF16(s));
  return s;
}

/** RoPE tables for one parameter set: one pair shared by all rows, or one pair per row. */
interface Rotary {
  readonly shared: { cos: Tensor<"f32">; sin: Tensor<"f32"> } | null;
  readonly perRow: { cos: Tensor<"f32">; sin: Tensor<"f32"> }[];
}

function rotary(backend: Backend, b: Batch, positions: Int32Array, headDim: number, p: RopeParams): Rotary {
  const row = (r: number) =>
    fromStorage(backend, "i32", [b.seq], positions.subarray(r * b.seq, (r + 1) * b.seq));
  let same = true;
  for (let i = b.seq; i < positions.length && same; i++) same = positions[i] === positions[i % b.seq];
  if (same) return { shared: ropeTables(row(0), headDim, p.theta, p.factor), perRow: [] };
  return {
    shared: null,
    perRow: Array.from({ length: b.batch }, (_, r) => ropeTables(row(r), headDim, p.theta, p.factor)),
  };
}

/**
 * x [batch, seq, n, head_dim] turned by each position's angles: in its own storage (which the caller
 * owns) unless a tape records.
 */
function applyRope(x: Tensor<"f32">, rot: Rotary): Tensor<"f32"> {
  const layout = { seqAxis: -3 } as const;
  if (isRecording()) {
    if (rot.shared) return rope(x, rot.shared.cos, rot.shared.sin, layout);
    return stack(
      rot.perRow.map((t, r) => rope(select(x, 0, r), t.cos, t.sin, layout)),
      0,
    );
  }
  if (rot.shared) return ropeInPlace(x, rot.shared.cos, rot.shared.sin, layout);
  rot.perRow.forEach((t, r) => {
    ropeInPlace(rowView(x, r), t.cos, t.sin, layout);
  });
  return x;
}

/**
 * Elements [from, to) of row r of x (along its leading axis) as a tensor of `shape`: a view of x's
 * storage, for in-place ops, and for reads where no tape needs the view's link to x.
 */
function rowView(
  x: Tensor<"f32">,
  r: number,
  shape?: readonly number[],
  from?: number,
  to?: number,
): Tensor<"f32">;
function rowView(
  x: Tensor<KVDType>,
  r: number,
  shape?: readonly number[],
  from?: number,
  to?: number,
): Tensor<KVDType>;
function rowView(
  x: Tensor<KVDType>,
  r: number,
  shape: readonly number[] = [1, ...x.shape.slice(1)],
  from = 0,
  to = shapeSize(x.shape.slice(1)),
): Tensor<KVDType> {
  const row = shapeSize(x.shape.slice(1));
  return storageTensor(x, shape, x.data.subarray(r * row + from, r * row + to));
}

/**
 * Additive mask [batch, 1, 1, queries.count, keys.length]: 0 where a query may see a key, MASKED
 * elsewhere. Queries and keys are given by their first sequence index.
 */
function attentionBias(
  backend: Backend,
  batch: number,
  queries: { start: number; count: number },
  keys: { start: number; length: number },
  window: number | null,
  valid: (row: number, index: number) => boolean,
): Tensor<"f32"> {
  const { start, length } = keys;
  const size = batch * queries.count * length;
  const out = backend.allocOutput?.(size) ?? new Float32Array(size);
  const keyOk = new Uint8Array(length);
  for (let r = 0; r < batch; r++) {
    for (let j = 0; j < length; j++) keyOk[j] = valid(r, start + j) ? 1 : 0;
    for (let i = 0; i < queries.count; i++) {
      const q = queries.start + i;
      // Keys lo <= j <= hi are inside the causal (and sliding) range of query q.
      const lo = window === null ? 0 : Math.max(0, q - window + 1 - start);
      const hi = Math.min(length - 1, q - start);
      const row = out.subarray((r * queries.count + i) * length, (r * queries.count + i + 1) * length);
      row.fill(MASKED);
      for (let j = lo; j <= hi; j++) if (keyOk[j] === 1) row[j] = 0;
    }
  }
  return fromStorage(backend, "f32", [batch, 1, 1, queries.count, length], out);
}

/**
 * Whether attention computes on bf16-rounded inputs: `bf16MatmulInputs` on a bf16 checkpoint. Its
 * keys and values are then rounded anyway, so a bf16 KV cache loses nothing.
 */
export function bf16Attention(weights: Gemma3Weights, bf16MatmulInputs: boolean): boolean {
  return bf16MatmulInputs && weights.layers[0]?.qProj.dtype === "bf16";
}

/** Per-call state the layers share. */
interface Pass {
  readonly config: Gemma3Config;
  readonly backend: Backend;
  readonly b: Batch;
  readonly offset: number;
  /** Sequence index of each position along a site's seq axis. */
  readonly seqIndex: Int32Array;
  readonly interventions: ReadonlyMap<string, readonly Intervention[]>;
  readonly capture: ReadonlySet<string>;
  readonly activations: Activations;
  readonly rotary: Map<RopeParams, Rotary>;
  readonly positions: Int32Array;
  readonly cache: KVCache | undefined;
  readonly valid: (row: number, index: number) => boolean;
  /** Attention masks already built in this call, by query and key range and window. */
  readonly masks: Map<string, AttentionMask>;
  readonly bf16Inputs: boolean;
  /** Attention scores and mixing on bf16-rounded inputs (bf16Inputs on a bf16 checkpoint). */
  readonly bf16Attention: boolean;
  readonly attentionBlock: number | null;
  readonly mlpRows: number;
}

function hook(pass: Pass, site: Site, x: Tensor<"f32">, seqIndex = pass.seqIndex): Tensor<"f32"> {
  const list = pass.interventions.get(site.name);
  const y = list ? applyInterventions(x, list, { site, config: pass.config, positions: seqIndex }) : x;
  if (pass.capture.has(site.name)) pass.activations.set(site, y);
  return y;
}

/**
 * Hands the storage of intermediates that never reach a hook, a capture or the tape back to the
 * backend for later ops' outputs (`Backend.recycle`). Each must be an op's own
 * output that no live tensor shares (views of it are dead too). Copies of a bf16 cache's keys are
 * left to the collector (the pool holds f32 arrays).
 */
function release(pass: Pass, ...ts: Tensor<KVDType>[]): void {
  if (!recycling(pass)) return;
  for (const t of ts) if (t.data instanceof Float32Array) pass.backend.recycle?.(t.data);
}

function recycling(pass: Pass): boolean {
  // Decoding steps too: their few large arrays (logits; scores over a long context) are reused.
  return pass.backend.recycle !== undefined && !isRecording();
}

/** `release` for a site's value that nothing outside the pass saw (no capture, no intervention there). */
function releaseUnseen(pass: Pass, site: Site, t: Tensor<"f32">, alsoAt?: Site): void {
  const seen = (s: Site) => pass.capture.has(s.name) || pass.interventions.has(s.name);
  if (!seen(site) && !(alsoAt && seen(alsoAt))) release(pass, t);
}

function norm(x: Tensor<"f32">, w: Tensor, eps: number): Tensor<"f32"> {
  return rmsnorm(x, w, { eps, weightOffset: 1 });
}

/** x [.., in] @ w^T with w stored [out, in]. */
function linear(pass: Pass, x: Tensor<"f32">, w: Tensor): Tensor<"f32"> {
  return matmul(x, w, { transB: true, aBf16: pass.bf16Inputs && w.dtype === "bf16" });
}

/**
 * softmax(q k^T * query_pre_attn_scalar^-0.5 + mask) [rows, kv_heads, groups * n, keys] for the
 * queries [q0, q0 + n) (indices into this call's tokens) of the sequences [r0, r0 + rows). `q5` is
 * [rows, kv_heads, groups, n, head_dim] (query head h = kv * groups + g shares kv head kv, so K and
 * V are never repeated); `k` [rows, kv_heads, keys, head_dim] holds sequence indices keyStart,
 * keyStart + 1, ...
 */
function attentionProbs(
  pass: Pass,
  window: number | null,
  q5: Tensor<"f32">,
  k: Tensor<KVDType>,
  q0: number,
  keyStart: number,
  r0: number,
): Tensor<"f32"> {
  const c = pass.config;
  const [rows, kvHeads, groups, n] = q5.shape;
  const nk = k.shape[2];
  const bf = pass.bf16Attention;
  const scores = matmul(reshape(q5, [rows, kvHeads, groups * n, c.headDim]), k, {
    transB: true,
    aBf16: bf,
    bBf16: bf,
  });
  const scale = Math.fround(c.queryPreAttnScalar ** -0.5);
  const queries = { start: pass.offset + q0, count: n };
  const keyRange = { start: keyStart, length: nk };
  const mask = attentionMask(pass, queries, keyRange, window);
  const ofRow = (bias: Tensor<"f32">) =>
    rows === bias.shape[0]
      ? bias
      : rowView(bias, r0, [rows, ...bias.shape.slice(1)], 0, rows * shapeSize(bias.shape.slice(1)));
  const shape5 = [rows, kvHeads, groups, n, nk];
  if (mask.bias && isRecording()) {
    const probs = softmax(add(reshape(affine(scores, scale, 0), shape5), ofRow(mask.bias)));
    return reshape(probs, [rows, kvHeads, groups * n, nk]);
  }
  // One buffer for scores, masked scores and probabilities: the same values as the ops above.
  affineInPlace(scores, scale, 0);
  if (mask.bias) addInPlace(reshape(scores, shape5), ofRow(mask.bias));
  else fillOutsideBands(reshape(scores, [rows * kvHeads * groups, n, nk]), mask.lo, mask.hi, MASKED);
  return softmaxInPlace(scores);
}

/**
 * Keys [k0, k0 + n) of sequences [r0, r0 + count) of x [batch, heads, keys, dim], as [count, heads,
 * n, dim]: x itself when that is all of x, a view of its storage when contiguous (every key, or one
 * sequence with one key head) and no tape records, otherwise a copy.
 */
function keyRows(x: Tensor<KVDType>, r0: number, count: number, k0: number, n: number): Tensor<KVDType> {
  const [batch, heads, nKeys, dim] = x.shape;
  const whole = k0 === 0 && n === nKeys;
  if (whole && count === batch) return x;
  if (isRecording()) {
    const rows = narrow(x, 0, r0, count);
    return whole ? rows : narrow(rows, 2, k0, n);
  }
  const rowSize = heads * nKeys * dim;
  if (whole) return rowView(x, r0, [count, heads, n, dim], 0, count * rowSize);
  if (heads === 1 && count === 1) return rowView(x, r0, [1, 1, n, dim], k0 * dim, (k0 + n) * dim);
  return narrow(rowView(x, r0, [count, heads, nKeys, dim], 0, count * rowSize), 2, k0, n);
}

/**
 * How to mask the scores of queries over keys: bands of keys [lo, hi] per query (the causal and
 * sliding-window range) when every key in them is valid in every row, else an additive bias
 * (padding; and always under a tape, whose ops take no bands). Built once per call for each block
 * and window.
 */
function attentionMask(
  pass: Pass,
  queries: { start: number; count: number },
  keys: { start: number; length: number },
  window: number | null,
): AttentionMask {
  const key = `${queries.start}:${queries.count}:${keys.start}:${keys.length}:${window}`;
  const known = pass.masks.get(key);
  if (known) return known;
  const lo = new Int32Array(queries.count);
  const hi = new Int32Array(queries.count);
  let first = keys.length;
  let last = -1;
  for (let i = 0; i < queries.count; i++) {
    const q = queries.start + i;
    lo[i] = window === null ? 0 : Math.max(0, q - window + 1 - keys.start);
    hi[i] = Math.min(keys.length - 1, q - keys.start);
    if (lo[i] <= hi[i]) {
      first = Math.min(first, lo[i]);
      last = Math.max(last, hi[i]);
    }
  }
  let banded = !isRecording();
  for (let r = 0; r < pass.b.batch && banded; r++)
    for (let j = first; j <= last && banded; j++) banded = pass.valid(r, keys.start + j);
  const mask: AttentionMask = banded
    ? { bias: null, lo, hi }
    : { bias: attentionBias(pass.backend, pass.b.batch, queries, keys, window, pass.valid), lo, hi };
  pass.masks.set(key, mask);
  return mask;
}

interface AttentionMask {
  /** [batch, 1, 1, queries, keys], or null when the bands alone mask. */
  readonly bias: Tensor<"f32"> | null;
  readonly lo: Int32Array;
  readonly hi: Int32Array;
}

/**
 * pattern @ V for queries q [batch, seq, heads, head_dim]: z [batch, seq, heads, head_dim] (heads
 * before o_proj). Queries go in blocks of a few sequences (their copied queries and scores up to
 * GROUP_BYTES; one sequence at least); with many more keys than a block (and no hook on the
 * pattern, which needs the full matrix of every sequence), in blocks of one sequence's
 * `attentionBlock` queries that each see only the keys they can reach: up to the block's last query
 * on full layers, its window on sliding layers. The same result at real tokens with far fewer scores
 * (about half on long full-attention prompts). A padding query sees no key; its row (uniform over
 * the keys scored) is not used.
 *
 * Each block copies its queries out first, so its output goes over them: with `ownsQ` (q is this
 * pass's own, seen by nothing else) z takes q's storage, and no [seq, heads, head_dim] array is
 * needed besides q. Under a tape the blocks' outputs are concatenated instead.
 */
function mixValues(
  pass: Pass,
  layer: number,
  window: number | null,
  q: Tensor<"f32">,
  keys: LayerKeys,
  ownsQ: boolean,
): Tensor<"f32"> {
  const c = pass.config;
  const { batch, seq } = pass.b;
  const { kvHeads, heads, headDim } = c;
  const groups = heads / kvHeads;
  const nKeys = keys.k.shape[2];
  const site = sites.pattern(layer);
  const rounded = { aBf16: pass.bf16Attention, bBf16: pass.bf16Attention };
  const taped = isRecording();
  const out = taped ? null : ownsQ ? q : empty(pass.backend, q.shape);
  if (pass.capture.has(site.name) || pass.interventions.has(site.name)) {
    // The hooked pattern is [batch, heads, seq, keys]: one block of every sequence and query.
    const q5 = reshape(permute(q, [0, 2, 1, 3]), [batch, kvHeads, groups, seq, headDim]);
    const probs = attentionProbs(pass, window, q5, keys.k, 0, keys.start, 0);
    if (q5.data.buffer !== q.data.buffer) release(pass, q5);
    const pattern = hook(pass, site, reshape(probs, [batch, heads, seq, nKeys]));
    const mixed = reshape(matmul(reshape(pattern, [batch, kvHeads, groups * seq, nKeys]), keys.v, rounded), [
      batch,
      heads,
      seq,
      headDim,
    ]);
    if (out === null) return permute(mixed, [0, 2, 1, 3]);
    assignRegion(out, [0, 0, 0, 0], mixed, [0, 2, 1, 3]);
    release(pass, mixed);
    return out;
  }
  const block = pass.attentionBlock ?? 128;
  // One block of queries: narrowing its keys would copy them and save only masked scores.
  const size = nKeys <= 2 * block || seq <= block ? seq : block;
  // Whole sequences go several at a time, as far as their copied queries and scores stay small.
  const perRow = Math.max(seq * heads * headDim, heads * seq * nKeys) * 4;
  const group = size === seq ? Math.max(1, Math.min(batch, Math.floor(GROUP_BYTES / perRow))) : 1;
  const rows: Tensor<"f32">[] = [];
  for (let r0 = 0; r0 < batch; r0 += group) {
    const g = Math.min(group, batch - r0);
    const parts: Tensor<"f32">[] = [];
    // Last block first: its scores are the largest (on full layers), and the smaller blocks after it
    // reuse their storage.
    for (let i = Math.ceil(seq / size) - 1; i >= 0; i--) {
      const q0 = i * size;
      const n = Math.min(size, seq - q0);
      const first = pass.offset + q0;
      const k0 = size === seq || window === null ? 0 : Math.max(0, first - window + 1 - keys.start);
      const k1 = size === seq ? nKeys : Math.min(nKeys, first + n - keys.start);
      // The block's queries: whole sequences (contiguous) or part of one.
      const qRows = taped
        ? narrow(narrow(q, 0, r0, g), 1, q0, n)
        : rowView(
            q,
            r0,
            [g, n, heads, headDim],
            q0 * heads * headDim,
            (q0 + (g - 1) * seq + n) * heads * headDim,
          );
      const qb = permute(qRows, [0, 2, 1, 3]);
      const kb = keyRows(keys.k, r0, g, k0, k1 - k0);
      const q5 = reshape(qb, [g, kvHeads, groups, n, headDim]);
      const probs = attentionProbs(pass, window, q5, kb, q0, keys.start + k0, r0);
      if (qb.data.buffer !== q.data.buffer) release(pass, qb);
      if (kb.data.buffer !== keys.k.data.buffer) release(pass, kb);
      const vb = keyRows(keys.v, r0, g, k0, k1 - k0);
      const mixed = reshape(matmul(probs, vb, rounded), [g, heads, n, headDim]);
      release(pass, probs);
      if (vb.data.buffer !== keys.v.data.buffer) release(pass, vb);
      if (out === null) parts[i] = permute(mixed, [0, 2, 1, 3]);
      else {
        assignRegion(out, [r0, q0, 0, 0], mixed, [0, 2, 1, 3]);
        release(pass, mixed);
      }
    }
    if (out === null) rows.push(parts.length === 1 ? parts[0] : concat(parts, 1));
  }
  return out ?? (rows.length === 1 ? rows[0] : concat(rows, 0));
}

function attention(pass: Pass, layer: number, w: LayerWeights, x: Tensor<"f32">): Tensor<"f32"> {
  const { config: c, b } = pass;
  const { batch, seq } = b;
  const eps = c.rmsNormEps;
  const la = layerAttention(c, layer);
  let rot = pass.rotary.get(la.rope);
  if (rot === undefined) {
    rot = rotary(pass.backend, b, pass.positions, c.headDim, la.rope);
    pass.rotary.set(la.rope, rot);
  }
  // [batch, seq, n, head_dim] -> [batch, n, seq, head_dim], t released once copied.
  const toHeads = (t: Tensor<"f32">) => {
    const h = permute(t, [0, 2, 1, 3]);
    if (h.data !== t.data) release(pass, t);
    return h;
  };
  // rope(norm(x @ proj^T)), [batch, seq, n, head_dim], in the projection's own storage.
  const rotated = (proj: Tensor, normW: Tensor, n: number) => {
    const raw = reshape(linear(pass, x, proj), [batch, seq, n, c.headDim]);
    const normed = isRecording()
      ? norm(raw, normW, eps)
      : rmsnormInPlace(raw, normW, { eps, weightOffset: 1 });
    return applyRope(normed, rot);
  };
  let q = rotated(w.qProj, w.qNorm, c.heads);
  let ownsQ = true;
  const qSite = sites.q(layer);
  if (pass.capture.has(qSite.name) || pass.interventions.has(qSite.name)) {
    // The site is [batch, heads, seq, head_dim]; attention works on its own copy in q's layout.
    const hooked = hook(pass, qSite, permute(q, [0, 2, 1, 3]));
    const back = permute(hooked, [0, 2, 1, 3]);
    if (hooked.data.buffer !== q.data.buffer && back.data.buffer !== q.data.buffer) release(pass, q);
    ownsQ = back.data.buffer !== hooked.data.buffer;
    q = back;
  }
  const k = hook(pass, sites.k(layer), toHeads(rotated(w.kProj, w.kNorm, c.kvHeads)));
  const vRaw = linear(pass, x, w.vProj);
  // attn_in is projected: its storage serves the attention below.
  releaseUnseen(pass, sites.attnIn(layer), x);
  const v = hook(pass, sites.v(layer), toHeads(reshape(vRaw, [batch, seq, c.kvHeads, c.headDim])));

  const pattern = sites.pattern(layer);
  // A hooked pattern is [.., keys] over exactly the keys the queries may see.
  const exact = pass.capture.has(pattern.name) || pass.interventions.has(pattern.name);
  const keys: LayerKeys = pass.cache ? pass.cache.update(layer, k, v, exact) : { k, v, start: 0 };
  // Where the cache attends from its own copies, k and v are done with.
  const copied = pass.cache !== undefined && keys.k !== k;
  if (copied) {
    releaseUnseen(pass, sites.k(layer), k);
    releaseUnseen(pass, sites.v(layer), v);
  }
  // z takes q's storage when attention owns q (else q is a hooked value, left alone).
  const z = mixValues(pass, layer, la.window, q, keys, ownsQ);
  if (!copied) {
    releaseUnseen(pass, sites.k(layer), k);
    releaseUnseen(pass, sites.v(layer), v);
  }
  return hook(pass, sites.z(layer), reshape(z, [batch, seq, c.heads * c.headDim]));
}

/** norm(x @ w^T): the projection's own output is released once normed. */
function projectNorm(pass: Pass, x: Tensor<"f32">, w: Tensor, normW: Tensor): Tensor<"f32"> {
  const raw = linear(pass, x, w);
  const out = norm(raw, normW, pass.config.rmsNormEps);
  release(pass, raw);
  return out;
}

/** gelu_tanh(x gate^T) * (x up^T): the MLP's hidden activations. */
function gatedProduct(pass: Pass, x: Tensor<"f32">, w: LayerWeights): Tensor<"f32"> {
  const gate = linear(pass, x, w.gateProj);
  if (!isRecording()) {
    // In gate's own storage: two buffers of [rows, d_ff] instead of three.
    geluTanhInPlace(gate);
    const up = linear(pass, x, w.upProj);
    mulInPlace(gate, up);
    release(pass, up);
    return gate;
  }
  const act = geluTanh(gate);
  release(pass, gate);
  const up = linear(pass, x, w.upProj);
  const product = mul(act, up);
  release(pass, act, up);
  return product;
}

/**
 * down_proj(hidden) for mlp_in [batch, seq, d_model], hooking the hidden activations. Where nothing
 * observes them and there are more than twice `pass.mlpRows` rows, the rows go in even chunks.
 */
function mlp(pass: Pass, layer: number, w: LayerWeights, mlpIn: Tensor<"f32">): Tensor<"f32"> {
  const site = sites.mlpHidden(layer);
  const rows = pass.b.batch * pass.b.seq;
  const seen = pass.capture.has(site.name) || pass.interventions.has(site.name);
  if (seen || isRecording() || rows <= 2 * pass.mlpRows) {
    const hidden = hook(pass, site, gatedProduct(pass, mlpIn, w));
    const down = linear(pass, hidden, w.downProj);
    releaseUnseen(pass, site, hidden);
    return down;
  }
  const flat = reshape(mlpIn, [rows, -1]);
  const chunks = Math.ceil(rows / pass.mlpRows);
  const parts: Tensor<"f32">[] = [];
  for (let i = 0; i < chunks; i++) {
    // Even chunks, so that none is a sliver that the matmul kernels treat differently.
    const r0 = Math.floor((i * rows) / chunks);
    const x = narrow(flat, 0, r0, Math.floor(((i + 1) * rows) / chunks) - r0);
    const hidden = gatedProduct(pass, x, w);
    release(pass, x);
    parts.push(linear(pass, hidden, w.downProj));
    release(pass, hidden);
  }
  const down = concat(parts, 0);
  release(pass, ...parts);
  return reshape(down, mlpIn.shape);
}

function block(pass: Pass, layer: number, w: LayerWeights, residPre: Tensor<"f32">): Tensor<"f32"> {
  const eps = pass.config.rmsNormEps;
  const x = hook(pass, sites.residPre(layer), residPre);
  const attnIn = hook(pass, sites.attnIn(layer), norm(x, w.inputNorm, eps));
  // attention releases attn_in once it has projected it.
  const z = attention(pass, layer, w, attnIn);
  const attnOut = hook(pass, sites.attnOut(layer), projectNorm(pass, z, w.oProj, w.postAttentionNorm));
  releaseUnseen(pass, sites.z(layer), z);
  const residMid = hook(pass, sites.residMid(layer), add(x, attnOut));
  releaseUnseen(pass, sites.attnOut(layer), attnOut);
  // x is also the previous layer's resid_post (or the embedding).
  releaseUnseen(pass, layer === 0 ? sites.embed : sites.residPost(layer - 1), x, sites.residPre(layer));
  const mlpIn = hook(pass, sites.mlpIn(layer), norm(residMid, w.preFeedforwardNorm, eps));
  const down = mlp(pass, layer, w, mlpIn);
  releaseUnseen(pass, sites.mlpIn(layer), mlpIn);
  const mlpOut = hook(pass, sites.mlpOut(layer), norm(down, w.postFeedforwardNorm, eps));
  release(pass, down);
  const residPost = hook(pass, sites.residPost(layer), add(residMid, mlpOut));
  releaseUnseen(pass, sites.mlpOut(layer), mlpOut);
  releaseUnseen(pass, sites.residMid(layer), residMid);
  return residPost;
}

/**
 * An upper bound on the length of any output of a pass: activations, MLP hidden, attention scores
 * over the keys the cache holds and receives, the cache's new storage, logits.
 */
function largestOutput(
  c: Gemma3Config,
  b: Batch,
  cache: KVCache | undefined,
  logits: "all" | "last" | "none",
): number {
  const rows = b.batch * b.seq;
  const { keys, storage } = cache ? cache.bounds(b.seq, c.kvHeads, c.headDim) : { keys: b.seq, storage: 0 };
  return Math.max(
    rows * Math.max(c.dModel, c.heads * c.headDim, c.dMlp),
    b.batch * c.heads * b.seq * keys,
    storage,
    (logits === "all" ? rows : logits === "last" ? b.batch : 0) * c.vocab,
  );
}

function groupBySite(list: readonly Intervention[], config: Gemma3Config): Map<string, Intervention[]> {
  const out = new Map<string, Intervention[]>();
  for (const iv of list) {
    iv.site.check(config);
    const l = out.get(iv.site.name);
    if (l) l.push(iv);
    else out.set(iv.site.name, [iv]);
  }
  return out;
}

/**
 * Runs the model on `ids` [batch, seq]. Captured activations come back by site; interventions
 * change the forward as it runs. With `cache`, `ids` are the tokens after those already cached.
 */
export function forward(
  config: Gemma3Config,
  weights: Gemma3Weights,
  ids: IdBatch,
  options: ForwardOptions = {},
): ForwardResult {
  const backend = weights.embed.backend;
  const b = readIds(ids, config, backend);
  const cache = options.cache;
  if (cache && cache.batch !== b.batch) {
    throw new ModelError(`the KV cache holds ${cache.batch} sequences but ids have ${b.batch}`);
  }
  const offset = cache ? cache.length : 0;
  const mask = readMask(b, offset, options.attentionMask, backend);
  const positions = readPositions(b, offset, options.positionIds, backend);
  let maxPos = 0;
  for (const p of positions) maxPos = Math.max(maxPos, p);
  if (maxPos >= config.maxPositionEmbeddings || offset + b.seq > config.maxPositionEmbeddings) {
    throw new ModelError(
      `sequence of ${Math.max(maxPos + 1, offset + b.seq)} positions exceeds max_position_embeddings ${config.maxPositionEmbeddings}`,
    );
  }
  const ab = options.attentionBlock;
  if (ab !== undefined && !(Number.isSafeInteger(ab) && ab >= 1))
    throw new ModelError(`attentionBlock must be a positive integer, got ${ab}`);
  // Chunks of at least 8 rows never reach the few-rows kernel (at most 4), whose sums differ.
  const mr = options.mlpRows;
  if (mr !== undefined && !(Number.isSafeInteger(mr) && mr >= 8))
    throw new ModelError(`mlpRows must be an integer of at least 8, got ${mr}`);
  const capture = new Set<string>();
  for (const s of options.capture ?? []) capture.add(s.check(config).name);
  const seqIndex = Int32Array.from({ length: b.seq }, (_, i) => offset + i);
  const valid = cache
    ? (r: number, k: number) => cache.isValid(r, k)
    : (r: number, k: number) => mask[r][k] === 1;
  if (cache) cache.begin(b.seq, mask);
  const pass: Pass = {
    config,
    backend,
    b,
    offset,
    seqIndex,
    interventions: groupBySite(options.interventions ?? [], config),
    capture,
    activations: new Activations(),
    rotary: new Map(),
    positions,
    cache,
    valid,
    masks: new Map(),
    bf16Inputs: options.bf16MatmulInputs ?? false,
    bf16Attention: bf16Attention(weights, options.bf16MatmulInputs ?? false),
    attentionBlock: options.attentionBlock ?? null,
    mlpRows: options.mlpRows ?? 256,
  };

  backend.limitRecycled?.(largestOutput(config, b, cache, options.logits ?? "all"));
  const idTensor = fromStorage(backend, "i32", [b.batch, b.seq], b.ids);
  const rows = embedding(weights.embed, idTensor);
  let x = hook(pass, sites.embed, affine(rows, embedScale(config.dModel, weights.embed.dtype), 0));
  release(pass, rows);
  for (let l = 0; l < config.layers; l++) x = block(pass, l, weights.layers[l], x);
  const lastSite = config.layers === 0 ? sites.embed : sites.residPost(config.layers - 1);
  const normed = hook(pass, sites.finalNorm, norm(x, weights.finalNorm, config.rmsNormEps));
  releaseUnseen(pass, lastSite, x);
  let final = normed;
  let logitIndex = seqIndex;
  if (options.logits === "last" || options.logits === "none") {
    const from = options.logits === "last" ? b.seq - 1 : b.seq;
    final = narrow(normed, 1, from, b.seq - from);
    logitIndex = seqIndex.subarray(from);
    releaseUnseen(pass, sites.finalNorm, normed);
  }
  let logits = linear(pass, final, weights.lmHead);
  const cap = config.finalLogitSoftcapping;
  if (cap !== null) {
    const scaled = div(logits, cap);
    release(pass, logits);
    const squashed = tanh(scaled);
    release(pass, scaled);
    logits = mul(squashed, cap);
    release(pass, squashed);
  }
  if (final !== normed) release(pass, final);
  else releaseUnseen(pass, sites.finalNorm, normed);
  // With logits "none" there is nothing at the logits site to capture or change.
  if (logitIndex.length > 0) logits = hook(pass, sites.logits, logits, logitIndex);
  for (const m of pass.masks.values()) if (m.bias) release(pass, m.bias);
  if (recycling(pass)) backend.trimRecycled?.();
  if (cache) cache.commit();
  return { logits, activations: pass.activations };
}
