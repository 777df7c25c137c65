/**
 * Reference batched matmul (see `MatmulArgs` in core/backend.ts for the layout contract).
 * i-k-j loop order for the non-transposed right operand, row dot products for the transposed one;
 * a 16-bit right operand is widened one row at a time, never as a whole.
 */
import type { FloatSource, MatmulArgs } from "../../core/backend.js";
import { bf16ToF32, f16ToF32 } from "../../core/half.js";

/** Copies `len` elements of `b` starting at `start` into `row` as float32 (a view when `b` is f32). */
function readRow(
  b: FloatSource,
  bDtype: MatmulArgs["bDtype"],
  start: number,
  len: number,
  row: Float32Array,
) {
  if (bDtype === "f32") return (b as Float32Array).subarray(start, start + len);
  const widen = bDtype === "bf16" ? bf16ToF32 : f16ToF32;
  for (let i = 0; i < len; i++) row[i] = widen(b[start + i]);
  return row;
}

export function matmul(a: Float32Array, b: FloatSource, out: Float32Array, args: MatmulArgs): void {
  const { batch, m, k, n, transA, transB, aBatchStride, bBatchStride, bDtype, accumulate } = args;
  const scratch = new Float32Array(transB ? k : n);
  // Element (i, p) of op(A[batch]) relative to the batch's start.
  const aIndex = transA ? (i: number, p: number) => p * m + i : (i: number, p: number) => i * k + p;
  for (let t = 0; t < batch; t++) {
    const aOff = t * aBatchStride;
    const bOff = t * bBatchStride;
    const oOff = t * m * n;
    if (!accumulate) out.fill(0, oOff, oOff + m * n);
    if (transB) {
      // Stored B is [n, k]: out[i, j] += dot(op(A)[i, :], B[j, :]).
      for (let j = 0; j < n; j++) {
        const bRow = readRow(b, bDtype, bOff + j * k, k, scratch);
        for (let i = 0; i < m; i++) {
          let acc = 0;
          for (let p = 0; p < k; p++) acc += a[aOff + aIndex(i, p)] * bRow[p];
          out[oOff + i * n + j] += acc;
        }
      }
    } else if (bDtype === "f32") {
      // Stored B is [k, n]: out[i, :] += op(A)[i, p] * B[p, :].
      for (let i = 0; i < m; i++) {
        const o = oOff + i * n;
        for (let p = 0; p < k; p++) {
          const aip = a[aOff + aIndex(i, p)];
          const r = bOff + p * n;
          for (let j = 0; j < n; j++) out[o + j] += aip * b[r + j];
        }
      }
    } else {
      for (let p = 0; p < k; p++) {
        const bRow = readRow(b, bDtype, bOff + p * n, n, scratch);
        for (let i = 0; i < m; i++) {
          const aip = a[aOff + aIndex(i, p)];
          const o = oOff + i * n;
          for (let j = 0; j < n; j++) out[o + j] += aip * bRow[j];
        }
      }
    }
  }
}
