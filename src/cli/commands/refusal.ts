/**
 * `glassbox refusal fit|apply|eval` (docs/chat.md): the refusal direction of a chat model
 * (src/chat/refusal.ts, Arditi et al. 2024).
 * - `fit --model M [--harmful F --harmless F | --prompts F] --out DIR`: difference of means on the
 *   train split, every candidate scored on the validation split, the choice written to
 *   DIR/direction.safetensors and DIR/fit.json. Without prompt files the model folder's
 *   `eval/indist.jsonl` is used (the bundled chat model ships it).
 * - `apply --model M --direction DIR (--ablate | --add A | --orthogonalize OUT) [PROMPT]`: the reply
 *   without and with the intervention, and the refusal scores; `--orthogonalize` writes a new
 *   checkpoint with the direction projected out of its weights (src/chat/orthogonalize.ts).
 * - `eval --model M [--direction DIR] --prompts F`: refusal rates and mean refusal scores of
 *   harmful and harmless prompts with the model as is, the direction ablated, added, and removed
 *   the way orthogonalised weights remove it.
 */
import type { Command } from "commander";
import { readDirection, type SavedDirection, writeDirection } from "../../chat/direction-file.js";
import { meanRefusalScore, refusalRate, replies } from "../../chat/evaluate.js";
import { componentAblationInterventions, orthogonalizeCheckpoint } from "../../chat/orthogonalize.js";
import { ofKind, type PromptRow, readPromptFile, splitRows } from "../../chat/prompts.js";
import {
  ablationInterventions,
  additionIntervention,
  fitRefusalDirection,
  refusalScore,
} from "../../chat/refusal.js";
import { UsageError } from "../../core/errors.js";
import type { Intervention } from "../../model/gemma3/interventions.js";
import { loadGemma3 } from "../../model/gemma3/model.js";
import { intFlag, jsonLine, numberFlag } from "../model-input.js";
import { Progress } from "../progress.js";
import { type ChatModel, collect, defaultPromptFile, loadChatModel, openingTokens } from "./chat-model.js";

interface FitFlags {
  model?: string;
  harmful?: string;
  harmless?: string;
  prompts?: string;
  out: string;
  validation: string;
  opening?: string[];
  maxKl: string;
  depthCutoff: string;
  json?: boolean;
}

interface PromptSets {
  readonly harmful: PromptRow[];
  readonly harmless: PromptRow[];
  readonly source: string;
}

function promptSets(flags: {
  model?: string;
  harmful?: string;
  harmless?: string;
  prompts?: string;
}): PromptSets {
  if ((flags.harmful === undefined) !== (flags.harmless === undefined))
    throw new UsageError("give both --harmful and --harmless (or --prompts with a kind field)");
  if (flags.harmful !== undefined && flags.harmless !== undefined) {
    if (flags.prompts !== undefined) throw new UsageError("give --prompts or --harmful/--harmless, not both");
    return {
      harmful: readPromptFile(flags.harmful, "harmful set"),
      harmless: readPromptFile(flags.harmless, "harmless set"),
      source: `${flags.harmful} + ${flags.harmless}`,
    };
  }
  const file = flags.prompts ?? (flags.model === undefined ? null : defaultPromptFile(flags.model, "indist"));
  if (file === null)
    throw new UsageError(
      "no prompts: give --harmful F --harmless F, or --prompts F (JSONL with a kind field)",
    );
  const rows = readPromptFile(file);
  return { harmful: ofKind(rows, "harmful", file), harmless: ofKind(rows, "harmless", file), source: file };
}

export interface FitReport {
  readonly format: "glassbox-refusal-fit";
  readonly model: string;
  readonly prompts: string;
  readonly sizes: {
    train: { harmful: number; harmless: number };
    validation: { harmful: number; harmless: number };
  };
  readonly refusal_tokens: number[];
  readonly positions: number;
  readonly chosen: { layer: number; position: number; ablation: number; kl: number; steering: number } | null;
  readonly baseline: { harmful: number; harmless: number };
  readonly candidates: number;
  readonly discarded: { depth: number; kl: number; steering: number };
  readonly scores: readonly {
    layer: number;
    position: number;
    ablation: number;
    kl: number;
    steering: number;
  }[];
  readonly seconds: number;
}

