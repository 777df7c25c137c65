/**
 * Sparse rows (CSR) for sparse dictionaries: `thresholdSparse` selects the entries of a dense
 * matrix above a threshold (JumpReLU / ReLU feature activations), `sparseMatmul` multiplies sparse
 * rows by a dense matrix without densifying them (decoding feature activations). Neither is
 * recorded for `grad`.
 */
import type { Backend } from "../backend.js";
import { formatShape, type Tensor } from "../tensor.js";
import { backendOf, f32Data, fail, makeF32 } from "./util.js";

/**
 * A [rows, cols] matrix with few non-zeros per row, in compressed sparse row form: row r holds
 * columns `indices[j]` with values `values[j]` for j in [offsets[r], offsets[r + 1]).
 */
export interface CsrRows {
  readonly rows: number;
  readonly cols: number;
  /** rows + 1 non-decreasing entry offsets, offsets[0] = 0. */
  readonly offsets: Int32Array;
  /** Column of each entry (ascending within a row when made by `thresholdSparse`). */
  readonly indices: Int32Array;
  readonly values: Float32Array;
}

/** Checks a CSR structure: offsets, lengths and every column index. */
export function checkCsr(op: string, a: CsrRows): void {
  const { rows, cols, offsets, indices, values } = a;
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols < 0) {
    fail(op, `sparse rows: bad size [${rows}, ${cols}]`);
  }
  if (offsets.length !== rows + 1)
    fail(op, `sparse rows: offsets has ${offsets.length} entries, need ${rows + 1}`);
  if (offsets[0] !== 0) fail(op, "sparse rows: offsets[0] must be 0");
  for (let r = 0; r < rows; r++) {
    if (offsets[r + 1] < offsets[r]) fail(op, `sparse rows: offsets decrease at row ${r}`);
  }
  const nnz = offsets[rows];
  if (indices.length !== nnz || values.length !== nnz) {
    fail(op, `sparse rows: ${nnz} entries but ${indices.length} indices and ${values.length} values`);
  }
  for (let j = 0; j < nnz; j++) {
    if (!(indices[j] >= 0 && indices[j] < cols))
      fail(op, `sparse rows: index ${indices[j]} out of range [0, ${cols})`);
  }
}

export interface SparseMatmulOptions {
  /**
   * Use only columns [start, start + count) of w's trailing dims flattened to one row, e.g. one
   * target layer's block of a [width, layers, d_out] decoder. Default: all of them.
   */
  readonly columns?: { readonly start: number; readonly count: number };
  /** Added to the product: [n] (one bias row) or [rows, n]. */
  readonly add?: Tensor;
}

/**
 * a [rows, cols] (sparse) @ w [cols, ...] -> [rows, n] f32, with n the number of columns used.
 * w may be f32, bf16 or f16 (widened inside the kernel).
 */
export function sparseMatmul(a: CsrRows, w: Tensor, options: SparseMatmulOptions = {}): Tensor<"f32"> {
  const op = "sparseMatmul";
  const backend: Backend = options.add ? backendOf(op, w, options.add) : w.backend;
  if (w.dtype === "i32") fail(op, "w must be f32, bf16 or f16, got i32");
  if (w.rank < 2) fail(op, `w needs at least 2 dims, got ${formatShape(w.shape)}`);
  if (w.shape[0] !== a.cols) fail(op, `sparse rows have ${a.cols} columns but w is ${formatShape(w.shape)}`);
  checkCsr(op, a);
  const rowStride = w.shape[0] === 0 ? 0 : w.size / w.shape[0];
  const start = options.columns?.start ?? 0;
  const n = options.columns?.count ?? rowStride;
  if (!Number.isInteger(start) || !Number.isInteger(n) || start < 0 || n < 0 || start + n > rowStride) {
    fail(op, `columns [${start}, ${start + n}) outside w's ${rowStride} columns`);
  }
  const out = makeF32(backend, [a.rows, n]);
  const add = options.add;
  if (add) {
    const data = f32Data(op, add, "add");
    if (add.rank === 1 && add.shape[0] === n) {
      for (let r = 0; r < a.rows; r++) out.data.set(data, r * n);
    } else if (add.rank === 2 && add.shape[0] === a.rows && add.shape[1] === n) {
      out.data.set(data);
    } else {
      fail(op, `add must be [${n}] or [${a.rows}, ${n}], got ${formatShape(add.shape)}`);
    }
  }
  backend.sparseMatmul(
    a.offsets,
    a.indices,
    a.values,
    w.data.subarray(start) as Float32Array | Uint16Array,
    out.data,
    {
      rows: a.rows,
      n,
      wRows: a.cols,
      wRowStride: rowStride,
      wDtype: w.dtype === "f32" ? "f32" : w.dtype,
      accumulate: add !== undefined,
    },
  );
  return out;
}

export interface ThresholdOptions {
  /** [cols] f32 added to every row first (v = x + bias, rounded to f32, as `add` would). */
  readonly bias?: Tensor;
}

/**
 * The entries v of x [..., cols] (f32; plus `bias` when given) with v > threshold and v > 0, as
 * sparse rows over x's leading dims flattened. `threshold` is [cols] (one per column) or a number
 * (the same for every column).
 */
export function thresholdSparse(
  x: Tensor,
  threshold: Tensor | number,
  options: ThresholdOptions = {},
): CsrRows {
  const op = "thresholdSparse";
  if (x.rank < 1) fail(op, "x needs at least one dim");
  const xs = f32Data(op, x, "x");
  const cols = x.shape[x.rank - 1];
  const rows = cols === 0 ? 0 : x.size / cols;
  let bias: Float32Array | null = null;
  if (options.bias !== undefined) {
    backendOf(op, x, options.bias);
    if (options.bias.rank !== 1 || options.bias.shape[0] !== cols) {
      fail(op, `bias must be [${cols}], got ${formatShape(options.bias.shape)}`);
    }
    bias = f32Data(op, options.bias, "bias");
  }
  let t: Float32Array;
  let thresholdStride: 0 | 1;
  if (typeof threshold === "number") {
    t = Float32Array.of(threshold);
    thresholdStride = 0;
  } else {
    backendOf(op, x, threshold);
    if (threshold.rank !== 1 || threshold.shape[0] !== cols) {
      fail(op, `threshold must be [${cols}], got ${formatShape(threshold.shape)}`);
    }
    t = f32Data(op, threshold, "threshold");
    thresholdStride = 1;
  }
  const args = { rows, cols, thresholdStride };
  const counts = new Int32Array(rows);
  x.backend.thresholdCount(xs, bias, t, counts, args);
  const offsets = new Int32Array(rows + 1);
  for (let r = 0; r < rows; r++) offsets[r + 1] = offsets[r] + counts[r];
  const nnz = offsets[rows];
  const indices = new Int32Array(nnz);
  const values = new Float32Array(nnz);
  x.backend.thresholdSelect(xs, bias, t, offsets, indices, values, args);
  return { rows, cols, offsets, indices, values };
}
