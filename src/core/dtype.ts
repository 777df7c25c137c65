/**
 * Tensor element types and their storage.
 *
 * Compute is always float32. Floating tensors may be *stored* as bf16 or f16 (raw 16-bit patterns
 * in a Uint16Array) so that model weights keep their on-disk size in memory; kernels that accept
 * them (matmul's right operand, gather's source, cast) widen to f32 internally. Integer tensors
 * (token ids, indices) are i32.
 */

export type DType = "f32" | "bf16" | "f16" | "i32";

/** Storage array for each dtype. */
export interface StorageMap {
  f32: Float32Array;
  bf16: Uint16Array;
  f16: Uint16Array;
  i32: Int32Array;
}

export type Storage = StorageMap[DType];

/** Dtypes whose elements are floating point (bf16/f16 are converted to f32 for compute). */
export type FloatDType = "f32" | "bf16" | "f16";

/** 16-bit float storage formats accepted directly by some kernels. */
export type HalfDType = "bf16" | "f16";

export const DTYPE_BYTES: Readonly<Record<DType, number>> = { f32: 4, bf16: 2, f16: 2, i32: 4 };

export function isFloatDType(d: DType): d is FloatDType {
  return d !== "i32";
}

export function allocStorage<D extends DType>(dtype: D, size: number): StorageMap[D] {
  switch (dtype) {
    case "f32":
      return new Float32Array(size) as StorageMap[D];
    case "bf16":
    case "f16":
      return new Uint16Array(size) as StorageMap[D];
    case "i32":
      return new Int32Array(size) as StorageMap[D];
  }
  throw new Error(`unknown dtype ${String(dtype)}`);
}
