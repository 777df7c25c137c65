/**
 * Shared helpers for the feature-statistics tests: the bundled tiny-gemma3 model and dictionaries,
 * a small deterministic English-like corpus, a build with small statistics options, and a
 * brute-force scan that keeps every activation of the same sequences in memory.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultBackend } from "../../src/backends/index.js";
import { reshape } from "../../src/core/ops/shape.js";
import { Rng } from "../../src/core/random.js";
import { fromStorage } from "../../src/core/tensor.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { dictionarySites } from "../../src/dictionaries/sites.js";
import { isLayerwise } from "../../src/dictionaries/types.js";
import { type BuildOptions, buildFeatureDatabase } from "../../src/features/build.js";
import { blobInt32, FeatureDatabase } from "../../src/features/db.js";
import { Tokenizer } from "../../src/io/tokenizer.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";

const here = fileURLToPath(new URL(".", import.meta.url));
export const compiled = import.meta.url.endsWith(".js");
export const repoRoot = compiled ? join(here, "..", "..", "..") : join(here, "..", "..");
export const MODEL = join(repoRoot, "models", "tiny-gemma3");
const GS = join(MODEL, "gemma-scope");
export const SAE3 = join(GS, "resid_post", "layer_3_width_1k_l0_small");
export const SAE5 = join(GS, "resid_post", "layer_5_width_1k_l0_big");
export const TRANSCODER2 = join(GS, "transcoder", "layer_2_width_1k_l0_medium");
export const CLT = join(GS, "clt", "width_3k_l0_medium");

export const backend = defaultBackend();
let cached: { model: ReturnType<typeof loadGemma3>; tokenizer: Tokenizer } | null = null;
export function tiny() {
  cached ??= { model: loadGemma3(MODEL, backend), tokenizer: Tokenizer.fromDir(MODEL) };
  return cached;
}

export function tempDir(prefix = "glassbox-features-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

const WORDS = (
  "the old man walked slowly to the river and sat down by the water . she said that the king " +
  "would come back to the city in the morning , but nobody believed her . a small dog ran across " +
  "the road while the children were playing in the garden . they had never seen such a large " +
  "house , with twelve windows and a red door . in 1961 the company sold three hundred cars to " +
  "Paris and London . he asked whether the book was on the table or under the bed ."
).split(" ");

/** A JSONL corpus of `docs` documents of 20-80 words drawn from a fixed list (seeded). */
export function writeCorpus(path: string, docs: number, seed = 7): string {
  const rng = new Rng(seed);
  const lines: string[] = [];
  for (let d = 0; d < docs; d++) {
    const n = 20 + rng.int(61);
    const words: string[] = [];
    let at = rng.int(WORDS.length);
    for (let i = 0; i < n; i++) {
      // mostly follow the text, sometimes jump: fluent-ish, varied documents
      at = rng.int(5) === 0 ? rng.int(WORDS.length) : (at + 1) % WORDS.length;
      words.push(WORDS[at]);
    }
    lines.push(JSON.stringify({ text: words.join(" ").replace(/ ([.,])/g, "$1") }));
  }
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

export type SmallBuild = Omit<
  BuildOptions,
  "model" | "modelDir" | "tokenizer" | "chatTemplate" | "dictionaries" | "data"
> & { readonly data?: BuildOptions["data"] };

export const SMALL: SmallBuild = {
  context: 32,
  batch: 4,
  checkpointTokens: 256,
  stats: { topK: 6, groups: 10, groupExamples: 3, fineBins: 32, before: 4, after: 2 },
  logitCount: 5,
  neighbourCount: 4,
};

export function buildSmall(out: string, data: string, dicts: readonly string[], extra: SmallBuild = {}) {
  const { model, tokenizer } = tiny();
  return buildFeatureDatabase(out, {
    model,
    modelDir: MODEL,
    tokenizer,
    chatTemplate: null,
    dictionaries: dicts.map((path) => ({ path, dictionary: loadDictionary(path, backend) })),
    ...SMALL,
    ...extra,
    data: extra.data ?? { path: data, format: "jsonl", textField: "text" },
  });
}

/** Every activation of one feature space over the sequences a build stored. */
export interface DenseSpace {
  readonly width: number;
  /** Per sequence: [length, width] activations, and which tokens count. */
  readonly sequences: { readonly ids: Int32Array; readonly keep: Uint8Array; readonly acts: Float32Array }[];
}

/**
 * Re-runs the model over the database's sequences in the build's batches (right-padded, the same
 * forward calls), encodes them densely and keeps everything.
 */
export function bruteForce(
  dbPath: string,
  dictPath: string,
  layer: number | null,
  batch: number,
): DenseSpace {
  const { model } = tiny();
  const dict = loadDictionary(dictPath, backend);
  const db = FeatureDatabase.open(dbPath, { readonly: true });
  const rows = db.handle.prepare("SELECT ids, keep FROM sequences ORDER BY sequence").all() as {
    ids: Buffer;
    keep: Buffer;
  }[];
  db.close();
  const seqs = rows.map((r) => ({ ids: blobInt32(r.ids, "ids"), keep: new Uint8Array(r.keep) }));
  const site = dictionarySites(dict.spec, model.config).read[layer ?? 0];
  const width = dict.spec.width;
  const out: DenseSpace["sequences"] = [];
  for (let b0 = 0; b0 < seqs.length; b0 += batch) {
    const group = seqs.slice(b0, b0 + batch);
    const T = Math.max(...group.map((s) => s.ids.length));
    const ids = new Int32Array(group.length * T);
    const mask = new Int32Array(group.length * T);
    group.forEach((s, b) => {
      ids.set(s.ids, b * T);
      mask.fill(1, b * T, b * T + s.ids.length);
    });
    const r = model.forward(fromStorage(backend, "i32", [group.length, T], ids), {
      attentionMask: fromStorage(backend, "i32", [group.length, T], mask),
      capture: [site],
      logits: "none",
    });
    const x = r.activations.get(site);
    const flat = reshape(x, [group.length * T, x.shape[2]]);
    const acts = (isLayerwise(dict) && layer !== null ? dict.encodeLayer(layer, flat) : dict.encode(flat))
      .toDense()
      .toFloat32Array();
    group.forEach((s, b) => {
      out.push({ ids: s.ids, keep: s.keep, acts: acts.slice(b * T * width, (b * T + s.ids.length) * width) });
    });
  }
  return { width, sequences: out };
}