function runFit(flags: FitFlags): FitReport {
  const fraction = numberFlag(flags.validation, "--validation", 0.01, 0.99);
  const maxKl = numberFlag(flags.maxKl, "--max-kl", 0, 1e9);
  const depthCutoff = numberFlag(flags.depthCutoff, "--depth-cutoff", 0.01, 1);
  const sets = promptSets(flags);
  const cm = loadChatModel(flags.model);
  const t0 = performance.now();
  const h = splitRows(sets.harmful, fraction, "harmful");
  const s = splitRows(sets.harmless, fraction, "harmless");
  const ids = (rows: PromptRow[]) => rows.map((r) => cm.ids(r.prompt));
  const tokens = openingTokens(cm.tok, flags.opening);
  const progress = new Progress(flags.json);
  const validation = { harmful: ids(h.validation), harmless: ids(s.validation) };
  const fit = fitRefusalDirection(
    cm.model,
    { harmful: ids(h.train), harmless: ids(s.train) },
    validation,
    tokens,
    { maxKl, depthCutoff, onProgress: progress.stage("scoring candidates") },
  );
  progress.stop();
  const c = fit.selection.chosen;
  const count = (r: "depth" | "kl" | "steering") =>
    fit.selection.discarded.filter((d) => d.reason === r).length;
  const report: FitReport = {
    format: "glassbox-refusal-fit",
    model: cm.dir,
    prompts: sets.source,
    sizes: {
      train: { harmful: h.train.length, harmless: s.train.length },
      validation: { harmful: h.validation.length, harmless: s.validation.length },
    },
    refusal_tokens: tokens,
    positions: fit.candidates.positions,
    chosen: c === null ? null : { ...c },
    baseline: {
      harmful: meanRefusalScore(cm.model, validation.harmful, tokens, []),
      harmless: meanRefusalScore(cm.model, validation.harmless, tokens, []),
    },
    candidates: fit.scores.length,
    discarded: { depth: count("depth"), kl: count("kl"), steering: count("steering") },
    scores: fit.scores.map((x) => ({ ...x })),
    seconds: (performance.now() - t0) / 1000,
  };
  if (c === null || fit.direction === null)
    throw new UsageError(
      `every candidate was discarded (${report.discarded.kl} by KL, ${report.discarded.steering} by steering); ` +
        "try --max-kl larger, or more prompts",
    );
  writeDirection(
    flags.out,
    {
      kind: "refusal",
      layer: c.layer,
      position: c.position,
      model: cm.dir,
      name: "refusal",
      direction: fit.direction,
    },
    report,
  );
  return report;
}

function fitText(r: FitReport, out: string): string {
  const c = r.chosen!;
  const f = (x: number) => x.toFixed(3);
  return [
    `refusal direction: layer ${c.layer}, post-instruction position ${c.position} of ${r.positions}`,
    `  fitted on ${r.sizes.train.harmful} harmful + ${r.sizes.train.harmless} harmless prompts, ` +
      `scored on ${r.sizes.validation.harmful} + ${r.sizes.validation.harmless} (${r.prompts})`,
    `  harmful refusal score ${f(r.baseline.harmful)} -> ${f(c.ablation)} ablated`,
    `  harmless refusal score ${f(r.baseline.harmless)} -> ${f(c.steering)} added; KL under ablation ${f(c.kl)}`,
    `  ${r.candidates} candidates scored; discarded: ${r.discarded.kl} KL, ${r.discarded.steering} steering`,
    `  wrote ${out}/direction.safetensors and ${out}/fit.json (${r.seconds.toFixed(1)} s)`,
    "",
  ].join("\n");
}

interface ApplyFlags {
  model?: string;
  direction: string;
  ablate?: boolean;
  add?: string;
  orthogonalize?: string;
  dtype: string;
  system?: string;
  maxTokens: string;
  opening?: string[];
  json?: boolean;
}

