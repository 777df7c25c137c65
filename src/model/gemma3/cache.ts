/**
 * Key/value cache for incremental decoding, one entry per layer, holding keys after k_norm and
 * RoPE (as transformers' DynamicCache does). Sliding-window layers keep only their last `window`
 * keys and values, so their memory is bounded whatever the sequence length; full-attention layers
 * keep every key. The cache also remembers which key positions are padding (the attention mask).
 *
 * Storage is preallocated per layer, [batch, kv_heads, capacity, head_dim], and new keys are
 * written in place: a decoding step copies its own keys only, not the whole cache (transformers
 * concatenates). Capacity grows by half when full; a sliding layer's stops at its window plus a
 * quarter (at least 64 keys), and when that fills it moves its last `window` keys to the front
 * (a copy of `window` keys every `window / 4` steps). With one sequence and one key head
 * (gemma-3-270m, 1b at batch 1) attention reads the keys it sees in place; otherwise it reads the
 * whole storage (slots it may not see are masked), unless the layer's attention pattern is hooked,
 * which needs exactly those keys: they are then gathered.
 *
 * Sequence indices count every token fed so far (padding included), as transformers'
 * `cache_position` does; sliding windows are measured in them.
 *
 * A caller that knows how many tokens it will feed (`generate`: the prompt and the new tokens) can
 * `reserve` them: each layer then starts with storage for all of them (a sliding layer for up to its
 * bound) and never grows, which saves the copies and, while a grown layer's old storage is still
 * read, holding both.
 */
import type { Backend } from "../../core/backend.js";
import { ModelError } from "../../core/errors.js";
import { fromStorage, type Tensor } from "../../core/tensor.js";
import { type Gemma3Config, layerAttention } from "./config.js";

/**
 * Keys and values a layer's queries attend to in one forward call: keys[i] is sequence index
 * start + i. There may be more than the queries can see (earlier ones outside a sliding window,
 * later ones not written yet): the attention mask hides them.
 */
export interface LayerKeys {
  /** [batch, kv_heads, keys, head_dim] */
  readonly k: Tensor<KVDType>;
  /** [batch, kv_heads, keys, head_dim] */
  readonly v: Tensor<KVDType>;
  /** Sequence index of key 0. */
  readonly start: number;
}

/** How a cache stores keys and values. */
export type KVDType = "f32" | "bf16";

type Store = Float32Array | Uint16Array;

/** Storage of one layer's keys or values: `data` (of the cache's dtype) lies in `owner`'s memory. */
interface Slab {
  /** The array the backend handed out (and takes back). */
  readonly owner: Float32Array;
  readonly data: Store;
}

/** One layer's storage: slot i of each (sequence, head) block holds sequence index start + i. */
interface Held {
  k: Slab;
  v: Slab;
  capacity: number;
  /** Slots in use. */
  len: number;
  start: number;
}

/**
 * Where layer storage comes from and goes: zeroed arrays from the backend's output pool (slots not
 * written yet are read, masked, and must be finite), of exactly the storage's length (a longer
 * pooled buffer would stay held as long as the cache), handed back once no call reads them.
 */
interface Storage {
  alloc(size: number): Slab;
  retire(slab: Slab): void;
  /** Writes f32 values into storage (rounded to bf16 in a bf16 cache). */
  write(dst: Store, at: number, src: Float32Array): void;
}

const EMPTY: Slab = { owner: new Float32Array(0), data: new Float32Array(0) };

/** Smallest capacity a layer starts with (keys). */
const MIN_CAPACITY = 64;

/** Most keys a sliding layer stores: its window and a quarter more, so moves are rare. */
function slidingBound(window: number): number {
  return Math.max(MIN_CAPACITY, window + Math.ceil(window / 4));
}

export interface KVCacheOptions {
  /** Tokens per sequence to make room for at the first call (padding included); more still fit. */
  readonly reserve?: number;
  /**
   * "f32" (default) or "bf16": keys and values rounded to bf16, half the memory, as bf16 inference
   * keeps them. Lossless with `bf16MatmulInputs` on a bf16 checkpoint, whose attention rounds them
   * anyway; otherwise attention reads the rounded keys and values.
   */
  readonly dtype?: KVDType;
}

export class KVCache {
  readonly batch: number;
  readonly dtype: KVDType;
  private readonly reserve: number;
  private readonly windows: readonly (number | null)[];
  private readonly held: (Held | null)[];
  private valid: Uint8Array[];
  private len = 0;
  private pending = 0;
  /** Storage replaced in this call (the keys it returned may still read it). */
  private retired: Slab[] = [];
  private backend: Backend | null = null;

