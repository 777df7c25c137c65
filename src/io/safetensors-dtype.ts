/**
 * Safetensors element types (the `dtype` strings of the Hugging Face format), their sizes, and
 * typed-array views over little-endian tensor bytes.
 *
 * Follows the dtype list of huggingface/safetensors (`Dtype` in safetensors/src/tensor.rs), minus
 * the sub-byte and complex types no Gemma or Gemma Scope checkpoint uses. F16 and BF16 have no
 * native typed array: they are exposed as their raw 16-bit patterns in a Uint16Array; the F8 types
 * as raw bytes.
 */

import { endianness } from "node:os";
import { SafetensorsError } from "../core/errors.js";

export const SAFETENSORS_DTYPES = [
  "F64",
  "F32",
  "F16",
  "BF16",
  "I64",
  "I32",
  "I16",
  "I8",
  "U64",
  "U32",
  "U16",
  "U8",
  "BOOL",
  "F8_E4M3",
  "F8_E5M2",
] as const;

export type SafetensorsDType = (typeof SAFETENSORS_DTYPES)[number];

export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

export function isSafetensorsDType(s: string): s is SafetensorsDType {
  return Object.hasOwn(SAFETENSORS_DTYPE_BYTES, s);
}

/** The typed array each dtype is viewed as. */
export interface SafetensorsArrayMap {
  F64: Float64Array;
  F32: Float32Array;
  /** IEEE half-precision bit patterns */
  F16: Uint16Array;
  /** bfloat16 bit patterns (the top 16 bits of a float32) */
  BF16: Uint16Array;
  I64: BigInt64Array;
  I32: Int32Array;
  I16: Int16Array;
  I8: Int8Array;
  U64: BigUint64Array;
  U32: Uint32Array;
  U16: Uint16Array;
  U8: Uint8Array;
  /** one byte per element, 0 or 1 */
  BOOL: Uint8Array;
  F8_E4M3: Uint8Array;
  F8_E5M2: Uint8Array;
}

export type SafetensorsArray = SafetensorsArrayMap[SafetensorsDType];

/** A tensor as stored: dtype, shape (row-major) and its little-endian bytes. */
export interface RawTensor {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

/** A tensor viewed as a typed array; narrowing on `dtype` narrows `data`. */
export type TypedTensor = {
  [D in SafetensorsDType]: {
    readonly dtype: D;
    readonly shape: readonly number[];
    readonly data: SafetensorsArrayMap[D];
  };
}[SafetensorsDType];

const LITTLE_ENDIAN = endianness() === "LE";

/**
 * Views little-endian bytes as the dtype's typed array. Shares memory with `bytes` when its offset is
 * aligned for the element size; otherwise copies into a fresh, aligned buffer.
 */
export function typedArrayOf<D extends SafetensorsDType>(
  dtype: D,
  bytes: Uint8Array,
): SafetensorsArrayMap[D] {
  const size = SAFETENSORS_DTYPE_BYTES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new SafetensorsError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  }
  if (size > 1 && !LITTLE_ENDIAN) {
    throw new SafetensorsError("typed views of little-endian tensors need a little-endian machine");
  }
  let src = bytes;
  if (bytes.byteOffset % size !== 0) {
    src = new Uint8Array(bytes.byteLength);
    src.set(bytes);
  }
  const n = src.byteLength / size;
  const { buffer, byteOffset } = src;
  switch (dtype) {
    case "F64":
      return new Float64Array(buffer, byteOffset, n) as SafetensorsArrayMap[D];
    case "F32":
      return new Float32Array(buffer, byteOffset, n) as SafetensorsArrayMap[D];
    case "F16":
    case "BF16":
    case "U16":
      return new Uint16Array(buffer, byteOffset, n) as SafetensorsArrayMap[D];
    case "I64":
      return new BigInt64Array(buffer, byteOffset, n) as SafetensorsArrayMap[D];
    case "I32":
      return new Int32Array(buffer, byteOffset, n) as SafetensorsArrayMap[D];
    case "I16":
      return new Int16Array(buffer, byteOffset, n) as SafetensorsArrayMap[D];
    case "I8":
      return new Int8Array(buffer, byteOffset, n) as SafetensorsArrayMap[D];
    case "U64":
      return new BigUint64Array(buffer, byteOffset, n) as SafetensorsArrayMap[D];
    case "U32":
      return new Uint32Array(buffer, byteOffset, n) as SafetensorsArrayMap[D];
    default:
      return new Uint8Array(buffer, byteOffset, n) as SafetensorsArrayMap[D];
  }
}
