/**
 * `glassbox demo [--model DIR] [--json]`: a tour of the bundled tiny model and its dictionaries.
 * Prints the backend in use, a short greedy generation for a fixed prompt, that prompt's top
 * features per token at a few layers (residual-stream SAEs and the cross-layer transcoder, through
 * `glassbox features`' machinery), the evaluation summary stored with the dictionaries
 * (`gemma-scope/eval.json`, written by `scripts/bundle-dictionaries.sh`), and a feature page from
 * the bundled feature statistics (`features.sqlite`, written by `scripts/bundle-features.sh`).
 *
 * The default model is the bundled `models/tiny-gemma3` of this package (found from this file, not
 * the working directory). `--json` prints one object:
 * `{"model", "backend", "prompt", "generation": {"text", "ids", "tokens", "finish_reason"},
 *   "features": [{"id", "kind", "layer", "path", "reads", "tokens": [{"position", "id", "token",
 *   "l0", "top": [{"feature", "activation", "layer"?}]}]}], "evaluation": {"path", "model",
 *   "tokens", "data", "dictionaries": [{"id", "kind", "layer", "width", "l0", "target_l0", "fvu",
 *   "ce_loss_recovered", "delta_lm_loss", "kl_score", "dead_fraction"}]},
 *   "feature_page": {"path", "token", "activation", "page"} | null, "graph": {"dictionary", "out",
 *   "active_features", "visited_features", "kept_nodes", "kept_edges", "scores", "logits", "paths",
 *   "seconds"} | null}`: the page (a `FeaturePage`) of the prompt's last token's most active feature
 * in the bundled statistics (`features.sqlite`), and the summary of an attribution graph of the
 * prompt through the bundled cross-layer transcoder (written to a temporary file).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { defaultBackend } from "../../backends/index.js";
import { UsageError } from "../../core/errors.js";
import { FeatureDatabase } from "../../features/db.js";
import type { FeaturePage } from "../../features/page.js";
import { featuresOnText } from "../../features/search.js";
import { Tokenizer } from "../../io/tokenizer.js";
import { loadGemma3 } from "../../model/gemma3/model.js";
import { intFlag, jsonLine } from "../model-input.js";
import { featuresReport, type TokenFeatures } from "./features.js";
import { loadRecorded, pageText } from "./features-db.js";
import { runGenerate } from "./generate.js";
import { type GraphSummary, pathLine, runGraph } from "./graph.js";

/** The fixed prompt of the demo. */
export const DEMO_PROMPT = "The old man walked slowly to the river, and";

interface DemoFlags {
  model?: string;
  prompt: string;
  maxTokens: string;
  top: string;
  json?: boolean;
}

export interface DemoEvalRow {
  readonly id: string;
  readonly kind: string;
  readonly layer: number | null;
  readonly width: number;
  readonly l0: number;
  readonly target_l0: number | null;
  readonly fvu: number;
  readonly ce_loss_recovered: number;
  readonly delta_lm_loss: number;
  readonly kl_score: number;
  readonly dead_fraction: number;
}

export interface DemoFeatures {
  readonly id: string;
  readonly kind: string;
  readonly layer: number | null;
  readonly path: string;
  readonly reads: readonly string[];
  readonly tokens: readonly TokenFeatures[];
}

export interface DemoReport {
  readonly model: string;
  readonly backend: string;
  readonly prompt: string;
  readonly generation: {
    readonly text: string | null;
    readonly ids: readonly number[];
    readonly tokens: readonly (string | null)[];
    readonly finish_reason: string;
  };
  readonly features: readonly DemoFeatures[];
  readonly evaluation: {
    readonly path: string;
    readonly model: string;
    readonly tokens: number | null;
    readonly data: string | null;
    readonly dictionaries: readonly DemoEvalRow[];
  };
  /**
   * From the bundled feature statistics (`features.sqlite` in the model folder, made by
   * scripts/bundle-features.sh): the page of the most active feature (relative to its corpus max)
   * at the prompt's last token; null when the model folder has no statistics.
   */
  readonly feature_page: {
    readonly path: string;
    readonly token: string;
    readonly activation: number;
    readonly page: FeaturePage;
  } | null;
  /** An attribution graph of the prompt through the bundled CLT; null when the model folder has none. */
  readonly graph: (GraphSummary & { readonly dictionary: string }) | null;
}

