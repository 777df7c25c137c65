/**
 * Gemma 3 tokenizer: a thin wrapper over `@huggingface/tokenizers` (the JavaScript port of Hugging
 * Face's tokenizers) that loads `tokenizer.json` + `tokenizer_config.json` from a model directory.
 *
 * What it adds over the library: explicit BOS control (`add_bos_token` from the config), special-
 * token ids, id validation, batch encoding with left/right padding and an attention mask, and
 * character offsets. The library exposes no offsets, so they are computed by incremental decoding:
 * tokens are decoded a few at a time from the last character boundary and each decoded piece must
 * appear at the current position of the input text. A character split over several byte-fallback
 * tokens (`<0xE4><0xB8><0xAD>` = "中") gives every one of those tokens the span of the whole
 * character, as Hugging Face's Rust tokenizer does. Offsets count UTF-16 code units (JavaScript
 * string indices), so `text.slice(start, end)` is the token's text.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { TokenizerError } from "../core/errors.js";

/** A token's place in the text it came from: `text.slice(start, end)` (UTF-16 code units). */
export interface TokenSpan {
  readonly start: number;
  readonly end: number;
}

/** One encoded text. All arrays have one entry per token. */
export interface EncodedText {
  /** Token ids [seq], starting with BOS when it was added. */
  readonly ids: number[];
  /** Vocabulary strings of the tokens, e.g. `"▁world"`, `"<0xE4>"`, `"<bos>"`. */
  readonly tokens: string[];
  /** Character span of each token in the input; the added BOS has the empty span {0, 0}. */
  readonly offsets: TokenSpan[];
}

/** Ids of the tokens a Gemma 3 runtime needs by role. */
export interface SpecialTokenIds {
  /** `bos_token` of tokenizer_config.json (`<bos>`, 2 in Gemma 3). */
  readonly bos: number;
  /** `eos_token` of tokenizer_config.json: `<eos>` (1) for base models, `<end_of_turn>` (106) for -it. */
  readonly eos: number;
  /** `pad_token` (`<pad>`, 0). */
  readonly pad: number;
  /** `unk_token` (`<unk>`, 3), when the config names one. */
  readonly unk: number | undefined;
  /** `<start_of_turn>` (105 in Gemma 3), when the vocabulary has it. */
  readonly startOfTurn: number | undefined;
  /** `<end_of_turn>` (106 in Gemma 3), when the vocabulary has it. */
  readonly endOfTurn: number | undefined;
}

export type PaddingSide = "left" | "right";

export interface EncodeOptions {
  /** Put BOS in front; default: `add_bos_token` of tokenizer_config.json (true for Gemma). */
  readonly addBos?: boolean;
}

export interface BatchEncodeOptions extends EncodeOptions {
  /** Which side the pad tokens go; default: `padding_side` of the config, else "right". */
  readonly padding?: PaddingSide;
  /** Pad every row to at least this many tokens (default: the longest row). */
  readonly padTo?: number;
}

/** A padded batch: `ids[b]` and `attentionMask[b]` all have the same length. */
export interface EncodedBatch {
  /** Token ids [batch, seq], pad id where `attentionMask` is 0. */
  readonly ids: number[][];
  /** 1 for real tokens, 0 for padding [batch, seq]. */
  readonly attentionMask: number[][];
  /** Number of real tokens per row [batch]. */
  readonly lengths: number[];
  readonly padding: PaddingSide;
}

export interface DecodeOptions {
  /** Leave out special tokens (`<bos>`, `<start_of_turn>`, ...); default false. */
  readonly skipSpecial?: boolean;
}

/** The parts of tokenizer_config.json this module reads; other keys are kept in `config`. */
export type TokenizerConfig = Readonly<Record<string, unknown>>;

/**
 * The part of the library's Tokenizer this module uses. The package's type declarations use
 * extensionless relative imports that NodeNext resolution cannot follow (its Tokenizer type reads
 * as `any`), so the used surface is written down here and checked by the tests.
 */
interface HfTokenizerApi {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
  decode(
    ids: number[],
    options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean },
  ): string;
  token_to_id(token: string): number | undefined;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
  get_added_tokens_decoder(): Map<number, { special: boolean }>;
  decoder: HfDecoderNode | null;
}

/** A decoder as the library builds it: Sequence decoders hold `decoders`, ByteFallback a `text_decoder`. */
interface HfDecoderNode {
  config?: { type?: string };
  decoders?: HfDecoderNode[];
  text_decoder?: TextDecoder;
}

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

