/**
 * The feature statistics database: one SQLite file per `features build` run, through better-sqlite3
 * (12.x: synchronous, so a build's checkpoint is one transaction between two forward passes and a
 * reader needs no event-loop plumbing; the most used and maintained SQLite binding for Node, and it
 * builds from its bundled SQLite source where no prebuilt binary can be fetched). Node 20 has no
 * `node:sqlite`; sql.js keeps the whole database in memory and writes it out whole, which defeats
 * incremental commits.
 *
 * Tables (format "glassbox-features", version 1):
 * - `meta(key, value)`: JSON values: `format`, `format_version`, `status` ("building" | "complete"),
 *   `run` (model, dataset, dictionaries, options: what a resume must match), `cursor` (sequences and
 *   tokens consumed at the last commit), `summary` (written when complete), `timing`.
 * - `spaces(space, dictionary, architecture, layer, site, width, hook_in, hook_out, writes_residual)`:
 *   one per dictionary, one per source layer of a CLT.
 * - `vocab(id, text)`: every token id's display text, so pages need no tokenizer.
 * - `sequences(sequence, doc, ids, keep)`: the corpus sequences read (int32 / uint8 blobs).
 * - `checkpoint(space, name, data)`: the accumulators' arrays while building (dropped when complete).
 * - `features(space, feature, firings, density, mean, max, histogram)`: histogram = uint32 blob.
 * - `examples(space, feature, grp, rank, sequence, position, activation, start, ids, acts, text)`:
 *   grp 0 = top contexts, g >= 1 = interval g; ids int32 and acts bfloat16 blobs of the window;
 *   text (the window decoded) only for grp 0, for substring search.
 * - `intervals(space, feature, grp, lo, hi, count)`, `logits(space, feature, sign, rank, token,
 *   value)` (sign 1 = promoted, -1 = suppressed), `neighbours(space, feature, rank, other, cosine)`,
 *   `context_tokens(token, space, feature, hits)`: distinct tokens of the top contexts.
 */
import { closeSync, existsSync, openSync, readSync } from "node:fs";
import Database from "better-sqlite3";
import { FeaturesError } from "../core/errors.js";
import { bf16ToF32, f32ToBf16 } from "../core/half.js";
import type {
  ContextExample,
  FeaturePage,
  FeatureSpaceInfo,
  IntervalGroup,
  LogitEffect,
  NeighbourFeature,
} from "./page.js";
import { HIST_BINS, histogramLowerEdge, histogramUpperEdge, type StatsState } from "./stats.js";

export const FEATURES_FORMAT = "glassbox-features";
export const FEATURES_FORMAT_VERSION = 1;

type Db = Database.Database;

const SCHEMA = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE spaces (
  space INTEGER PRIMARY KEY, dictionary TEXT NOT NULL, architecture TEXT NOT NULL, layer INTEGER,
  site TEXT NOT NULL, width INTEGER NOT NULL, hook_in TEXT, hook_out TEXT, writes_residual INTEGER NOT NULL);
