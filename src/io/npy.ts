/**
 * Decoding `.npy` arrays (numpy's NEP 1 format, versions 1.0, 2.0 and 3.0) into row-major,
 * little-endian tensors using the safetensors dtype names.
 *
 * Layout: magic `\x93NUMPY`, major and minor version bytes, header length (u16 in v1, u32 in v2/v3),
 * then a Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` (latin-1
 * in v1/v2, UTF-8 in v3), then the data. Supported `descr`s: `f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1`
 * with byte order `<`, `|` or `>`. Big-endian data is byte-swapped and Fortran-order data
 * transposed to C order (copies); other arrays are returned as a view of the input bytes. Object,
 * structured, string and complex dtypes are refused. The data must be exactly
 * product(shape) * itemsize bytes.
 */

import { SafetensorsError } from "../core/errors.js";
import type { RawTensor, SafetensorsDType } from "./safetensors-dtype.js";

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];

const KINDS: Readonly<Record<string, SafetensorsDType>> = {
  f2: "F16",
  f4: "F32",
  f8: "F64",
  i1: "I8",
  i2: "I16",
  i4: "I32",
  i8: "I64",
  u1: "U8",
  u2: "U16",
  u4: "U32",
  u8: "U64",
  b1: "BOOL",
};

export interface NpyHeader {
  readonly dtype: SafetensorsDType;
  readonly itemSize: number;
  readonly bigEndian: boolean;
  readonly fortranOrder: boolean;
  readonly shape: readonly number[];
  /** Offset of the data from the start of the .npy bytes. */
  readonly dataOffset: number;
}

type PyValue = string | boolean | number | PyValue[] | Map<string, PyValue>;

/** Decodes a whole `.npy` file's bytes; `file` and `what` (e.g. the npz entry) go into errors. */
export function decodeNpy(bytes: Uint8Array, file: string, what: string): RawTensor {
  const h = parseNpyHeader(bytes, file, what);
  const data = bytes.subarray(h.dataOffset);
  let elements = 1n;
  for (const d of h.shape) elements *= BigInt(d);
  const expected = elements * BigInt(h.itemSize);
  if (BigInt(data.byteLength) !== expected) {
    throw new SafetensorsError(
      `${what}: shape (${h.shape.join(", ")}) of ${h.dtype} needs ${expected} data bytes, found ${data.byteLength}`,
      file,
    );
  }
  let out = data;
  if (h.fortranOrder && h.shape.length > 1) out = fortranToC(data, h.shape, h.itemSize);
  if (h.bigEndian && h.itemSize > 1) {
    if (out === data) out = data.slice();
    swapBytes(out, h.itemSize);
  }
  return { dtype: h.dtype, shape: h.shape, bytes: out };
}

export function parseNpyHeader(bytes: Uint8Array, file: string, what: string): NpyHeader {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${what}: ${msg}`, file);
  };
  if (bytes.byteLength < 10 || MAGIC.some((b, i) => bytes[i] !== b)) fail("not a .npy array (bad magic)");
  const major = bytes[6];
  const minor = bytes[7];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = dv.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.byteLength < 12) fail("truncated .npy header");
    headerLen = dv.getUint32(8, true);
    start = 12;
  } else {
    return fail(`unsupported .npy format version ${major}.${minor}`);
  }
  if (start + headerLen > bytes.byteLength)
    fail(`.npy header length ${headerLen} runs past the end of the array`);
  const raw = bytes.subarray(start, start + headerLen);
  let text: string;
  try {
    text =
      major === 3
        ? new TextDecoder("utf-8", { fatal: true }).decode(raw)
        : Buffer.from(raw).toString("latin1");
  } catch {
    return fail(".npy header is not valid UTF-8");
  }
  let dict: PyValue;
  try {
    dict = parsePyLiteral(text);
  } catch (e) {
    return fail(`.npy header is not a valid dict literal: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!(dict instanceof Map)) return fail(".npy header is not a dict");
  for (const k of dict.keys()) {
    if (k !== "descr" && k !== "fortran_order" && k !== "shape")
      fail(`.npy header has unexpected key '${k}'`);
  }
  const descr = dict.get("descr");
  const fortran = dict.get("fortran_order");
  const shapeV = dict.get("shape");
  if (typeof descr !== "string") {
    return fail(descr === undefined ? ".npy header has no 'descr'" : "structured dtypes are not supported");
  }
  if (typeof fortran !== "boolean") fail(".npy header's 'fortran_order' must be True or False");
  if (!Array.isArray(shapeV)) return fail(".npy header's 'shape' must be a tuple");
  const shape: number[] = [];
  for (const d of shapeV) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0)
      fail(`.npy shape entry ${String(d)} is not a valid dimension`);
    shape.push(d as number);
  }
  const m = /^([<>|=])([a-zA-Z])(\d+)$/.exec(descr);
  const dtype = m === null ? undefined : KINDS[`${m[2]}${m[3]}`];
  if (m === null || dtype === undefined) return fail(`unsupported numpy dtype '${descr}'`);
  const itemSize = Number(m[3]);
  if (m[1] === "=") fail(`numpy dtype '${descr}' has native byte order; only '<', '>' and '|' are supported`);
  if (m[1] === "|" && itemSize > 1) fail(`numpy dtype '${descr}' needs a byte order`);
  return {
    dtype,
    itemSize,
    bigEndian: m[1] === ">",
    fortranOrder: fortran === true,
    shape,
    dataOffset: start + headerLen,
  };
}