function checkDirection(d: SavedDirection, cm: ChatModel, file: string): void {
  const D = cm.model.config.dModel;
  if (d.direction.length !== D)
    throw new UsageError(`the direction has ${d.direction.length} entries; ${cm.dir} has d_model ${D}`, file);
  if (d.layer < 0 || d.layer >= cm.model.config.layers)
    throw new UsageError(`the direction's layer ${d.layer} is not a layer of ${cm.dir}`, file);
}

interface Turn {
  readonly text: string;
  readonly refusal_score: number;
  readonly refused: boolean;
}

export interface ApplyReport {
  readonly mode: "ablate" | "add" | "orthogonalize";
  readonly layer: number;
  readonly scale?: number;
  readonly checkpoint?: string;
  readonly prompt: string | null;
  readonly baseline?: Turn;
  readonly applied?: Turn;
}

async function runApply(prompt: string | undefined, flags: ApplyFlags): Promise<ApplyReport> {
  const modes = [flags.ablate === true, flags.add !== undefined, flags.orthogonalize !== undefined].filter(
    Boolean,
  );
  if (modes.length !== 1) throw new UsageError("give exactly one of --ablate, --add A, --orthogonalize OUT");
  const maxNewTokens = intFlag(flags.maxTokens, "--max-tokens", 1);
  const dtype = flags.dtype;
  if (dtype !== "source" && dtype !== "f32" && dtype !== "bf16" && dtype !== "f16")
    throw new UsageError(`must be source, f32, bf16 or f16, got ${JSON.stringify(dtype)}`, "--dtype");
  if (prompt === undefined && flags.orthogonalize === undefined)
    throw new UsageError("no prompt: give the user message as an argument");
  const cm = loadChatModel(flags.model);
  const d = readDirection(flags.direction);
  checkDirection(d, cm, flags.direction);
  const tokens = openingTokens(cm.tok, flags.opening);
  let scale: number | undefined;
  let checkpoint: string | undefined;
  let model = cm.model;
  let interventions: Intervention[] = [];
  if (flags.ablate) interventions = ablationInterventions(cm.model, d.direction);
  else if (flags.add !== undefined) {
    scale = numberFlag(flags.add, "--add", -1e6, 1e6);
    interventions = [additionIntervention(cm.model, d.layer, d.direction, scale)];
  } else {
    checkpoint = flags.orthogonalize!;
    const progress = new Progress(flags.json);
    await orthogonalizeCheckpoint(cm.dir, d.direction, checkpoint, cm.model.backend, {
      dtype,
      onProgress: progress.stage("writing tensors"),
    });
    progress.stop();
    if (prompt !== undefined) model = loadGemma3(checkpoint, cm.model.backend);
  }
  const mode = flags.ablate ? "ablate" : flags.add !== undefined ? "add" : "orthogonalize";
  const base = {
    mode,
    layer: d.layer,
    prompt: prompt ?? null,
    ...(scale === undefined ? {} : { scale }),
  } as const;
  if (prompt === undefined) return { ...base, ...(checkpoint === undefined ? {} : { checkpoint }) };
  const p = cm.ids(prompt, flags.system);
  const turn = (m: typeof model, iv: Intervention[]): Turn => {
    const [reply] = replies(m, cm.tok, [p], iv, { maxNewTokens });
    const logits = m.forward([p.ids], { logits: "last", interventions: iv }).logits.toFloat32Array();
    return { text: reply.text, refused: reply.refused, refusal_score: refusalScore(logits, tokens) };
  };
  return {
    ...base,
    ...(checkpoint === undefined ? {} : { checkpoint }),
    baseline: turn(cm.model, []),
    applied: turn(model, interventions),
  };
}

function applyText(r: ApplyReport): string {
  const lines: string[] = [];
  const what =
    r.mode === "ablate"
      ? "direction ablated at every residual-stream site"
      : r.mode === "add"
        ? `direction x ${r.scale} added at layer ${r.layer}`
        : "orthogonalised weights";
  if (r.checkpoint !== undefined)
    lines.push(`wrote ${r.checkpoint} (direction projected out of the weights)`);
  if (r.baseline !== undefined && r.applied !== undefined) {
    const t = (name: string, x: Turn) =>
      `${name}  refusal score ${x.refusal_score.toFixed(3)}${x.refused ? " (refuses)" : ""}\n  ${JSON.stringify(x.text)}`;
    lines.push(t("model as is", r.baseline), t(what, r.applied));
  }
  return `${lines.join("\n")}\n`;
}

