/**
 * `glassbox vector fit|monitor|steer` (docs/chat.md): persona / behaviour vectors from contrasting
 * responses (src/chat/vectors.ts).
 * - `fit --model M (--positive F --negative F | --pairs F) --out DIR [--layer L]`: rows are
 *   `{"prompt", "response"}` (with `--pairs`, also `"kind": "positive" | "negative"`); the last
 *   `--validation` share of each set chooses the layer.
 * - `monitor --model M --vector DIR [--response TEXT] PROMPT`: the projection on the vector at every
 *   token of the conversation (the reply is generated greedily unless given).
 * - `steer --model M --vector DIR --scale A PROMPT`: replies without and with scale * vector added.
 */
import type { Command } from "commander";
import { readDirection, type SavedDirection, writeDirection } from "../../chat/direction-file.js";
import { replies } from "../../chat/evaluate.js";
import { ofKind, type PromptRow, readPromptFile, splitRows } from "../../chat/prompts.js";
import { additionIntervention } from "../../chat/refusal.js";
import {
  dot,
  fitVector,
  projections,
  type ResponseExample,
  responseExample,
  unitVector,
} from "../../chat/vectors.js";
import { ChatError, UsageError } from "../../core/errors.js";
import { intFlag, jsonLine, numberFlag } from "../model-input.js";
import { Progress } from "../progress.js";
import { type ChatModel, loadChatModel } from "./chat-model.js";

interface FitFlags {
  model?: string;
  positive?: string;
  negative?: string;
  pairs?: string;
  out: string;
  name: string;
  layer?: string;
  validation: string;
  json?: boolean;
}

function responseRows(flags: FitFlags): { positive: PromptRow[]; negative: PromptRow[]; source: string } {
  const withResponse = (rows: PromptRow[], file: string) => {
    const bad = rows.find((r) => r.response === undefined || r.response.trim() === "");
    if (bad !== undefined) throw new ChatError(`line ${bad.line} has no "response" string`, file);
    return rows;
  };
  if (flags.pairs !== undefined) {
    if (flags.positive !== undefined || flags.negative !== undefined)
      throw new UsageError("give --pairs or --positive/--negative, not both");
    const rows = withResponse(readPromptFile(flags.pairs, "response set"), flags.pairs);
    return {
      positive: ofKind(rows, "positive", flags.pairs),
      negative: ofKind(rows, "negative", flags.pairs),
      source: flags.pairs,
    };
  }
  if (flags.positive === undefined || flags.negative === undefined)
    throw new UsageError(
      "give --positive F and --negative F, or --pairs F (JSONL with prompt, response, kind)",
    );
  return {
    positive: withResponse(readPromptFile(flags.positive, "positive set"), flags.positive),
    negative: withResponse(readPromptFile(flags.negative, "negative set"), flags.negative),
    source: `${flags.positive} + ${flags.negative}`,
  };
}

export interface VectorFitReport {
  readonly format: "glassbox-vector-fit";
  readonly name: string;
  readonly model: string;
  readonly responses: string;
  readonly sizes: {
    train: { positive: number; negative: number };
    validation: { positive: number; negative: number };
  };
  readonly layer: number;
  /** Validation separation per layer. */
  readonly separation: number[];
  readonly norm: number;
  readonly seconds: number;
}

function runFit(flags: FitFlags): VectorFitReport {
  const fraction = numberFlag(flags.validation, "--validation", 0.01, 0.99);
  const rows = responseRows(flags);
  const cm = loadChatModel(flags.model);
  const layer = flags.layer === undefined ? undefined : intFlag(flags.layer, "--layer", 0);
  const ex = (rs: PromptRow[]) => rs.map((r) => responseExample(cm.template, cm.tok, r.prompt, r.response!));
  const p = splitRows(rows.positive, fraction, "positive");
  const n = splitRows(rows.negative, fraction, "negative");
  const t0 = performance.now();
  const progress = new Progress(flags.json);
  const fit = fitVector(
    cm.model,
    { positive: ex(p.train), negative: ex(n.train) },
    { positive: ex(p.validation), negative: ex(n.validation) },
    { ...(layer === undefined ? {} : { layer }), onProgress: progress.stage("responses") },
  );
  progress.stop();
  const v = fit.vectors[fit.layer];
  const report: VectorFitReport = {
    format: "glassbox-vector-fit",
    name: flags.name,
    model: cm.dir,
    responses: rows.source,
    sizes: {
      train: { positive: p.train.length, negative: n.train.length },
      validation: { positive: p.validation.length, negative: n.validation.length },
    },
    layer: fit.layer,
    separation: [...fit.separation],
    norm: Math.sqrt(dot(v, v)),
    seconds: (performance.now() - t0) / 1000,
  };
  writeDirection(
    flags.out,
    { kind: "vector", layer: fit.layer, position: -1, model: cm.dir, name: flags.name, direction: v },
    report,
  );
  return report;
}

