/**
 * Autoregressive generation with a KV cache: greedy decoding or sampling (temperature, top-k,
 * top-p, seeded through the core `Rng`), stop tokens, interventions active at every step, and tokens
 * streamed through a callback or an async iterator.
 *
 * Follows transformers' `generate`: prompts of different lengths are left-padded with an attention
 * mask and position ids cumsum(mask) - 1; logits processors run in the order temperature, top-k
 * (ties at the k-th value kept), top-p (smallest set of most likely tokens reaching p).
 */
import { ModelError } from "../../core/errors.js";
import { Rng } from "../../core/random.js";
import type { KVDType } from "./cache.js";
import { bf16Attention, type ForwardResult } from "./forward.js";
import type { Intervention } from "./interventions.js";
import type { Gemma3Model } from "./model.js";
import { sites } from "./sites.js";

/** New tokens the cache makes room for up front (see `KVCacheOptions.reserve`). */
const RESERVED_NEW_TOKENS = 256;

/**
 * Queries per attention block in a prompt chunk (`ForwardOptions.attentionBlock`). A chunk's queries
 * see nearly all the keys cached before it, so halving the block halves its scores (the largest
 * arrays of a late chunk: 2 MiB at 1,024 keys on gemma-3-270m with 128 queries) at no measurable
 * cost in time.
 */
const PREFILL_ATTENTION_BLOCK = 64;

export interface SamplingOptions {
  /** 0 (default) decodes greedily; otherwise logits are divided by it before sampling. */
  readonly temperature?: number;
  /** Keep only the k most likely tokens (sampling only). */
  readonly topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (sampling only). */
  readonly topP?: number;
  /** Seed of the sampler (default 0): the same seed gives the same tokens. */
  readonly seed?: number;
}

export interface TokenEvent {
  /** Which prompt. */
  readonly row: number;
  readonly token: number;
  /** 0 for the first generated token. */
  readonly step: number;
}

export interface GenerateOptions extends SamplingOptions {
  readonly maxNewTokens: number;
  /** Tokens that end a sequence (included in its output). Default: the model's stop ids; [] disables. */
  readonly stopTokens?: readonly number[];
  /** Active in every forward call (prompt and each new token). Positions are indices in the left-padded batch. */
  readonly interventions?: readonly Intervention[];
  /** Called for every generated token as it is produced. */
  readonly onToken?: (event: TokenEvent) => void;
  /** Left-padding id for prompts of different lengths (default: the config's pad id, else 0). */
  readonly padTokenId?: number;
  /** See `ForwardOptions.bf16MatmulInputs` (faster on bf16 checkpoints; default false). */
  readonly bf16MatmulInputs?: boolean;
  /**
   * The prompt goes through the model in forward calls of at most this many tokens (default 128),
   * each attending to the cache of those before: a long prompt's intermediates then take a chunk's
   * memory, not the whole prompt's. Interventions see the prompt chunk by chunk (positions are
   * sequence indices, so a position-based one acts the same). `Infinity` feeds it in one call.
   */
  readonly prefillChunk?: number;
  /**
   * How the KV cache stores keys and values (see `KVCacheOptions.dtype`). Default: "bf16" where
   * attention rounds them to bf16 anyway (`bf16MatmulInputs` on a bf16 checkpoint), else "f32".
   */
  readonly cacheDtype?: KVDType;
}

export type FinishReason = "stop" | "length";

export interface GenerateResult {
  /** Generated tokens per prompt (a stop token, when hit, is the last). */
  readonly tokens: number[][];
  /** Each prompt followed by its generated tokens (no padding). */
  readonly sequences: number[][];
  readonly finish: FinishReason[];
}

