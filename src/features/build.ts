/**
 * `buildFeatureDatabase`: one pass of the model over a corpus, encoding every token with one or
 * more dictionaries at once, streaming the activations into per-feature statistics (stats.ts) and
 * writing the result to a SQLite database (db.ts), then the decoder-only parts of a feature page
 * (directions.ts: logit effects, nearest features).
 *
 * Resumable: sequences come from the dataset in a deterministic order, in forward batches of a
 * fixed size. Every `checkpointTokens` tokens, at a batch boundary, one transaction stores the
 * sequences read since the last one, every accumulator's arrays and the cursor; a killed build
 * started again with the same inputs restores them and continues with the same batches, so it ends
 * with the same database content as an uninterrupted run (timing in `meta` aside).
 *
 * Masking follows harvesting (src/activations/sequences.ts): BOS and pad tokens, and chat-template
 * tokens of conversations, are not counted; they appear in windows with activation 0.
 *
 * The data is a text / JSONL / chat file (the model runs, stopping after the deepest read site), or
 * an activation store harvested from the same model (its rows are encoded directly; a store keeps
 * only counted tokens, so its windows have no BOS).
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  type DatasetFile,
  fingerprintFile,
  readDocuments,
  tokenizeDocuments,
} from "../activations/documents.js";
import { modelHash } from "../activations/harvest.js";
import { maskingRules, type Sequence, sequenceStream } from "../activations/sequences.js";
import { ActivationStore } from "../activations/store.js";
import type { Backend } from "../core/backend.js";
import { FeaturesError } from "../core/errors.js";
import { reshape } from "../core/ops/shape.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import { dictionarySites } from "../dictionaries/sites.js";
import { type Dictionary, isLayerwise } from "../dictionaries/types.js";
import type { ChatTemplate } from "../io/chat.js";
import type { Tokenizer } from "../io/tokenizer.js";
import type { Intervention } from "../model/gemma3/interventions.js";
import type { Gemma3Model } from "../model/gemma3/model.js";
import { listSites, type Site } from "../model/gemma3/sites.js";
import { bf16Blob, type Cursor, FeatureDatabase, int32Blob, type SpaceRow } from "./db.js";
import { decoderMatrix, logitEffects, nearestByCosine, writesResidual } from "./directions.js";
import { DEFAULT_STATS_OPTIONS, FeatureStats, type StatsOptions } from "./stats.js";

export interface BuildDictionary {
  /** The folder it was loaded from (recorded, and hashed for resume checks). */
  readonly path: string;
  readonly dictionary: Dictionary;
}

/** An activation store (src/activations) holding the dictionaries' read sites. */
export interface StoreData {
  readonly store: string;
}

export interface BuildProgress {
  readonly tokens: number;
  /** The token limit, or null without one. */
  readonly limit: number | null;
  readonly sequences: number;
  readonly seconds: number;
  readonly phase: "reading" | "finishing";
}

export interface BuildOptions {
  readonly model: Gemma3Model;
  /** The model's checkpoint folder (hashed: a resume must use the same weights). */
  readonly modelDir: string;
  readonly tokenizer: Tokenizer;
  /** Needed for the "chat" format. */
  readonly chatTemplate: ChatTemplate | null;
  readonly dictionaries: readonly BuildDictionary[];
  /** A text / JSONL / chat file, or an activation store harvested from the same model (no forward passes then). */
  readonly data: DatasetFile | StoreData;
  /** Tokens to count (default: the whole dataset). */
  readonly maxTokens?: number;
  /** Tokens per model sequence (default 128); longer documents are split (text) or truncated (chat). */
  readonly context?: number;
  /** Sequences per forward pass (default 8). */
  readonly batch?: number;
  /** Tokens between checkpoints (default 65,536). */
  readonly checkpointTokens?: number;
  readonly stats?: Partial<StatsOptions>;
  /** Logit effects listed per side (default 10) and nearest features (default 10). */
  readonly logitCount?: number;
  readonly neighbourCount?: number;
  readonly onProgress?: (p: BuildProgress) => void;
}

export interface BuildSummary {
  readonly path: string;
  /** True when an earlier, interrupted build was continued. */
  readonly resumed: boolean;
  readonly tokens: number;
  readonly sequences: number;
  readonly spaces: number;
  readonly features: number;
  /** Features that never fired. */
  readonly dead: number;
  readonly seconds: number;
  readonly tokensPerSecond: number;
}

