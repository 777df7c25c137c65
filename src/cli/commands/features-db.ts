/**
 * `glassbox features build|show|search`: dataset-wide feature statistics in a SQLite database
 * (src/features, docs/features.md).
 *
 * - `features build --model M --dict D [--dict D2 ...] (--data FILE | --store DIR) [--tokens N] --out run.sqlite`:
 *   one pass over the corpus (or an activation store) for every dictionary at once; resumes an
 *   interrupted build of the same inputs; a progress bar on a TTY, `--json` prints the summary.
 * - `features show run.sqlite --feature I [--dict D] [--layer L] [--json | --html FILE | --neuronpedia FILE]`.
 * - `features search run.sqlite (--text T | --token S | --promotes S | --direction FILE) [--json]`.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { formatFromName } from "../../activations/documents.js";
import { defaultBackend } from "../../backends/index.js";
import { FeaturesError, UsageError } from "../../core/errors.js";
import { loadDictionary } from "../../dictionaries/load.js";
import type { Dictionary } from "../../dictionaries/types.js";
import { type BuildSummary, buildFeatureDatabase } from "../../features/build.js";
import { featureDashboardHtml } from "../../features/dashboard-html.js";
import { FeatureDatabase, type SpaceRow } from "../../features/db.js";
import { neuronpediaFeature } from "../../features/neuronpedia.js";
import type { ContextExample, FeaturePage } from "../../features/page.js";
import {
  featuresByContext,
  featuresByLogit,
  featuresNearDirection,
  featuresOnText,
} from "../../features/search.js";
import { writeFileAtomicSync } from "../../io/atomic-file.js";
import { ChatTemplate } from "../../io/chat.js";
import { decodeNpy } from "../../io/npy.js";
import { SafetensorsFile } from "../../io/safetensors.js";
import { Tokenizer } from "../../io/tokenizer.js";
import { loadGemma3Config } from "../../model/gemma3/config.js";
import { type Gemma3Model, loadGemma3 } from "../../model/gemma3/model.js";
import { intFlag, jsonLine } from "../model-input.js";

interface BuildFlags {
  model: string;
  tokenizer?: string;
  dict: string[];
  data?: string;
  store?: string;
  out: string;
  tokens?: string;
  context: string;
  batch: string;
  checkpointTokens: string;
  topK: string;
  groupExamples: string;
  before: string;
  after: string;
  chat?: boolean;
  textField: string;
  json?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function registerFeatureDatabaseCommands(features: Command): void {
  features
    .command("build")
    .description("feature statistics over a dataset into a SQLite database (resumes an interrupted build)")
    .requiredOption("--model <dir>", "Gemma 3 checkpoint directory")
    .option("--tokenizer <dir>", "directory with tokenizer.json (default: --model)")
    .requiredOption(
      "--dict <dir>",
      "dictionary folder; repeat for several (all read in the same pass)",
      collect,
      [],
    )
    .option("--data <file>", "plain text (blank-line separated), JSONL with a text field, or chat JSONL")
    .option(
      "--store <dir>",
      "an activation store harvested from the model at the dictionaries' read sites (instead of --data)",
    )
    .requiredOption("--out <file>", "the database file to write (e.g. run.sqlite)")
    .option("--tokens <n>", "tokens to count (default: the whole dataset)")
    .option("--context <n>", "tokens per model sequence (longer documents are split)", "128")
    .option("--batch <n>", "sequences per forward pass", "8")
    .option(
      "--checkpoint-tokens <n>",
      "tokens between checkpoints (a killed build resumes from the last)",
      "65536",
    )
    .option("--top-k <n>", "top activating contexts kept per feature", "20")
    .option("--group-examples <n>", "examples sampled per activation interval (10 intervals)", "5")
    .option("--before <n>", "tokens shown before an example's token", "10")
    .option("--after <n>", "tokens shown after an example's token", "5")
    .option("--chat", 'the data is chat JSONL ({"messages": [...]}) rendered with the model\'s template')
    .option("--text-field <name>", "JSONL field holding the text", "text")
    .option("--json", "print the summary as one JSON object")
    .action(async (flags: BuildFlags) => {
      const r = await runFeaturesBuild(flags);
      process.stdout.write(flags.json ? jsonLine(r) : buildText(r));
    });

  features
    .command("show")
    .description(
      "one feature's page from a feature database: top contexts, intervals, histogram, logit effects",
    )
    .argument("<db>", "feature database (features build --out)")
    .requiredOption("--feature <i>", "feature index")
    .option("--dict <dir>", "which dictionary of the database (default: the only one)")
    .option("--layer <l>", "source layer, for a cross-layer transcoder")
    .option("--contexts <n>", "top contexts shown in the text view", "8")
    .option("--json", "print the page as one JSON object")
    .option("--html <file>", "write a self-contained HTML dashboard")
    .option("--neuronpedia <file>", "write the feature as Neuronpedia feature JSON")
    .action((path: string, flags: ShowFlags) => {
      process.stdout.write(runFeaturesShow(path, flags));
    });

  features
    .command("search")
    .description("search a feature database: by text, by context token, by promoted token, by direction")
    .argument("<db>", "feature database (features build --out)")
    .option("--text <text>", "which features fire on this text, per token (runs the model)")
    .option("--token <s>", "features whose top contexts contain this token (or substring)")
    .option("--promotes <s>", "features whose top promoted tokens include this token")
    .option(
      "--direction <file>",
      "features nearest this vector by decoder cosine (.npy, .safetensors or JSON array)",
    )
    .option("--model <dir>", "model for --text (default: the one recorded in the database)")
    .option("--top <n>", "results (per token with --text)", "10")
    .option("--json", "print one JSON object")
    .action((path: string, flags: SearchFlags) => {
      process.stdout.write(runFeaturesSearch(path, flags));
    });
}

export async function runFeaturesBuild(flags: BuildFlags): Promise<BuildSummary> {
  const context = intFlag(flags.context, "--context", 2);
  const batch = intFlag(flags.batch, "--batch", 1);
  const checkpointTokens = intFlag(flags.checkpointTokens, "--checkpoint-tokens", 1);
  const topK = intFlag(flags.topK, "--top-k", 1);
  const groupExamples = intFlag(flags.groupExamples, "--group-examples", 1);
  if (groupExamples > 255) throw new UsageError("at most 255", "--group-examples");
  const before = intFlag(flags.before, "--before", 0);
  const after = intFlag(flags.after, "--after", 0);
  const tokens = flags.tokens === undefined ? undefined : intFlag(flags.tokens, "--tokens", 1);
  if (flags.dict.length === 0) throw new UsageError("give at least one dictionary", "--dict");
  const config = loadGemma3Config(flags.model);
  if (context > config.maxPositionEmbeddings)
    throw new UsageError(`the model's context is ${config.maxPositionEmbeddings} tokens`, "--context");
  const tokDir = flags.tokenizer ?? flags.model;
  const tokenizer = Tokenizer.fromDir(tokDir);
  if ((flags.data === undefined) === (flags.store === undefined))
    throw new UsageError(
      "give exactly one of --data FILE and --store DIR",
      flags.data === undefined ? "--data" : "--store",
    );
  const format = flags.data === undefined ? null : formatFromName(flags.data, flags.chat === true);
  const chat = format === "chat" ? ChatTemplate.fromDir(tokDir, tokenizer) : null;
  const backend = defaultBackend();
  const model = loadGemma3(flags.model, backend);
  const dictionaries = flags.dict.map((path) => ({ path, dictionary: loadDictionary(path, backend) }));
  const bar =
    process.stderr.isTTY && !flags.json
      ? new SingleBar({
          format: "features [{bar}] {percentage}% | {value}/{total} tokens | {rate} tokens/s | {phase}",
          stream: process.stderr,
          hideCursor: true,
        })
      : null;
  let started = false;
  try {
    return await buildFeatureDatabase(flags.out, {
      model,
      modelDir: flags.model,
      tokenizer,
      chatTemplate: chat,
      dictionaries,
      data:
        flags.store !== undefined || format === null || flags.data === undefined
          ? { store: flags.store ?? "" }
          : { path: flags.data, format, textField: flags.textField },
      ...(tokens === undefined ? {} : { maxTokens: tokens }),
      context,
      batch,
      checkpointTokens,
      stats: { topK, groupExamples, before, after },
      onProgress: (p) => {
        if (bar === null) return;
        const rate = p.seconds > 0 ? Math.round(p.tokens / p.seconds) : 0;
        if (!started) {
          bar.start(p.limit ?? Math.max(p.tokens, 1), p.tokens, { rate, phase: p.phase });
          started = true;
        }
        if (p.limit === null) bar.setTotal(Math.max(p.tokens, 1));
        bar.update(p.tokens, { rate, phase: p.phase });
      },
    });
  } finally {
    if (started) bar?.stop();
  }
}

function buildText(r: BuildSummary): string {
  return [
    `database  ${resolve(r.path)}${r.resumed ? " (resumed)" : ""}`,
    `tokens    ${r.tokens} in ${r.sequences} sequences`,
    `features  ${r.features} in ${r.spaces} feature spaces, ${r.dead} never fired`,
    `time      ${r.seconds.toFixed(1)} s (${Math.round(r.tokensPerSecond)} tokens/s)`,
    "",
  ].join("\n");
}

interface ShowFlags {
  feature: string;
  dict?: string;
  layer?: string;
  contexts: string;
  json?: boolean;
  html?: string;
  neuronpedia?: string;
}

/** The space a `--dict` / `--layer` pair names (the only one when neither is given). */
export function pickSpace(
  db: FeatureDatabase,
  dict: string | undefined,
  layer: string | undefined,
): SpaceRow {
  const spaces = db.spaces();
  const dicts = [...new Set(spaces.map((s) => s.dictionary))];
  let chosen = spaces;
  if (dict !== undefined) {
    const want = resolve(dict);
    chosen = spaces.filter(
      (s) =>
        s.dictionary === dict ||
        resolve(recordedPath(db, s.dictionary)) === want ||
        basename(s.dictionary) === basename(want),
    );
    if (chosen.length === 0)
      throw new UsageError(
        `not in this database; it holds ${dicts.map((d) => JSON.stringify(d)).join(", ")}`,
        "--dict",
      );
  } else if (dicts.length > 1) {
    throw new UsageError(
      `the database holds ${dicts.length} dictionaries: say which (${dicts.join(", ")})`,
      "--dict",
    );
  }
  if (layer !== undefined) {
    const l = intFlag(layer, "--layer", 0);
    const hit = chosen.find((s) => s.layer === l);
    if (hit === undefined) {
      const layers = chosen.map((s) => s.layer).filter((x) => x !== null);
      throw new UsageError(
        layers.length === 0
          ? "the dictionary is not a cross-layer transcoder"
          : `no source layer ${l} (layers ${layers.join(", ")})`,
        "--layer",
      );
    }
    return hit;
  }
  if (chosen.length > 1)
    throw new UsageError(
      `a cross-layer transcoder: give its source layer (0-${chosen.length - 1})`,
      "--layer",
    );
  return chosen[0];
}