export class Tokenizer {
  /** The tokenizer.json / tokenizer_config.json pair (or "<memory>"), for error messages. */
  readonly source: string;
  /** Number of ids the tokenizer knows (base vocabulary + added tokens). */
  readonly vocabSize: number;
  readonly special: SpecialTokenIds;
  /** Whether `encode` adds BOS by default (`add_bos_token`, default true). */
  readonly addBosByDefault: boolean;
  readonly paddingSide: PaddingSide;
  /** `model_max_length` of the config, when it is a sane number. */
  readonly modelMaxLength: number | undefined;
  /** tokenizer_config.json as parsed. */
  readonly config: TokenizerConfig;
  readonly #hf: HfTokenizerApi;
  readonly #pieces: (string | undefined)[];
  readonly #specialIds: ReadonlySet<number>;

  constructor(tokenizerJson: unknown, config: unknown, source = "<memory>") {
    if (!isRecord(tokenizerJson)) throw new TokenizerError("tokenizer.json is not a JSON object", source);
    if (!isRecord(config)) throw new TokenizerError("tokenizer_config.json is not a JSON object", source);
    if (!isRecord(tokenizerJson.model) || !Array.isArray(tokenizerJson.added_tokens)) {
      throw new TokenizerError("tokenizer.json has no `model` object or `added_tokens` list", source);
    }
    this.source = source;
    this.config = config;
    try {
      this.#hf = new HfTokenizer(tokenizerJson, config);
    } catch (err) {
      throw new TokenizerError(`tokenizer.json is not usable: ${errorMessage(err)}`, source);
    }
    fixByteFallback(this.#hf.decoder);
    const vocab = this.#hf.get_vocab(true);
    const pieces: (string | undefined)[] = [];
    for (const [piece, id] of vocab) pieces[id] = piece;
    this.#pieces = pieces;
    this.vocabSize = pieces.length;
    const specials = new Set<number>();
    for (const [id, t] of this.#hf.get_added_tokens_decoder()) if (t.special) specials.add(id);
    this.#specialIds = specials;

    const required = (key: string): number => {
      const name = tokenName(config[key]);
      if (name === undefined) throw new TokenizerError(`tokenizer_config.json has no ${key}`, source);
      const id = this.#hf.token_to_id(name);
      if (id === undefined) {
        throw new TokenizerError(`${key} ${JSON.stringify(name)} is not in the vocabulary`, source);
      }
      return id;
    };
    const optional = (name: string | undefined): number | undefined =>
      name === undefined ? undefined : this.#hf.token_to_id(name);
    this.special = {
      bos: required("bos_token"),
      eos: required("eos_token"),
      pad: required("pad_token"),
      unk: optional(tokenName(config.unk_token)),
      startOfTurn: optional("<start_of_turn>"),
      endOfTurn: optional("<end_of_turn>"),
    };
    this.addBosByDefault = config.add_bos_token !== false;
    this.paddingSide = config.padding_side === "left" ? "left" : "right";
    const max = config.model_max_length;
    this.modelMaxLength = typeof max === "number" && Number.isInteger(max) && max < 2 ** 40 ? max : undefined;
  }

  /** Loads `tokenizer.json` and `tokenizer_config.json` from a model directory. */
  static fromDir(dir: string): Tokenizer {
    if (!existsSync(dir)) throw new TokenizerError("no such directory", dir);
    if (!statSync(dir).isDirectory()) throw new TokenizerError("not a directory", dir);
    const tj = readJsonFile(join(dir, "tokenizer.json"), "the model directory has no tokenizer.json");
    const tc = readJsonFile(
      join(dir, "tokenizer_config.json"),
      "the model directory has no tokenizer_config.json",
    );
    return new Tokenizer(tj, tc, dir);
  }

  /** Token ids of `text`: BOS (unless `addBos: false`) then the text's tokens. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids = this.#textIds(text);
    return (options.addBos ?? this.addBosByDefault) ? [this.special.bos, ...ids] : ids;
  }

  /** Like `encode`, with vocabulary strings and character offsets. */
  encodeWithOffsets(text: string, options: EncodeOptions = {}): EncodedText {
    const ids = this.#textIds(text);
    const offsets = this.#offsets(text, ids);
    if (options.addBos ?? this.addBosByDefault) {
      ids.unshift(this.special.bos);
      offsets.unshift({ start: 0, end: 0 });
    }
    return { ids, tokens: this.tokenStrings(ids), offsets };
  }

  /** Encodes several texts into one padded batch with an attention mask. */
  encodeBatch(texts: readonly string[], options: BatchEncodeOptions = {}): EncodedBatch {
    const rows = texts.map((t) => this.encode(t, options));
    const lengths = rows.map((r) => r.length);
    const padding = options.padding ?? this.paddingSide;
    const width = Math.max(options.padTo ?? 0, ...lengths, 0);
    const pad = this.special.pad;
    const ids: number[][] = [];
    const attentionMask: number[][] = [];
    for (const row of rows) {
      const fill = width - row.length;
      const padIds = new Array<number>(fill).fill(pad);
      const zeros = new Array<number>(fill).fill(0);
      const ones = new Array<number>(row.length).fill(1);
      ids.push(padding === "left" ? [...padIds, ...row] : [...row, ...padIds]);
      attentionMask.push(padding === "left" ? [...zeros, ...ones] : [...ones, ...zeros]);
    }
    return { ids, attentionMask, lengths, padding };
  }

  /** The text of `ids`. Special tokens are written out (`<bos>`) unless `skipSpecial`. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    this.#checkIds(ids);
    if (ids.length === 0) return "";
    return this.#hf.decode([...ids], {
      skip_special_tokens: options.skipSpecial === true,
      clean_up_tokenization_spaces: false,
    });
  }

  /** The vocabulary string of one id (e.g. `"▁world"`). */
  tokenString(id: number): string {
    this.#checkIds([id]);
    return this.#pieces[id] as string;
  }

  tokenStrings(ids: readonly number[]): string[] {
    this.#checkIds(ids);
    return ids.map((id) => this.#pieces[id] as string);
  }

  /** The id of a vocabulary string, or undefined. */
  tokenId(token: string): number | undefined {
    return this.#hf.token_to_id(token);
  }

  /** Whether `id` is a special added token (`<bos>`, `<start_of_turn>`, ...). */
  isSpecial(id: number): boolean {
    return this.#specialIds.has(id);
  }

  #textIds(text: string): number[] {
    if (typeof text !== "string") throw new TokenizerError("text to encode must be a string", this.source);
    if (text === "") return [];
    return this.#hf.encode(text, { add_special_tokens: false }).ids;
  }

  #checkIds(ids: readonly number[]): void {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.#pieces[id] === undefined) {
        throw new TokenizerError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
      }
    }
  }

  /**
   * Offsets by incremental decoding. `start` is the first token not yet given a span; tokens are
   * decoded from there until the pending byte-fallback tokens complete a UTF-8 sequence, and the
   * decoded piece must then sit at `pos` in the text.
   */
  #offsets(text: string, ids: readonly number[]): TokenSpan[] {
    const out: TokenSpan[] = [];
    let pos = 0;
    let start = 0;
    let need = 0; // continuation bytes still owed by the current UTF-8 sequence
    for (let i = 0; i < ids.length; i++) {
      const m = BYTE_TOKEN.exec(this.#pieces[ids[i]] ?? "");
      if (m !== null) {
        const b = Number.parseInt(m[1], 16);
        if (need > 0 && (b & 0xc0) === 0x80) need--;
        else need = b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : b >= 0xc0 ? 1 : 0;
        if (need > 0 && i + 1 < ids.length) continue;
      } else need = 0;
      const piece = this.#hf.decode(ids.slice(start, i + 1), {
        skip_special_tokens: false,
        clean_up_tokenization_spaces: false,
      });
      if (!text.startsWith(piece, pos)) {
        throw new TokenizerError(
          `cannot place token ${i} (${JSON.stringify(piece)}) at character ${pos}: this tokenizer does not ` +
            "decode back to its input, so character offsets are not available",
          this.source,
        );
      }
      for (let j = start; j <= i; j++) out.push({ start: pos, end: pos + piece.length });
      pos += piece.length;
      start = i + 1;
    }
    if (pos !== text.length) {
      throw new TokenizerError(`decoded tokens cover ${pos} of ${text.length} characters`, this.source);
    }
    return out;
  }
}

