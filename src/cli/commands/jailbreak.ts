/**
 * `glassbox jailbreak scan --model M [--prompts F] [--templates F] [--dict D [--direction DIR]]`
 * (docs/chat.md; src/chat/jailbreak.ts): every jailbreak template applied to held-out harmful
 * requests, how often each gets a reply that is not a refusal and its mean refusal score; with a
 * dictionary, the features that carry refusal (decoder cosine with the refusal direction,
 * attribution to the refusal score), how the most successful template changes their activations,
 * and the refusal score with them ablated (harmful prompts) or clamped back (jailbroken prompts).
 */
import { existsSync } from "node:fs";
import type { Command } from "commander";
import { readDirection } from "../../chat/direction-file.js";
import { meanRefusalScore, refusalRate, replies } from "../../chat/evaluate.js";
import {
  checkTemplate,
  decoderCosines,
  featureEdits,
  JAILBREAK_TEMPLATES,
  type JailbreakTemplate,
  jailbreakIds,
  lastTokenActivations,
  refusalAttribution,
  topIndices,
} from "../../chat/jailbreak.js";
import { readPromptFile } from "../../chat/prompts.js";
import type { ChatPromptIds } from "../../chat/refusal.js";
import { ChatError, UsageError } from "../../core/errors.js";
import { loadDictionary } from "../../dictionaries/load.js";
import type { Intervention } from "../../model/gemma3/interventions.js";
import { intFlag, jsonLine } from "../model-input.js";
import { Progress } from "../progress.js";
import { collect, defaultPromptFile, loadChatModel, openingTokens } from "./chat-model.js";

interface ScanFlags {
  model?: string;
  prompts?: string;
  templates?: string;
  only?: string;
  compare?: string;
  limit: string;
  maxTokens: string;
  dict?: string;
  direction?: string;
  top: string;
  opening?: string[];
  json?: boolean;
}

function readTemplates(file: string): JailbreakTemplate[] {
  const rows = readPromptFile(file, "template set");
  return rows.map((r) => {
    const name = r.fields.name;
    if (typeof name !== "string" || name === "")
      throw new ChatError(`line ${r.line} has no "name" string`, file);
    const prefill = r.fields.prefill;
    if (prefill !== undefined && typeof prefill !== "string")
      throw new ChatError(`line ${r.line}: "prefill" must be a string`, file);
    const t: JailbreakTemplate = { name, user: r.prompt, ...(prefill === undefined ? {} : { prefill }) };
    checkTemplate(t, `${file}: line ${r.line}`);
    return t;
  });
}

interface FeatureRow {
  feature: number;
  cosine: number | null;
  attribution: number;
  harmful: number;
  jailbroken: number;
}

export interface ScanReport {
  readonly model: string;
  readonly prompts: string;
  readonly count: number;
  readonly templates: { name: string; success: number; refusal_score: number; example: string }[];
  readonly features?: {
    readonly dictionary: string;
    readonly jailbreak: string;
    readonly by_cosine: FeatureRow[];
    readonly by_attribution: FeatureRow[];
    readonly by_drop: FeatureRow[];
    /** Harmful prompts, the top features by attribution ablated everywhere. */
    readonly ablated: {
      refusal_score_before: number;
      refusal_score_after: number;
      refused_before: number;
      refused_after: number;
    };
    /** Jailbroken prompts, the top features by drop clamped to their harmful mean at the last token. */
    readonly restored: {
      refusal_score_before: number;
      refusal_score_after: number;
      refused_before: number;
      refused_after: number;
    };
  };
  readonly seconds: number;
}