/** SHA-256 over the regular files of a folder (name and content, sorted), or of one file. */
export function pathHash(path: string): string {
  const outer = createHash("sha256");
  const st = statSync(path);
  const files = st.isDirectory()
    ? readdirSync(path)
        .filter((f) => statSync(join(path, f)).isFile())
        .sort()
    : [null];
  for (const f of files) {
    const h = createHash("sha256");
    h.update(readFileSync(f === null ? path : join(path, f)));
    outer.update(`${f ?? ""}\0${h.digest("hex")}\n`);
  }
  return outer.digest("hex");
}

interface Space {
  readonly row: SpaceRow;
  readonly dictionary: Dictionary;
  readonly site: Site;
  readonly stats: FeatureStats;
  /** Feature acts of a batch's [rows, d_in] activations at the site. */
  readonly encode: (x: Tensor<"f32">) => { offsets: Int32Array; indices: Int32Array; values: Float32Array };
}

function spacesOf(dicts: readonly BuildDictionary[], model: Gemma3Model, options: StatsOptions): Space[] {
  const out: Space[] = [];
  for (const { path, dictionary } of dicts) {
    const sites = dictionarySites(dictionary.spec, model.config);
    const residual = writesResidual(dictionary.spec, sites, model.config);
    const layered = isLayerwise(dictionary) ? dictionary : null;
    sites.read.forEach((site, i) => {
      const layer = layered === null ? null : i;
      const space = out.length;
      out.push({
        row: {
          space,
          dictionary: path,
          architecture: dictionary.spec.architecture,
          layer,
          site: site.name,
          width: dictionary.spec.width,
          hookIn: dictionary.spec.hookIn,
          hookOut: dictionary.spec.hookOut,
          writesResidual: residual,
        },
        dictionary,
        site,
        stats: new FeatureStats(dictionary.spec.width, options, space),
        encode: (x) => {
          const acts = layered === null ? dictionary.encode(x) : layered.encodeLayer(i, x);
          return acts.toSparse();
        },
      });
    });
  }
  return out;
}

/** Thrown by the capture at the deepest read site to skip the rest of the forward pass. */
class StopForward extends Error {}

function checkPositive(v: number, name: string, allowInfinity = false): void {
  if (allowInfinity && v === Number.POSITIVE_INFINITY) return;
  if (!Number.isSafeInteger(v) || v <= 0)
    throw new FeaturesError(`must be a positive integer, got ${v}`, name);
}

/** Describes what a resume must match. */
function runRecord(
  o: BuildOptions,
  data: Record<string, string | number>,
  stats: StatsOptions,
  modelSha: string,
) {
  return {
    model: { dir: resolve(o.modelDir), hash: modelSha },
    data,
    dictionaries: o.dictionaries.map((d) => ({ path: d.path, hash: pathHash(d.path) })),
    options: {
      max_tokens: o.maxTokens === undefined || !Number.isFinite(o.maxTokens) ? null : o.maxTokens,
      context: o.context ?? 128,
      batch: o.batch ?? 8,
      top_k: stats.topK,
      groups: stats.groups,
      group_examples: stats.groupExamples,
      fine_bins: stats.fineBins,
      before: stats.before,
      after: stats.after,
      logit_count: o.logitCount ?? 10,
      neighbour_count: o.neighbourCount ?? 10,
    },
  };
}

/** The first field where two run records differ, as a dotted path, or null. */
function firstDifference(a: unknown, b: unknown, at = ""): string | null {
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") {
    return JSON.stringify(a) === JSON.stringify(b) ? null : at || "(root)";
  }
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  for (const k of new Set([...ka, ...kb])) {
    const d = firstDifference(
      (a as Record<string, unknown>)[k],
      (b as Record<string, unknown>)[k],
      at === "" ? k : `${at}.${k}`,
    );
    if (d !== null) return d;
  }
  return null;
}