  constructor(config: Gemma3Config, batch: number, options: KVCacheOptions = {}) {
    if (!Number.isInteger(batch) || batch < 1) throw new ModelError(`cache batch must be >= 1, got ${batch}`);
    const reserve = options.reserve ?? 0;
    if (!Number.isSafeInteger(reserve) || reserve < 0)
      throw new ModelError(`cache reserve must be a non-negative integer, got ${reserve}`);
    const dtype = options.dtype ?? "f32";
    if (dtype !== "f32" && dtype !== "bf16")
      throw new ModelError(`cache dtype must be "f32" or "bf16", got ${String(dtype)}`);
    this.batch = batch;
    this.dtype = dtype;
    this.reserve = reserve;
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
    const h = this.held[layer];
    if (h === null) return 0;
    const w = this.windows[layer];
    return w === null ? h.len : Math.min(h.len, w);
  }

  /** Bytes of key and value storage allocated (capacity, not only the keys held). */
  get bytes(): number {
    let n = 0;
    for (const h of this.held) if (h) n += h.k.data.byteLength + h.v.data.byteLength;
    return n;
  }

  /**
   * For a forward call over `seq` new tokens: the most keys any layer's attention reads, and the
   * longest array (f32 elements, as `Backend.allocOutput` counts) that a layer may allocate, for
   * `kvHeads` key heads of `headDim`.
   * @internal (the forward pass bounds its outputs with it)
   */
  bounds(seq: number, kvHeads: number, headDim: number): { keys: number; storage: number } {
    let keys = this.len + seq;
    let storage = 0;
    for (let l = 0; l < this.held.length; l++) {
      const plan = this.plan(l, seq);
      const capacity = plan?.capacity ?? this.held[l]?.capacity ?? 0;
      keys = Math.max(keys, capacity);
      if (plan) storage = Math.max(storage, this.ownerLength(this.batch * kvHeads * capacity * headDim));
    }
    return { keys, storage };
  }

