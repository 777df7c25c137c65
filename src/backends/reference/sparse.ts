/**
 * Reference sparse kernels (contracts: `SparseMatmulArgs` and `ThresholdArgs` in core/backend.ts):
 * CSR rows times a dense matrix, and threshold selection into CSR. Sums are float64, rounded once.
 */
import type { FloatSource, SparseMatmulArgs, ThresholdArgs } from "../../core/backend.js";
import { TensorError } from "../../core/errors.js";
import { bf16ToF32, f16ToF32 } from "../../core/half.js";

export function sparseMatmul(
  offsets: Int32Array,
  indices: Int32Array,
  values: Float32Array,
  w: FloatSource,
  out: Float32Array,
  args: SparseMatmulArgs,
): void {
  const { rows, n, wRows, wRowStride, wDtype, accumulate } = args;
  const widen = wDtype === "f32" ? (v: number) => v : wDtype === "bf16" ? bf16ToF32 : f16ToF32;
  const acc = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    if (accumulate) for (let c = 0; c < n; c++) acc[c] = out[r * n + c];
    else acc.fill(0);
    for (let j = offsets[r]; j < offsets[r + 1]; j++) {
      const i = indices[j];
      if (!(i >= 0 && i < wRows)) throw new TensorError(`index ${i} out of range [0, ${wRows})`);
      const v = values[j];
      const base = i * wRowStride;
      for (let c = 0; c < n; c++) acc[c] += v * widen(w[base + c]);
    }
    for (let c = 0; c < n; c++) out[r * n + c] = acc[c];
  }
}

function selected(v: number, t: number): boolean {
  return v > t && v > 0;
}

/** x + bias rounded to float32, as the native kernel computes it. */
function biased(x: Float32Array, bias: Float32Array | null, i: number, c: number): number {
  return bias === null ? x[i] : Math.fround(x[i] + bias[c]);
}

export function thresholdCount(
  x: Float32Array,
  bias: Float32Array | null,
  threshold: Float32Array,
  counts: Int32Array,
  args: ThresholdArgs,
): void {
  const { rows, cols, thresholdStride } = args;
  for (let r = 0; r < rows; r++) {
    let k = 0;
    for (let c = 0; c < cols; c++)
      if (selected(biased(x, bias, r * cols + c, c), threshold[c * thresholdStride])) k++;
    counts[r] = k;
  }
}

export function thresholdSelect(
  x: Float32Array,
  bias: Float32Array | null,
  threshold: Float32Array,
  offsets: Int32Array,
  indices: Int32Array,
  values: Float32Array,
  args: ThresholdArgs,
): void {
  const { rows, cols, thresholdStride } = args;
  for (let r = 0; r < rows; r++) {
    let j = offsets[r];
    for (let c = 0; c < cols; c++) {
      const v = biased(x, bias, r * cols + c, c);
      if (!selected(v, threshold[c * thresholdStride])) continue;
      if (j >= offsets[r + 1])
        throw new TensorError(`thresholdSelect: row ${r} has more entries than counted`);
      indices[j] = c;
      values[j] = v;
      j++;
    }
  }
}