function runScan(flags: ScanFlags): ScanReport {
  const limit = intFlag(flags.limit, "--limit", 1);
  const maxNewTokens = intFlag(flags.maxTokens, "--max-tokens", 1);
  const topK = intFlag(flags.top, "--top", 1);
  if (flags.direction !== undefined && flags.dict === undefined)
    throw new UsageError("--direction ranks dictionary features: give --dict too", "--direction");
  const file =
    flags.prompts ?? (flags.model === undefined ? null : defaultPromptFile(flags.model, "heldout"));
  if (file === null)
    throw new UsageError("no prompts: give --prompts F (JSONL of harmful requests)", "--prompts");
  const all = readPromptFile(file, "harmful set");
  const harmfulRows = all.some((r) => r.kind !== undefined) ? all.filter((r) => r.kind === "harmful") : all;
  if (harmfulRows.length === 0) throw new ChatError('no rows with "kind": "harmful"', file);
  let templates = flags.templates === undefined ? [...JAILBREAK_TEMPLATES] : readTemplates(flags.templates);
  if (flags.only !== undefined) {
    const names = flags.only.split(",").map((s) => s.trim());
    for (const n of names)
      if (!templates.some((t) => t.name === n))
        throw new UsageError(
          `no template named ${JSON.stringify(n)} (${templates.map((t) => t.name).join(", ")})`,
          "--only",
        );
    templates = templates.filter((t) => names.includes(t.name));
  }
  if (flags.dict !== undefined && !existsSync(flags.dict))
    throw new UsageError(`${flags.dict}: no such folder`, "--dict");
  const cm = loadChatModel(flags.model);
  const tokens = openingTokens(cm.tok, flags.opening);
  const requests = harmfulRows.slice(0, limit).map((r) => r.prompt);
  const t0 = performance.now();
  const progress = new Progress(flags.json);
  const ids = new Map<string, ChatPromptIds[]>();
  const results = templates.map((t) => {
    const ps = requests.map((q) => jailbreakIds(cm.template, cm.tok, t, q));
    ids.set(t.name, ps);
    const rs = replies(cm.model, cm.tok, ps, [], { maxNewTokens, onProgress: progress.stage(t.name) });
    return {
      name: t.name,
      success: 1 - refusalRate(rs),
      refusal_score: meanRefusalScore(cm.model, ps, tokens, []),
      example: rs[0].text,
    };
  });
  const report: ScanReport = {
    model: cm.dir,
    prompts: file,
    count: requests.length,
    templates: results,
    seconds: 0,
  };
  if (flags.dict === undefined) return { ...report, seconds: (performance.now() - t0) / 1000 };

  const dict = loadDictionary(flags.dict, cm.model.backend);
  const plain = ids.get("none") ?? requests.map((q) => cm.ids(q));
  // The last token of a prefilled prompt is inside the model's turn: not comparable to the plain
  // prompt's, so the default comparison is the most successful template without a prefill.
  const candidates = results.filter((r, i) =>
    flags.compare === undefined
      ? r.name !== "none" && templates[i].prefill === undefined
      : r.name === flags.compare,
  );
  if (flags.compare !== undefined && candidates.length === 0)
    throw new UsageError(`no template named ${JSON.stringify(flags.compare)} was run`, "--compare");
  const best = candidates.sort((a, b) => b.success - a.success)[0];
  if (best === undefined)
    throw new UsageError("feature analysis needs a template besides none (without a prefill)", "--only");
  const broken = ids.get(best.name)!;
  const direction = flags.direction === undefined ? null : readDirection(flags.direction).direction;
  const cos = direction === null ? null : decoderCosines(dict, cm.model, direction);
  const att = refusalAttribution(cm.model, dict, plain, tokens, progress.stage("attribution"));
  const harmfulActs = lastTokenActivations(cm.model, dict, plain);
  const brokenActs = lastTokenActivations(cm.model, dict, broken);
  const row = (i: number): FeatureRow => ({
    feature: i,
    cosine: cos === null ? null : cos[i],
    attribution: att[i],
    harmful: harmfulActs[i],
    jailbroken: brokenActs[i],
  });
  const drop = harmfulActs.map((h, i) => h - brokenActs[i]);
  const topAtt = topIndices(att, topK);
  const topDrop = topIndices(drop, topK);
  const ablate = featureEdits(cm.model, dict, topAtt, null);
  // Clamping is per prompt: the last token's index differs.
  const clampLast = (p: ChatPromptIds) =>
    featureEdits(cm.model, dict, topDrop, harmfulActs, [p.ids.length - 1]);
  const refusedWith = (ps: ChatPromptIds[], edits: (p: ChatPromptIds) => Intervention[]) =>
    ps.filter((p) => replies(cm.model, cm.tok, [p], edits(p), { maxNewTokens })[0].refused).length /
    ps.length;
  const scoreWith = (ps: ChatPromptIds[], edits: (p: ChatPromptIds) => Intervention[]) =>
    ps.reduce((s, p) => s + meanRefusalScore(cm.model, [p], tokens, edits(p)), 0) / ps.length;
  const none = results.find((r) => r.name === "none");
  const features = {
    dictionary: flags.dict,
    jailbreak: best.name,
    by_cosine: cos === null ? [] : topIndices(cos, topK).map(row),
    by_attribution: topAtt.map(row),
    by_drop: topDrop.map(row),
    ablated: {
      refusal_score_before: none?.refusal_score ?? scoreWith(plain, () => []),
      refusal_score_after: scoreWith(plain, () => ablate),
      refused_before: none === undefined ? refusedWith(plain, () => []) : 1 - none.success,
      refused_after: refusedWith(plain, () => ablate),
    },
    restored: {
      refusal_score_before: best.refusal_score,
      refusal_score_after: scoreWith(broken, clampLast),
      refused_before: 1 - best.success,
      refused_after: refusedWith(broken, clampLast),
    },
  };
  progress.stop();
  return { ...report, features, seconds: (performance.now() - t0) / 1000 };
}