export function runFeaturesShow(path: string, flags: ShowFlags): string {
  const db = FeatureDatabase.open(path, { readonly: true });
  try {
    const space = pickSpace(db, flags.dict, flags.layer);
    const feature = intFlag(flags.feature, "--feature", 0);
    if (feature >= space.width)
      throw new UsageError(
        `the dictionary has ${space.width} features (0-${space.width - 1}), got ${feature}`,
        "--feature",
      );
    const page = db.page(space.space, feature);
    const written: string[] = [];
    if (flags.html !== undefined) {
      writeFileAtomicSync(flags.html, featureDashboardHtml(page));
      written.push(flags.html);
    }
    if (flags.neuronpedia !== undefined) {
      writeFileAtomicSync(flags.neuronpedia, `${JSON.stringify(neuronpediaFeature(page))}\n`);
      written.push(flags.neuronpedia);
    }
    if (flags.json) return jsonLine(page);
    if (written.length > 0 && flags.json === undefined) return written.map((w) => `wrote ${w}\n`).join("");
    return pageText(page, intFlag(flags.contexts, "--contexts", 0));
  } finally {
    db.close();
  }
}

/** A context with the example's token in [[ ]] and tokens that fire in ( ). */
function contextLine(e: ContextExample): string {
  return e.tokens
    .map((t, i) => {
      const s = JSON.stringify(t).slice(1, -1);
      if (i === e.focus) return `[[${s}]]`;
      return e.acts[i] > 0 ? `(${s})` : s;
    })
    .join("");
}

