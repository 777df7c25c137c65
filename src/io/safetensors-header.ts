/**
 * Decoding and validating a safetensors header (pure: bytes in, entries or a SafetensorsError out).
 *
 * Format (huggingface/safetensors README and safetensors/src/tensor.rs): 8 bytes little-endian u64
 * N; N bytes of UTF-8 JSON; then the data section. What this module requires, matching the Rust
 * reference implementation except where noted as stricter:
 * - N <= 100,000,000 (the reference limit) and 8 + N <= file size, both checked before allocating;
 * - the header is valid UTF-8, starts with `{` and is one JSON object, optionally followed by JSON
 *   whitespace (writers pad with spaces to a multiple of 8); no duplicate keys (the spec disallows
 *   them; serde would keep the last);
 * - `__metadata__`, when present, maps strings to strings (`null` is accepted as absent, as serde's
 *   `Option` does);
 * - every other key is a tensor `{dtype, shape, data_offsets}` with a known dtype, a shape of
 *   non-negative integers and `data_offsets` `[begin, end]` of integers relative to the data section.
 *   Stricter than the reference: integers must be written as integers (`2.0` is refused) and
 *   entries may not carry unknown fields;
 * - end - begin == product(shape) * dtype size, computed exactly (BigInt), so absurd shapes cannot
 *   overflow;
 * - sorted by offset, the ranges tile the data section exactly: each begins where the previous one
 *   ended, the first at 0, the last at the end of the file. Overlaps, gaps and trailing bytes are
 *   errors (the spec: the byte buffer must be entirely indexed and contain no holes). Zero-size
 *   tensors have begin == end and may share an offset.
 */

import { SafetensorsError } from "../core/errors.js";
import { isSafetensorsDType, SAFETENSORS_DTYPE_BYTES, type SafetensorsDType } from "./safetensors-dtype.js";
import {
  describeJsonType,
  type JsonNode,
  JsonNumber,
  parseStrictJson,
  StrictJsonError,
} from "./strict-json.js";

/** Largest header accepted, in bytes (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

export const METADATA_KEY = "__metadata__";

/** One tensor's entry in a header. */
export interface TensorEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Offsets relative to the start of the data section: [begin, end). */
  readonly dataOffsets: readonly [number, number];
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  /** Header length N as stored in the first 8 bytes. */
  readonly headerLength: number;
  /** Tensors in file (offset) order. */
  readonly entries: readonly TensorEntry[];
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * Validates the 8-byte length prefix against the file size; returns N. Call before reading (or
 * allocating) the header.
 */
export function checkHeaderLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8) {
    throw new SafetensorsError(
      `file is ${fileSize} bytes, too short for the 8-byte header length (not a safetensors file)`,
      file,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(`header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`, file);
  }
  if (8n + n > BigInt(fileSize)) {
    throw new SafetensorsError(`header length ${n} runs past the end of the file (${fileSize} bytes)`, file);
  }
  return Number(n);
}