function scanText(r: ScanReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const lines = [
    `${r.count} harmful requests from ${r.prompts}`,
    `${"template".padEnd(22)}succeeds   refusal score   first reply`,
  ];
  for (const t of r.templates)
    lines.push(
      `${t.name.padEnd(22)}${pct(t.success).padStart(8)}   ${t.refusal_score.toFixed(2).padStart(13)}   ${JSON.stringify(t.example)}`,
    );
  const f = r.features;
  if (f !== undefined) {
    const table = (title: string, rows: FeatureRow[]) => {
      if (rows.length === 0) return;
      lines.push("", title, "  feature   cosine   attribution   harmful   jailbroken");
      for (const x of rows)
        lines.push(
          `  ${String(x.feature).padStart(7)}   ${(x.cosine === null ? "-" : x.cosine.toFixed(3)).padStart(6)}   ` +
            `${x.attribution.toFixed(4).padStart(11)}   ${x.harmful.toFixed(3).padStart(7)}   ${x.jailbroken.toFixed(3).padStart(10)}`,
        );
    };
    table(`features by decoder cosine with the refusal direction (${f.dictionary})`, f.by_cosine);
    table("features by attribution to the refusal score (harmful prompts)", f.by_attribution);
    table(`features that ${f.jailbreak} lowers most at the last token`, f.by_drop);
    lines.push(
      "",
      `harmful prompts, top features by attribution ablated: refusal score ${f.ablated.refusal_score_before.toFixed(2)} -> ` +
        `${f.ablated.refusal_score_after.toFixed(2)}, refused ${pct(f.ablated.refused_before)} -> ${pct(f.ablated.refused_after)}`,
      `${f.jailbreak} prompts, top dropped features clamped to their harmful mean: refusal score ` +
        `${f.restored.refusal_score_before.toFixed(2)} -> ${f.restored.refusal_score_after.toFixed(2)}, refused ` +
        `${pct(f.restored.refused_before)} -> ${pct(f.restored.refused_after)}`,
    );
  }
  lines.push(`(${r.seconds.toFixed(1)} s)`);
  return `${lines.join("\n")}\n`;
}

export function registerJailbreak(program: Command): void {
  const jailbreak = program.command("jailbreak").description("jailbreak analysis of a chat model");
  jailbreak
    .command("scan")
    .description("which jailbreak templates get past refusal, and which dictionary features carry it")
    .option("--model <dir>", "chat model checkpoint directory")
    .option(
      "--prompts <file>",
      "JSONL of harmful requests (rows of kind harmful); default: MODEL/eval/heldout.jsonl",
    )
    .option(
      "--templates <file>",
      'JSONL of {"name", "prompt" with {prompt}, "prefill"?} (default: the built-in set)',
    )
    .option("--only <names>", "only these templates (comma-separated)")
    .option("--limit <n>", "at most n requests", "40")
    .option("--max-tokens <n>", "reply tokens generated per prompt", "12")
    .option("--dict <dir>", "a per-layer SAE or transcoder folder: rank its features")
    .option("--direction <dir>", "refusal direction (refusal fit) for the decoder cosine ranking")
    .option(
      "--compare <name>",
      "the jailbreak compared with the plain requests (default: the most successful without a prefill)",
    )
    .option("--top <k>", "features per ranking (and ablated / clamped)", "10")
    .option("--opening <text>", "a refusal opening for the refusal score (repeatable)", collect)
    .option("--json", "print one JSON object")
    .action((flags: ScanFlags) => {
      const r = runScan(flags);
      process.stdout.write(flags.json ? jsonLine(r) : scanText(r));
    });
}
