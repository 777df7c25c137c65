/**
 * Reference reductions and row-wise normalisations: reduce, argReduce, softmax, logSoftmax, rmsnorm,
 * and rotary embedding. Accumulation is in float64 (the most accurate float32 result, which faster
 * backends are compared against with a tolerance).
 */
import type { AxisArgs, ReduceOp } from "../../core/backend.js";

export function reduce(op: ReduceOp, x: Float32Array, out: Float32Array, axis: AxisArgs): void {
  const { outer, size, inner } = axis;
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < inner; j++) {
      const base = o * size * inner + j;
      let acc = op === "sum" ? 0 : op === "max" ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
      for (let i = 0; i < size; i++) {
        const v = x[base + i * inner];
        // max/min propagate NaN (Math.max/min do).
        acc = op === "sum" ? acc + v : op === "max" ? Math.max(acc, v) : Math.min(acc, v);
      }
      out[o * inner + j] = acc;
    }
  }
}

/** NaN never wins; ties pick the first index; an all-NaN (or empty) slice gives 0. */
export function argReduce(op: "argmax" | "argmin", x: Float32Array, out: Int32Array, axis: AxisArgs): void {
  const { outer, size, inner } = axis;
  const better = op === "argmax" ? (v: number, b: number) => v > b : (v: number, b: number) => v < b;
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < inner; j++) {
      const base = o * size * inner + j;
      let best = 0;
      let bestV = Number.NaN;
      for (let i = 0; i < size; i++) {
        const v = x[base + i * inner];
        if (Number.isNaN(v)) continue;
        if (Number.isNaN(bestV) || better(v, bestV)) {
          best = i;
          bestV = v;
        }
      }
      out[o * inner + j] = best;
    }
  }
}

function rowMax(x: Float32Array, start: number, cols: number): number {
  let m = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < cols; j++) m = Math.max(m, x[start + j]);
  return m;
}

export function softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const s = r * cols;
    const m = rowMax(x, s, cols);
    let total = 0;
    for (let j = 0; j < cols; j++) {
      out[s + j] = Math.exp(x[s + j] - m);
      total += out[s + j];
    }
    for (let j = 0; j < cols; j++) out[s + j] /= total;
  }
}

export function logSoftmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const s = r * cols;
    const m = rowMax(x, s, cols);
    let total = 0;
    for (let j = 0; j < cols; j++) total += Math.exp(x[s + j] - m);
    const lse = m + Math.log(total);
    for (let j = 0; j < cols; j++) out[s + j] = x[s + j] - lse;
  }
}

export function rmsnorm(
  x: Float32Array,
  weight: Float32Array | null,
  out: Float32Array,
  rows: number,
  cols: number,
  eps: number,
  weightOffset: number,
  invRms: Float32Array | null,
): void {
  for (let r = 0; r < rows; r++) {
    const s = r * cols;
    let sumSq = 0;
    for (let j = 0; j < cols; j++) sumSq += x[s + j] * x[s + j];
    // Rounded to float32 as the stored invRms is, so out == x * invRms * w exactly as documented.
    const inv = Math.fround(1 / Math.sqrt(sumSq / cols + eps));
    if (invRms) invRms[r] = inv;
    for (let j = 0; j < cols; j++) {
      const w = weight ? weightOffset + weight[j] : 1;
      out[s + j] = x[s + j] * inv * w;
    }
  }
}

export function rope(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  out: Float32Array,
  rows: number,
  seq: number,
  dim: number,
  inverse: boolean,
  heads: number,
): void {
  const half = dim / 2;
  const sign = inverse ? -1 : 1;
  for (let u = 0; u < rows * seq * heads; u++) {
    const t = Math.floor(u / heads) % seq;
    const s = u * dim;
    for (let j = 0; j < half; j++) {
      const c = cos[t * half + j];
      const sn = sign * sin[t * half + j];
      const x1 = x[s + j];
      const x2 = x[s + j + half];
      out[s + j] = x1 * c - x2 * sn;
      out[s + j + half] = x2 * c + x1 * sn;
    }
  }
}
