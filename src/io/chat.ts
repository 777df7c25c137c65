/**
 * Chat templates: renders a model's own Jinja chat template (from `chat_template.jinja` or
 * tokenizer_config.json) with `@huggingface/jinja`, encodes the result without a second BOS, and
 * labels every token with the message it belongs to.
 *
 * The labelling needs no knowledge of any particular template. The conversation is rendered twice:
 * once for real and once with each message's content replaced by a unique marker. The marked
 * rendering splits into template text and message slots; walking the real rendering, each template
 * piece must match exactly and each slot is filled by the message's content as the template wrote it
 * (trimmed, as Gemma's does, or verbatim). Tokens inside a slot are content tokens of that message;
 * all others (`<bos>`, `<start_of_turn>user\n`, `<end_of_turn>\n`, the system prompt's blank line,
 * the generation prompt) are template tokens. A token straddling content and template text counts
 * as content.
 *
 * Errors the template raises itself (e.g. Gemma's "Conversation roles must alternate") surface as a
 * TokenizerError with the template's own message; this module adds no rules of its own.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { TokenizerError } from "../core/errors.js";
import { readJsonFile, type Tokenizer, type TokenSpan } from "./tokenizer.js";

/** Roles Gemma 3's template accepts; "assistant" is written as "model". */
export type ChatRole = "system" | "user" | "model" | "assistant";

export interface ChatMessage {
  readonly role: ChatRole;
  readonly content: string;
}

export interface RenderOptions {
  /** Append the opening of a model turn (`<start_of_turn>model\n`); default false. */
  readonly addGenerationPrompt?: boolean;
}

/** Where one message's content ended up in the rendered text. */
export interface ContentSpan {
  /** Index into the messages array. */
  readonly message: number;
  readonly role: ChatRole;
  /** Character span in the rendered text (empty when the content renders as nothing). */
  readonly start: number;
  readonly end: number;
}

/** A rendered and encoded conversation. Per-token arrays have one entry per token [seq]. */
export interface ChatEncoding {
  /** The rendered template text (starts with `<bos>` for Gemma). */
  readonly text: string;
  /** Token ids of `text`, encoded without adding another BOS. */
  readonly ids: number[];
  /** Vocabulary strings of the tokens. */
  readonly tokens: string[];
  /** Character span of each token in `text`. */
  readonly offsets: TokenSpan[];
  /** Per token: index of the message whose content it carries, or -1 for template tokens. */
  readonly message: number[];
  /** Per token: that message's role, or "template". */
  readonly role: (ChatRole | "template")[];
  /** Each message's content span in `text` (messages the template dropped are absent). */
  readonly spans: ContentSpan[];
}

/** A compiled chat template plus the special-token strings it is rendered with. */
export class ChatTemplate {
  readonly source: string;
  readonly #template: Template;
  readonly #vars: Readonly<Record<string, string>>;

  constructor(templateText: string, specialTokens: Readonly<Record<string, string>>, source = "<memory>") {
    this.source = source;
    try {
      this.#template = new Template(templateText);
    } catch (err) {
      throw new TokenizerError(`chat template does not parse: ${errorMessage(err)}`, source);
    }
    this.#vars = specialTokens;
  }

  /**
   * The chat template of a model directory: `chat_template.jinja` when present (newer saves), else
   * `chat_template` of tokenizer_config.json (a string, or a list of named templates: "default").
   */
  static fromDir(dir: string, tokenizer: Tokenizer): ChatTemplate {
    const jinja = join(dir, "chat_template.jinja");
    if (existsSync(jinja)) {
      const text = readTextFile(jinja);
      return new ChatTemplate(text, specialTokenStrings(tokenizer), jinja);
    }
    const cfgPath = join(dir, "tokenizer_config.json");
    const cfg = readJsonFile(cfgPath, "the model directory has no tokenizer_config.json");
    const text = templateFromConfig(cfg);
    if (text === undefined) {
      throw new TokenizerError(
        "no chat template (neither chat_template.jinja nor `chat_template` in tokenizer_config.json); " +
          "base models have none: use an instruction-tuned model or plain text",
        dir,
      );
    }
    return new ChatTemplate(text, specialTokenStrings(tokenizer), cfgPath);
  }

