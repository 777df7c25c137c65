/**
 * Conversion between stored tensors (safetensors / npy element types) and the core `Tensor`.
 *
 * BF16, F16, F32 and I32 storage is wrapped without copying (16-bit floats stay 16-bit, as
 * `src/core/dtype.ts` requires of weights). F64 narrows to f32 (round to nearest even). Other
 * integer and boolean types widen to i32; I64/U32/U64 values outside the i32 range are an error
 * naming the tensor. The F8 types have no core dtype and are refused.
 */

import type { Backend } from "../core/backend.js";
import type { DType } from "../core/dtype.js";
import { SafetensorsError } from "../core/errors.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import type { RawTensor, SafetensorsDType } from "./safetensors-dtype.js";
import { typedArrayOf } from "./safetensors-dtype.js";
import type { TensorToWrite } from "./safetensors-write.js";

const I32_MAX = 2 ** 31 - 1;
const I32_MIN_BIG = -(2n ** 31n);
const I32_MAX_BIG = 2n ** 31n - 1n;

/** Converts a stored tensor to a core Tensor on `backend`; `file` and `name` go into errors. */
export function rawToTensor(raw: RawTensor, backend: Backend, file: string, name: string): Tensor {
  const { shape, bytes } = raw;
  const fail = (msg: string): never => {
    throw new SafetensorsError(`tensor ${JSON.stringify(name)}: ${msg}`, file);
  };
  switch (raw.dtype) {
    case "BF16":
      return fromStorage(backend, "bf16", shape, typedArrayOf("BF16", bytes));
    case "F16":
      return fromStorage(backend, "f16", shape, typedArrayOf("F16", bytes));
    case "F32":
      return fromStorage(backend, "f32", shape, typedArrayOf("F32", bytes));
    case "F64":
      return fromStorage(backend, "f32", shape, Float32Array.from(typedArrayOf("F64", bytes)));
    case "I32":
      return fromStorage(backend, "i32", shape, typedArrayOf("I32", bytes));
    case "I16":
    case "I8":
    case "U16":
    case "U8":
    case "BOOL":
      return fromStorage(backend, "i32", shape, Int32Array.from(typedArrayOf(raw.dtype, bytes)));
    case "U32": {
      const src = typedArrayOf("U32", bytes);
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        if (src[i] > I32_MAX) fail(`U32 value ${src[i]} at index ${i} is outside the i32 range`);
        out[i] = src[i];
      }
      return fromStorage(backend, "i32", shape, out);
    }
    case "I64":
    case "U64": {
      const src = typedArrayOf(raw.dtype, bytes);
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i];
        if (v < I32_MIN_BIG || v > I32_MAX_BIG) {
          fail(`${raw.dtype} value ${v} at index ${i} is outside the i32 range`);
        }
        out[i] = Number(v);
      }
      return fromStorage(backend, "i32", shape, out);
    }
    case "F8_E4M3":
    case "F8_E5M2":
      return fail(`${raw.dtype} has no glassbox tensor dtype`);
  }
}

const STORED_DTYPE: Readonly<Record<DType, SafetensorsDType>> = {
  f32: "F32",
  bf16: "BF16",
  f16: "F16",
  i32: "I32",
};

/** A core Tensor as something `writeSafetensors` accepts (its storage, not copied). */
export function tensorToWrite(t: Tensor): TensorToWrite {
  return { dtype: STORED_DTYPE[t.dtype], shape: t.shape, data: t.data };
}