function num(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(3);
}

export function pageText(p: FeaturePage, contexts: number): string {
  const s = p.space;
  const lines = [
    `feature ${p.feature} of ${s.dictionary}${s.layer === null ? "" : ` (source layer ${s.layer})`}: ${s.architecture}, ${s.width} features at ${s.site}`,
    `density ${(p.density * 100).toPrecision(3)} % (${p.firings} of ${p.tokens} tokens), mean ${num(p.meanActivation)}, max ${num(p.maxActivation)}`,
  ];
  if (p.logits !== null) {
    lines.push(
      `promotes   ${p.logits.top.map((e) => `${JSON.stringify(e.token)} ${num(e.value)}`).join("  ")}`,
    );
    lines.push(
      `suppresses ${p.logits.bottom.map((e) => `${JSON.stringify(e.token)} ${num(e.value)}`).join("  ")}`,
    );
  }
  if (p.neighbours.length > 0)
    lines.push(`nearest    ${p.neighbours.map((n) => `${n.feature} (${n.cosine.toFixed(2)})`).join("  ")}`);
  lines.push("top contexts ([[max token]], (other firing tokens)):");
  for (const e of p.topContexts.slice(0, contexts))
    lines.push(`  ${num(e.activation).padStart(7)}  ${contextLine(e)}`);
  lines.push("intervals:");
  for (const g of p.intervals) {
    const ex = g.examples[0];
    lines.push(
      `  ${num(g.lo).padStart(7)} - ${num(g.hi).padEnd(7)} ${(g.fraction * 100).toFixed(1).padStart(5)} %  ${ex === undefined ? "" : contextLine(ex)}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

interface SearchFlags {
  text?: string;
  token?: string;
  promotes?: string;
  direction?: string;
  model?: string;
  top: string;
  json?: boolean;
}

/**
 * A folder the database recorded: as given when absolute or present from the working directory,
 * else relative to the database's own folder (a database shipped beside its dictionaries).
 */
export function recordedPath(db: FeatureDatabase, p: string): string {
  if (isAbsolute(p) || existsSync(p)) return p;
  return join(dirname(db.path), p);
}

/** The recorded model folder, else the database's own folder when it is a model folder (a bundled database). */
function modelOf(db: FeatureDatabase, recorded: string | undefined): string {
  if (typeof recorded === "string" && existsSync(join(recorded, "config.json"))) return recorded;
  const here = dirname(db.path);
  if (existsSync(join(here, "config.json"))) return here;
  throw new UsageError(
    `the model the database was built with (${recorded ?? "none recorded"}) is not there; pass it`,
    "--model",
  );
}

/** Loads the database's dictionaries from the folders it recorded (keyed by the recorded path). */
export function loadRecorded(db: FeatureDatabase, model: Gemma3Model | null): Map<string, Dictionary> {
  const backend = model?.backend ?? defaultBackend();
  const out = new Map<string, Dictionary>();
  for (const s of db.spaces()) {
    if (out.has(s.dictionary)) continue;
    const dir = recordedPath(db, s.dictionary);
    if (!existsSync(dir))
      throw new FeaturesError(`the database's dictionary ${s.dictionary} is not at ${dir}`, db.path);
    out.set(s.dictionary, loadDictionary(dir, backend));
  }
  return out;
}

/** A vector from a .npy, a one-tensor .safetensors, or a JSON array file. */
export function readDirection(path: string): Float32Array {
  const bad = (why: string): never => {
    throw new UsageError(`${path}: ${why}`, "--direction");
  };
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    return bad(`cannot read it (${e instanceof Error ? e.message : String(e)})`);
  }
  if (path.endsWith(".json")) {
    let v: unknown;
    try {
      v = JSON.parse(bytes.toString("utf8"));
    } catch {
      return bad("not JSON");
    }
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== "number" || !Number.isFinite(x)))
      return bad("expected a JSON array of finite numbers");
    return Float32Array.from(v as number[]);
  }
  const backend = defaultBackend();
  let t: Float32Array;
  if (path.endsWith(".npy")) {
    const raw = decodeNpy(new Uint8Array(bytes), path, "direction");
    if (raw.dtype !== "F32") return bad(`dtype ${raw.dtype}; save it as float32`);
    t = new Float32Array(
      raw.bytes.buffer.slice(raw.bytes.byteOffset, raw.bytes.byteOffset + raw.bytes.byteLength),
    );
  } else if (path.endsWith(".safetensors")) {
    const f = SafetensorsFile.open(path);
    try {
      const names = f.names();
      if (names.length !== 1) return bad(`holds ${names.length} tensors; expected exactly one`);
      t = f.readTensorSync(names[0], backend).toFloat32Array();
    } finally {
      f.close();
    }
  } else {
    return bad("expected a .npy, .safetensors or .json file");
  }
  return t;
}

