/**
 * Streaming reads of an activation store: batches of n tokens per site, in store order or
 * shuffled through a mixing buffer, with a small JSON cursor from which a reader resumes exactly.
 *
 * Shuffling is a pure function of (seed, epoch), so the cursor is just a token count. For each
 * epoch the selected shards are put in a random order and concatenated; that stream is cut into
 * windows of `bufferTokens` tokens (the mixing buffer) and each window is emitted in a random
 * permutation of its rows. Every token therefore appears exactly once per epoch, no more than one
 * window (plus the shards it straddles) is held in memory, and resuming at token t rebuilds the
 * window t falls in and skips to it. Consecutive epochs use different orders; batches run on
 * across epoch boundaries.
 */
import { createHash } from "node:crypto";
import type { Backend } from "../core/backend.js";
import { StoreError } from "../core/errors.js";
import { Rng } from "../core/random.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import type { ActivationStore, ShardData } from "./store.js";

export type ReadOrder = "sequential" | "shuffled";

/** Where a reader is; JSON-safe, for training checkpoints. */
export interface ReaderCursor {
  /** `content_hash` of the store read. */
  readonly store: string;
  readonly order: ReadOrder;
  readonly seed: number;
  readonly bufferTokens: number;
  /** The shard indices read, in store order. */
  readonly shards: readonly number[];
  /** Tokens already delivered, counted over all epochs. */
  readonly tokens: number;
}

export interface ReaderOptions {
  /** Tokens per batch (the last batch of a finite read may be smaller unless `dropLast`). */
  readonly batchTokens: number;
  /** Backend the batch tensors are made on. */
  readonly backend: Backend;
  /** Sites to read (default: all, in manifest order). */
  readonly sites?: readonly string[];
  /** Default "shuffled". */
  readonly order?: ReadOrder;
  /** Seed of the shuffle (default 0). */
  readonly seed?: number;
  /** Mixing-buffer size in tokens (default 65,536; capped at the tokens read per epoch). */
  readonly bufferTokens?: number;
  /** Passes over the data (default 1; `Infinity` streams forever). */
  readonly epochs?: number;
  /** Drop a final partial batch (default false). */
  readonly dropLast?: boolean;
  /** Shard indices to read (default all); see `splitShards`. */
  readonly shards?: readonly number[];
  /** Resume from a cursor a reader with the same options returned. */
  readonly cursor?: ReaderCursor;
}

/** One batch of activations. */
export interface ActivationBatch {
  /** [n, d] f32 per site name. */
  readonly batch: Readonly<Record<string, Tensor>>;
  /** Token id of each row [n]. */
  readonly tokenIds: Int32Array;
  /** Document index of each row [n]. */
  readonly docIds: Int32Array;
  /** The reader's position after this batch. */
  readonly cursor: ReaderCursor;
}

export const DEFAULT_BUFFER_TOKENS = 65_536;

/** A 53-bit seed derived from a seed and labels, so streams for different epochs/windows differ. */
function deriveSeed(seed: number, ...labels: number[]): number {
  const h = createHash("sha256")
    .update(JSON.stringify([seed, ...labels]))
    .digest();
  return h.readUIntBE(0, 6) * 32 + (h[6] >>> 3);
}

/**
 * Splits the store's shards into train and validation sets: a seeded random `validationFraction`
 * of the shards (at least one when the fraction is positive and there are two or more shards).
 */
export function splitShards(
  store: ActivationStore,
  validationFraction: number,
  seed = 0,
): { readonly train: number[]; readonly validation: number[] } {
  if (!(validationFraction >= 0 && validationFraction < 1))
    throw new StoreError(`validation fraction must be in [0, 1), got ${validationFraction}`, store.dir);
  const n = store.manifest.shards.length;
  let k = Math.round(validationFraction * n);
  if (validationFraction > 0 && n >= 2) k = Math.max(1, Math.min(k, n - 1));
  const perm = new Rng(deriveSeed(seed, -1)).permutation(n);
  const validation = [...perm.subarray(0, k)].sort((a, b) => a - b);
  const v = new Set(validation);
  return { train: [...Array(n).keys()].filter((i) => !v.has(i)), validation };
}

interface Segment {
  readonly shard: number;
  /** First row of the shard in this window and how many rows. */
  readonly from: number;
  readonly rows: number;
}

interface Window {
  readonly segments: readonly Segment[];
  /** Window row -> segment index and row within its shard, after the permutation. */
  readonly segOf: Int32Array;
  readonly rowOf: Int32Array;
}

/** Streams batches from a store; iterate it once (`for await`). */
export class StoreReader implements AsyncIterable<ActivationBatch> {
  readonly sites: readonly { readonly name: string; readonly d: number }[];
  readonly order: ReadOrder;
  readonly seed: number;
  readonly shards: readonly number[];
  /** Tokens per epoch (over the selected shards). */
  readonly epochTokens: number;
  readonly bufferTokens: number;
  private readonly epochs: number;
  private readonly batchTokens: number;
  private position: number;
  private readonly cache = new Map<number, Promise<ShardData>>();
  private current: { epoch: number; w: number; win: Window; data: ShardData[] } | undefined;