interface EvalFlags {
  model?: string;
  direction?: string;
  prompts?: string;
  harmful?: string;
  harmless?: string;
  modes: string;
  add: string;
  maxTokens: string;
  limit?: string;
  opening?: string[];
  json?: boolean;
}

const MODES = ["base", "ablate", "add", "weights"] as const;
type Mode = (typeof MODES)[number];

export interface EvalReport {
  readonly model: string;
  readonly prompts: string;
  readonly direction: string | null;
  readonly harmful: number;
  readonly harmless: number;
  readonly rows: readonly {
    mode: Mode;
    harmful_refused: number;
    harmless_refused: number;
    harmful_score: number;
    harmless_score: number;
  }[];
  readonly seconds: number;
}

function runEval(flags: EvalFlags): EvalReport {
  const modes = flags.modes.split(",").map((m) => m.trim());
  for (const m of modes)
    if (!(MODES as readonly string[]).includes(m))
      throw new UsageError(`unknown mode ${JSON.stringify(m)} (modes: ${MODES.join(", ")})`, "--modes");
  if (modes.some((m) => m !== "base") && flags.direction === undefined)
    throw new UsageError("modes other than base need --direction DIR", "--direction");
  const maxNewTokens = intFlag(flags.maxTokens, "--max-tokens", 1);
  const scale = numberFlag(flags.add, "--add", -1e6, 1e6);
  const heldout = flags.model === undefined ? null : defaultPromptFile(flags.model, "heldout");
  const sets = promptSets(
    flags.prompts === undefined && flags.harmful === undefined && heldout !== null
      ? { ...flags, prompts: heldout }
      : flags,
  );
  const limit = flags.limit === undefined ? Number.POSITIVE_INFINITY : intFlag(flags.limit, "--limit", 1);
  const cm = loadChatModel(flags.model);
  const d = flags.direction === undefined ? null : readDirection(flags.direction);
  if (d !== null) checkDirection(d, cm, flags.direction!);
  const tokens = openingTokens(cm.tok, flags.opening);
  const harmful = sets.harmful.slice(0, limit).map((r) => cm.ids(r.prompt));
  const harmless = sets.harmless.slice(0, limit).map((r) => cm.ids(r.prompt));
  const t0 = performance.now();
  const progress = new Progress(flags.json);
  const rows = (modes as Mode[]).map((mode) => {
    const iv: Intervention[] =
      mode === "base" || d === null
        ? []
        : mode === "ablate"
          ? ablationInterventions(cm.model, d.direction)
          : mode === "add"
            ? [additionIntervention(cm.model, d.layer, d.direction, scale)]
            : componentAblationInterventions(cm.model, d.direction);
    const a = replies(cm.model, cm.tok, harmful, iv, {
      maxNewTokens,
      onProgress: progress.stage(`${mode}: harmful`),
    });
    const b = replies(cm.model, cm.tok, harmless, iv, {
      maxNewTokens,
      onProgress: progress.stage(`${mode}: harmless`),
    });
    return {
      mode,
      harmful_refused: refusalRate(a),
      harmless_refused: refusalRate(b),
      harmful_score: meanRefusalScore(cm.model, harmful, tokens, iv),
      harmless_score: meanRefusalScore(cm.model, harmless, tokens, iv),
    };
  });
  progress.stop();
  return {
    model: cm.dir,
    prompts: sets.source,
    direction: flags.direction ?? null,
    harmful: harmful.length,
    harmless: harmless.length,
    rows,
    seconds: (performance.now() - t0) / 1000,
  };
}

const MODE_NAMES: Record<Mode, string> = {
  base: "model as is",
  ablate: "direction ablated (residual stream)",
  add: "direction added",
  weights: "direction removed as orthogonalised weights do",
};