export function runFeaturesSearch(path: string, flags: SearchFlags): string {
  const modes = [flags.text, flags.token, flags.promotes, flags.direction].filter((m) => m !== undefined);
  if (modes.length !== 1)
    throw new UsageError("give exactly one of --text, --token, --promotes, --direction");
  const top = intFlag(flags.top, "--top", 1);
  const db = FeatureDatabase.open(path, { readonly: true });
  try {
    db.requireComplete();
    if (flags.text !== undefined) {
      const run = db.meta("run") as { model?: { dir?: string } } | undefined;
      const dir = flags.model ?? modelOf(db, run?.model?.dir);
      const tokenizer = Tokenizer.fromDir(dir);
      const model = loadGemma3(dir, defaultBackend());
      const ids = tokenizer.encode(flags.text, { addBos: true });
      if (ids.length > model.config.maxPositionEmbeddings)
        throw new UsageError("the text is longer than the model's context", "--text");
      const tokens = featuresOnText(db, model, loadRecorded(db, model), ids, { top });
      if (flags.json) return jsonLine({ mode: "text", text: flags.text, tokens });
      return `${tokens
        .map(
          (t) =>
            `${String(t.position).padStart(3)} ${JSON.stringify(t.token).padEnd(14)} ${t.features
              .map(
                (h) =>
                  `${label(h)}=${num(h.activation)}${h.relative === null ? "" : ` (${Math.round(h.relative * 100)}%)`}`,
              )
              .join("  ")}`,
        )
        .join("\n")}\n`;
    }
    if (flags.token !== undefined) {
      const r = featuresByContext(db, flags.token, top);
      if (flags.json) return jsonLine({ mode: r.mode, query: flags.token, tokens: r.tokens, hits: r.hits });
      const head =
        r.mode === "token"
          ? `token ${JSON.stringify(flags.token)} (id ${r.tokens.join(", ")})`
          : `substring ${JSON.stringify(flags.token)}`;
      return `${head} in top contexts of:\n${r.hits.map((h) => `  ${label(h).padEnd(40)} ${h.contexts} contexts, max ${num(h.maxActivation)}`).join("\n")}\n`;
    }
    if (flags.promotes !== undefined) {
      const r = featuresByLogit(db, flags.promotes, top);
      if (flags.json)
        return jsonLine({ mode: "promotes", query: flags.promotes, tokens: r.tokens, hits: r.hits });
      return `features promoting ${JSON.stringify(flags.promotes)}:\n${r.hits.map((h) => `  ${label(h).padEnd(40)} ${num(h.value)} (rank ${h.rank + 1})`).join("\n")}\n`;
    }
    const direction = readDirection(flags.direction as string);
    const hits = featuresNearDirection(db, loadRecorded(db, null), direction, { limit: top });
    if (flags.json) return jsonLine({ mode: "direction", file: flags.direction, hits });
    return `features nearest the direction:\n${hits.map((h) => `  ${label(h).padEnd(40)} cosine ${h.cosine.toFixed(3)}`).join("\n")}\n`;
  } finally {
    db.close();
  }
}

function label(h: { dictionary: string; layer: number | null; feature: number }): string {
  const parts = h.dictionary.split("/").filter((p) => p !== "");
  const name = parts[parts.length - 1] ?? h.dictionary;
  return `${name}${h.layer === null ? "" : `/L${h.layer}`}#${h.feature}`;
}
