/**
 * Native sparse kernels (native/sparse.c documents each argument list): the addon's exports and the
 * `Backend` methods wrapping them.
 */
import type { Backend, FloatSource } from "../../core/backend.js";
import { TensorError } from "../../core/errors.js";

type DtypeCode = 0 | 1 | 2;
const DTYPE = { f32: 0, bf16: 1, f16: 2 } as const satisfies Record<string, DtypeCode>;

export interface SparseAddon {
  /** Returns -1, or the position in `indices` of an out-of-range index (nothing written then). */
  sparseMatmul(
    offsets: Int32Array,
    indices: Int32Array,
    values: Float32Array,
    w: FloatSource,
    wDtype: DtypeCode,
    out: Float32Array,
    rows: number,
    n: number,
    wRows: number,
    wRowStride: number,
    accumulate: boolean,
  ): number;
  thresholdCount(
    x: Float32Array,
    bias: Float32Array | null,
    threshold: Float32Array,
    thresholdStride: number,
    counts: Int32Array,
    rows: number,
    cols: number,
  ): void;
  /** Returns -1, or a row with more selected entries than `offsets` leaves room for. */
  thresholdSelect(
    x: Float32Array,
    bias: Float32Array | null,
    threshold: Float32Array,
    thresholdStride: number,
    offsets: Int32Array,
    indices: Int32Array,
    values: Float32Array,
    rows: number,
    cols: number,
  ): number;
}

export type SparseKernels = Pick<Backend, "sparseMatmul" | "thresholdCount" | "thresholdSelect">;

export function wrapSparse(addon: SparseAddon): SparseKernels {
  return {
    sparseMatmul: (offsets, indices, values, w, out, g) => {
      const bad = addon.sparseMatmul(
        offsets,
        indices,
        values,
        w,
        DTYPE[g.wDtype],
        out,
        g.rows,
        g.n,
        g.wRows,
        g.wRowStride,
        g.accumulate,
      );
      if (bad >= 0) throw new TensorError(`index ${indices[bad]} out of range [0, ${g.wRows})`);
    },
    thresholdCount: (x, bias, threshold, counts, g) =>
      addon.thresholdCount(x, bias, threshold, g.thresholdStride, counts, g.rows, g.cols),
    thresholdSelect: (x, bias, threshold, offsets, indices, values, g) => {
      const row = addon.thresholdSelect(
        x,
        bias,
        threshold,
        g.thresholdStride,
        offsets,
        indices,
        values,
        g.rows,
        g.cols,
      );
      if (row >= 0) throw new TensorError(`thresholdSelect: row ${row} has more entries than counted`);
    },
  };
}
