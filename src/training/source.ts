/**
 * Where trainers get activations: a `BatchSource` hands out batches of token rows, one
 * `[batch, d]` matrix per site, and can report and restore its position (the data cursor stored in
 * checkpoints). An activation store reader, a live model stream and the synthetic generators in
 * `synthetic.ts` all satisfy it; `ArraySource` serves in-memory matrices.
 */
import { TrainingError } from "../core/errors.js";
import type { JsonValue } from "../io/strict-json.js";

/** One batch: the same `tokens` rows at every site. */
export interface ActivationBatch {
  readonly tokens: number;
  /** site key -> [tokens, d] row-major. */
  readonly sites: ReadonlyMap<string, Float32Array>;
}

/** A JSON-safe position in a source, from `cursor()`, accepted by `seek()`. */
export type SourceCursor = JsonValue;

export interface BatchSource {
  /** Every site the source serves, with its width d. */
  readonly sites: ReadonlyMap<string, number>;
  /** Identifies the data (e.g. a store's content hash) so a checkpoint is not resumed on other data. */
  readonly fingerprint: string;
  /** The next `tokens` rows at the requested sites, or null when the data is exhausted. */
  next(tokens: number, sites: readonly string[]): Promise<ActivationBatch | null>;
  /** The position after the last batch returned. */
  cursor(): SourceCursor;
  /** Continues from a position returned by `cursor()` (of a source over the same data). */
  seek(cursor: SourceCursor): void;
}

/** Serves in-memory matrices in order, optionally cycling through them `epochs` times. */
export class ArraySource implements BatchSource {
  readonly sites: ReadonlyMap<string, number>;
  readonly fingerprint: string;
  private readonly rows: number;
  private position = 0;

  /** `data`: site key -> [rows, d] row-major, every site with the same rows. */
  constructor(
    private readonly data: ReadonlyMap<string, { readonly d: number; readonly values: Float32Array }>,
    private readonly epochs = 1,
    fingerprint = "arrays",
  ) {
    let rows = -1;
    const sites = new Map<string, number>();
    for (const [key, { d, values }] of data) {
      if (!Number.isInteger(d) || d <= 0 || values.length % d !== 0)
        throw new TrainingError(`site ${key}: ${values.length} values are not rows of width ${d}`);
      const r = values.length / d;
      if (rows >= 0 && r !== rows) throw new TrainingError(`site ${key} has ${r} rows, others ${rows}`);
      rows = r;
      sites.set(key, d);
    }
    this.rows = Math.max(rows, 0);
    this.sites = sites;
    this.fingerprint = fingerprint;
  }

  async next(tokens: number, sites: readonly string[]): Promise<ActivationBatch | null> {
    if (this.rows === 0 || this.position + tokens > this.rows * this.epochs) return null;
    const out = new Map<string, Float32Array>();
    for (const key of sites) {
      const src = this.data.get(key);
      if (src === undefined) throw new TrainingError(`the source has no site ${key}`);
      const batch = new Float32Array(tokens * src.d);
      for (let t = 0; t < tokens; t++) {
        const r = (this.position + t) % this.rows;
        batch.set(src.values.subarray(r * src.d, (r + 1) * src.d), t * src.d);
      }
      out.set(key, batch);
    }
    this.position += tokens;
    return { tokens, sites: out };
  }

  cursor(): SourceCursor {
    return { position: this.position };
  }

  seek(cursor: SourceCursor): void {
    this.position = positionOf(cursor);
  }
}

/** Reads `{ position: n }` cursors (n a non-negative integer). */
export function positionOf(cursor: SourceCursor): number {
  if (typeof cursor === "object" && cursor !== null && !Array.isArray(cursor)) {
    const p = cursor.position;
    if (typeof p === "number" && Number.isSafeInteger(p) && p >= 0) return p;
  }
  throw new TrainingError(`bad data cursor ${JSON.stringify(cursor)}`);
}
