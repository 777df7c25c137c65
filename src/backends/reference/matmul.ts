/**
 * Reference batched matmul (see `MatmulArgs` in core/backend.ts for the layout contract).
 * Rows of op(A) are read contiguously (a transposed A is first copied to a row-major scratch: it is
 * an activation, not a weight); a 16-bit right operand is widened one row at a time, never whole.
 * Loop orders: i-k-j for a row-major B, row dot products for a transposed B.
 */
import type { FloatSource, MatmulArgs } from "../../core/backend.js";
import { bf16ToF32, f16ToF32, f32ToBf16 } from "../../core/half.js";

/** Row `row` of stored B (`len` elements from `start`) as float32: a view for f32, else widened. */
function readRow(
  b: FloatSource,
  bDtype: MatmulArgs["bDtype"],
  start: number,
  len: number,
  scratch: Float32Array,
) {
  if (bDtype === "f32") return (b as Float32Array).subarray(start, start + len);
  const widen = bDtype === "bf16" ? bf16ToF32 : f16ToF32;
  for (let i = 0; i < len; i++) scratch[i] = widen(b[start + i]);
  return scratch;
}

/** op(A[batch]) as a row-major [m, k] array. */
function rowsOfA(
  a: Float32Array,
  offset: number,
  m: number,
  k: number,
  transA: boolean,
  scratch: Float32Array,
) {
  if (!transA) return a.subarray(offset, offset + m * k);
  for (let p = 0; p < k; p++) {
    for (let i = 0; i < m; i++) scratch[i * k + p] = a[offset + p * m + i];
  }
  return scratch;
}

/** A copy of `a` with every element rounded to the nearest bf16 value. */
function roundedToBf16(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = bf16ToF32(f32ToBf16(a[i]));
  return out;
}

export function matmul(a: Float32Array, b: FloatSource, out: Float32Array, args: MatmulArgs): void {
  const { batch, m, k, n, transA, transB, aBatchStride, bBatchStride, bDtype, accumulate } = args;
  if (args.aBf16 && batch > 0) a = roundedToBf16(a.subarray(0, (batch - 1) * aBatchStride + m * k));
  if (args.bBf16 && bDtype === "f32" && batch > 0)
    b = roundedToBf16((b as Float32Array).subarray(0, (batch - 1) * bBatchStride + k * n));
  const bScratch = new Float32Array(transB ? k : n);
  const aScratch = new Float32Array(transA ? m * k : 0);
  for (let t = 0; t < batch; t++) {
    const A = rowsOfA(a, t * aBatchStride, m, k, transA, aScratch);
    const bOff = t * bBatchStride;
    const oOff = t * m * n;
    if (!accumulate) out.fill(0, oOff, oOff + m * n);
    if (transB) {
      // Stored B is [n, k]: out[i, j] += dot(A[i, :], B[j, :]).
      for (let j = 0; j < n; j++) {
        const bRow = readRow(b, bDtype, bOff + j * k, k, bScratch);
        for (let i = 0; i < m; i++) {
          let acc = 0;
          for (let p = 0; p < k; p++) acc += A[i * k + p] * bRow[p];
          out[oOff + i * n + j] += acc;
        }
      }
    } else if (bDtype === "f32") {
      // Stored B is [k, n]: out[i, :] += A[i, p] * B[p, :].
      const B = b as Float32Array;
      for (let i = 0; i < m; i++) {
        const o = oOff + i * n;
        for (let p = 0; p < k; p++) {
          const aip = A[i * k + p];
          const r = bOff + p * n;
          for (let j = 0; j < n; j++) out[o + j] += aip * B[r + j];
        }
      }
    } else {
      for (let p = 0; p < k; p++) {
        const bRow = readRow(b, bDtype, bOff + p * n, n, bScratch);
        for (let i = 0; i < m; i++) {
          const aip = A[i * k + p];
          const o = oOff + i * n;
          for (let j = 0; j < n; j++) out[o + j] += aip * bRow[j];
        }
      }
    }
  }
}