/**
 * Makes the library's ByteFallback decoder behave like Hugging Face's Rust one. The library decodes
 * each run of byte tokens with a default `TextDecoder`, which drops a leading U+FEFF (so
 * `<0xEF><0xBB><0xBF>` decoded to "") and writes one U+FFFD per maximal invalid subsequence;
 * Rust keeps the BOM and, when a run is not valid UTF-8, writes one U+FFFD per byte.
 */
function fixByteFallback(decoder: HfDecoderNode | null): void {
  if (decoder === null) return;
  decoder.decoders?.forEach(fixByteFallback);
  if (decoder.config?.type === "ByteFallback" && decoder.text_decoder !== undefined) {
    decoder.text_decoder = new RustByteRunDecoder();
  }
}

class RustByteRunDecoder extends TextDecoder {
  readonly #strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  constructor() {
    super("utf-8", { ignoreBOM: true });
  }

  override decode(input?: AllowSharedBufferSource): string {
    if (input === undefined) return "";
    try {
      return this.#strict.decode(input);
    } catch {
      return "\uFFFD".repeat(input.byteLength);
    }
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A special token as tokenizer_config.json writes it: a string or `{ "content": ... }`. */
function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isRecord(v) && typeof v.content === "string") return v.content;
  return undefined;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Reads and parses a JSON file, turning every failure into a TokenizerError naming the file. */
export function readJsonFile(path: string, missing: string): unknown {
  if (!existsSync(path)) throw new TokenizerError(missing, path);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new TokenizerError(`cannot read: ${errorMessage(err)}`, path);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new TokenizerError(`not valid JSON: ${errorMessage(err)}`, path);
  }
}