  /** The rendered conversation, exactly as the template writes it. */
  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    checkMessages(messages, this.source);
    return this.#render(messages, options);
  }

  /** Renders, encodes without a second BOS, and labels each token with its message and role. */
  encode(tokenizer: Tokenizer, messages: readonly ChatMessage[], options: RenderOptions = {}): ChatEncoding {
    const text = this.render(messages, options);
    const enc = tokenizer.encodeWithOffsets(text, { addBos: false });
    const spans = this.#contentSpans(text, messages, options);
    const message = enc.offsets.map((o) => {
      const hit = spans.find((s) => s.start < s.end && o.start < s.end && o.end > s.start);
      return hit === undefined ? -1 : hit.message;
    });
    const role = message.map((m) => (m < 0 ? "template" : messages[m].role));
    return { text, ids: enc.ids, tokens: enc.tokens, offsets: enc.offsets, message, role, spans };
  }

  #render(messages: readonly ChatMessage[], options: RenderOptions): string {
    try {
      return this.#template.render({
        ...this.#vars,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: options.addGenerationPrompt === true,
      });
    } catch (err) {
      throw new TokenizerError(`chat template: ${errorMessage(err)}`, this.source);
    }
  }

  #contentSpans(text: string, messages: readonly ChatMessage[], options: RenderOptions): ContentSpan[] {
    const markers = messages.map((_, i) => `\u{E000}glassbox-${i}\u{E001}`);
    const marked = this.#render(
      messages.map((m, i) => ({ role: m.role, content: markers[i] })),
      options,
    );
    const slot = /\u{E000}glassbox-(\d+)\u{E001}/gu;
    const pieces: string[] = [];
    const order: number[] = [];
    let last = 0;
    for (const m of marked.matchAll(slot)) {
      pieces.push(marked.slice(last, m.index));
      order.push(Number(m[1]));
      last = (m.index ?? 0) + m[0].length;
    }
    pieces.push(marked.slice(last));
    const fail = (what: string): never => {
      throw new TokenizerError(`cannot locate message contents in the rendered chat: ${what}`, this.source);
    };
    if (new Set(order).size !== order.length) fail("the template writes a message more than once");
    const spans: ContentSpan[] = [];
    let pos = 0;
    for (let k = 0; k < order.length; k++) {
      if (!text.startsWith(pieces[k], pos)) fail(`template text ${JSON.stringify(pieces[k])} not at ${pos}`);
      pos += pieces[k].length;
      const i = order[k];
      const content = messages[i].content;
      const next = pieces[k + 1];
      const candidate = [content.trim(), content].find((c) => text.startsWith(c + next, pos));
      if (candidate === undefined) return fail(`message ${i} content not at ${pos}`);
      const len = candidate.length;
      spans.push({ message: i, role: messages[i].role, start: pos, end: pos + len });
      pos += len;
    }
    if (text.slice(pos) !== pieces[order.length]) fail("the rendered text ends differently");
    return spans;
  }
}

/** Per-token mask: true for content tokens of the given roles (default: every role). */
export function contentMask(enc: ChatEncoding, roles?: readonly ChatRole[]): boolean[] {
  return enc.role.map((r) => r !== "template" && (roles === undefined || roles.includes(r)));
}

function checkMessages(messages: readonly ChatMessage[], source: string): void {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new TokenizerError("a conversation needs at least one message", source);
  }
  messages.forEach((m, i) => {
    if (typeof m !== "object" || m === null || typeof m.role !== "string" || typeof m.content !== "string") {
      throw new TokenizerError(`message ${i} must be {role: string, content: string}`, source);
    }
  });
}

function specialTokenStrings(tok: Tokenizer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"]) {
    const v = tok.config[key];
    const name =
      typeof v === "string" ? v : isRecord(v) && typeof v.content === "string" ? v.content : undefined;
    if (name !== undefined) out[key] = name;
  }
  return out;
}

function templateFromConfig(cfg: unknown): string | undefined {
  if (!isRecord(cfg)) return undefined;
  const t = cfg.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    for (const e of t)
      if (isRecord(e) && e.name === "default" && typeof e.template === "string") return e.template;
  }
  return undefined;
}

function readTextFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new TokenizerError(`cannot read: ${errorMessage(err)}`, path);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
