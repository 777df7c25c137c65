/**
 * `glassbox logits --model DIR [--top K] "text"`: the model's most likely next tokens after the
 * prompt (log-probabilities at the last position). `--json` prints
 * `{"tokens": [...], "ids": [...], "top": [{"token", "id", "logprob"}]}`; `token` is the vocabulary
 * string (null when the tokenizer lacks the id or there is no tokenizer).
 */
import type { Command } from "commander";
import { UsageError } from "../../core/errors.js";
import { logSoftmax, topk } from "../../core/ops/index.js";
import {
  addModelOptions,
  type InputFlags,
  jsonLine,
  loadModel,
  prepareInput,
  tokenString,
} from "../model-input.js";

interface LogitsFlags extends InputFlags {
  top: string;
}

export interface TopToken {
  readonly token: string | null;
  readonly id: number;
  readonly logprob: number;
}

export interface LogitsReport {
  /** Prompt tokens as vocabulary strings (null where unknown). */
  readonly tokens: (string | null)[];
  readonly ids: number[];
  /** Most likely next tokens, most likely first. */
  readonly top: TopToken[];
}

export function registerLogits(program: Command): void {
  addModelOptions(
    program
      .command("logits")
      .description("top next-token predictions at the last position of the prompt")
      .argument("[text]", "prompt text"),
  )
    .option("--top <k>", "how many predictions", "10")
    .action((text: string | undefined, flags: LogitsFlags) => {
      const report = logitsReport(flags, text);
      process.stdout.write(flags.json ? jsonLine(report) : logitsTable(report));
    });
}

/** Runs the model on the prompt and returns the top-k next tokens. */
export function logitsReport(flags: LogitsFlags, text: string | undefined): LogitsReport {
  const k = Number(flags.top);
  if (!Number.isInteger(k) || k < 1)
    throw new UsageError(`must be a positive integer, got ${flags.top}`, "--top");
  const input = prepareInput(flags, text);
  if (k > input.config.vocab)
    throw new UsageError(`is larger than the vocabulary (${input.config.vocab})`, "--top");
  const model = loadModel(input);
  const { logits } = model.forward([input.ids], { logits: "last" });
  const lp = logSoftmax(logits);
  const best = topk(lp, k);
  const top: TopToken[] = [];
  for (let i = 0; i < k; i++) {
    const id = best.indices.data[i];
    top.push({ token: tokenString(input.tokenizer, id), id, logprob: best.values.data[i] });
  }
  return { tokens: input.ids.map((id) => tokenString(input.tokenizer, id)), ids: input.ids, top };
}

function show(token: string | null): string {
  return token === null ? "?" : JSON.stringify(token);
}

function logitsTable(r: LogitsReport): string {
  const lines = [`prompt: ${r.ids.length} tokens: ${r.tokens.map(show).join(" ")}`, ""];
  const rows = [["rank", "id", "token", "logprob", "prob"]];
  r.top.forEach((t, i) => {
    rows.push([
      String(i + 1),
      String(t.id),
      show(t.token),
      t.logprob.toFixed(4),
      Math.exp(t.logprob).toFixed(4),
    ]);
  });
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  for (const row of rows) {
    lines.push(
      row
        .map((cell, c) => (c === 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
        .join("  ")
        .trimEnd(),
    );
  }
  return `${lines.join("\n")}\n`;
}
