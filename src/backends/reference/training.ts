/**
 * Reference training kernels (contracts: `SparseDotArgs`, `kthLargest`, `AdamArgs`,
 * `projectOutRows` and `normalizeRows` in core/backend.ts): the gradient of each stored entry of a
 * sparse code, BatchTopK's batch-wide selection value, the Adam update, and the unit-norm decoder
 * constraint. Sums are float64, rounded once.
 */
import type { AdamArgs, SparseDotArgs } from "../../core/backend.js";
import { TensorError } from "../../core/errors.js";

export function sparseDot(
  offsets: Int32Array,
  indices: Int32Array,
  a: Float32Array,
  w: Float32Array,
  out: Float32Array,
  args: SparseDotArgs,
): void {
  const { rows, n, wRows, wRowStride } = args;
  for (let r = 0; r < rows; r++) {
    const ab = r * n;
    for (let j = offsets[r]; j < offsets[r + 1]; j++) {
      const i = indices[j];
      if (!(i >= 0 && i < wRows)) throw new TensorError(`index ${i} out of range [0, ${wRows})`);
      const wb = i * wRowStride;
      let s = 0;
      for (let c = 0; c < n; c++) s += a[ab + c] * w[wb + c];
      out[j] = s;
    }
  }
}

export function kthLargest(x: Float32Array, n: number, k: number): number {
  if (!(Number.isInteger(k) && k >= 1))
    throw new TensorError(`kthLargest: k must be an integer >= 1, got ${k}`);
  const pos: number[] = [];
  for (let i = 0; i < n; i++) if (x[i] > 0) pos.push(x[i]);
  if (pos.length === 0) return 0;
  pos.sort((p, q) => q - p);
  return pos[Math.min(k, pos.length) - 1];
}

export function adamUpdate(
  w: Float32Array,
  g: Float32Array,
  m: Float32Array | null,
  v: Float32Array,
  args: AdamArgs,
): void {
  const { beta1, beta2, eps, stepSize, vScale } = args;
  for (let i = 0; i < w.length; i++) {
    const gi = g[i];
    let mi = gi;
    if (m !== null) {
      mi = beta1 * m[i] + (1 - beta1) * gi;
      m[i] = mi;
    }
    const vi = beta2 * v[i] + (1 - beta2) * gi * gi;
    v[i] = vi;
    w[i] -= (stepSize * mi) / (Math.sqrt(vi) * vScale + eps);
  }
}

export function projectOutRows(w: Float32Array, g: Float32Array, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) {
    const b = i * cols;
    let dot = 0;
    for (let c = 0; c < cols; c++) dot += g[b + c] * w[b + c];
    for (let c = 0; c < cols; c++) g[b + c] -= dot * w[b + c];
  }
}

export function normalizeRows(w: Float32Array, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) {
    const b = i * cols;
    let n = 0;
    for (let c = 0; c < cols; c++) n += w[b + c] * w[b + c];
    if (n === 0) continue;
    const s = 1 / Math.sqrt(n);
    for (let c = 0; c < cols; c++) w[b + c] *= s;
  }
}
