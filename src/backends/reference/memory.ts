/** Reference copy and dtype-conversion kernels. */
import type { CopyArgs } from "../../core/backend.js";
import type { HalfDType } from "../../core/dtype.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../core/half.js";
import { forEachRow, lastDim } from "./strided.js";

export function copy(src: Float32Array, out: Float32Array, args: CopyArgs): void {
  const strides = [args.srcStrides, args.dstStrides];
  const [n, [ss, ds]] = lastDim(args.shape, strides);
  forEachRow(args.shape, strides, [args.srcOffset, args.dstOffset], ([so, d]) => {
    for (let j = 0; j < n; j++) out[d + j * ds] = src[so + j * ss];
  });
}

export function halfToFloat(src: Uint16Array, dtype: HalfDType, out: Float32Array): void {
  const widen = dtype === "bf16" ? bf16ToF32 : f16ToF32;
  for (let i = 0; i < src.length; i++) out[i] = widen(src[i]);
}

export function floatToHalf(src: Float32Array, dtype: HalfDType, out: Uint16Array): void {
  const narrow = dtype === "bf16" ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < src.length; i++) out[i] = narrow(src[i]);
}