function fitText(r: VectorFitReport, out: string): string {
  return [
    `vector ${JSON.stringify(r.name)}: layer ${r.layer}, norm ${r.norm.toFixed(3)}`,
    `  fitted on ${r.sizes.train.positive} positive + ${r.sizes.train.negative} negative responses (${r.responses})`,
    `  validation separation by layer: ${r.separation.map((s, l) => `${l}: ${s.toFixed(2)}`).join(", ")}`,
    `  wrote ${out}/direction.safetensors and ${out}/fit.json (${r.seconds.toFixed(1)} s)`,
    "",
  ].join("\n");
}

function loadVector(cm: ChatModel, path: string): SavedDirection {
  const d = readDirection(path);
  const D = cm.model.config.dModel;
  if (d.direction.length !== D)
    throw new UsageError(`the vector has ${d.direction.length} entries; ${cm.dir} has d_model ${D}`, path);
  if (d.layer >= cm.model.config.layers)
    throw new UsageError(`the vector's layer ${d.layer} is not a layer of ${cm.dir}`, path);
  return d;
}

interface MonitorFlags {
  model?: string;
  vector: string;
  response?: string;
  layer?: string;
  system?: string;
  maxTokens: string;
  json?: boolean;
}

export interface MonitorReport {
  readonly layer: number;
  readonly vector: string;
  readonly tokens: { token: string; part: "prompt" | "response" | "template"; projection: number }[];
  /** Projection at the last token before the response (what the model is about to do). */
  readonly before_response: number;
  readonly response_mean: number;
  readonly response: string;
}

function runMonitor(prompt: string | undefined, flags: MonitorFlags): MonitorReport {
  if (prompt === undefined) throw new UsageError("no prompt: give the user message as an argument");
  const cm = loadChatModel(flags.model);
  const d = loadVector(cm, flags.vector);
  const layer = flags.layer === undefined ? d.layer : intFlag(flags.layer, "--layer", 0);
  if (layer >= cm.model.config.layers) throw new UsageError(`layer ${layer} is out of range`, "--layer");
  const maxNewTokens = intFlag(flags.maxTokens, "--max-tokens", 1);
  const response =
    flags.response ?? replies(cm.model, cm.tok, [cm.ids(prompt, flags.system)], [], { maxNewTokens })[0].text;
  let ex: ResponseExample;
  try {
    ex = responseExample(cm.template, cm.tok, prompt, response, flags.system);
  } catch (e) {
    if (e instanceof ChatError && flags.response === undefined)
      throw new ChatError(`the model's reply ${JSON.stringify(response)} is empty: nothing to monitor`);
    throw e;
  }
  const proj = projections(cm.model, ex.ids, layer, d.direction);
  const part = (r: string) =>
    r === "model" || r === "assistant" ? "response" : r === "template" ? "template" : "prompt";
  const first = ex.response[0];
  return {
    layer,
    vector: d.name,
    tokens: ex.ids.map((id, t) => ({
      token: cm.tok.tokenString(id),
      part: part(ex.roles[t]),
      projection: proj[t],
    })),
    before_response: proj[first - 1],
    response_mean: ex.response.reduce((s, t) => s + proj[t], 0) / ex.response.length,
    response,
  };
}

function monitorText(r: MonitorReport): string {
  const lines = [`projection on ${JSON.stringify(r.vector)} at resid_pre of layer ${r.layer}`];
  for (const t of r.tokens)
    lines.push(`  ${t.projection.toFixed(3).padStart(9)}  ${t.part.padEnd(8)} ${JSON.stringify(t.token)}`);
  lines.push(
    `before the response: ${r.before_response.toFixed(3)}; mean over the response: ${r.response_mean.toFixed(3)}`,
  );
  return `${lines.join("\n")}\n`;
}

interface SteerFlags {
  model?: string;
  vector: string;
  scale: string;
  layer?: string;
  system?: string;
  maxTokens: string;
  json?: boolean;
}

export interface VectorSteerReport {
  readonly layer: number;
  readonly scale: number;
  readonly baseline: { text: string; projection: number };
  readonly steered: { text: string; projection: number };
}