/** Builds (or resumes building) the feature database at `out`. */
export async function buildFeatureDatabase(out: string, o: BuildOptions): Promise<BuildSummary> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const stats: StatsOptions = { ...DEFAULT_STATS_OPTIONS, ...o.stats };
  const limit = o.maxTokens ?? Number.POSITIVE_INFINITY;
  checkPositive(limit, "--tokens", true);
  const context = o.context ?? 128;
  if (!Number.isSafeInteger(context) || context < 2)
    throw new FeaturesError(`must be an integer >= 2, got ${context}`, "--context");
  const batchSize = o.batch ?? 8;
  checkPositive(batchSize, "--batch");
  const every = o.checkpointTokens ?? 65_536;
  checkPositive(every, "--checkpoint-tokens");
  if (o.dictionaries.length === 0) throw new FeaturesError("no dictionaries given", "--dict");
  const modelSha = await modelHash(o.modelDir);
  const spaces = spacesOf(o.dictionaries, o.model, stats);
  let data: Record<string, string | number>;
  if ("store" in o.data) {
    const store = ActivationStore.open(o.data.store);
    const m = store.manifest;
    if (m.model.hash !== modelSha)
      throw new FeaturesError(
        `the store was harvested from another model (${m.model.id}, hash ${m.model.hash.slice(0, 12)}…) than ${o.modelDir}`,
        o.data.store,
      );
    const have = new Set(m.sites.map((x) => x.name));
    for (const s of spaces)
      if (!have.has(s.site.name))
        throw new FeaturesError(
          `the store has no activations at ${s.site.name}, which ${s.row.dictionary} reads (it has ${[...have].join(", ")})`,
          o.data.store,
        );
    data = { store: resolve(o.data.store), content_hash: m.content_hash, tokens: m.tokens };
  } else {
    if (o.data.format === "chat" && o.chatTemplate === null)
      throw new FeaturesError("conversations need a chat template and the model has none", o.data.path);
    const fp = await fingerprintFile(o.data.path);
    data = { path: resolve(o.data.path), format: o.data.format, text_field: o.data.textField, ...fp };
  }
  const run = runRecord(o, data, stats, modelSha);

  let db: FeatureDatabase;
  let resumed = false;
  if (existsSync(out)) {
    db = FeatureDatabase.open(out);
    if (db.status === "complete") {
      db.close();
      throw new FeaturesError("this build is already complete; delete the file or choose another --out", out);
    }
    const diff = firstDifference(db.meta("run"), run);
    if (diff !== null) {
      db.close();
      throw new FeaturesError(
        `an unfinished build with other inputs (${diff} differs); delete the file or use the same command to resume`,
        out,
      );
    }
    resumed = true;
  } else {
    db = FeatureDatabase.create(out, run);
    db.transaction(() => {
      db.insertSpaces(spaces.map((s) => s.row));
      db.insertVocab(Array.from({ length: o.model.config.vocab }, (_, id) => vocabText(o.tokenizer, id)));
    });
  }
  try {
    const cursor = db.cursor;
    if (cursor.sequences > 0) {
      for (const s of spaces) {
        const state = db.loadCheckpoint(s.row.space);
        if (state === null) throw new FeaturesError(`the checkpoint of space ${s.row.space} is missing`, out);
        s.stats.restore(state);
      }
    }
    const c = await readCorpus(db, spaces, o, cursor, { limit, context, batchSize, every, started });
    const summary = finish(db, spaces, o, c, seconds, resumed);
    return summary;
  } finally {
    db.close();
  }
}

function vocabText(tok: Tokenizer, id: number): string {
  if (id >= tok.vocabSize) return `<unused${id}>`;
  if (tok.isSpecial(id)) return tok.tokenString(id);
  return tok.decode([id]);
}

interface ReadSettings {
  readonly limit: number;
  readonly context: number;
  readonly batchSize: number;
  readonly every: number;
  readonly started: number;
}

/** A sequence to count, with its activations at the read sites when they come from a store. */
interface Item {
  readonly seq: Sequence;
  /** Site name -> [tokens, d] rows (a store's), or null when the model must run. */
  readonly acts: ReadonlyMap<string, Float32Array> | null;
}

/** Sequences of a text / JSONL / chat dataset, as harvesting makes them. */
async function* corpusItems(o: BuildOptions, data: DatasetFile, context: number): AsyncGenerator<Item> {
  const config = o.model.config;
  const bos = config.bosTokenId ?? 2;
  const pad = config.padTokenId ?? 0;
  const rules = maskingRules(data.format, { bos, pad });
  const docs = tokenizeDocuments(readDocuments(data), o.tokenizer, o.chatTemplate);
  const stream = sequenceStream(docs, {
    context,
    bos,
    rules,
    longDocuments: data.format === "chat" ? "truncate" : "split",
  });
  for await (const seq of stream) yield { seq, acts: null };
}