/** Decodes and validates the N header bytes; `fileSize` bounds the data section. */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const fail = (msg: string): never => {
    throw new SafetensorsError(msg, file);
  };
  const headerLength = headerBytes.byteLength;
  const dataSize = BigInt(fileSize - 8 - headerLength);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    return fail("header is not valid UTF-8");
  }
  if (text[0] !== "{") {
    return fail(
      text.length === 0
        ? "header is empty"
        : `header does not start with '{' (found ${JSON.stringify(text[0])})`,
    );
  }
  let root: JsonNode;
  try {
    root = parseStrictJson(text);
  } catch (e) {
    if (e instanceof StrictJsonError) return fail(`header is not valid JSON: ${e.message}`);
    throw e;
  }
  if (!(root instanceof Map)) return fail("header is not a JSON object");

  const metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  const exact: { entry: TensorEntry; begin: bigint; end: bigint }[] = [];
  for (const [name, node] of root) {
    if (name === METADATA_KEY) {
      if (node === null) continue;
      if (!(node instanceof Map))
        return fail(`${METADATA_KEY} must be an object, not ${describeJsonType(node)}`);
      for (const [k, v] of node) {
        if (typeof v !== "string") {
          return fail(
            `${METADATA_KEY} value for ${JSON.stringify(k)} must be a string, not ${describeJsonType(v)}`,
          );
        }
        Object.defineProperty(metadata, k, {
          value: v,
          enumerable: true,
          writable: false,
          configurable: false,
        });
      }
      continue;
    }
    const where = `tensor ${JSON.stringify(name)}`;
    if (!(node instanceof Map))
      return fail(`${where}: entry must be an object, not ${describeJsonType(node)}`);
    for (const k of node.keys()) {
      if (k !== "dtype" && k !== "shape" && k !== "data_offsets") {
        return fail(`${where}: unknown field ${JSON.stringify(k)}`);
      }
    }
    const dtype = node.get("dtype");
    if (dtype === undefined) return fail(`${where}: missing "dtype"`);
    if (typeof dtype !== "string")
      return fail(`${where}: dtype must be a string, not ${describeJsonType(dtype)}`);
    if (!isSafetensorsDType(dtype))
      return fail(`${where}: unknown or unsupported dtype ${JSON.stringify(dtype)}`);

    const shapeNode = node.get("shape");
    if (shapeNode === undefined) return fail(`${where}: missing "shape"`);
    if (!Array.isArray(shapeNode))
      return fail(`${where}: shape must be an array, not ${describeJsonType(shapeNode)}`);
    const shape: number[] = [];
    let elements = 1n;
    for (const d of shapeNode) {
      const v = nonNegativeInteger(d);
      if (v === undefined) {
        return fail(`${where}: shape entries must be non-negative integers, found ${describeJsonType(d)}`);
      }
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) return fail(`${where}: shape entry ${v} is too large`);
      shape.push(Number(v));
      elements *= v;
    }

    const offs = node.get("data_offsets");
    if (offs === undefined) return fail(`${where}: missing "data_offsets"`);
    if (!Array.isArray(offs) || offs.length !== 2) {
      return fail(`${where}: data_offsets must be an array [begin, end], not ${describeJsonType(offs)}`);
    }
    const begin = nonNegativeInteger(offs[0]);
    const end = nonNegativeInteger(offs[1]);
    if (begin === undefined || end === undefined) {
      return fail(
        `${where}: data_offsets must be non-negative integers, found [${offs.map(describeJsonType).join(", ")}]`,
      );
    }
    if (end < begin) return fail(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataSize) {
      return fail(
        `${where}: data_offsets [${begin}, ${end}] run past the end of the data section (${dataSize} bytes)`,
      );
    }
    const expected = elements * BigInt(SAFETENSORS_DTYPE_BYTES[dtype]);
    if (end - begin !== expected) {
      return fail(
        `${where}: ${dtype} shape [${shape.join(", ")}] needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    const entry: TensorEntry = {
      name,
      dtype,
      shape,
      dataOffsets: [Number(begin), Number(end)],
      byteLength: Number(end - begin),
    };
    exact.push({ entry, begin, end });
  }

  exact.sort((a, b) =>
    a.begin < b.begin ? -1 : a.begin > b.begin ? 1 : a.end < b.end ? -1 : a.end > b.end ? 1 : 0,
  );
  let pos = 0n;
  let prev: TensorEntry | undefined;
  for (const { entry, begin, end } of exact) {
    const where = `tensor ${JSON.stringify(entry.name)}`;
    if (begin < pos) {
      return fail(
        `${where}: data_offsets [${begin}, ${end}] overlap ${prev === undefined ? "" : `tensor ${JSON.stringify(prev.name)} `}ending at ${pos}`,
      );
    }
    if (begin > pos) {
      return fail(
        `${where}: gap of ${begin - pos} unindexed bytes before its data_offsets [${begin}, ${end}]`,
      );
    }
    pos = end;
    prev = entry;
    entries.push(entry);
  }
  if (pos !== dataSize) {
    return fail(`${dataSize - pos} trailing bytes after the last tensor (data section is ${dataSize} bytes)`);
  }
  return { headerLength, entries, metadata };
}

function nonNegativeInteger(node: JsonNode | undefined): bigint | undefined {
  if (!(node instanceof JsonNumber) || !node.isIntegerSyntax) return undefined;
  const v = node.toBigInt();
  return v < 0n ? undefined : v;
}
