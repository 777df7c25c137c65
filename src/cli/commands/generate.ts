/**
 * `glassbox generate --model DIR [--chat] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P]
 * [--seed S] "prompt"`: continues the prompt, streaming the new text to stdout as each token is
 * made (also into a pipe), then a newline. Greedy unless `--temperature` > 0. It stops at the model's
 * stop ids (config.json / generation_config.json `eos_token_id`); `--chat` renders the prompt as a
 * user turn with the chat template and also stops at `<end_of_turn>`. Special tokens are not
 * printed. `--json` prints one object instead:
 * `{"prompt_ids", "prompt_tokens", "generated_ids", "generated_tokens", "text", "finish_reason"}`.
 */
import type { Command } from "commander";
import { UsageError } from "../../core/errors.js";
import type { Tokenizer } from "../../io/tokenizer.js";
import { type GenerateOptions, generateStream } from "../../model/gemma3/generate.js";
import {
  addModelOptions,
  decodeKnown,
  type InputFlags,
  intFlag,
  jsonLine,
  loadModel,
  numberFlag,
  prepareInput,
  tokenString,
} from "../model-input.js";

export interface GenerateFlags extends InputFlags {
  maxTokens: string;
  temperature: string;
  topK?: string;
  topP?: string;
  seed: string;
}

export interface GenerateReport {
  readonly prompt_ids: number[];
  readonly prompt_tokens: (string | null)[];
  readonly generated_ids: number[];
  readonly generated_tokens: (string | null)[];
  /** The generated text without special tokens (null without a tokenizer). */
  readonly text: string | null;
  /** "stop" when a stop token ended it, "length" at --max-tokens or the end of the context. */
  readonly finish_reason: "stop" | "length";
}

export function registerGenerate(program: Command): void {
  addModelOptions(
    program
      .command("generate")
      .description("generate a continuation of the prompt (streams tokens to stdout)")
      .argument("[prompt]", "prompt text"),
  )
    .option("--max-tokens <n>", "most tokens to generate", "64")
    .option("--temperature <t>", "sampling temperature; 0 = greedy", "0")
    .option("--top-k <k>", "sample only among the k most likely tokens")
    .option("--top-p <p>", "sample only among the most likely tokens reaching probability p")
    .option("--seed <s>", "sampling seed", "0")
    .action(async (prompt: string | undefined, flags: GenerateFlags) => {
      const write = (s: string): void => {
        process.stdout.write(s);
      };
      const report = await runGenerate(flags, prompt, flags.json ? () => {} : write);
      write(flags.json ? jsonLine(report) : "\n");
    });
}

/** Turns a growing list of ids into text increments, holding back an incomplete UTF-8 character. */
export class TextStream {
  readonly #tok: Tokenizer;
  readonly #ids: number[] = [];
  #printed = "";

  constructor(tokenizer: Tokenizer) {
    this.#tok = tokenizer;
  }

  /** The new text after adding `id` ("" while a character is incomplete or for special tokens). */
  push(id: number): string {
    this.#ids.push(id);
    const text = decodeKnown(this.#tok, this.#ids, true);
    if (text.endsWith("\uFFFD") || !text.startsWith(this.#printed)) return "";
    return this.#take(text);
  }

  /** Whatever is still held back. */
  flush(): string {
    const text = decodeKnown(this.#tok, this.#ids, true);
    return text.startsWith(this.#printed) ? this.#take(text) : "";
  }

  #take(text: string): string {
    const out = text.slice(this.#printed.length);
    this.#printed = text;
    return out;
  }
}

/**
 * Ids that end generation: the model's (config.json and generation_config.json `eos_token_id`),
 * plus, in chat mode, the tokenizer's `<end_of_turn>` and eos token.
 */
export function stopTokenIds(modelStops: readonly number[], tok: Tokenizer | null, chat: boolean): number[] {
  const stops = new Set(modelStops);
  if (chat && tok !== null) {
    if (tok.special.endOfTurn !== undefined) stops.add(tok.special.endOfTurn);
    stops.add(tok.special.eos);
  }
  return [...stops];
}

function samplingOptions(flags: GenerateFlags): Omit<GenerateOptions, "stopTokens"> {
  const temperature = numberFlag(flags.temperature, "--temperature", 0, 1e6);
  const options: { -readonly [K in keyof GenerateOptions]?: GenerateOptions[K] } = {
    maxNewTokens: intFlag(flags.maxTokens, "--max-tokens", 0),
    temperature,
    seed: intFlag(flags.seed, "--seed", 0),
  };
  if (flags.topK !== undefined) options.topK = intFlag(flags.topK, "--top-k", 1);
  if (flags.topP !== undefined) options.topP = numberFlag(flags.topP, "--top-p", Number.MIN_VALUE, 1);
  if (temperature === 0 && (options.topK !== undefined || options.topP !== undefined)) {
    throw new UsageError("--top-k and --top-p apply to sampling: also give --temperature > 0");
  }
  return { maxNewTokens: options.maxNewTokens ?? 0, ...options };
}

/**
 * Generates, calling `write` with each piece of new text as it is made (token ids separated by
 * spaces when there is no tokenizer), and returns the whole result.
 */
export async function runGenerate(
  flags: GenerateFlags,
  prompt: string | undefined,
  write: (text: string) => void,
): Promise<GenerateReport> {
  const sampling = samplingOptions(flags);
  const input = prepareInput(flags, prompt);
  const tok = input.tokenizer;
  const model = loadModel(input);
  const stops = stopTokenIds(model.stopTokenIds, tok, flags.chat === true);
  const stream = tok === null ? null : new TextStream(tok);
  const it = generateStream(model, input.ids, { ...sampling, stopTokens: stops });
  let first = true;
  for (;;) {
    const step = await it.next();
    if (step.done) {
      const rest = stream === null ? "" : stream.flush();
      if (rest !== "") write(rest);
      const generated = step.value.tokens[0];
      return {
        prompt_ids: input.ids,
        prompt_tokens: input.ids.map((id) => tokenString(tok, id)),
        generated_ids: generated,
        generated_tokens: generated.map((id) => tokenString(tok, id)),
        text: tok === null ? null : decodeKnown(tok, generated, true),
        finish_reason: step.value.finish[0],
      };
    }
    const piece = stream === null ? `${first ? "" : " "}${step.value.token}` : stream.push(step.value.token);
    first = false;
    if (piece !== "") write(piece);
  }
}