CREATE TABLE vocab (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE sequences (sequence INTEGER PRIMARY KEY, doc INTEGER NOT NULL, ids BLOB NOT NULL, keep BLOB NOT NULL);
CREATE TABLE checkpoint (space INTEGER NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (space, name)) WITHOUT ROWID;
CREATE TABLE features (
  space INTEGER NOT NULL, feature INTEGER NOT NULL, firings INTEGER NOT NULL, density REAL NOT NULL,
  mean REAL NOT NULL, max REAL NOT NULL, histogram BLOB NOT NULL, PRIMARY KEY (space, feature)) WITHOUT ROWID;
CREATE TABLE examples (
  space INTEGER NOT NULL, feature INTEGER NOT NULL, grp INTEGER NOT NULL, rank INTEGER NOT NULL,
  sequence INTEGER NOT NULL, position INTEGER NOT NULL, activation REAL NOT NULL, start INTEGER NOT NULL,
  ids BLOB NOT NULL, acts BLOB NOT NULL, text TEXT,
  PRIMARY KEY (space, feature, grp, rank)) WITHOUT ROWID;
CREATE TABLE intervals (
  space INTEGER NOT NULL, feature INTEGER NOT NULL, grp INTEGER NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL,
  count INTEGER NOT NULL, PRIMARY KEY (space, feature, grp)) WITHOUT ROWID;
CREATE TABLE logits (
  space INTEGER NOT NULL, feature INTEGER NOT NULL, sign INTEGER NOT NULL, rank INTEGER NOT NULL,
  token INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY (space, feature, sign, rank)) WITHOUT ROWID;
CREATE INDEX logits_by_token ON logits (token, sign, value);
CREATE TABLE neighbours (
  space INTEGER NOT NULL, feature INTEGER NOT NULL, rank INTEGER NOT NULL, other INTEGER NOT NULL,
  cosine REAL NOT NULL, PRIMARY KEY (space, feature, rank)) WITHOUT ROWID;
CREATE TABLE context_tokens (
  token INTEGER NOT NULL, space INTEGER NOT NULL, feature INTEGER NOT NULL, hits INTEGER NOT NULL,
  PRIMARY KEY (token, space, feature)) WITHOUT ROWID;
`;

/** Tables whose rows are a run's results (compared by the resume test; `meta` holds timing too). */
export const RESULT_TABLES = [
  "spaces",
  "vocab",
  "sequences",
  "features",
  "examples",
  "intervals",
  "logits",
  "neighbours",
  "context_tokens",
] as const;

export interface SpaceRow {
  readonly space: number;
  readonly dictionary: string;
  readonly architecture: string;
  readonly layer: number | null;
  readonly site: string;
  readonly width: number;
  readonly hookIn: string | null;
  readonly hookOut: string | null;
  /** Whether the decoder writes into the residual stream's space (logit effects exist). */
  readonly writesResidual: boolean;
}

export interface Cursor {
  /** Corpus sequences consumed (a forward-batch boundary). */
  readonly sequences: number;
  /** Tokens counted. */
  readonly tokens: number;
}

export function int32Blob(a: Int32Array | readonly number[]): Buffer {
  const t = a instanceof Int32Array ? a : Int32Array.from(a);
  return Buffer.from(t.buffer, t.byteOffset, t.byteLength);
}

export function float32Blob(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Float32 values rounded to bfloat16 (the per-token activations of stored windows). */
export function bf16Blob(a: Float32Array): Buffer {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f32ToBf16(a[i]);
  return Buffer.from(out.buffer);
}

export function blobBf16(b: Buffer, what: string): Float32Array {
  const h = blobAs(b, 2, (x) => new Uint16Array(x), what);
  return Float32Array.from(h, bf16ToF32);
}

function blobAs<T>(b: Buffer, bytesPer: number, make: (buf: ArrayBuffer) => T, what: string): T {
  if (!Buffer.isBuffer(b) || b.byteLength % bytesPer !== 0) throw new FeaturesError(`malformed ${what} blob`);
  const copy = new ArrayBuffer(b.byteLength);
  new Uint8Array(copy).set(b);
  return make(copy);
}

export const blobInt32 = (b: Buffer, what: string): Int32Array =>
  blobAs(b, 4, (x) => new Int32Array(x), what);
export const blobFloat32 = (b: Buffer, what: string): Float32Array =>
  blobAs(b, 4, (x) => new Float32Array(x), what);
export const blobUint32 = (b: Buffer, what: string): Uint32Array =>
  blobAs(b, 4, (x) => new Uint32Array(x), what);

const SQLITE_MAGIC = "SQLite format 3\0";

function looksLikeSqlite(path: string): boolean {
  const fd = openSync(path, "r");
  try {
    const head = Buffer.alloc(16);
    const n = readSync(fd, head, 0, 16, 0);
    return n === 16 && head.toString("latin1") === SQLITE_MAGIC;
  } finally {
    closeSync(fd);
  }
}

/** Runs `fn`, turning SQLite errors into a FeaturesError naming the file. */
function guarded<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof FeaturesError) throw e;
    if (e instanceof Database.SqliteError) throw new FeaturesError(`database error: ${e.message}`, path);
    throw e;
  }
}

export class FeatureDatabase {
  readonly path: string;
  private readonly db: Db;
  private readonly statements = new Map<string, Database.Statement>();
  private vocab: string[] | null = null;

  private constructor(path: string, db: Db) {
    this.path = path;
    this.db = db;
  }

  /** A prepared statement, prepared once per connection. */
  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (st === undefined) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  /** Creates a new database (the file must not exist) with the schema and `run` recorded. */
  static create(path: string, run: unknown): FeatureDatabase {
    if (existsSync(path)) throw new FeaturesError("already exists", path);
    return guarded(path, () => {
      const db = new Database(path);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      const f = new FeatureDatabase(path, db);
      db.transaction(() => {
        db.exec(SCHEMA);
        f.setMeta("format", FEATURES_FORMAT);
        f.setMeta("format_version", FEATURES_FORMAT_VERSION);
        f.setMeta("status", "building");
        f.setMeta("run", run);
        f.setMeta("cursor", { sequences: 0, tokens: 0 });
      })();
      return f;
    });
  }

  /** Opens an existing database, checking that it is one of ours and of a version this code reads. */
  static open(path: string, options: { readonly readonly?: boolean } = {}): FeatureDatabase {
    if (!existsSync(path)) throw new FeaturesError("no such feature database", path);
    if (!looksLikeSqlite(path))
      throw new FeaturesError("not a SQLite database (corrupt or another kind of file)", path);
    return guarded(path, () => {
      const db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: true });
      const f = new FeatureDatabase(path, db);
      let format: unknown;
      let version: unknown;
      try {
        const check = db.pragma("quick_check", { simple: true });
        if (check !== "ok") throw new FeaturesError(`the database is damaged: ${String(check)}`, path);
        format = f.meta("format");
        version = f.meta("format_version");
      } catch (e) {
        db.close();
        if (e instanceof FeaturesError) throw e;
        throw new FeaturesError(
          `not a glassbox feature database (${e instanceof Error ? e.message : String(e)})`,
          path,
        );
      }
      if (format !== FEATURES_FORMAT) {
        db.close();
        throw new FeaturesError(`not a glassbox feature database (format ${JSON.stringify(format)})`, path);
      }
      if (version !== FEATURES_FORMAT_VERSION) {
        db.close();
        throw new FeaturesError(
          `format version ${JSON.stringify(version)}; this glassbox reads version ${FEATURES_FORMAT_VERSION}`,
          path,
        );
      }
      if (!options.readonly) {
        db.pragma("journal_mode = WAL");
        db.pragma("synchronous = NORMAL");
      }
      return f;
    });
  }

  close(): void {
    this.db.close();
  }

  /** A meta value (JSON-decoded), or undefined. */
  meta(key: string): unknown {
    return guarded(this.path, () => {
      const row = this.sql("SELECT value FROM meta WHERE key = ?").get(key) as { value: string } | undefined;
      return row === undefined ? undefined : (JSON.parse(row.value) as unknown);
    });
  }

  setMeta(key: string, value: unknown): void {
    this.sql("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)").run(key, JSON.stringify(value));
  }

  get status(): string {
    const s = this.meta("status");
    return typeof s === "string" ? s : "unknown";
  }

  get cursor(): Cursor {
    const c = this.meta("cursor") as { sequences?: unknown; tokens?: unknown } | undefined;
    if (typeof c?.sequences !== "number" || typeof c.tokens !== "number")
      throw new FeaturesError("malformed cursor", this.path);
    return { sequences: c.sequences, tokens: c.tokens };
  }

  /** Runs `fn` in one transaction (all or nothing, even across kill -9). */
  transaction(fn: () => void): void {
    guarded(this.path, () => this.db.transaction(fn)());
  }

  insertSpaces(rows: readonly SpaceRow[]): void {
    const st = this.db.prepare(
      "INSERT INTO spaces (space, dictionary, architecture, layer, site, width, hook_in, hook_out, writes_residual) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    for (const r of rows)
      st.run(
        r.space,
        r.dictionary,
        r.architecture,
        r.layer,
        r.site,
        r.width,
        r.hookIn,
        r.hookOut,
        r.writesResidual ? 1 : 0,
      );
  }

  insertVocab(texts: readonly string[]): void {
    const st = this.db.prepare("INSERT INTO vocab (id, text) VALUES (?, ?)");
    texts.forEach((t, i) => {
      st.run(i, t);
    });
    this.vocab = [...texts];
  }

  insertSequence(sequence: number, doc: number, ids: Int32Array, keep: Uint8Array): void {
    this.sql("INSERT INTO sequences (sequence, doc, ids, keep) VALUES (?, ?, ?, ?)").run(
      sequence,
      doc,
      int32Blob(ids),
      Buffer.from(keep.buffer, keep.byteOffset, keep.byteLength),
    );
  }

  /** Token ids of a stored sequence. */
  sequenceIds(sequence: number): Int32Array {
    const row = this.sql("SELECT ids FROM sequences WHERE sequence = ?").get(sequence) as
      | { ids: Buffer }
      | undefined;
    if (row === undefined) throw new FeaturesError(`no sequence ${sequence}`, this.path);
    return blobInt32(row.ids, "sequence ids");
  }

  saveCheckpoint(space: number, state: StatsState): void {
    const st = this.sql("INSERT OR REPLACE INTO checkpoint (space, name, data) VALUES (?, ?, ?)");
    for (const [name, data] of Object.entries(state))
      st.run(space, name, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }

  /** A space's checkpointed arrays, or null when none was committed. */
  loadCheckpoint(space: number): StatsState | null {
    const rows = this.db.prepare("SELECT name, data FROM checkpoint WHERE space = ?").all(space) as {
      name: string;
      data: Buffer;
    }[];
    if (rows.length === 0) return null;
    return Object.fromEntries(rows.map((r) => [r.name, new Uint8Array(r.data)]));
  }

  dropCheckpoints(): void {
    this.db.prepare("DELETE FROM checkpoint").run();
  }

  /** Prepared insert statements for the result tables (used while finishing a build). */
  writers(): ResultWriters {
    const p = (sql: string) => this.db.prepare(sql);
    return {
      feature: p(
        "INSERT INTO features (space, feature, firings, density, mean, max, histogram) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ),
      example: p(
        "INSERT INTO examples (space, feature, grp, rank, sequence, position, activation, start, ids, acts, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      interval: p("INSERT INTO intervals (space, feature, grp, lo, hi, count) VALUES (?, ?, ?, ?, ?, ?)"),
      logit: p("INSERT INTO logits (space, feature, sign, rank, token, value) VALUES (?, ?, ?, ?, ?, ?)"),
      neighbour: p("INSERT INTO neighbours (space, feature, rank, other, cosine) VALUES (?, ?, ?, ?, ?)"),
      contextToken: p("INSERT INTO context_tokens (token, space, feature, hits) VALUES (?, ?, ?, ?)"),
    };
  }

  /** Rewrites the file without free pages, as a single file (no WAL beside it). */
  compact(): void {
    guarded(this.path, () => {
      this.db.pragma("journal_mode = DELETE");
      this.db.exec("VACUUM");
    });
  }

  // ---- reading ----

  spaces(): SpaceRow[] {
    return guarded(this.path, () => {
      const rows = this.db.prepare("SELECT * FROM spaces ORDER BY space").all() as {
        space: number;
        dictionary: string;
        architecture: string;
        layer: number | null;
        site: string;
        width: number;
        hook_in: string | null;
        hook_out: string | null;
        writes_residual: number;
      }[];
      return rows.map((r) => ({
        space: r.space,
        dictionary: r.dictionary,
        architecture: r.architecture,
        layer: r.layer,
        site: r.site,
        width: r.width,
        hookIn: r.hook_in,
        hookOut: r.hook_out,
        writesResidual: r.writes_residual === 1,
      }));
    });
  }

  /** Display text of token ids (from the stored vocabulary). */
  tokenTexts(ids: readonly number[] | Int32Array): string[] {
    if (this.vocab === null) {
      const rows = this.db.prepare("SELECT id, text FROM vocab").all() as { id: number; text: string }[];
      const v: string[] = [];
      for (const r of rows) v[r.id] = r.text;
      this.vocab = v;
    }
    const v = this.vocab;
    return Array.from(ids, (id) => v[id] ?? `<${id}>`);
  }

  /** Token ids whose display text is exactly `text`. */
  tokensWithText(text: string): number[] {
    const rows = this.db.prepare("SELECT id FROM vocab WHERE text = ? ORDER BY id").all(text) as {
      id: number;
    }[];
    return rows.map((r) => r.id);
  }

  /** The raw SQLite handle, for the search and build modules of this folder. */
  get handle(): Db {
    return this.db;
  }

  requireComplete(): void {
    if (this.status !== "complete") {
      throw new FeaturesError(
        `the build is not finished (status ${this.status}); run the same \`features build\` command again to resume it`,
        this.path,
      );
    }
  }

  /** The page of one feature (the database must be complete). */
  page(space: number, feature: number): FeaturePage {
    this.requireComplete();
    return guarded(this.path, () => {
      const sp = this.spaces().find((s) => s.space === space);
      if (sp === undefined) throw new FeaturesError(`no feature space ${space}`, this.path);
      if (!Number.isSafeInteger(feature) || feature < 0 || feature >= sp.width) {
        throw new FeaturesError(
          `feature ${feature} is out of range: the dictionary has ${sp.width} features (0-${sp.width - 1})`,
          "--feature",
        );
      }
      const db = this.db;
      const f = db
        .prepare(
          "SELECT firings, density, mean, max, histogram FROM features WHERE space = ? AND feature = ?",
        )
        .get(space, feature) as
        | { firings: number; density: number; mean: number; max: number; histogram: Buffer }
        | undefined;
      if (f === undefined)
        throw new FeaturesError(`no statistics for feature ${feature} of space ${space}`, this.path);
      const summary = this.meta("summary") as { tokens?: number } | undefined;
      const exRows = db
        .prepare(
          "SELECT grp, rank, sequence, position, activation, start, ids, acts FROM examples WHERE space = ? AND feature = ? ORDER BY grp, rank",
        )
        .all(space, feature) as {
        grp: number;
        sequence: number;
        position: number;
        activation: number;
        start: number;
        ids: Buffer;
        acts: Buffer;
      }[];
      const toExample = (r: (typeof exRows)[number]): ContextExample => {
        const ids = Array.from(blobInt32(r.ids, "example ids"));
        return {
          sequence: r.sequence,
          position: r.position,
          activation: r.activation,
          start: r.start,
          ids,
          tokens: this.tokenTexts(ids),
          acts: Array.from(blobBf16(r.acts, "example acts")),
          focus: r.position - r.start,
        };
      };
      const top = exRows.filter((r) => r.grp === 0).map(toExample);
      const intervalRows = db
        .prepare("SELECT grp, lo, hi, count FROM intervals WHERE space = ? AND feature = ? ORDER BY grp")
        .all(space, feature) as { grp: number; lo: number; hi: number; count: number }[];
      const intervals: IntervalGroup[] = intervalRows.map((g) => ({
        lo: g.lo,
        hi: g.hi,
        count: g.count,
        fraction: f.firings > 0 ? g.count / f.firings : 0,
        examples: exRows.filter((r) => r.grp === g.grp).map(toExample),
      }));
      const counts = blobUint32(f.histogram, "histogram");
      if (counts.length !== HIST_BINS) throw new FeaturesError("malformed histogram", this.path);
      let first = counts.findIndex((c) => c > 0);
      let last = counts.length - 1;
      while (last >= 0 && counts[last] === 0) last--;
      if (first < 0) {
        first = 0;
        last = -1;
      }
      const edges: number[] = [];
      const binCounts: number[] = [];
      for (let i = first; i <= last; i++) {
        edges.push(histogramLowerEdge(i));
        binCounts.push(counts[i]);
      }
      if (last >= first)
        edges.push(
          Math.max(
            histogramUpperEdge(last) === Number.POSITIVE_INFINITY ? f.max : histogramUpperEdge(last),
            0,
          ),
        );
      const logitRows = db
        .prepare(
          "SELECT sign, token, value FROM logits WHERE space = ? AND feature = ? ORDER BY sign DESC, rank",
        )
        .all(space, feature) as { sign: number; token: number; value: number }[];
      const effect = (r: { token: number; value: number }): LogitEffect => ({
        id: r.token,
        token: this.tokenTexts([r.token])[0],
        value: r.value,
      });
      const neighbours = (
        db
          .prepare("SELECT other, cosine FROM neighbours WHERE space = ? AND feature = ? ORDER BY rank")
          .all(space, feature) as { other: number; cosine: number }[]
      ).map((r): NeighbourFeature => ({ feature: r.other, cosine: r.cosine }));
      const info: FeatureSpaceInfo = {
        space: sp.space,
        dictionary: sp.dictionary,
        architecture: sp.architecture,
        layer: sp.layer,
        site: sp.site,
        width: sp.width,
      };
      return {
        space: info,
        feature,
        tokens: summary?.tokens ?? 0,
        firings: f.firings,
        density: f.density,
        meanActivation: f.mean,
        maxActivation: f.max,
        topContexts: top,
        intervals,
        histogram: { edges, counts: binCounts },
        logits: sp.writesResidual
          ? {
              top: logitRows.filter((r) => r.sign === 1).map(effect),
              bottom: logitRows.filter((r) => r.sign === -1).map(effect),
            }
          : null,
        neighbours,
      };
    });
  }
}

export interface ResultWriters {
  readonly feature: Database.Statement;
  readonly example: Database.Statement;
  readonly interval: Database.Statement;
  readonly logit: Database.Statement;
  readonly neighbour: Database.Statement;
  readonly contextToken: Database.Statement;
}