  constructor(
    readonly store: ActivationStore,
    private readonly options: ReaderOptions,
  ) {
    const m = store.manifest;
    const fail = (msg: string): never => {
      throw new StoreError(msg, store.dir);
    };
    if (!Number.isSafeInteger(options.batchTokens) || options.batchTokens <= 0)
      fail(`batch size must be a positive integer, got ${options.batchTokens}`);
    this.batchTokens = options.batchTokens;
    const names = options.sites ?? m.sites.map((s) => s.name);
    this.sites = names.map(
      (n) =>
        m.sites.find((s) => s.name === n) ??
        fail(`store has no site ${n} (it has ${m.sites.map((s) => s.name).join(", ")})`),
    );
    this.order = options.order ?? "shuffled";
    this.seed = options.seed ?? 0;
    if (!Number.isSafeInteger(this.seed) || this.seed < 0) fail(`seed must be a non-negative integer`);
    const shards = [...(options.shards ?? m.shards.map((_, i) => i))].sort((a, b) => a - b);
    for (const [i, s] of shards.entries()) {
      if (!Number.isInteger(s) || s < 0 || s >= m.shards.length) fail(`no shard ${s}`);
      if (i > 0 && shards[i - 1] === s) fail(`shard ${s} selected twice`);
    }
    this.shards = shards;
    this.epochTokens = shards.reduce((a, s) => a + m.shards[s].tokens, 0);
    if (this.epochTokens === 0) fail("no tokens to read (the store or the selected shards are empty)");
    const buffer = options.bufferTokens ?? DEFAULT_BUFFER_TOKENS;
    if (!Number.isSafeInteger(buffer) || buffer <= 0)
      fail(`buffer size must be a positive integer, got ${buffer}`);
    this.bufferTokens = Math.min(buffer, this.epochTokens);
    this.epochs = options.epochs ?? 1;
    if (!(this.epochs > 0) || (Number.isFinite(this.epochs) && !Number.isInteger(this.epochs)))
      fail(`epochs must be a positive integer or Infinity, got ${this.epochs}`);
    this.position = 0;
    const c = options.cursor;
    if (c !== undefined) {
      if (c.store !== m.content_hash) fail("cursor belongs to a different store (content hash differs)");
      if (
        c.order !== this.order ||
        c.seed !== this.seed ||
        c.bufferTokens !== (options.bufferTokens ?? DEFAULT_BUFFER_TOKENS)
      )
        fail("cursor was made with a different order, seed or buffer size");
      if (c.shards.length !== shards.length || c.shards.some((s, i) => s !== shards[i]))
        fail("cursor was made over a different set of shards");
      if (!Number.isSafeInteger(c.tokens) || c.tokens < 0) fail("cursor token count is invalid");
      this.position = c.tokens;
    }
  }

  /** Where the reader is now (before the next batch). */
  get cursor(): ReaderCursor {
    return {
      store: this.store.manifest.content_hash,
      order: this.order,
      seed: this.seed,
      bufferTokens: this.options.bufferTokens ?? DEFAULT_BUFFER_TOKENS,
      shards: [...this.shards],
      tokens: this.position,
    };
  }

  private get totalTokens(): number {
    return this.epochs * this.epochTokens;
  }

  /** The epoch's shard order (indices into the store's shard list). */
  shardOrder(epoch: number): number[] {
    if (this.order === "sequential") return [...this.shards];
    const perm = new Rng(deriveSeed(this.seed, epoch)).permutation(this.shards.length);
    return Array.from(perm, (i) => this.shards[i]);
  }

  private windowCount(): number {
    return Math.ceil(this.epochTokens / this.bufferTokens);
  }

  private buildWindow(epoch: number, w: number): Window {
    const start = w * this.bufferTokens;
    const end = Math.min(start + this.bufferTokens, this.epochTokens);
    const segments: Segment[] = [];
    let at = 0;
    for (const s of this.shardOrder(epoch)) {
      const n = this.store.manifest.shards[s].tokens;
      const lo = Math.max(start, at);
      const hi = Math.min(end, at + n);
      if (lo < hi) segments.push({ shard: s, from: lo - at, rows: hi - lo });
      at += n;
      if (at >= end) break;
    }
    const size = end - start;
    const segOf = new Int32Array(size);
    const rowOf = new Int32Array(size);
    let k = 0;
    for (const [i, seg] of segments.entries()) {
      for (let r = 0; r < seg.rows; r++, k++) {
        segOf[k] = i;
        rowOf[k] = seg.from + r;
      }
    }
    if (this.order === "shuffled") {
      const perm = new Rng(deriveSeed(this.seed, epoch, w)).permutation(size);
      const s2 = new Int32Array(size);
      const r2 = new Int32Array(size);
      for (let i = 0; i < size; i++) {
        s2[i] = segOf[perm[i]];
        r2[i] = rowOf[perm[i]];
      }
      return { segments, segOf: s2, rowOf: r2 };
    }
    return { segments, segOf, rowOf };
  }