/**
 * Sequences of an activation store, in store order: consecutive rows of one document with rising
 * positions form a sequence (a store keeps only counted tokens, so every row is kept; a sequence
 * cut by a shard boundary is joined again).
 */
async function* storeItems(store: ActivationStore, siteNames: readonly string[]): AsyncGenerator<Item> {
  const dims = new Map(store.sites.map((s) => [s.name, s.d]));
  let ids: number[] = [];
  let doc = -1;
  let last = -1;
  let rows = new Map<string, Float32Array[]>();
  const flush = (): Item | null => {
    if (ids.length === 0) return null;
    const acts = new Map<string, Float32Array>();
    for (const name of siteNames) {
      const parts = rows.get(name) ?? [];
      const out = new Float32Array(ids.length * (dims.get(name) ?? 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      acts.set(name, out);
    }
    const item: Item = {
      seq: { ids: Int32Array.from(ids), keep: new Uint8Array(ids.length).fill(1), doc },
      acts,
    };
    ids = [];
    rows = new Map();
    return item;
  };
  for (let shard = 0; shard < store.manifest.shards.length; shard++) {
    const data = await store.readShard(shard, siteNames);
    const n = data.tokenIds.length;
    let from = 0;
    const take = (to: number) => {
      for (const name of siteNames) {
        const d = dims.get(name) ?? 0;
        const a = data.acts.get(name);
        if (a === undefined) throw new FeaturesError(`shard ${shard} has no site ${name}`, store.dir);
        let list = rows.get(name);
        if (list === undefined) {
          list = [];
          rows.set(name, list);
        }
        list.push(a.subarray(from * d, to * d));
      }
      for (let i = from; i < to; i++) ids.push(data.tokenIds[i]);
      from = to;
    };
    for (let i = 0; i < n; i++) {
      const starts = data.docIds[i] !== doc || data.positions[i] <= last;
      if (starts) {
        take(i);
        const item = flush();
        if (item !== null) yield item;
        doc = data.docIds[i];
      }
      last = data.positions[i];
    }
    take(n);
  }
  const item = flush();
  if (item !== null) yield item;
}

async function readCorpus(
  db: FeatureDatabase,
  spaces: readonly Space[],
  o: BuildOptions,
  cursor: Cursor,
  r: ReadSettings,
): Promise<Cursor> {
  const stream =
    "store" in o.data
      ? storeItems(ActivationStore.open(o.data.store), [...new Set(spaces.map((s) => s.site.name))])
      : corpusItems(o, o.data, r.context);
  let index = 0;
  let sequences = cursor.sequences;
  let tokens = cursor.tokens;
  let sinceCommit = 0;
  let pending: Item[] = [];
  let planned = tokens;
  const unsaved: { seq: Sequence; index: number }[] = [];
  const progress = (phase: BuildProgress["phase"]) =>
    o.onProgress?.({
      tokens,
      limit: Number.isFinite(r.limit) ? r.limit : null,
      sequences,
      seconds: (performance.now() - r.started) / 1000,
      phase,
    });
  const commit = () => {
    db.transaction(() => {
      for (const u of unsaved) db.insertSequence(u.index, u.seq.doc, u.seq.ids, u.seq.keep);
      for (const s of spaces) db.saveCheckpoint(s.row.space, s.stats.save());
      db.setMeta("cursor", { sequences, tokens });
    });
    unsaved.length = 0;
    sinceCommit = 0;
  };
  const runPending = () => {
    const first = sequences;
    if (pending[0].acts === null)
      runBatch(
        o.model,
        spaces,
        pending.map((p) => p.seq),
        first,
      );
    else runStoreBatch(o.model.backend, spaces, pending, first);
    pending.forEach((p, i) => {
      unsaved.push({ seq: p.seq, index: first + i });
    });
    sequences += pending.length;
    let n = 0;
    for (const p of pending) for (const k of p.seq.keep) n += k;
    tokens += n;
    sinceCommit += n;
    pending = [];
    progress("reading");
    if (sinceCommit >= r.every) commit();
  };
  progress("reading");
  for await (const item of stream) {
    if (planned >= r.limit) break;
    let kept = 0;
    for (const k of item.seq.keep) kept += k;
    // empty sequences are not counted, so that the cursor (non-empty sequences) indexes the stream
    if (kept === 0) continue;
    if (index++ < cursor.sequences) continue;
    let it = item;
    if (planned + kept > r.limit) it = cut(it, r.limit - planned);
    for (const k of it.seq.keep) planned += k;
    pending.push(it);
    if (pending.length === r.batchSize) runPending();
  }
  if (pending.length > 0) runPending();
  commit();
  return { sequences, tokens };
}

/** The item up to (and including) its sequence's `n`-th kept token. */
function cut(item: Item, n: number): Item {
  const s = item.seq;
  let seen = 0;
  for (let p = 0; p < s.ids.length; p++) {
    seen += s.keep[p];
    if (seen === n) {
      const acts =
        item.acts === null
          ? null
          : new Map(
              [...item.acts].map(([name, a]) => [name, a.slice(0, ((p + 1) * a.length) / s.ids.length)]),
            );
      return { seq: { ids: s.ids.slice(0, p + 1), keep: s.keep.slice(0, p + 1), doc: s.doc }, acts };
    }
  }
  return item;
}

/** A batch of store sequences: their rows are encoded directly, no model run. */
function runStoreBatch(
  backend: Backend,
  spaces: readonly Space[],
  items: readonly Item[],
  first: number,
): void {
  const total = items.reduce((n, it) => n + it.seq.ids.length, 0);
  for (const s of spaces) {
    const name = s.site.name;
    let d = 0;
    const rows: Float32Array[] = [];
    for (const it of items) {
      const a = it.acts?.get(name);
      if (a === undefined) throw new FeaturesError(`the store has no activations at ${name}`);
      d = a.length / it.seq.ids.length;
      rows.push(a);
    }
    const x = new Float32Array(total * d);
    let at = 0;
    for (const a of rows) {
      x.set(a, at);
      at += a.length;
    }
    const csr = s.encode(fromStorage(backend, "f32", [total, d], x));
    let row0 = 0;
    items.forEach((it, b) => {
      s.stats.observe(first + b, it.seq.keep, { ...csr, row0, length: it.seq.ids.length });
      row0 += it.seq.ids.length;
    });
  }
}

/** One forward pass over right-padded sequences; every space observes its sequences. */
function runBatch(
  model: Gemma3Model,
  spaces: readonly Space[],
  seqs: readonly Sequence[],
  first: number,
): void {
  const batch = seqs.length;
  let T = 0;
  for (const s of seqs) T = Math.max(T, s.ids.length);
  const ids = new Int32Array(batch * T);
  const mask = new Int32Array(batch * T);
  seqs.forEach((s, b) => {
    ids.set(s.ids, b * T);
    mask.fill(1, b * T, b * T + s.ids.length);
  });
  const unique = new Map<string, Site>();
  for (const s of spaces) unique.set(s.site.name, s.site);
  const order = new Map(listSites(model.config).map((site, i) => [site.name, i]));
  const deepest = [...unique.values()].sort((a, b) => order.get(b.name)! - order.get(a.name)!)[0];
  const captured = new Map<string, Tensor<"f32">>();
  const interventions: Intervention[] = [...unique.values()].map((site) => ({
    site,
    apply: (x: Tensor<"f32">) => {
      captured.set(site.name, x);
      if (site.name === deepest.name && captured.size === unique.size) throw new StopForward();
      return x;
    },
  }));
  const backend = model.backend;
  try {
    model.forward(fromStorage(backend, "i32", [batch, T], ids), {
      attentionMask: fromStorage(backend, "i32", [batch, T], mask),
      interventions,
      logits: "none",
    });
  } catch (e) {
    if (!(e instanceof StopForward)) throw e;
  }
  for (const s of spaces) {
    const x = captured.get(s.site.name);
    if (x === undefined) throw new FeaturesError(`the forward pass did not reach ${s.site.name}`);
    const csr = s.encode(reshape(x, [batch * T, x.shape[x.rank - 1]]));
    seqs.forEach((seq, b) => {
      s.stats.observe(first + b, seq.keep, { ...csr, row0: b * T, length: seq.ids.length });
    });
  }
}

/** Writes the result tables from the accumulators and the dictionaries' decoders. */
function finish(
  db: FeatureDatabase,
  spaces: readonly Space[],
  o: BuildOptions,
  c: Cursor,
  seconds: () => number,
  resumed: boolean,
): BuildSummary {
  o.onProgress?.({
    tokens: c.tokens,
    limit: o.maxTokens !== undefined && Number.isFinite(o.maxTokens) ? o.maxTokens : null,
    sequences: c.sequences,
    seconds: seconds(),
    phase: "finishing",
  });
  const logitCount = o.logitCount ?? 10;
  const neighbourCount = o.neighbourCount ?? 10;
  const cache = new Map<number, Int32Array>();
  const seqIds = (i: number): Int32Array => {
    let v = cache.get(i);
    if (v === undefined) {
      if (cache.size >= 4096) cache.clear();
      v = db.sequenceIds(i);
      cache.set(i, v);
    }
    return v;
  };
  let features = 0;
  let dead = 0;
  db.transaction(() => {
    const w = db.writers();
    for (const s of spaces) {
      const sp = s.row.space;
      const layer = s.row.layer;
      const decoder = decoderMatrix(s.dictionary, layer);
      const effects = s.row.writesResidual ? logitEffects(o.model, decoder.residual, logitCount) : null;
      const near = nearestByCosine(
        o.model.backend,
        decoder.concatenated,
        decoder.concatWidth,
        neighbourCount,
      );
      for (let f = 0; f < s.row.width; f++) {
        const st = s.stats.feature(f);
        features++;
        if (st.firings === 0) dead++;
        const tokens = s.stats.tokens;
        w.feature.run(
          sp,
          f,
          st.firings,
          tokens > 0 ? st.firings / tokens : 0,
          st.firings > 0 ? st.sum / st.firings : 0,
          st.max,
          Buffer.from(st.histogram.buffer, st.histogram.byteOffset, st.histogram.byteLength),
        );
        const hits = new Map<number, number>();
        const writeExample = (grp: number, rank: number, e: (typeof st.top)[number]) => {
          const ids = seqIds(e.sequence).subarray(e.start, e.start + e.acts.length);
          // only top contexts are searched by text
          const text = grp === 0 ? db.tokenTexts(ids).join("") : null;
          w.example.run(
            sp,
            f,
            grp,
            rank,
            e.sequence,
            e.position,
            e.activation,
            e.start,
            int32Blob(ids),
            bf16Blob(e.acts),
            text,
          );
          return ids;
        };
        st.top.forEach((e, rank) => {
          const ids = writeExample(0, rank, e);
          for (const t of new Set(ids)) hits.set(t, (hits.get(t) ?? 0) + 1);
        });
        for (const [t, n] of [...hits.entries()].sort((a, b) => a[0] - b[0])) w.contextToken.run(t, sp, f, n);
        st.groups.forEach((g, gi) => {
          w.interval.run(sp, f, gi + 1, g.lo, g.hi, g.count);
          g.examples.forEach((e, rank) => {
            writeExample(gi + 1, rank, e);
          });
        });
        if (effects !== null) {
          effects.top[f].forEach((e, rank) => {
            w.logit.run(sp, f, 1, rank, e.id, e.value);
          });
          effects.bottom[f].forEach((e, rank) => {
            w.logit.run(sp, f, -1, rank, e.id, e.value);
          });
        }
        near[f].forEach((n, rank) => {
          w.neighbour.run(sp, f, rank, n.feature, n.cosine);
        });
      }
    }
    db.dropCheckpoints();
    const summary = { tokens: c.tokens, sequences: c.sequences, spaces: spaces.length, features, dead };
    db.setMeta("summary", summary);
    db.setMeta("status", "complete");
  });
  db.setMeta("timing", { seconds: seconds(), finished_at: new Date().toISOString() });
  db.compact();
  const secs = seconds();
  return {
    path: db.path,
    resumed,
    tokens: c.tokens,
    sequences: c.sequences,
    spaces: spaces.length,
    features,
    dead,
    seconds: secs,
    tokensPerSecond: c.tokens / secs,
  };
}
