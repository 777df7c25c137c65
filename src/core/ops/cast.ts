/**
 * dtype conversion. Between float formats: round to nearest even (NaN kept, overflow to infinity).
 * Float to i32: truncation toward zero, saturating at the i32 range, NaN to 0.
 * Float-to-float casts pass gradients through unchanged (as f32); casts involving i32 have none.
 */
import type { DType, StorageMap } from "../dtype.js";
import { allocStorage } from "../dtype.js";
import { isRecording, recordOp } from "../tape.js";
import type { Tensor } from "../tensor.js";
import { makeTensor } from "./util.js";

function toF32(x: Tensor): Float32Array {
  return x.dtype === "f32" ? (x.data as Float32Array) : x.toFloat32Array();
}

export function cast<D extends DType>(x: Tensor, dtype: D): Tensor<D> {
  if ((x.dtype as DType) === dtype) return x as Tensor<D>;
  const out = allocStorage(dtype, x.size) as StorageMap[DType];
  if (dtype === "bf16" || dtype === "f16") {
    x.backend.floatToHalf(toF32(x), dtype, out as Uint16Array);
  } else if (dtype === "i32") {
    const src = toF32(x);
    const o = out as Int32Array;
    for (let i = 0; i < src.length; i++) {
      const v = src[i];
      o[i] = Number.isNaN(v) ? 0 : Math.max(-2147483648, Math.min(2147483647, Math.trunc(v)));
    }
  } else {
    (out as Float32Array).set(x.dtype === "i32" ? (x.data as Int32Array) : toF32(x));
  }
  const result = makeTensor(x.backend, dtype, x.shape, out as StorageMap[D]);
  if (isRecording() && x.dtype !== "i32" && dtype !== "i32") {
    recordOp("cast", [x], result, (g) => [g]);
  }
  return result;
}