function runSteer(prompt: string | undefined, flags: SteerFlags): VectorSteerReport {
  if (prompt === undefined) throw new UsageError("no prompt: give the user message as an argument");
  const cm = loadChatModel(flags.model);
  const d = loadVector(cm, flags.vector);
  const scale = numberFlag(flags.scale, "--scale", -1e6, 1e6);
  const layer = flags.layer === undefined ? d.layer : intFlag(flags.layer, "--layer", 0);
  const maxNewTokens = intFlag(flags.maxTokens, "--max-tokens", 1);
  const p = cm.ids(prompt, flags.system);
  const iv = [additionIntervention(cm.model, layer, d.direction, scale)];
  const u = unitVector(d.direction);
  // The projection of each reply, read in the unsteered model (what a monitor would see).
  const projectionOf = (text: string) => {
    if (text.trim() === "") return 0;
    const ex = responseExample(cm.template, cm.tok, prompt, text, flags.system);
    const pr = projections(cm.model, ex.ids, d.layer, u);
    return ex.response.reduce((s, t) => s + pr[t], 0) / ex.response.length;
  };
  const [base] = replies(cm.model, cm.tok, [p], [], { maxNewTokens });
  const [steered] = replies(cm.model, cm.tok, [p], iv, { maxNewTokens });
  return {
    layer,
    scale,
    baseline: { text: base.text, projection: projectionOf(base.text) },
    steered: { text: steered.text, projection: projectionOf(steered.text) },
  };
}

function steerText(r: VectorSteerReport): string {
  return [
    `baseline   (projection ${r.baseline.projection.toFixed(3)})  ${JSON.stringify(r.baseline.text)}`,
    `steered    (projection ${r.steered.projection.toFixed(3)}; ${r.scale} x vector at layer ${r.layer})  ${JSON.stringify(r.steered.text)}`,
    "",
  ].join("\n");
}

export function registerVector(program: Command): void {
  const vector = program
    .command("vector")
    .description(
      "persona / behaviour vectors: difference of means of contrasting responses; monitor and steer",
    );
  vector
    .command("fit")
    .description("fit a vector from positive and negative responses (JSONL of {prompt, response})")
    .option("--model <dir>", "chat model checkpoint directory")
    .option("--positive <file>", "JSONL of {prompt, response} showing the behaviour")
    .option("--negative <file>", "JSONL of {prompt, response} without it")
    .option("--pairs <file>", "one JSONL with kind positive / negative")
    .requiredOption("--out <dir>", "folder for direction.safetensors and fit.json")
    .option("--name <name>", "the vector's name", "vector")
    .option("--layer <l>", "use this layer instead of choosing by validation separation")
    .option("--validation <fraction>", "share of each set (the last rows) used to choose the layer", "0.25")
    .option("--json", "print one JSON object")
    .action((flags: FitFlags) => {
      const r = runFit(flags);
      process.stdout.write(flags.json ? jsonLine(r) : fitText(r, flags.out));
    });
  vector
    .command("monitor")
    .description("projection on the vector at every token of a conversation")
    .argument("[prompt]", "the user's message")
    .option("--model <dir>", "chat model checkpoint directory")
    .requiredOption("--vector <dir>", "folder written by vector fit (or refusal fit)")
    .option("--response <text>", "the model turn (default: the model's own greedy reply)")
    .option("--layer <l>", "read at this layer's resid_pre (default: the vector's)")
    .option("--system <text>", "a system prompt")
    .option("--max-tokens <n>", "most reply tokens when generating", "32")
    .option("--json", "print one JSON object")
    .action((prompt: string | undefined, flags: MonitorFlags) => {
      const r = runMonitor(prompt, flags);
      process.stdout.write(flags.json ? jsonLine(r) : monitorText(r));
    });
  vector
    .command("steer")
    .description("replies without and with the vector added (every position)")
    .argument("[prompt]", "the user's message")
    .option("--model <dir>", "chat model checkpoint directory")
    .requiredOption("--vector <dir>", "folder written by vector fit (or refusal fit)")
    .requiredOption("--scale <a>", "add a * vector (negative: subtract)")
    .option("--layer <l>", "add at this layer's resid_pre (default: the vector's)")
    .option("--system <text>", "a system prompt")
    .option("--max-tokens <n>", "most reply tokens", "32")
    .option("--json", "print one JSON object")
    .action((prompt: string | undefined, flags: SteerFlags) => {
      const r = runSteer(prompt, flags);
      process.stdout.write(flags.json ? jsonLine(r) : steerText(r));
    });
}