function evalText(r: EvalReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`.padStart(8);
  const lines = [
    `${r.harmful} harmful + ${r.harmless} harmless prompts from ${r.prompts}${r.direction === null ? "" : `, direction ${r.direction}`}`,
    `${"".padEnd(48)}harmful  harmless   (refused; mean refusal score)`,
  ];
  for (const x of r.rows)
    lines.push(
      `${MODE_NAMES[x.mode].padEnd(48)}${pct(x.harmful_refused)} ${pct(x.harmless_refused)}   ` +
        `(${x.harmful_score.toFixed(2)}; ${x.harmless_score.toFixed(2)})`,
    );
  lines.push(`(${r.seconds.toFixed(1)} s)`);
  return `${lines.join("\n")}\n`;
}

export function registerRefusal(program: Command): void {
  const refusal = program
    .command("refusal")
    .description(
      "the refusal direction of a chat model: fit it, apply it (ablate, add, orthogonalise), measure it",
    );
  refusal
    .command("fit")
    .description(
      "fit the refusal direction (difference of means, selection by ablation with KL and steering filters)",
    )
    .option("--model <dir>", "chat model checkpoint directory")
    .option("--harmful <file>", 'JSONL of harmful prompts ({"prompt": ...} per line)')
    .option("--harmless <file>", "JSONL of harmless prompts")
    .option(
      "--prompts <file>",
      "one JSONL with a kind field (harmful / harmless); default: MODEL/eval/indist.jsonl",
    )
    .requiredOption("--out <dir>", "folder for direction.safetensors and fit.json")
    .option("--validation <fraction>", "share of each set (the last rows) kept for selection", "0.25")
    .option("--opening <text>", "a refusal opening whose first token counts as refusal (repeatable)", collect)
    .option("--max-kl <x>", "most KL on harmless prompts under ablation", "0.1")
    .option("--depth-cutoff <x>", "candidates from layers >= x * layers are discarded", "0.8")
    .option("--json", "print one JSON object (the fit report)")
    .action((flags: FitFlags) => {
      const r = runFit(flags);
      process.stdout.write(flags.json ? jsonLine(r) : fitText(r, flags.out));
    });
  refusal
    .command("apply")
    .description(
      "reply with the direction ablated or added, or write a checkpoint with it orthogonalised away",
    )
    .argument("[prompt]", "the user's message")
    .option("--model <dir>", "chat model checkpoint directory")
    .requiredOption("--direction <dir>", "folder written by refusal fit (or its direction.safetensors)")
    .option("--ablate", "project the direction out at every residual-stream site")
    .option("--add <a>", "add a * direction at its layer (every position)")
    .option("--orthogonalize <out>", "write a new checkpoint with the direction projected out of its weights")
    .option("--dtype <d>", "with --orthogonalize: source, f32, bf16 or f16", "source")
    .option("--system <text>", "a system prompt")
    .option("--max-tokens <n>", "most reply tokens", "32")
    .option("--opening <text>", "a refusal opening for the refusal score (repeatable)", collect)
    .option("--json", "print one JSON object")
    .action(async (prompt: string | undefined, flags: ApplyFlags) => {
      const r = await runApply(prompt, flags);
      process.stdout.write(flags.json ? jsonLine(r) : applyText(r));
    });
  refusal
    .command("eval")
    .description(
      "refusal rates of harmful and harmless prompts with the direction ablated, added or orthogonalised",
    )
    .option("--model <dir>", "chat model checkpoint directory")
    .option("--direction <dir>", "folder written by refusal fit")
    .option("--prompts <file>", "JSONL with a kind field; default: MODEL/eval/heldout.jsonl")
    .option("--harmful <file>", "JSONL of harmful prompts")
    .option("--harmless <file>", "JSONL of harmless prompts")
    .option("--modes <list>", "base, ablate, add, weights (comma-separated)", "base,ablate,add,weights")
    .option("--add <a>", "scale of the added direction", "1")
    .option("--max-tokens <n>", "reply tokens generated per prompt", "12")
    .option("--limit <n>", "at most n prompts of each kind")
    .option("--opening <text>", "a refusal opening for the refusal score (repeatable)", collect)
    .option("--json", "print one JSON object")
    .action((flags: EvalFlags) => {
      const r = runEval(flags);
      process.stdout.write(flags.json ? jsonLine(r) : evalText(r));
    });
}
