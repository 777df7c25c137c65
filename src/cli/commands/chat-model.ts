/**
 * What the chat commands (`refusal`, `jailbreak`, `cot`, `vector`) share: the model with its
 * tokenizer and chat template (a model without a template is refused with the reason), prompts
 * rendered as user turns, and the refusal tokens.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { defaultBackend } from "../../backends/index.js";
import { DEFAULT_REFUSAL_OPENINGS } from "../../chat/evaluate.js";
import { type ChatPromptIds, chatPromptIds, refusalTokens } from "../../chat/refusal.js";
import { GlassboxError, UsageError } from "../../core/errors.js";
import { ChatTemplate } from "../../io/chat.js";
import { Tokenizer } from "../../io/tokenizer.js";
import { type Gemma3Model, loadGemma3 } from "../../model/gemma3/model.js";

export interface ChatModel {
  readonly dir: string;
  readonly model: Gemma3Model;
  readonly tok: Tokenizer;
  readonly template: ChatTemplate;
  readonly ids: (text: string, system?: string) => ChatPromptIds;
}

export function loadChatModel(dir: string | undefined): ChatModel {
  if (dir === undefined) throw new UsageError("--model is required", "--model");
  if (!existsSync(join(dir, "config.json"))) throw new UsageError(`${dir} has no config.json`, "--model");
  if (!existsSync(join(dir, "tokenizer.json")))
    throw new UsageError(`${dir} has no tokenizer.json: the chat tools render prompts as text`, "--model");
  const tok = Tokenizer.fromDir(dir);
  let template: ChatTemplate;
  try {
    template = ChatTemplate.fromDir(dir, tok);
  } catch (e) {
    if (!(e instanceof GlassboxError)) throw e;
    throw new UsageError(
      `${dir} has no usable chat template (${e.message}); the chat tools need a chat model's template`,
      "--model",
    );
  }
  const model = loadGemma3(dir, defaultBackend());
  return {
    dir,
    model,
    tok,
    template,
    ids: (text, system) => chatPromptIds(template, tok, text, system),
  };
}

/** `--opening` values (default: the bundled chat model's refusals) as refusal token ids. */
export function openingTokens(tok: Tokenizer, openings: readonly string[] | undefined): number[] {
  return refusalTokens(tok, openings ?? DEFAULT_REFUSAL_OPENINGS);
}

export const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];

/** Default prompt set of a model directory (the bundled chat model ships its evaluation sets). */
export function defaultPromptFile(dir: string, name: "indist" | "heldout"): string | null {
  const f = join(dir, "eval", `${name}.jsonl`);
  return existsSync(f) ? f : null;
}