/** Picks the next token from one row of logits. */
export function pickToken(logits: Float32Array, options: SamplingOptions, rng: Rng): number {
  const temperature = options.temperature ?? 0;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) {
    throw new ModelError(`temperature must be >= 0, got ${temperature}`);
  }
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  const n = logits.length;
  const scaled = new Float64Array(n);
  for (let i = 0; i < n; i++) scaled[i] = Math.fround(logits[i] / temperature);
  let order = Array.from({ length: n }, (_, i) => i).filter((i) => !Number.isNaN(scaled[i]));
  order.sort((a, b) => scaled[b] - scaled[a] || a - b);
  const topK = options.topK;
  if (topK !== undefined) {
    if (!Number.isInteger(topK) || topK < 1)
      throw new ModelError(`topK must be a positive integer, got ${topK}`);
    if (topK < order.length) {
      const kth = scaled[order[topK - 1]];
      order = order.filter((i) => scaled[i] >= kth);
    }
  }
  const max = scaled[order[0]];
  const weights = order.map((i) => Math.exp(scaled[i] - max));
  let total = weights.reduce((a, b) => a + b, 0);
  const topP = options.topP;
  if (topP !== undefined) {
    if (!(topP > 0 && topP <= 1)) throw new ModelError(`topP must be in (0, 1], got ${topP}`);
    let cum = 0;
    let keep = order.length;
    for (let j = 0; j < order.length; j++) {
      cum += weights[j] / total;
      if (cum >= topP) {
        keep = j + 1;
        break;
      }
    }
    order = order.slice(0, keep);
    weights.length = keep;
    total = weights.reduce((a, b) => a + b, 0);
  }
  let u = rng.uniform53() * total;
  for (let j = 0; j < order.length; j++) {
    u -= weights[j];
    if (u < 0) return order[j];
  }
  return order[order.length - 1];
}

function asRows(prompts: readonly number[] | readonly (readonly number[])[]): number[][] {
  if (prompts.length === 0) throw new ModelError("generate needs at least one prompt");
  if (typeof prompts[0] === "number") return [[...(prompts as readonly number[])]];
  return (prompts as readonly (readonly number[])[]).map((p) => [...p]);
}

/**
 * The generation loop as a synchronous iterator of token events; its return value is the result.
 * `generate` and `generateStream` drive it.
 */
