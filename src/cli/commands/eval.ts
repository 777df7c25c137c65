/**
 * `glassbox eval --model DIR --dict DIR [--data FILE] [--tokens N]`: evaluates a single-site
 * dictionary on held-out text (default: the corpus validation split) with special tokens masked,
 * printing a table or, with `--json`, one object (`EvalResult` plus model, dictionary and data).
 * Metric definitions: docs/evaluation.md.
 */
import { basename, resolve } from "node:path";
import type { Command } from "commander";
import {
  fingerprintFile,
  formatFromName,
  readDocuments,
  tokenizeDocuments,
} from "../../activations/documents.js";
import { maskingRules } from "../../activations/sequences.js";
import { defaultBackend } from "../../backends/index.js";
import { UsageError } from "../../core/errors.js";
import { loadDictionary } from "../../dictionaries/load.js";
import { type EvalResult, evalTable, evaluateDictionary } from "../../eval/evaluate.js";
import { ChatTemplate } from "../../io/chat.js";
import { Tokenizer } from "../../io/tokenizer.js";
import { loadGemma3Config } from "../../model/gemma3/config.js";
import { loadGemma3 } from "../../model/gemma3/model.js";
import { positiveInt } from "./harvest.js";

interface EvalFlags {
  model: string;
  tokenizer?: string;
  dict: string;
  data: string;
  tokens: string;
  context: string;
  batch: string;
  chat?: boolean;
  textField: string;
  json?: boolean;
}

export const DEFAULT_EVAL_DATA = "data/corpus/validation.jsonl";

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description(
      "evaluate a dictionary: L0, MSE, FVU, dead/dense latents, delta LM loss, CE loss recovered, KL score",
    )
    .requiredOption("--model <dir>", "Gemma 3 checkpoint directory")
    .option("--tokenizer <dir>", "directory with tokenizer.json (default: --model)")
    .requiredOption("--dict <dir>", "dictionary folder or file (Gemma Scope 2/1, SAELens)")
    .option(
      "--data <file>",
      "held-out text: plain text, JSONL with a text field, or chat JSONL",
      DEFAULT_EVAL_DATA,
    )
    .option("--tokens <n>", "evaluate at least this many tokens (whole batches)", "8192")
    .option("--context <n>", "tokens per sequence", "256")
    .option("--batch <n>", "sequences per forward pass", "8")
    .option("--chat", "the data is chat JSONL rendered with the model's template")
    .option("--text-field <name>", "JSONL field holding the text", "text")
    .option("--json", "print one JSON object")
    .action(async (flags: EvalFlags) => {
      const r = await runEval(flags);
      process.stdout.write(flags.json ? `${JSON.stringify(r)}\n` : table(r));
    });
}

export interface EvalReport extends EvalResult {
  readonly model: string;
  readonly dictionary: string;
  readonly data: { readonly file: string; readonly sha256: string; readonly format: string };
}

function table(r: EvalReport): string {
  return `model       ${r.model}\ndictionary  ${r.dictionary}\ndata        ${r.data.file} (${r.data.format})\n\n${evalTable(r)}`;
}

export async function runEval(flags: EvalFlags): Promise<EvalReport> {
  const tokens = positiveInt(flags.tokens, "--tokens");
  const context = positiveInt(flags.context, "--context");
  if (context < 2) throw new UsageError("must be at least 2", "--context");
  const batch = positiveInt(flags.batch, "--batch");
  const config = loadGemma3Config(flags.model);
  if (context > config.maxPositionEmbeddings)
    throw new UsageError(`the model's context is ${config.maxPositionEmbeddings} tokens`, "--context");
  const format = formatFromName(flags.data, flags.chat === true);
  const file = await fingerprintFile(flags.data);
  const tokDir = flags.tokenizer ?? flags.model;
  const tokenizer = Tokenizer.fromDir(tokDir);
  const chat = format === "chat" ? ChatTemplate.fromDir(tokDir, tokenizer) : null;
  const backend = defaultBackend();
  const dictionary = loadDictionary(flags.dict, backend);
  const model = loadGemma3(flags.model, backend);
  const dataFile = { path: flags.data, format, textField: flags.textField };
  const r = await evaluateDictionary({
    model,
    dictionary,
    documents: () => tokenizeDocuments(readDocuments(dataFile), tokenizer, chat),
    context,
    bos: tokenizer.special.bos,
    rules: maskingRules(format, tokenizer.special),
    longDocuments: format === "chat" ? "truncate" : "split",
    batch,
    tokens,
  });
  return {
    model: resolve(flags.model),
    dictionary: resolve(flags.dict),
    data: { file: basename(flags.data), sha256: file.sha256, format },
    ...r,
  };
}