  private load(shard: number): Promise<ShardData> {
    let p = this.cache.get(shard);
    if (p === undefined) {
      p = this.store.readShard(
        shard,
        this.sites.map((s) => s.name),
      );
      p.catch(() => {});
      this.cache.set(shard, p);
    }
    return p;
  }

  /** Keeps only the shards `keep` in the cache. */
  private retain(keep: ReadonlySet<number>): void {
    for (const k of [...this.cache.keys()]) if (!keep.has(k)) this.cache.delete(k);
  }

  /** Tokens left to deliver (Infinity when streaming forever). */
  get remaining(): number {
    return this.totalTokens - this.position;
  }

  /**
   * The next `n` tokens (fewer at the end of a finite read), or null when nothing is left. The
   * async iterator calls this with the batch size.
   */
  async read(n: number): Promise<ActivationBatch | null> {
    if (!Number.isSafeInteger(n) || n <= 0) throw new StoreError(`cannot read ${n} tokens`, this.store.dir);
    n = Math.min(n, this.remaining);
    if (n === 0) return null;
    const out = this.sites.map((s) => new Float32Array(n * s.d));
    const tokenIds = new Int32Array(n);
    const docIds = new Int32Array(n);
    let filled = 0;
    while (filled < n) {
      const epoch = Math.floor(this.position / this.epochTokens);
      const inEpoch = this.position - epoch * this.epochTokens;
      const w = Math.floor(inEpoch / this.bufferTokens);
      const window = await this.windowAt(epoch, w);
      const offset = inEpoch - w * this.bufferTokens;
      const take = Math.min(n - filled, window.win.segOf.length - offset);
      const { segOf, rowOf } = window.win;
      for (let j = 0; j < take; j++) {
        const shard = window.data[segOf[offset + j]];
        const row = rowOf[offset + j];
        for (const [si, s] of this.sites.entries()) {
          const src = shard.acts.get(s.name)!;
          out[si].set(src.subarray(row * s.d, (row + 1) * s.d), (filled + j) * s.d);
        }
        tokenIds[filled + j] = shard.tokenIds[row];
        docIds[filled + j] = shard.docIds[row];
      }
      filled += take;
      this.position += take;
    }
    const batch: Record<string, Tensor> = {};
    for (const [si, s] of this.sites.entries()) {
      batch[s.name] = fromStorage(this.options.backend, "f32", [n, s.d], out[si]);
    }
    return { batch, tokenIds, docIds, cursor: this.cursor };
  }

  /** The window (epoch, w) with its shards loaded; starts loading the next window's shards. */
  private async windowAt(epoch: number, w: number): Promise<{ win: Window; data: ShardData[] }> {
    const c = this.current;
    if (c !== undefined && c.epoch === epoch && c.w === w) return c;
    const win = this.buildWindow(epoch, w);
    const data = await Promise.all(win.segments.map((s) => this.load(s.shard)));
    this.current = { epoch, w, win, data };
    const [ne, nw] = w + 1 < this.windowCount() ? [epoch, w + 1] : [epoch + 1, 0];
    const keep = new Set(win.segments.map((s) => s.shard));
    if (ne * this.epochTokens < this.totalTokens) {
      for (const s of this.buildWindow(ne, nw).segments) {
        keep.add(s.shard);
        void this.load(s.shard);
      }
    }
    this.retain(keep);
    return this.current;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ActivationBatch> {
    for (;;) {
      if (this.remaining < this.batchTokens && this.options.dropLast === true) return;
      const b = await this.read(this.batchTokens);
      if (b === null) return;
      yield b;
    }
  }
}

/** Checks that a JSON value (e.g. from a checkpoint) has a ReaderCursor's shape. */
export function parseReaderCursor(v: unknown, where: string): ReaderCursor {
  const o = typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  const ok =
    o !== null &&
    typeof o.store === "string" &&
    (o.order === "sequential" || o.order === "shuffled") &&
    typeof o.seed === "number" &&
    typeof o.bufferTokens === "number" &&
    Array.isArray(o.shards) &&
    o.shards.every((s) => typeof s === "number") &&
    typeof o.tokens === "number";
  if (!ok) throw new StoreError(`not a store reader cursor: ${JSON.stringify(v)}`, where);
  return {
    store: o.store as string,
    order: o.order as ReadOrder,
    seed: o.seed as number,
    bufferTokens: o.bufferTokens as number,
    shards: o.shards as number[],
    tokens: o.tokens as number,
  };
}

/** Opens a reader on `store` (see `ReaderOptions`). */
export function readActivations(store: ActivationStore, options: ReaderOptions): StoreReader {
  return new StoreReader(store, options);
}
