/**
 * Documents -> model sequences, and which of their tokens are stored (the masking rules).
 *
 * A document longer than the context is split (`split`): the first sequence is its first `context`
 * tokens, every later one is BOS followed by the next `context - 1` tokens, so each sequence starts
 * at position 0 with BOS as the model was trained. Conversations are truncated to the context
 * instead (`truncate`), since a continuation would lack its template prefix. Documents are never
 * packed together; a batch's shorter sequences are padded on the right.
 *
 * Masking (as Gemma Scope 2): BOS and pad ids are never stored wherever they occur; the first
 * `skipFirst` positions of every sequence are never stored (1 for text: the BOS; 4 for chat:
 * `<bos><start_of_turn>user\n`); for chat, every token the template wrote rather than a message's
 * content (`<start_of_turn>`, the role name and newline, `<end_of_turn>`, ...) is not stored either.
 */
import { StoreError } from "../core/errors.js";
import type { JsonValue } from "../io/strict-json.js";
import type { InputFormat, TokenDocument } from "./documents.js";

export interface MaskingRules {
  /** Token ids never stored wherever they occur (BOS, pad). */
  readonly excludeIds: readonly number[];
  /** Leading positions of every sequence never stored. */
  readonly skipFirst: number;
  /** Drop tokens the chat template wrote (a document's `keep` mask is 0 there). */
  readonly templateTokens: boolean;
}

/** The rules for an input format, given the model's BOS and pad ids. */
export function maskingRules(
  format: InputFormat,
  special: { readonly bos: number; readonly pad: number },
): MaskingRules {
  const excludeIds = [...new Set([special.bos, special.pad])];
  return format === "chat"
    ? { excludeIds, skipFirst: 4, templateTokens: true }
    : { excludeIds, skipFirst: 1, templateTokens: false };
}

/** The rules as recorded in a store manifest. */
export function maskingJson(rules: MaskingRules): JsonValue {
  return {
    exclude_ids: [...rules.excludeIds],
    skip_first: rules.skipFirst,
    template_tokens: rules.templateTokens,
  };
}

/** One model input row. */
export interface Sequence {
  /** Token ids [seq], seq <= context. */
  readonly ids: Int32Array;
  /** 1 where the token's activations are stored [seq]. */
  readonly keep: Uint8Array;
  /** Index of the document it came from. */
  readonly doc: number;
}

export type LongDocuments = "split" | "truncate";

export interface SequenceOptions {
  readonly context: number;
  readonly bos: number;
  readonly rules: MaskingRules;
  readonly longDocuments: LongDocuments;
}

export function checkContext(context: number): void {
  if (!Number.isSafeInteger(context) || context < 2)
    throw new StoreError(`context must be an integer of at least 2 tokens, got ${context}`);
}

/** The sequences of one document, with their storage masks. */
export function* sequencesOf(doc: TokenDocument, index: number, o: SequenceOptions): Generator<Sequence> {
  const { context, bos, rules } = o;
  const exclude = new Set(rules.excludeIds);
  const make = (ids: Int32Array, docKeep: Uint8Array | null): Sequence => {
    const keep = new Uint8Array(ids.length);
    for (let i = rules.skipFirst; i < ids.length; i++) {
      keep[i] = exclude.has(ids[i]) || (rules.templateTokens && docKeep !== null && docKeep[i] === 0) ? 0 : 1;
    }
    return { ids, keep, doc: index };
  };
  const { ids, keep } = doc;
  if (ids.length === 0) return;
  if (ids.length <= context || o.longDocuments === "truncate") {
    const n = Math.min(ids.length, context);
    yield make(ids.subarray(0, n), keep === null ? null : keep.subarray(0, n));
    return;
  }
  yield make(ids.subarray(0, context), keep === null ? null : keep.subarray(0, context));
  for (let at = context; at < ids.length; at += context - 1) {
    const n = Math.min(context - 1, ids.length - at);
    const chunk = new Int32Array(n + 1);
    chunk[0] = bos;
    chunk.set(ids.subarray(at, at + n), 1);
    let chunkKeep: Uint8Array | null = null;
    if (keep !== null) {
      chunkKeep = new Uint8Array(n + 1);
      chunkKeep.set(keep.subarray(at, at + n), 1);
    }
    yield make(chunk, chunkKeep);
  }
}

/** Every sequence of a document stream, in order. */
export async function* sequenceStream(
  docs: AsyncIterable<TokenDocument> | Iterable<TokenDocument>,
  o: SequenceOptions,
): AsyncGenerator<Sequence> {
  checkContext(o.context);
  let index = 0;
  for await (const d of docs) {
    yield* sequencesOf(d, index, o);
    index++;
  }
}
