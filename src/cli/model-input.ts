/**
 * What the model commands (`generate`, `logits`, `activations`) share: the `--model` / `--tokenizer`
 * / `--ids` / `--chat` / `--system` options, turning them into prompt ids (checked against the
 * model's vocabulary and context before any weight is read), loading the weights, and showing ids
 * as token strings.
 *
 * The tokenizer comes from the model directory unless `--tokenizer DIR` names another. `--ids`
 * feeds token ids directly (e.g. to compare with a parity fixture) and then needs no tokenizer; when
 * one is present anyway it is used to display the tokens.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { defaultBackend } from "../backends/index.js";
import { UsageError } from "../core/errors.js";
import { type ChatMessage, ChatTemplate } from "../io/chat.js";
import { Tokenizer } from "../io/tokenizer.js";
import { type Gemma3Config, loadGemma3Config } from "../model/gemma3/config.js";
import { type Gemma3Model, loadGemma3 } from "../model/gemma3/model.js";

export interface InputFlags {
  model: string;
  tokenizer?: string;
  ids?: string;
  chat?: boolean;
  system?: string;
  json?: boolean;
}

/** A prompt ready to run: ids within the model's vocabulary and context. */
export interface PreparedInput {
  readonly dir: string;
  readonly config: Gemma3Config;
  /** null when only `--ids` were given and no tokenizer is around. */
  readonly tokenizer: Tokenizer | null;
  /** Prompt token ids [seq]. */
  readonly ids: number[];
  /** The prompt text as the model sees it (the rendered template with `--chat`), or null for `--ids`. */
  readonly text: string | null;
}

/**
 * Adds the options every model command takes. `modelRequired: false` leaves `--model` optional for
 * commander (a command with subcommands checks it in its own action instead).
 */
export function addModelOptions(cmd: Command, options: { readonly modelRequired?: boolean } = {}): Command {
  const model = "Gemma 3 checkpoint directory (config.json + safetensors)";
  return (
    options.modelRequired === false
      ? cmd.option("--model <dir>", model)
      : cmd.requiredOption("--model <dir>", model)
  )
    .option("--tokenizer <dir>", "directory with tokenizer.json + tokenizer_config.json (default: --model)")
    .option("--ids <list>", "prompt as token ids, comma-separated (instead of text)")
    .option("--chat", "render the prompt as a user turn with the model's chat template")
    .option("--system <text>", "with --chat: a system prompt")
    .option("--json", "print one JSON object");
}

/** Parses `--ids "2, 9259,1902"`. */
export function parseIdList(list: string): number[] {
  const parts = list.split(/[\s,]+/).filter((p) => p !== "");
  if (parts.length === 0) throw new UsageError("no ids given", "--ids");
  return parts.map((p) => {
    if (!/^\d+$/.test(p)) throw new UsageError(`${JSON.stringify(p)} is not a token id`, "--ids");
    return Number(p);
  });
}

function tokenizerDir(flags: InputFlags): string | null {
  if (flags.tokenizer !== undefined) return flags.tokenizer;
  return existsSync(join(flags.model, "tokenizer.json")) ? flags.model : null;
}

/**
 * Reads the config and tokenizer (no weights) and turns the prompt into ids, checking them against
 * the model's vocabulary and context length.
 */
export function prepareInput(flags: InputFlags, prompt: string | undefined): PreparedInput {
  const config = loadGemma3Config(flags.model);
  if (flags.system !== undefined && !flags.chat) throw new UsageError("--system needs --chat");
  const tokDir = tokenizerDir(flags);
  let tokenizer: Tokenizer | null = null;
  let ids: number[];
  let text: string | null = null;
  if (flags.ids !== undefined) {
    if (prompt !== undefined) throw new UsageError("give either a text prompt or --ids, not both");
    if (flags.chat) throw new UsageError("--chat renders text; it cannot be combined with --ids");
    ids = parseIdList(flags.ids);
    if (tokDir !== null) tokenizer = Tokenizer.fromDir(tokDir);
  } else {
    if (prompt === undefined) throw new UsageError("no prompt: give a text argument or --ids");
    if (tokDir === null) {
      throw new UsageError(
        `${flags.model} has no tokenizer.json: pass --tokenizer DIR, or the prompt as token ids with --ids`,
      );
    }
    const tok = Tokenizer.fromDir(tokDir);
    tokenizer = tok;
    if (flags.chat) {
      const messages: ChatMessage[] = [];
      if (flags.system !== undefined) messages.push({ role: "system", content: flags.system });
      messages.push({ role: "user", content: prompt });
      const enc = ChatTemplate.fromDir(tokDir, tok).encode(tok, messages, { addGenerationPrompt: true });
      ids = enc.ids;
      text = enc.text;
    } else {
      ids = tok.encode(prompt);
      text = prompt;
    }
  }
  if (ids.length === 0) throw new UsageError("the prompt has no tokens");
  const bad = ids.findIndex((id) => id >= config.vocab);
  if (bad >= 0) {
    throw new UsageError(
      `token id ${ids[bad]} (position ${bad}) is outside the model's vocabulary of ${config.vocab}`,
    );
  }
  if (ids.length > config.maxPositionEmbeddings) {
    throw new UsageError(
      `the prompt has ${ids.length} tokens, more than the model's context of ${config.maxPositionEmbeddings} (max_position_embeddings)`,
    );
  }
  return { dir: flags.model, config, tokenizer, ids, text };
}

/** Loads the weights on the default backend (native when available). */
export function loadModel(input: PreparedInput): Gemma3Model {
  return loadGemma3(input.dir, defaultBackend());
}

/** The vocabulary string of an id, or null without a tokenizer or for ids the tokenizer lacks. */
export function tokenString(tok: Tokenizer | null, id: number): string | null {
  return tok !== null && id < tok.vocabSize ? tok.tokenString(id) : null;
}

/**
 * Text of `ids`, leaving out ids the tokenizer does not know (a model's vocabulary can be larger
 * than its tokenizer's, e.g. Gemma 3 4B's 64 unused rows), as Hugging Face's decoder does.
 */
export function decodeKnown(tok: Tokenizer, ids: readonly number[], skipSpecial: boolean): string {
  return tok.decode(
    ids.filter((id) => id < tok.vocabSize),
    { skipSpecial },
  );
}

/** A value printed as JSON on one line. */
export function jsonLine(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}

/** A whole-number flag value at least `min`. */
export function intFlag(value: string, flag: string, min: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`must be an integer >= ${min}, got ${JSON.stringify(value)}`, flag);
  }
  return n;
}

/** A finite number flag value within [min, max]. */
export function numberFlag(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`must be a number in [${min}, ${max}], got ${JSON.stringify(value)}`, flag);
  }
  return n;
}