export function* generationSteps(
  model: Gemma3Model,
  prompts: readonly number[] | readonly (readonly number[])[],
  options: GenerateOptions,
): Generator<TokenEvent, GenerateResult, void> {
  const config = model.config;
  const rows = asRows(prompts);
  const batch = rows.length;
  const maxNew = options.maxNewTokens;
  if (!Number.isInteger(maxNew) || maxNew < 0)
    throw new ModelError(`maxNewTokens must be >= 0, got ${maxNew}`);
  const longest = Math.max(...rows.map((r) => r.length));
  if (rows.some((r) => r.length === 0)) throw new ModelError("every prompt needs at least one token");
  if (longest > config.maxPositionEmbeddings) {
    throw new ModelError(
      `prompt of ${longest} tokens is longer than the model's context (max_position_embeddings ${config.maxPositionEmbeddings})`,
    );
  }
  const pad = options.padTokenId ?? config.padTokenId ?? 0;
  const stops = new Set(options.stopTokens ?? model.stopTokenIds);
  const rng = new Rng(options.seed ?? 0);

  const ids: number[][] = [];
  const mask: number[][] = [];
  const positions: number[][] = [];
  for (const r of rows) {
    const padding = longest - r.length;
    ids.push([...new Array<number>(padding).fill(pad), ...r]);
    mask.push([...new Array<number>(padding).fill(0), ...new Array<number>(r.length).fill(1)]);
    positions.push([...new Array<number>(padding).fill(1), ...r.map((_, i) => i)]);
  }
  const tokens: number[][] = rows.map(() => []);
  const finish: FinishReason[] = rows.map(() => "length");
  const done = rows.map(() => false);
  const next = rows.map((r) => r.length);
  const chunk = options.prefillChunk ?? 128;
  if (!(chunk === Number.POSITIVE_INFINITY || (Number.isSafeInteger(chunk) && chunk >= 1)))
    throw new ModelError(`prefillChunk must be a positive integer or Infinity, got ${chunk}`);
  const cache = model.newCache(batch, {
    // Room for the prompt and the first new tokens; a long generation, which may stop early at a
    // stop token, grows the storage as it goes.
    reserve: Math.min(longest + Math.min(maxNew, RESERVED_NEW_TOKENS), config.maxPositionEmbeddings),
    dtype:
      options.cacheDtype ??
      (bf16Attention(model.weights, options.bf16MatmulInputs ?? false) ? "bf16" : "f32"),
  });
  const vocab = config.vocab;
  const interventions = options.interventions ?? [];
  const bf16MatmulInputs = options.bf16MatmulInputs ?? false;
  const logitsSeen = interventions.some((iv) => iv.site.name === sites.logits.name);

  try {
    let out: ForwardResult | undefined;
    for (let start = 0; start < longest; start += chunk) {
      const part = (m: number[][]) => m.map((r) => r.slice(start, start + chunk));
      out = model.forward(part(ids), {
        attentionMask: part(mask),
        positionIds: part(positions),
        cache,
        interventions,
        // Only the last chunk's logits are read.
        logits: start + chunk >= longest ? "last" : "none",
        bf16MatmulInputs,
        // A prompt in one call keeps the default: there, smaller blocks measured 5 % slower.
        ...(Number.isFinite(chunk) ? { attentionBlock: PREFILL_ATTENTION_BLOCK } : {}),
      });
    }
    if (out === undefined) throw new ModelError("generate needs at least one prompt token");
    for (let step = 0; step < maxNew; step++) {
      const logits = out.logits.data;
      const fed: number[] = [];
      for (let r = 0; r < batch; r++) {
        if (done[r]) {
          fed.push(pad);
          continue;
        }
        const token = pickToken(logits.subarray(r * vocab, (r + 1) * vocab), options, rng);
        tokens[r].push(token);
        fed.push(token);
        if (stops.has(token)) {
          done[r] = true;
          finish[r] = "stop";
        }
        options.onToken?.({ row: r, token, step });
        yield { row: r, token, step };
      }
      if (done.every((d) => d) || step === maxNew - 1) break;
      if (cache.length + 1 > config.maxPositionEmbeddings) break;
      // Nothing else holds this step's logits (unless an intervention saw them): the next step's
      // reuse their storage instead of leaving a garbage array per token.
      if (!logitsSeen) out.logits.dispose();
      out = model.forward(
        fed.map((t) => [t]),
        {
          positionIds: next.map((p) => [p]),
          cache,
          interventions,
          logits: "last",
          bf16MatmulInputs,
        },
      );
      for (let r = 0; r < batch; r++) next[r]++;
    }
    return { tokens, sequences: rows.map((r, i) => [...r, ...tokens[i]]), finish };
  } finally {
    // The cache's storage serves later outputs (the next generation's cache, say).
    cache.dispose();
  }
}

/** Generates up to `maxNewTokens` tokens for one prompt or a batch of prompts. */
export function generate(
  model: Gemma3Model,
  prompts: readonly number[] | readonly (readonly number[])[],
  options: GenerateOptions,
): GenerateResult {
  const it = generationSteps(model, prompts, options);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
  }
}

/**
 * Streams generated tokens as they come (yielding to the event loop between tokens); the iterator's
 * return value is the full result.
 */
export async function* generateStream(
  model: Gemma3Model,
  prompts: readonly number[] | readonly (readonly number[])[],
  options: GenerateOptions,
): AsyncGenerator<TokenEvent, GenerateResult, void> {
  const it = generationSteps(model, prompts, options);
  for (;;) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const r = it.next();
    if (r.done) return r.value;
    yield r.value;
  }
}