/** The attribution graph of the prompt through the model folder's CLT (the first under gemma-scope/clt). */
function demoGraph(dir: string, prompt: string): DemoReport["graph"] {
  const cltRoot = join(dir, "gemma-scope", "clt");
  if (!existsSync(cltRoot)) return null;
  const clt = readdirSync(cltRoot).sort()[0];
  if (clt === undefined) return null;
  const tmp = mkdtempSync(join(tmpdir(), "glassbox-demo-graph-"));
  try {
    const s = runGraph(
      {
        model: dir,
        clt: join(cltRoot, clt),
        out: join(tmp, "graph.json"),
        maxFeatureNodes: "256",
        nodeThreshold: "0.8",
        edgeThreshold: "0.98",
        maxLogits: "10",
        logitProbability: "0.95",
        batch: "256",
        paths: "3",
        json: true,
      },
      prompt,
    );
    return { ...s, out: "(temporary)", dictionary: join(cltRoot, clt) };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The page of the feature most active, relative to its corpus max, at the prompt's last token. */
function demoFeaturePage(dir: string, prompt: string): DemoReport["feature_page"] {
  const path = join(dir, "features.sqlite");
  if (!existsSync(path)) return null;
  const db = FeatureDatabase.open(path, { readonly: true });
  try {
    const model = loadGemma3(dir, defaultBackend());
    const ids = Tokenizer.fromDir(dir).encode(prompt, { addBos: true });
    const tokens = featuresOnText(db, model, loadRecorded(db, model), ids, { top: 1 });
    const last = tokens[tokens.length - 1];
    const hit = last.features[0];
    if (hit === undefined) return null;
    return { path, token: last.token, activation: hit.activation, page: db.page(hit.space, hit.feature) };
  } finally {
    db.close();
  }
}

/** The root of this package: the nearest folder above this module with glassbox's package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 10; i++) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "glassbox") return dir;
      } catch {
        // not ours; keep looking
      }
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new UsageError("cannot find the glassbox package folder; pass --model DIR");
}

/** The bundled base model: `models/tiny-gemma3` of this package. */
export function bundledModelDir(): string {
  return join(packageRoot(), "models", "tiny-gemma3");
}

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "the bundled tiny model and its dictionaries: a generation, a prompt's top features per token, the evaluation summary",
    )
    .option(
      "--model <dir>",
      "model directory with gemma-scope/ dictionaries (default: the bundled models/tiny-gemma3)",
    )
    .option("--prompt <text>", "prompt to generate from and to show features of", DEMO_PROMPT)
    .option("--max-tokens <n>", "tokens to generate (greedy)", "16")
    .option("--top <k>", "features shown per token", "3")
    .option("--json", "print one JSON object")
    .action(async (flags: DemoFlags) => {
      const r = await runDemo(flags);
      process.stdout.write(flags.json ? jsonLine(r) : demoText(r));
    });
}

function buildHint(dir: string): string {
  const rel = relative(process.cwd(), dir) || ".";
  return `scripts/bundle-dictionaries.sh ${rel}`;
}

/** Checks the model and its dictionaries are there, with a message saying how to build them. */
function checkModel(dir: string): { evalPath: string } {
  const hasWeights =
    existsSync(join(dir, "config.json")) &&
    existsSync(dir) &&
    readdirSync(dir).some((f) => f.endsWith(".safetensors"));
  if (!hasWeights) {
    throw new UsageError(
      `no model weights in ${dir} (config.json and *.safetensors): train the tiny model first (reference/models.sh), then build its dictionaries with ${buildHint(dir)}`,
    );
  }
  const evalPath = join(dir, "gemma-scope", "eval.json");
  if (!existsSync(evalPath)) {
    throw new UsageError(
      `no bundled dictionaries in ${join(dir, "gemma-scope")} (eval.json is missing): build them with ${buildHint(dir)}`,
    );
  }
  return { evalPath };
}

