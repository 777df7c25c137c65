/**
 * Key/value cache for incremental decoding, one entry per layer, holding keys after k_norm and
 * RoPE (as transformers' DynamicCache does). Sliding-window layers keep only their last `window`
 * keys and values, so their memory is bounded whatever the sequence length; full-attention layers
 * keep every key. The cache also remembers which key positions are padding (the attention mask).
 *
 * Sequence indices count every token fed so far (padding included), as transformers'
 * `cache_position` does; sliding windows are measured in them.
 */
import { ModelError } from "../../core/errors.js";
import { concat, narrow } from "../../core/ops/shape.js";
import type { Tensor } from "../../core/tensor.js";
import { type Gemma3Config, layerAttention } from "./config.js";

/** Keys and values a layer's queries attend to in one forward call. */
export interface LayerKeys {
  /** [batch, kv_heads, keys, head_dim] */
  readonly k: Tensor<"f32">;
  /** [batch, kv_heads, keys, head_dim] */
  readonly v: Tensor<"f32">;
  /** Sequence index of key 0. */
  readonly start: number;
}

interface Held {
  readonly k: Tensor<"f32">;
  readonly v: Tensor<"f32">;
  readonly start: number;
}

export class KVCache {
  readonly batch: number;
  private readonly windows: readonly (number | null)[];
  private readonly held: (Held | null)[];
  private valid: Uint8Array[];
  private len = 0;
  private pending = 0;

  constructor(config: Gemma3Config, batch: number) {
    if (!Number.isInteger(batch) || batch < 1) throw new ModelError(`cache batch must be >= 1, got ${batch}`);
    this.batch = batch;
    this.windows = config.layerTypes.map((_, l) => layerAttention(config, l).window);
    this.held = this.windows.map(() => null);
    this.valid = Array.from({ length: batch }, () => new Uint8Array(64));
  }

  /** Tokens fed so far (the sequence index of the next one). */
  get length(): number {
    return this.len;
  }

  /** Whether key `index` of sequence `row` is a real token (not padding). */
  isValid(row: number, index: number): boolean {
    return this.valid[row][index] === 1;
  }

  /** Keys held for `layer` (at most its window on sliding layers). */
  keysHeld(layer: number): number {
    return this.held[layer]?.k.shape[2] ?? 0;
  }

  /** Bytes of key and value storage held. */
  get bytes(): number {
    let n = 0;
    for (const h of this.held) if (h) n += h.k.byteLength + h.v.byteLength;
    return n;
  }

  /**
   * Starts a forward call over `seq` new tokens; `mask[row][i]` is 1 for real tokens.
   * Returns their first sequence index. @internal (called by the forward pass)
   */
  begin(seq: number, mask: readonly Uint8Array[]): number {
    if (this.pending !== 0) throw new ModelError("KV cache: a previous forward call did not finish");
    const need = this.len + seq;
    for (let r = 0; r < this.batch; r++) {
      if (this.valid[r].length < need) {
        const grown = new Uint8Array(Math.max(need, this.valid[r].length * 2));
        grown.set(this.valid[r]);
        this.valid[r] = grown;
      }
      this.valid[r].set(mask[r], this.len);
    }
    this.pending = seq;
    return this.len;
  }

  /** Appends a layer's new keys/values; returns everything its queries may see. @internal */
  update(layer: number, k: Tensor<"f32">, v: Tensor<"f32">): LayerKeys {
    const h = this.held[layer];
    const all: LayerKeys = h
      ? { k: concat([h.k, k], 2), v: concat([h.v, v], 2), start: h.start }
      : { k, v, start: this.len };
    const window = this.windows[layer];
    const total = all.k.shape[2];
    if (window !== null && total > window) {
      const drop = total - window;
      this.held[layer] = {
        k: narrow(all.k, 2, drop, window),
        v: narrow(all.v, 2, drop, window),
        start: all.start + drop,
      };
    } else {
      this.held[layer] = all;
    }
    return all;
  }

  /** Ends the forward call started by `begin`. @internal */
  commit(): void {
    this.len += this.pending;
    this.pending = 0;
  }
}
