/**
 * Harvesting inputs: documents read from a dataset file and turned into token ids with a per-token
 * "may be stored" mask.
 *
 * Formats: `text`, a plain text file whose documents are separated by blank lines; `jsonl`, one
 * JSON object per line with the text under `textField` (default "text", as in data/corpus);
 * `chat`, one `{"messages": [{"role", "content"}, ...]}` per line, rendered with the model's chat
 * template. Files are read line by line, so their size is not limited by memory.
 */
import { createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import { basename } from "node:path";
import { createInterface } from "node:readline";
import { DataError } from "../core/errors.js";
import { type ChatMessage, type ChatTemplate, contentMask } from "../io/chat.js";
import { ioMessage } from "../io/positioned-read.js";
import type { Tokenizer } from "../io/tokenizer.js";

export type InputFormat = "text" | "jsonl" | "chat";

/** One document as read: text, or a conversation. */
export type RawDocument = { readonly text: string } | { readonly messages: readonly ChatMessage[] };

/** A tokenized document. */
export interface TokenDocument {
  /** Token ids [seq], starting with BOS. */
  readonly ids: Int32Array;
  /** 1 where a token may be stored, 0 for chat-template tokens [seq]; null: every token may be. */
  readonly keep: Uint8Array | null;
}

/** A file of documents: where it is, its format, and a fingerprint recorded in the store. */
export interface DatasetFile {
  readonly path: string;
  readonly format: InputFormat;
  /** JSONL field holding the text (jsonl only). */
  readonly textField: string;
}

/** The input format a file name suggests (`.jsonl`/`.json` -> jsonl, otherwise text). */
export function formatFromName(path: string, chat: boolean): InputFormat {
  if (chat) return "chat";
  return /\.jsonl?$/i.test(path) ? "jsonl" : "text";
}

/** SHA-256 and size of a file, read once; a DataError if it cannot be read or is empty. */
export async function fingerprintFile(path: string): Promise<{ sha256: string; bytes: number }> {
  let bytes: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new DataError("not a file", path);
    bytes = st.size;
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(`cannot read the dataset: ${ioMessage(e)}`, path);
  }
  if (bytes === 0) throw new DataError("the dataset is empty", path);
  const h = createHash("sha256");
  try {
    for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  } catch (e) {
    throw new DataError(`cannot read the dataset: ${ioMessage(e)}`, path);
  }
  return { sha256: h.digest("hex"), bytes };
}

async function* lines(path: string): AsyncGenerator<string> {
  const stream = createReadStream(path, { encoding: "utf8" });
  const rl = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  try {
    for await (const line of rl) yield line;
  } catch (e) {
    throw new DataError(`cannot read the dataset: ${ioMessage(e)}`, path);
  } finally {
    rl.close();
    stream.destroy();
  }
}

const ROLES: readonly string[] = ["system", "user", "model", "assistant"];

function parseMessages(v: unknown, where: string): ChatMessage[] {
  const fail = (msg: string): never => {
    throw new DataError(msg, where);
  };
  const msgs =
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>).messages
      : undefined;
  if (!Array.isArray(msgs) || msgs.length === 0)
    return fail('expected {"messages": [{"role", "content"}, ...]}');
  return msgs.map((m: unknown, i) => {
    const o = typeof m === "object" && m !== null ? (m as Record<string, unknown>) : {};
    if (typeof o.role !== "string" || !ROLES.includes(o.role))
      fail(`message ${i}: role must be one of ${ROLES.join(", ")}`);
    if (typeof o.content !== "string") fail(`message ${i}: content must be a string`);
    return { role: o.role as ChatMessage["role"], content: o.content as string };
  });
}

/** The documents of a dataset file, in file order; blank text documents are skipped. */
export async function* readDocuments(file: DatasetFile): AsyncGenerator<RawDocument> {
  const name = basename(file.path);
  if (file.format === "text") {
    let para: string[] = [];
    for await (const line of lines(file.path)) {
      if (line.trim() === "") {
        if (para.length > 0) yield { text: para.join("\n") };
        para = [];
      } else {
        para.push(line);
      }
    }
    if (para.length > 0) yield { text: para.join("\n") };
    return;
  }
  let n = 0;
  for await (const line of lines(file.path)) {
    n++;
    if (line.trim() === "") continue;
    const where = `${name}:${n}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new DataError(`not JSON: ${(e as Error).message}`, where);
    }
    if (file.format === "chat") {
      yield { messages: parseMessages(v, where) };
      continue;
    }
    const text =
      typeof v === "object" && v !== null && !Array.isArray(v)
        ? (v as Record<string, unknown>)[file.textField]
        : undefined;
    if (typeof text !== "string")
      throw new DataError(`no string field ${JSON.stringify(file.textField)}`, where);
    if (text.trim() !== "") yield { text };
  }
}

/**
 * Tokenizes documents: text with BOS in front (keep: null); conversations rendered with `chat`'s
 * template (which writes the BOS), keep = 1 on message content tokens only.
 */
export async function* tokenizeDocuments(
  docs: AsyncIterable<RawDocument>,
  tokenizer: Tokenizer,
  chat: ChatTemplate | null,
): AsyncGenerator<TokenDocument> {
  for await (const d of docs) {
    if ("text" in d) {
      yield { ids: Int32Array.from(tokenizer.encode(d.text, { addBos: true })), keep: null };
      continue;
    }
    if (chat === null) throw new DataError("conversations need a chat template (the model has none)");
    const enc = chat.encode(tokenizer, d.messages);
    yield { ids: Int32Array.from(enc.ids), keep: Uint8Array.from(contentMask(enc), (b) => (b ? 1 : 0)) };
  }
}