function swapBytes(b: Uint8Array, size: number): void {
  for (let i = 0; i < b.byteLength; i += size) {
    for (let lo = i, hi = i + size - 1; lo < hi; lo++, hi--) {
      const t = b[lo];
      b[lo] = b[hi];
      b[hi] = t;
    }
  }
}

/** Copies Fortran-order (column-major) elements into C (row-major) order. */
function fortranToC(src: Uint8Array, shape: readonly number[], size: number): Uint8Array {
  const out = new Uint8Array(src.byteLength);
  const rank = shape.length;
  const fStride = new Array<number>(rank);
  let s = 1;
  for (let d = 0; d < rank; d++) {
    fStride[d] = s;
    s *= shape[d];
  }
  const n = s;
  const idx = new Array<number>(rank).fill(0);
  let from = 0;
  for (let i = 0; i < n; i++) {
    const a = from * size;
    out.set(src.subarray(a, a + size), i * size);
    // Advance the C-order index (last axis fastest), tracking the Fortran offset.
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      from += fStride[d];
      if (idx[d] < shape[d]) break;
      from -= fStride[d] * shape[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** Parses the subset of Python literals .npy headers use: dicts, tuples, lists, str, int, bools. */
function parsePyLiteral(text: string): PyValue {
  let pos = 0;
  const ws = () => {
    while (pos < text.length && /\s/.test(text[pos])) pos++;
  };
  const err = (what: string): never => {
    throw new Error(`${what} at character ${pos}`);
  };
  const value = (depth: number): PyValue => {
    if (depth > 16) err("nested too deeply");
    ws();
    const c = text[pos];
    if (c === "{" || c === "(" || c === "[") {
      const close = c === "{" ? "}" : c === "(" ? ")" : "]";
      pos++;
      const dict = new Map<string, PyValue>();
      const items: PyValue[] = [];
      for (;;) {
        ws();
        if (text[pos] === close) {
          pos++;
          break;
        }
        if (c === "{") {
          const k = value(depth + 1);
          if (typeof k !== "string") err("dict keys must be strings");
          ws();
          if (text[pos] !== ":") err("expected ':'");
          pos++;
          if (dict.has(k as string)) err(`duplicate key '${k as string}'`);
          dict.set(k as string, value(depth + 1));
        } else {
          items.push(value(depth + 1));
        }
        ws();
        if (text[pos] === ",") pos++;
        else if (text[pos] !== close) err(`expected ',' or '${close}'`);
      }
      return c === "{" ? dict : items;
    }
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, pos + 1);
      if (end < 0) err("unterminated string");
      const s = text.slice(pos + 1, end);
      if (s.includes("\\")) err("escapes in strings are not supported");
      pos = end + 1;
      return s;
    }
    const word = /^(True|False|-?\d+L?)/.exec(text.slice(pos, pos + 32));
    if (word === null) return err(c === undefined ? "unexpected end" : `unexpected '${c}'`);
    pos += word[0].length;
    if (word[0] === "True") return true;
    if (word[0] === "False") return false;
    return Number(word[0].replace("L", ""));
  };
  const v = value(0);
  ws();
  if (pos !== text.length) err("unexpected text after the literal");
  return v;
}