  /**
   * The storage layer `layer` takes for `seq` more keys, or null when what it holds has room. A
   * sliding layer's first chunk longer than its bound (`long`) is attended to as it is and leaves
   * only its last `window` keys in storage of the bound.
   */
  private plan(layer: number, seq: number): { capacity: number; drop: number; long: boolean } | null {
    const window = this.windows[layer];
    const h = this.held[layer];
    if (h === null) {
      if (window !== null && seq > slidingBound(window))
        return { capacity: slidingBound(window), drop: 0, long: true };
      const room = window === null ? this.reserve : Math.min(this.reserve, slidingBound(window));
      return { capacity: Math.max(MIN_CAPACITY, seq, room), drop: 0, long: false };
    }
    if (h.len + seq <= h.capacity) return null;
    // A sliding layer keeps its last `window` keys only (later queries see no earlier one).
    const drop = window === null ? 0 : Math.max(0, h.len - window);
    const need = h.len - drop + seq;
    // Growing by half; a sliding layer stops at its bound and then moves its keys down in place.
    const grown = Math.max(need, Math.ceil(1.5 * h.capacity));
    const capacity =
      window === null ? grown : Math.max(need, h.capacity, Math.min(grown, slidingBound(window)));
    return { capacity, drop, long: false };
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

  /**
   * Appends a layer's new keys/values; returns everything its queries may see. Unless `exact`, with
   * several sequences or key heads, that is the whole storage (no copy): slots past the keys held
   * are later positions, which causal attention masks. A sliding layer's first chunk longer than
   * its storage gets `k` and `v` themselves back. @internal
   */
  update(layer: number, k: Tensor<"f32">, v: Tensor<"f32">, exact = true): LayerKeys {
    const [batch, heads, seq, dim] = k.shape;
    const blocks = batch * heads;
    const window = this.windows[layer];
    const plan = this.plan(layer, seq);
    const storage = this.storage(k);
    let h = this.held[layer];
    if (h === null) {
      h = { k: EMPTY, v: EMPTY, capacity: 0, len: 0, start: this.len };
      resize(h, blocks, dim, plan?.capacity ?? 0, 0, storage);
      this.held[layer] = h;
      if (window !== null && plan?.long) {
        // A first chunk longer than a sliding layer's storage: its queries attend to the chunk
        // itself, and only its last `window` keys are stored for later calls.
        for (let b = 0; b < blocks; b++) {
          const from = (b * seq + seq - window) * dim;
          storage.write(h.k.data, b * h.capacity * dim, k.data.subarray(from, from + window * dim));
          storage.write(h.v.data, b * h.capacity * dim, v.data.subarray(from, from + window * dim));
        }
        h.len = window;
        h.start = this.len + seq - window;
        return { k, v, start: this.len };
      }
    } else if (plan) resize(h, blocks, dim, plan.capacity, plan.drop, storage);
    for (let b = 0; b < blocks; b++) {
      const at = (b * h.capacity + h.len) * dim;
      storage.write(h.k.data, at, k.data.subarray(b * seq * dim, (b + 1) * seq * dim));
      storage.write(h.v.data, at, v.data.subarray(b * seq * dim, (b + 1) * seq * dim));
    }
    // Keys before the first one the earliest new query sees (sliding layers) are left out.
    const skip = window === null ? 0 : Math.max(0, h.len - window + 1);
    const shape = [batch, heads, h.len + seq - skip, dim];
    const whole = [batch, heads, h.capacity, dim];
    const keys: LayerKeys =
      exact || blocks === 1
        ? {
            k: visible(k, h.k.data, h.capacity, shape, skip),
            v: visible(v, h.v.data, h.capacity, shape, skip),
            start: h.start + skip,
          }
        : {
            k: storageTensor(k, whole, h.k.data),
            v: storageTensor(v, whole, h.v.data),
            start: h.start,
          };
    h.len += seq;
    // After a chunk longer than its bound, a sliding layer goes back to the bound (the keys
    // returned above keep the old storage for this call).
    if (window !== null && h.capacity > slidingBound(window))
      resize(h, blocks, dim, slidingBound(window), Math.max(0, h.len - window), storage);
    return keys;
  }

  /** Ends the forward call started by `begin`. @internal */
  commit(): void {
    this.len += this.pending;
    this.pending = 0;
    for (const slab of this.retired) this.backend?.recycle?.(slab.owner);
    this.retired = [];
  }

  /**
   * Gives every layer's storage back to the system (`Backend.discard`: not kept for reuse, where
   * its many same-sized arrays would be taken, with slack, by unrelated outputs) and empties the
   * cache (its length back to 0), also after a forward call that failed. `generate` calls it when
   * done with the cache it made. Keys a forward call returned must not be read afterwards.
   */
  dispose(): void {
    this.pending = 0;
    for (const slab of this.retired) this.backend?.discard?.(slab.owner);
    this.retired = [];
    for (const h of this.held) {
      if (h === null) continue;
      this.backend?.discard?.(h.k.owner);
      this.backend?.discard?.(h.v.owner);
    }
    this.held.fill(null);
    this.len = 0;
    this.valid = this.valid.map(() => new Uint8Array(64));
  }

  /** The f32 array length that holds `size` elements of the cache's dtype. */
  private ownerLength(size: number): number {
    return this.dtype === "f32" ? size : Math.ceil(size / 2);
  }

  private storage(like: Tensor<"f32">): Storage {
    const backend = like.backend;
    this.backend = backend;
    return {
      alloc: (size) => {
        const n = this.ownerLength(size);
        const owner = (backend.allocOutput?.(n, true) ?? new Float32Array(n)).fill(0);
        const data = this.dtype === "f32" ? owner : new Uint16Array(owner.buffer, owner.byteOffset, size);
        return { owner, data };
      },
      retire: (slab) => this.retired.push(slab),
      write: (dst, at, src) => {
        if (dst instanceof Float32Array) dst.set(src, at);
        else backend.floatToHalf(src, "bf16", dst.subarray(at, at + src.length));
      },
    };
  }
}

/** `data` as a tensor of `shape`, of its own dtype (f32 or bf16), on like's backend. */
export function storageTensor(like: Tensor, shape: readonly number[], data: Store): Tensor<KVDType> {
  if (data instanceof Float32Array) return fromStorage(like.backend, "f32", shape, data);
  return fromStorage(like.backend, "bf16", shape, data);
}

/** Slots [skip, skip + shape[2]) of every block of `data` as one tensor of `shape` (on like's backend). */
function visible(
  like: Tensor<"f32">,
  data: Store,
  capacity: number,
  shape: readonly number[],
  skip: number,
): Tensor<KVDType> {
  const [batch, heads, n, dim] = shape;
  const blocks = batch * heads;
  if (blocks === 1) return storageTensor(like, shape, data.subarray(skip * dim, (skip + n) * dim));
  const out =
    data instanceof Float32Array ? new Float32Array(blocks * n * dim) : new Uint16Array(blocks * n * dim);
  for (let b = 0; b < blocks; b++) {
    const from = (b * capacity + skip) * dim;
    out.set(data.subarray(from, from + n * dim), b * n * dim);
  }
  return storageTensor(like, shape, out);
}

/**
 * Gives `h` storage of `capacity` slots per block, keeping its held slots from `drop` on; storage
 * it no longer uses goes to `retire`.
 */
function resize(
  h: Held,
  blocks: number,
  dim: number,
  capacity: number,
  drop: number,
  storage: Storage,
): void {
  const keep = h.len - drop;
  const move = (old: Slab): Slab => {
    if (capacity === h.capacity) {
      for (let b = 0; b < blocks; b++) {
        const from = (b * h.capacity + drop) * dim;
        old.data.copyWithin(b * capacity * dim, from, from + keep * dim);
      }
      return old;
    }
    const out = storage.alloc(blocks * capacity * dim);
    for (let b = 0; b < blocks; b++) {
      const from = (b * h.capacity + drop) * dim;
      out.data.set(old.data.subarray(from, from + keep * dim), b * capacity * dim);
    }
    if (old.data.length > 0) storage.retire(old);
    return out;
  };
  h.k = move(h.k);
  h.v = move(h.v);
  h.capacity = capacity;
  h.len = keep;
  h.start += drop;
}
