/**
 * Pull-style batch sources over activations, shaped like the trainers' `BatchSource`
 * (src/training/source.ts: `sites`, `fingerprint`, `next(tokens, sites)`, `cursor()`, `seek()`),
 * written structurally so this layer does not import the training layer above it.
 */
import { StoreError } from "../core/errors.js";
import type { JsonValue } from "../io/strict-json.js";
import { parseReaderCursor, type ReaderCursor, type ReaderOptions, StoreReader } from "./reader.js";
import type { ActivationStore } from "./store.js";

/** Rows at each requested site, the same `tokens` rows everywhere. */
export interface PulledBatch {
  readonly tokens: number;
  /** site name -> [tokens, d] row-major */
  readonly sites: ReadonlyMap<string, Float32Array>;
}

export function cursorJson(c: ReaderCursor): JsonValue {
  return {
    store: c.store,
    order: c.order,
    seed: c.seed,
    bufferTokens: c.bufferTokens,
    shards: [...c.shards],
    tokens: c.tokens,
  };
}

/** Serves a store's tokens (shuffled or in order, `epochs` times) as full batches of any size. */
export class StoreBatchSource {
  readonly sites: ReadonlyMap<string, number>;
  /** The store's content hash. */
  readonly fingerprint: string;
  private reader: StoreReader;

  constructor(
    readonly store: ActivationStore,
    private readonly options: Omit<ReaderOptions, "batchTokens" | "cursor" | "dropLast">,
  ) {
    this.reader = new StoreReader(store, { ...options, batchTokens: 1 });
    this.sites = new Map(this.reader.sites.map((s) => [s.name, s.d]));
    this.fingerprint = store.manifest.content_hash;
  }

  /** The next `tokens` rows, or null when fewer than `tokens` are left. */
  async next(tokens: number, sites: readonly string[]): Promise<PulledBatch | null> {
    for (const s of sites) {
      if (!this.sites.has(s)) throw new StoreError(`the source has no site ${s}`, this.store.dir);
    }
    if (this.reader.remaining < tokens) return null;
    const b = await this.reader.read(tokens);
    if (b === null) return null;
    return { tokens, sites: new Map(sites.map((s) => [s, b.batch[s].data as Float32Array])) };
  }

  cursor(): JsonValue {
    return cursorJson(this.reader.cursor);
  }

  seek(cursor: JsonValue): void {
    this.reader = new StoreReader(this.store, {
      ...this.options,
      batchTokens: 1,
      cursor: parseReaderCursor(cursor, this.store.dir),
    });
  }
}