interface EvalJson {
  model?: string;
  evaluation?: { tokens?: number; data?: { file?: string } };
  dictionaries: (DemoEvalRow & Record<string, unknown>)[];
}

function readEval(path: string): EvalJson {
  let e: EvalJson;
  try {
    e = JSON.parse(readFileSync(path, "utf8")) as EvalJson;
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!Array.isArray(e.dictionaries) || e.dictionaries.length === 0)
    throw new UsageError(`${path} lists no dictionaries`);
  return e;
}

/**
 * The dictionaries shown: residual-stream SAEs (the smaller L0) at the first, middle and last
 * layers, and the cross-layer transcoder.
 */
function pick(e: EvalJson): DemoEvalRow[] {
  const resid = e.dictionaries
    .filter((d) => d.kind === "sae" && d.id.endsWith("_l0_small") && d.layer !== null)
    .sort((a, b) => (a.layer ?? 0) - (b.layer ?? 0));
  const chosen: DemoEvalRow[] = [];
  if (resid.length > 0) {
    const idx = [...new Set([0, Math.floor(resid.length / 2), resid.length - 1])];
    for (const i of idx) chosen.push(resid[i]);
  }
  const clt = e.dictionaries.find((d) => d.kind === "clt");
  if (clt !== undefined) chosen.push(clt);
  return chosen;
}

function row(d: DemoEvalRow): DemoEvalRow {
  return {
    id: d.id,
    kind: d.kind,
    layer: d.layer,
    width: d.width,
    l0: d.l0,
    target_l0: d.target_l0 ?? null,
    fvu: d.fvu,
    ce_loss_recovered: d.ce_loss_recovered,
    delta_lm_loss: d.delta_lm_loss,
    kl_score: d.kl_score,
    dead_fraction: d.dead_fraction,
  };
}

export async function runDemo(flags: DemoFlags): Promise<DemoReport> {
  const dir = resolve(flags.model ?? bundledModelDir());
  const { evalPath } = checkModel(dir);
  const evalJson = readEval(evalPath);
  const top = intFlag(flags.top, "--top", 1);
  const backend = defaultBackend();
  const gen = await runGenerate(
    { model: dir, maxTokens: flags.maxTokens, temperature: "0", seed: "0" },
    flags.prompt,
    () => {},
  );
  const features: DemoFeatures[] = [];
  for (const d of pick(evalJson)) {
    const path = join(dir, "gemma-scope", d.id);
    if (!existsSync(path))
      throw new UsageError(`${path} is listed in ${evalPath} but missing: rebuild with ${buildHint(dir)}`);
    const r = featuresReport({ model: dir, dict: path, top: String(top) }, flags.prompt);
    features.push({
      id: d.id,
      kind: d.kind,
      layer: d.layer,
      path,
      reads: r.dictionary.reads,
      tokens: r.tokens,
    });
  }
  return {
    model: dir,
    backend: backend.name,
    prompt: flags.prompt,
    generation: {
      text: gen.text,
      ids: gen.generated_ids,
      tokens: gen.generated_tokens,
      finish_reason: gen.finish_reason,
    },
    features,
    evaluation: {
      path: evalPath,
      model: evalJson.model ?? dir,
      tokens: evalJson.evaluation?.tokens ?? null,
      data: evalJson.evaluation?.data?.file ?? null,
      dictionaries: evalJson.dictionaries.map(row),
    },
    feature_page: demoFeaturePage(dir, flags.prompt),
    graph: demoGraph(dir, flags.prompt),
  };
}

const num = (v: number | null | undefined, d: number): string =>
  v === null || v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(d);

