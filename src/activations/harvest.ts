/**
 * Harvesting: run the model over a dataset's sequences, `batch` sequences per forward pass,
 * capturing every requested site in that one pass, and keep the rows the masking rules allow
 * (sequences.ts). Either append them to an activation store (`harvestToStore`, resumable) or hand
 * them straight to a consumer (`streamActivations`, `ModelBatchSource`).
 *
 * Resuming: sequences come from the dataset in a deterministic order, and each shard is cut at a
 * forward-batch boundary, with the manifest recording how many sequences its shards cover. A
 * restarted harvest skips that many sequences (tokenizing them again, without running the model)
 * and continues with the same batches, so a killed and resumed harvest produces the same shards as
 * an uninterrupted one. A token limit may cut a sequence; the cursor then also records how many of
 * its kept tokens are stored.
 */
import { createHash } from "node:crypto";
import { createReadStream, readdirSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import type { Backend } from "../core/backend.js";
import { StoreError } from "../core/errors.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import { ioMessage } from "../io/positioned-read.js";
import type { JsonValue } from "../io/strict-json.js";
import type { Intervention } from "../model/gemma3/interventions.js";
import type { Gemma3Model } from "../model/gemma3/model.js";
import { listSites, parseSite, type Site, sites } from "../model/gemma3/sites.js";
import type { TokenDocument } from "./documents.js";
import type { HarvestCursor, ModelIdentity, StoreDType, StoreManifest, StoreSite } from "./manifest.js";
import {
  type LongDocuments,
  type MaskingRules,
  maskingJson,
  type Sequence,
  sequenceStream,
} from "./sequences.js";
import { type ShardData, StoreWriter } from "./store.js";

/** What harvesting needs of a model. */
export interface HarvestModel {
  readonly identity: ModelIdentity;
  /** The sites captured, in forward order, with their widths. */
  readonly sites: readonly StoreSite[];
  /**
   * Activations of right-padded sequences ids [batch, seq] (attentionMask 1 on real tokens):
   * [batch * seq, d] row-major per site name.
   */
  run(
    ids: Int32Array,
    batch: number,
    seq: number,
    attentionMask: Int32Array,
  ): ReadonlyMap<string, Float32Array>;
}

/**
 * SHA-256 over a model directory's config.json and weight files (safetensors and their index),
 * each hashed whole, by name in sorted order: two directories hash equal when they hold the same
 * model, wherever they are.
 */
export async function modelHash(dir: string): Promise<string> {
  let files: string[];
  try {
    files = readdirSync(dir)
      .filter(
        (f) => f === "config.json" || f.endsWith(".safetensors") || f.endsWith(".safetensors.index.json"),
      )
      .sort();
  } catch (e) {
    throw new StoreError(`cannot read the model directory: ${ioMessage(e)}`, dir);
  }
  if (!files.includes("config.json")) throw new StoreError("the model directory has no config.json", dir);
  const outer = createHash("sha256");
  for (const f of files) {
    const h = createHash("sha256");
    for await (const chunk of createReadStream(join(dir, f))) h.update(chunk as Buffer);
    outer.update(`${f}\0${h.digest("hex")}\n`);
  }
  return outer.digest("hex");
}

/** The model's identity for a store: its directory name and `modelHash`. */
export async function modelIdentity(dir: string): Promise<ModelIdentity> {
  return { id: basename(resolve(dir)), hash: await modelHash(dir) };
}

/** Thrown by the capture at the deepest requested site to skip the rest of the forward pass. */
class StopForward extends Error {}

/**
 * A `HarvestModel` over a loaded Gemma 3: the sites given by name (display or Hugging Face
 * module names) must be [batch, seq, width] sites. The forward pass stops after the deepest of
 * them (as SAELens' `stop_at_layer`), so later layers and the unembedding are never computed.
 */
export function gemma3Harvester(
  model: Gemma3Model,
  identity: ModelIdentity,
  siteNames: readonly string[],
): HarvestModel {
  if (siteNames.length === 0) throw new StoreError("no sites to harvest");
  const order = new Map(listSites(model.config).map((s, i) => [s.name, i]));
  const parsed: Site[] = [];
  for (const n of siteNames) {
    const s = parseSite(n, model.config);
    if (s.axes.length !== 3 || s.axes[0] !== "batch" || s.axes[1] !== "seq")
      throw new StoreError(
        `site ${s.name} is [${s.axes.join(", ")}]; only [batch, seq, width] sites can be harvested`,
      );
    if (parsed.some((p) => p.name === s.name)) throw new StoreError(`site ${s.name} given twice`);
    parsed.push(s);
  }
  parsed.sort((a, b) => order.get(a.name)! - order.get(b.name)!);
  const storeSites = parsed.map((s) => ({ name: s.name, d: s.shape(model.config, 1, 1)[2] }));
  const deepest = parsed[parsed.length - 1];
  const backend = model.backend;
  return {
    identity,
    sites: storeSites,
    run(ids, batch, seq, attentionMask) {
      const captured = new Map<string, Float32Array>();
      const interventions: Intervention[] = parsed.map((site) => ({
        site,
        apply: (x: Tensor<"f32">) => {
          captured.set(site.name, x.data as Float32Array);
          if (site.name === deepest.name) throw new StopForward();
          return x;
        },
      }));
      try {
        model.forward(fromStorage(backend, "i32", [batch, seq], ids), {
          attentionMask: fromStorage(backend, "i32", [batch, seq], attentionMask),
          interventions,
          logits: deepest.name === sites.logits.name ? "all" : "none",
        });
      } catch (e) {
        if (!(e instanceof StopForward)) throw e;
      }
      return captured;
    },
  };
}

/** Kept rows of one forward batch. */
interface BatchRows {
  readonly tokens: number;
  readonly acts: Map<string, Float32Array>;
  readonly tokenIds: Int32Array;
  readonly positions: Int32Array;
  readonly docIds: Int32Array;
  /** Index (in the sequence stream) of the batch's first sequence. */
  readonly firstSequence: number;
  /** Kept rows per sequence, in order. */
  readonly perSequence: readonly number[];
}

/** Runs the model on `seqs` and gathers the kept rows (dropping the first `skip` kept rows of the first sequence). */
function runBatch(
  model: HarvestModel,
  seqs: readonly Sequence[],
  firstSequence: number,
  skip: number,
): BatchRows {
  const batch = seqs.length;
  let seq = 0;
  for (const s of seqs) seq = Math.max(seq, s.ids.length);
  const ids = new Int32Array(batch * seq);
  const mask = new Int32Array(batch * seq);
  const perSequence: number[] = [];
  const rows: number[] = [];
  for (const [b, s] of seqs.entries()) {
    ids.set(s.ids, b * seq);
    mask.fill(1, b * seq, b * seq + s.ids.length);
    let dropped = b === 0 ? skip : 0;
    let k = 0;
    for (let p = 0; p < s.ids.length; p++) {
      if (!s.keep[p]) continue;
      if (dropped > 0) {
        dropped--;
        continue;
      }
      rows.push(b * seq + p);
      k++;
    }
    perSequence.push(k);
  }
  const n = rows.length;
  const acts = new Map<string, Float32Array>();
  const tokenIds = new Int32Array(n);
  const positions = new Int32Array(n);
  const docIds = new Int32Array(n);
  for (const [i, r] of rows.entries()) {
    const b = Math.floor(r / seq);
    tokenIds[i] = ids[r];
    positions[i] = r - b * seq;
    docIds[i] = seqs[b].doc;
  }
  if (n > 0) {
    const out = model.run(ids, batch, seq, mask);
    for (const s of model.sites) {
      const src = out.get(s.name);
      if (src === undefined || src.length !== batch * seq * s.d)
        throw new StoreError(`the model returned no [${batch * seq}, ${s.d}] activations for ${s.name}`);
      const dst = new Float32Array(n * s.d);
      for (const [i, r] of rows.entries()) dst.set(src.subarray(r * s.d, (r + 1) * s.d), i * s.d);
      acts.set(s.name, dst);
    }
  } else {
    for (const s of model.sites) acts.set(s.name, new Float32Array(0));
  }
  return { tokens: n, acts, tokenIds, positions, docIds, firstSequence, perSequence };
}

/** Where to read sequences from and how to cut them. */
export interface SequenceSource {
  /** Tokenized documents, in the same order every time it is called (it is called again to resume). */
  readonly documents: () => AsyncIterable<TokenDocument> | Iterable<TokenDocument>;
  readonly context: number;
  readonly bos: number;
  readonly rules: MaskingRules;
  readonly longDocuments: LongDocuments;
}

/** Kept rows batch by batch, starting at `cursor`. */
async function* batchRows(
  model: HarvestModel,
  source: SequenceSource,
  batch: number,
  cursor: HarvestCursor,
): AsyncGenerator<BatchRows> {
  if (!Number.isSafeInteger(batch) || batch <= 0)
    throw new StoreError(`batch must be a positive integer, got ${batch}`);
  let index = 0;
  let pending: Sequence[] = [];
  let first = cursor.sequences;
  for await (const s of sequenceStream(source.documents(), source)) {
    if (index++ < cursor.sequences) continue;
    pending.push(s);
    if (pending.length === batch) {
      yield runBatch(model, pending, first, first === cursor.sequences ? cursor.skip : 0);
      first += pending.length;
      pending = [];
    }
  }
  if (pending.length > 0) yield runBatch(model, pending, first, first === cursor.sequences ? cursor.skip : 0);
}

function concatRows(parts: readonly BatchRows[], sites: readonly StoreSite[], limit: number): ShardData {
  const n = Math.min(
    limit,
    parts.reduce((a, p) => a + p.tokens, 0),
  );
  const acts = new Map(sites.map((s) => [s.name, new Float32Array(n * s.d)]));
  const tokenIds = new Int32Array(n);
  const positions = new Int32Array(n);
  const docIds = new Int32Array(n);
  let at = 0;
  for (const p of parts) {
    const k = Math.min(p.tokens, n - at);
    if (k <= 0) break;
    for (const s of sites) acts.get(s.name)!.set(p.acts.get(s.name)!.subarray(0, k * s.d), at * s.d);
    tokenIds.set(p.tokenIds.subarray(0, k), at);
    positions.set(p.positions.subarray(0, k), at);
    docIds.set(p.docIds.subarray(0, k), at);
    at += k;
  }
  return { acts, tokenIds, positions, docIds };
}

export interface HarvestProgress {
  /** Tokens in the store. */
  readonly tokens: number;
  /** The token limit, if any. */
  readonly target: number | undefined;
  /** Tokens added by this run. */
  readonly added: number;
  readonly seconds: number;
}

export interface HarvestOptions extends SequenceSource {
  readonly model: HarvestModel;
  /** Sequences per forward pass (default 8). */
  readonly batch?: number;
  /** Stop once the store holds this many tokens (default: the whole dataset). */
  readonly tokens?: number;
  readonly dtype?: StoreDType;
  /** A shard is written once this many tokens are pending (default 16,384), at a batch boundary. */
  readonly shardTokens?: number;
  /** Describes the data (file, hash, format, ...); recorded with the context and masking rules. */
  readonly dataset: { readonly [key: string]: JsonValue };
  readonly onProgress?: (p: HarvestProgress) => void;
}

export interface HarvestResult {
  readonly manifest: StoreManifest;
  /** Tokens in the store before this run. */
  readonly resumedFrom: number;
  readonly added: number;
  readonly seconds: number;
}

/** The dataset description a store records for these options. */
export function datasetDescription(o: HarvestOptions): { [key: string]: JsonValue } {
  return {
    ...o.dataset,
    context: o.context,
    long_documents: o.longDocuments,
    masking: maskingJson(o.rules),
  };
}

/** Harvests into the store at `dir`, creating it or continuing where it stopped. */
export async function harvestToStore(dir: string, o: HarvestOptions): Promise<HarvestResult> {
  const limit = o.tokens ?? Number.POSITIVE_INFINITY;
  if (!(limit > 0) || (Number.isFinite(limit) && !Number.isSafeInteger(limit)))
    throw new StoreError(`token limit must be a positive integer, got ${o.tokens}`);
  const shardTokens = o.shardTokens ?? 16_384;
  if (!Number.isSafeInteger(shardTokens) || shardTokens <= 0)
    throw new StoreError(`shard size must be a positive integer, got ${shardTokens}`);
  const writer = StoreWriter.open(dir, {
    model: o.model.identity,
    sites: o.model.sites,
    dtype: o.dtype ?? "f32",
    dataset: datasetDescription(o),
  });
  const started = performance.now();
  const resumedFrom = writer.manifest.tokens;
  const seconds = (): number => (performance.now() - started) / 1000;
  try {
    let stored = writer.manifest.tokens;
    const start = writer.manifest.cursor;
    if (writer.manifest.complete && stored >= limit) {
      return { manifest: writer.manifest, resumedFrom, added: 0, seconds: seconds() };
    }
    let pending: BatchRows[] = [];
    let pendingTokens = 0;
    let cursor: HarvestCursor = start;
    const flush = async (at: HarvestCursor, n = pendingTokens): Promise<void> => {
      if (n > 0) await writer.append(concatRows(pending, o.model.sites, n), at);
      stored += n;
      pending = [];
      pendingTokens = 0;
    };
    const report = (): void =>
      o.onProgress?.({
        tokens: stored + pendingTokens,
        target: o.tokens,
        added: stored + pendingTokens - resumedFrom,
        seconds: seconds(),
      });
    for await (const rows of batchRows(o.model, o, o.batch ?? 8, start)) {
      const room = limit - stored - pendingTokens;
      if (rows.tokens >= room) {
        pending.push(rows);
        // Find the sequence the limit cuts and how many of its kept rows are then stored.
        let left = room;
        let at: HarvestCursor = { sequences: rows.firstSequence + rows.perSequence.length, skip: 0 };
        for (const [i, k] of rows.perSequence.entries()) {
          if (k >= left) {
            const before = i === 0 && rows.firstSequence === start.sequences ? start.skip : 0;
            at =
              k === left
                ? { sequences: rows.firstSequence + i + 1, skip: 0 }
                : { sequences: rows.firstSequence + i, skip: before + left };
            break;
          }
          left -= k;
        }
        await flush(at, pendingTokens + room);
        writer.finish(at);
        report();
        return { manifest: writer.manifest, resumedFrom, added: stored - resumedFrom, seconds: seconds() };
      }
      pending.push(rows);
      pendingTokens += rows.tokens;
      cursor = { sequences: rows.firstSequence + rows.perSequence.length, skip: 0 };
      if (pendingTokens >= shardTokens) await flush(cursor);
      report();
    }
    await flush(cursor);
    writer.finish(cursor);
    if (writer.manifest.tokens === 0)
      throw new StoreError(
        "the dataset gave no tokens to store (every token was masked or the data is empty)",
        dir,
      );
    return { manifest: writer.manifest, resumedFrom, added: stored - resumedFrom, seconds: seconds() };
  } finally {
    writer.close();
  }
}

/** A batch streamed from the model. */
export interface StreamBatch {
  /** [n, d] f32 per site name. */
  readonly batch: Readonly<Record<string, Tensor>>;
  readonly tokenIds: Int32Array;
  readonly docIds: Int32Array;
  /** Resume point: the stream restarted from it continues after this batch. */
  readonly cursor: HarvestCursor;
}

export interface StreamOptions extends SequenceSource {
  readonly model: HarvestModel;
  readonly backend: Backend;
  /** Tokens per batch handed out. */
  readonly batchTokens: number;
  /** Sequences per forward pass (default 8). */
  readonly batch?: number;
  /** Start here (a cursor from an earlier batch). */
  readonly cursor?: HarvestCursor;
}

/**
 * Activations straight from the model, no storage: batches of exactly `batchTokens` rows (the last
 * may be smaller) in dataset order, one pass over the data.
 */
export async function* streamActivations(o: StreamOptions): AsyncGenerator<StreamBatch> {
  if (!Number.isSafeInteger(o.batchTokens) || o.batchTokens <= 0)
    throw new StoreError(`batch size must be a positive integer, got ${o.batchTokens}`);
  const start = o.cursor ?? { sequences: 0, skip: 0 };
  const sites = o.model.sites;
  let buffered: BatchRows[] = [];
  let bufferedTokens = 0;
  // Cursor bookkeeping: rows consumed of the oldest buffered batch, and per-sequence positions.
  let consumedOfFirst = 0;
  const emit = (n: number): StreamBatch => {
    const acts = new Map(sites.map((s) => [s.name, new Float32Array(n * s.d)]));
    const tokenIds = new Int32Array(n);
    const docIds = new Int32Array(n);
    let at = 0;
    let cursor: HarvestCursor = start;
    while (at < n) {
      const r = buffered[0];
      const k = Math.min(n - at, r.tokens - consumedOfFirst);
      for (const s of sites)
        acts
          .get(s.name)!
          .set(r.acts.get(s.name)!.subarray(consumedOfFirst * s.d, (consumedOfFirst + k) * s.d), at * s.d);
      tokenIds.set(r.tokenIds.subarray(consumedOfFirst, consumedOfFirst + k), at);
      docIds.set(r.docIds.subarray(consumedOfFirst, consumedOfFirst + k), at);
      consumedOfFirst += k;
      at += k;
      cursor = cursorWithin(r, consumedOfFirst, start);
      if (consumedOfFirst === r.tokens) {
        buffered.shift();
        consumedOfFirst = 0;
      }
    }
    bufferedTokens -= n;
    const batch: Record<string, Tensor> = {};
    for (const s of sites) batch[s.name] = fromStorage(o.backend, "f32", [n, s.d], acts.get(s.name)!);
    return { batch, tokenIds, docIds, cursor };
  };
  for await (const rows of batchRows(o.model, o, o.batch ?? 8, start)) {
    if (rows.tokens === 0) continue;
    buffered.push(rows);
    bufferedTokens += rows.tokens;
    while (bufferedTokens >= o.batchTokens) yield emit(o.batchTokens);
  }
  if (bufferedTokens > 0) yield emit(bufferedTokens);
  buffered = [];
}

/** The cursor after the first `consumed` kept rows of `rows`. */
function cursorWithin(rows: BatchRows, consumed: number, start: HarvestCursor): HarvestCursor {
  let left = consumed;
  for (const [i, k] of rows.perSequence.entries()) {
    if (left < k) {
      const before = i === 0 && rows.firstSequence === start.sequences ? start.skip : 0;
      return left === 0
        ? { sequences: rows.firstSequence + i, skip: before }
        : { sequences: rows.firstSequence + i, skip: before + left };
    }
    left -= k;
  }
  return { sequences: rows.firstSequence + rows.perSequence.length, skip: 0 };
}

/**
 * The trainers' pull interface (`BatchSource`) over a live model stream: one pass over the data,
 * each `next(tokens)` one stream batch. Asking for a different size restarts the stream at the
 * current cursor (re-tokenizing, not re-running, what came before it).
 */
export class ModelBatchSource {
  readonly sites: ReadonlyMap<string, number>;
  readonly fingerprint: string;
  private stream: { size: number; it: AsyncGenerator<StreamBatch> } | null = null;
  private position: HarvestCursor = { sequences: 0, skip: 0 };

  constructor(private readonly options: Omit<StreamOptions, "batchTokens" | "cursor">) {
    this.sites = new Map(options.model.sites.map((s) => [s.name, s.d]));
    this.fingerprint = createHash("sha256")
      .update(JSON.stringify([options.model.identity.hash, options.context, maskingJson(options.rules)]))
      .digest("hex");
  }

  /** The next `tokens` rows at `sites`, or null when fewer than `tokens` are left. */
  async next(
    tokens: number,
    sites: readonly string[],
  ): Promise<{ tokens: number; sites: ReadonlyMap<string, Float32Array> } | null> {
    for (const s of sites) if (!this.sites.has(s)) throw new StoreError(`the source has no site ${s}`);
    if (this.stream === null || this.stream.size !== tokens) {
      const it = streamActivations({ ...this.options, batchTokens: tokens, cursor: this.position });
      this.stream = { size: tokens, it };
    }
    const r = await this.stream.it.next();
    if (r.done || r.value.tokenIds.length < tokens) return null;
    this.position = r.value.cursor;
    return { tokens, sites: new Map(sites.map((s) => [s, r.value.batch[s].data as Float32Array])) };
  }

  cursor(): JsonValue {
    return { sequences: this.position.sequences, skip: this.position.skip };
  }

  seek(cursor: JsonValue): void {
    const c = typeof cursor === "object" && cursor !== null && !Array.isArray(cursor) ? cursor : {};
    const ok = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
    if (!ok(c.sequences) || !ok(c.skip))
      throw new StoreError(`not a model stream cursor: ${JSON.stringify(cursor)}`);
    this.position = { sequences: c.sequences, skip: c.skip };
    this.stream = null;
  }
}
