/**
 * `glassbox cot probe --model M [--items F] [--styles a,b] [--instruction TEXT]` (docs/chat.md;
 * src/chat/cot.ts): chain-of-thought faithfulness with inserted hints. Items are JSONL
 * `{"question", "hinted", "answer"?}`; without `--items` a built-in set of capitals, sums and
 * opposites is used. Prints each hint style's follow, mention and unfaithful counts, the unfaithful
 * rate and the hint tokens' share of the gradient x activation attribution to the answer.
 */
import type { Command } from "commander";
import {
  type CotItem,
  type CotResult,
  type CotSummary,
  cotProbe,
  defaultCotItems,
  HINT_STYLES,
  summarize,
} from "../../chat/cot.js";
import { readJsonlObjects } from "../../chat/prompts.js";
import { ChatError, UsageError } from "../../core/errors.js";
import { intFlag, jsonLine } from "../model-input.js";
import { Progress } from "../progress.js";
import { loadChatModel } from "./chat-model.js";

interface ProbeFlags {
  model?: string;
  items?: string;
  styles?: string;
  instruction: string;
  maxTokens: string;
  limit?: string;
  json?: boolean;
}

function readItems(file: string): CotItem[] {
  return readJsonlObjects(file, "probe set").map(({ line, value }) => {
    const q = value.question;
    const h = value.hinted;
    if (typeof q !== "string" || q.trim() === "")
      throw new ChatError(`line ${line} has no "question" string`, file);
    if (typeof h !== "string" || h.trim() === "")
      throw new ChatError(`line ${line} has no "hinted" string`, file);
    const a = value.answer;
    if (a !== undefined && typeof a !== "string")
      throw new ChatError(`line ${line}: "answer" must be a string`, file);
    return { question: q, hinted: h, ...(a === undefined ? {} : { answer: a }) };
  });
}

export interface ProbeReport {
  readonly model: string;
  readonly items: string;
  readonly instruction: string;
  readonly summary: CotSummary;
  readonly by_style: { style: string; summary: CotSummary }[];
  readonly results: CotResult[];
  readonly seconds: number;
}

function runProbe(flags: ProbeFlags): ProbeReport {
  const maxNewTokens = intFlag(flags.maxTokens, "--max-tokens", 1);
  let items = flags.items === undefined ? defaultCotItems() : readItems(flags.items);
  if (flags.limit !== undefined) items = items.slice(0, intFlag(flags.limit, "--limit", 1));
  let styles = [...HINT_STYLES];
  if (flags.styles !== undefined) {
    const names = flags.styles.split(",").map((s) => s.trim());
    for (const n of names)
      if (!styles.some((s) => s.name === n))
        throw new UsageError(
          `unknown hint style ${JSON.stringify(n)} (${HINT_STYLES.map((s) => s.name).join(", ")})`,
          "--styles",
        );
    styles = styles.filter((s) => names.includes(s.name));
  }
  const cm = loadChatModel(flags.model);
  const t0 = performance.now();
  const progress = new Progress(flags.json);
  const { results, summary } = cotProbe(cm.model, cm.tok, cm.template, items, {
    styles,
    instruction: flags.instruction,
    maxNewTokens,
    onProgress: progress.stage("probing"),
  });
  progress.stop();
  const by_style = styles.map((s) => ({
    style: s.name,
    summary: summarize(results.filter((r) => r.style === s.name)),
  }));
  return {
    model: cm.dir,
    items: flags.items ?? "built-in (capitals, sums, opposites)",
    instruction: flags.instruction,
    summary,
    by_style,
    results,
    seconds: (performance.now() - t0) / 1000,
  };
}

function probeText(r: ProbeReport): string {
  const f = (x: number | null) => (x === null ? "-" : x.toFixed(3));
  const lines = [
    `${r.summary.items} hinted prompts (${r.items}); instruction ${JSON.stringify(r.instruction)}`,
    `${"hint style".padEnd(12)}follows  mentions  unfaithful  unfaithful rate  hint attribution (follows / other)  hint tokens`,
  ];
  const row = (name: string, s: CotSummary) =>
    `${name.padEnd(12)}${String(s.follows).padStart(7)}  ${String(s.mentions).padStart(8)}  ${String(s.unfaithful).padStart(10)}  ` +
    `${f(s.unfaithful_rate).padStart(15)}  ${`${f(s.attribution_follows)} / ${f(s.attribution_other)}`.padStart(34)}  ${f(s.hint_tokens).padStart(11)}`;
  for (const s of r.by_style) lines.push(row(s.style, s.summary));
  lines.push(row("all", r.summary));
  const shown = r.results.filter((x) => x.follows).slice(0, 5);
  if (shown.length > 0) lines.push("", "replies that follow the hint:");
  for (const x of shown)
    lines.push(
      `  [${x.style}] ${x.question} (hint ${JSON.stringify(x.hinted)}): ${JSON.stringify(x.hinted_reply)}`,
    );
  lines.push(`(${r.seconds.toFixed(1)} s)`);
  return `${lines.join("\n")}\n`;
}

export function registerCot(program: Command): void {
  const cot = program.command("cot").description("chain-of-thought faithfulness probes");
  cot
    .command("probe")
    .description(
      "does the reply follow an inserted hint, does it say so, and how much does the answer draw on it",
    )
    .option("--model <dir>", "chat model checkpoint directory")
    .option("--items <file>", 'JSONL of {"question", "hinted", "answer"?} (default: a built-in set)')
    .option("--styles <names>", `hint styles (${HINT_STYLES.map((s) => s.name).join(", ")})`)
    .option(
      "--instruction <text>",
      'appended to each question, e.g. "Think step by step, then give the answer." (default: none)',
      "",
    )
    .option("--max-tokens <n>", "most reply tokens", "32")
    .option("--limit <n>", "at most n items")
    .option("--json", "print one JSON object")
    .action((flags: ProbeFlags) => {
      const r = runProbe(flags);
      process.stdout.write(flags.json ? jsonLine(r) : probeText(r));
    });
}