function table(rows: readonly string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  "))
    .join("\n");
}

/** The readable form of the report. */
export function demoText(r: DemoReport): string {
  const out: string[] = [];
  out.push(`model     ${r.model}`);
  out.push(`backend   ${r.backend}`);
  out.push("");
  out.push(`greedy generation (${r.generation.ids.length} tokens):`);
  out.push(`  ${r.prompt} [${r.generation.text ?? r.generation.ids.join(" ")}]`);
  for (const f of r.features) {
    out.push("");
    out.push(
      `top features per token: ${f.id} (${f.kind}, reads ${f.reads.length > 1 ? `${f.reads[0]} .. ${f.reads[f.reads.length - 1]}` : f.reads[0]})`,
    );
    const rows = [["token", "L0", "top features (index=activation)"]];
    for (const t of f.tokens) {
      rows.push([
        t.token === null ? String(t.id) : JSON.stringify(t.token),
        String(t.l0),
        t.top
          .map((x) => `${x.layer === undefined ? "" : `L${x.layer}/`}${x.feature}=${x.activation.toFixed(2)}`)
          .join("  "),
      ]);
    }
    const widths = [0, 1].map((c) => Math.max(...rows.map((x) => x[c].length)));
    for (const x of rows)
      out.push(`  ${x[0].padEnd(widths[0])}  ${x[1].padStart(widths[1])}  ${x[2]}`.trimEnd());
  }
  out.push("");
  out.push(
    `evaluation (${r.evaluation.path}${r.evaluation.tokens === null ? "" : `, ${r.evaluation.tokens} held-out tokens`}):`,
  );
  const rows = [["dictionary", "layer", "width", "L0", "FVU", "CE rec.", "dLM loss", "KL score", "dead"]];
  for (const d of r.evaluation.dictionaries) {
    rows.push([
      d.id,
      d.layer === null ? "all" : String(d.layer),
      String(d.width),
      num(d.l0, 1),
      num(d.fvu, 3),
      num(d.ce_loss_recovered, 3),
      num(d.delta_lm_loss, 4),
      num(d.kl_score, 3),
      num(d.dead_fraction, 3),
    ]);
  }
  out.push(
    table(rows)
      .split("\n")
      .map((l) => `  ${l}`)
      .join("\n"),
  );
  const fp = r.feature_page;
  if (fp !== null) {
    out.push("");
    out.push(
      `feature page (${fp.path}, ${fp.page.tokens} held-out tokens): the most active feature at the last prompt token ${JSON.stringify(fp.token)} (activation ${fp.activation.toFixed(2)})`,
    );
    out.push(
      pageText(fp.page, 4)
        .trimEnd()
        .split("\n")
        .map((l) => `  ${l}`)
        .join("\n"),
    );
    out.push(`  (glassbox features show ${fp.path} --feature ${fp.page.feature} --html page.html)`);
  }
  const g = r.graph;
  if (g !== null) {
    out.push("");
    out.push(
      `attribution graph through ${relative(r.model, g.dictionary)}: ${g.active_features} active features, ${g.visited_features} attributed, ${g.kept_nodes} nodes and ${g.kept_edges} edges kept (${(g.seconds.replacement + g.seconds.attribution + g.seconds.pruning).toFixed(1)} s)`,
    );
    out.push(
      `  replacement score ${g.scores.replacement.toFixed(3)}, completeness ${g.scores.completeness.toFixed(3)}; top logits ${g.logits
        .slice(0, 3)
        .map((l) => `${JSON.stringify(l.text)} ${l.probability.toFixed(3)}`)
        .join("  ")}`,
    );
    out.push("  strongest paths to the top logit, then through features (+ raises it, - lowers it):");
    for (const p of [...g.paths, ...g.feature_paths]) out.push(`  ${pathLine(p)}`);
    out.push(`  (glassbox graph --model ${r.model} --clt ${g.dictionary} --out graph.json "${r.prompt}")`);
  }
  return `${out.join("\n")}\n`;
}
