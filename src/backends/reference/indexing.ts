/**
 * Reference gather / scatterAdd / topk kernels (axis layout: `AxisArgs` in core/backend.ts).
 * Out-of-range indices throw here as a last line of defence; ops validate them before calling.
 */
import type { AxisArgs, FloatSource } from "../../core/backend.js";
import type { HalfDType } from "../../core/dtype.js";
import { TensorError } from "../../core/errors.js";
import { bf16ToF32, f16ToF32 } from "../../core/half.js";

function checkIndex(i: number, size: number): void {
  if (!(i >= 0 && i < size)) throw new TensorError(`index ${i} out of range [0, ${size})`);
}

export function gather(
  src: FloatSource,
  srcDtype: "f32" | HalfDType,
  idx: Int32Array,
  out: Float32Array,
  axis: AxisArgs,
  srcSize: number,
): void {
  const { outer, size, inner } = axis;
  const widen = srcDtype === "f32" ? (v: number) => v : srcDtype === "bf16" ? bf16ToF32 : f16ToF32;
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < size; i++) {
      checkIndex(idx[i], srcSize);
      const from = (o * srcSize + idx[i]) * inner;
      const to = (o * size + i) * inner;
      for (let j = 0; j < inner; j++) out[to + j] = widen(src[from + j]);
    }
  }
}

export function scatterAdd(
  src: Float32Array,
  idx: Int32Array,
  out: Float32Array,
  axis: AxisArgs,
  outSize: number,
): void {
  const { outer, size, inner } = axis;
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < size; i++) {
      checkIndex(idx[i], outSize);
      const from = (o * size + i) * inner;
      const to = (o * outSize + idx[i]) * inner;
      for (let j = 0; j < inner; j++) out[to + j] += src[from + j];
    }
  }
}

/** Rank order for top-k: larger first, ties by lower index, NaN after every number. */
function ranksBefore(x: Float32Array, s: number, i: number, j: number): boolean {
  const a = x[s + i];
  const b = x[s + j];
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(b) && (!Number.isNaN(a) || i < j);
  return a > b || (a === b && i < j);
}

/**
 * Sorted descending, ties by lower index, NaN after every number. Small k keeps a sorted list of
 * the best k seen so far (one comparison rejects most entries); large k sorts the whole row.
 */
export function topk(
  x: Float32Array,
  rows: number,
  cols: number,
  k: number,
  values: Float32Array,
  indices: Int32Array,
): void {
  const best = new Int32Array(k <= 64 ? k : cols);
  for (let r = 0; r < rows; r++) {
    const s = r * cols;
    if (k <= 64) {
      let count = 0;
      for (let j = 0; j < cols; j++) {
        if (count === k && !ranksBefore(x, s, j, best[k - 1])) continue;
        let pos = count < k ? count++ : k - 1;
        while (pos > 0 && ranksBefore(x, s, j, best[pos - 1])) {
          best[pos] = best[pos - 1];
          pos--;
        }
        best[pos] = j;
      }
    } else {
      for (let j = 0; j < cols; j++) best[j] = j;
      best.sort((i, j) => (i === j ? 0 : ranksBefore(x, s, i, j) ? -1 : 1));
    }
    for (let t = 0; t < k; t++) {
      indices[r * k + t] = best[t];
      values[r * k + t] = x[s + best[t]];
    }
  }
}
