/**
 * `FeatureActs`: a dictionary's feature activations for a set of tokens, held dense (a tensor
 * [..., width]) or sparse (per-row column indices and values, `CsrRows`). Sparse is the default for
 * encoding: at a realistic L0 (tens to hundreds of active features) a 262k- or 1M-wide activation
 * row costs a few kB instead of 1-4 MB, and decoding touches only the active decoder rows.
 *
 * Rows are the leading dims flattened, row-major: [tokens] for a single-site dictionary,
 * [layers, tokens] for a cross-layer transcoder.
 */
import type { Backend } from "../core/backend.js";
import { DictionaryError } from "../core/errors.js";
import type { CsrRows } from "../core/ops/sparse.js";
import { checkCsr } from "../core/ops/sparse.js";
import { formatShape, fromStorage, shapeSize, type Tensor } from "../core/tensor.js";

/** One row's active features: ascending `indices` (sparse) with their `values`. */
export interface ActiveFeatures {
  readonly indices: Int32Array;
  readonly values: Float32Array;
}

export class FeatureActs {
  /** [...lead, width] */
  readonly shape: readonly number[];
  readonly width: number;
  /** Number of rows (product of the leading dims). */
  readonly rows: number;
  readonly backend: Backend;
  private readonly csr: CsrRows | null;
  private readonly tensor: Tensor<"f32"> | null;

  private constructor(
    backend: Backend,
    shape: readonly number[],
    csr: CsrRows | null,
    dense: Tensor<"f32"> | null,
  ) {
    this.backend = backend;
    this.shape = Object.freeze([...shape]);
    this.width = shape[shape.length - 1];
    this.rows = shapeSize(shape.slice(0, -1));
    this.csr = csr;
    this.tensor = dense;
  }

  /** Wraps sparse rows; `lead` gives the leading dims (their product must equal `rows.rows`). */
  static sparse(backend: Backend, lead: readonly number[], rows: CsrRows): FeatureActs {
    if (shapeSize(lead) !== rows.rows) {
      throw new DictionaryError(
        `feature acts: leading dims ${formatShape(lead)} do not hold ${rows.rows} rows`,
      );
    }
    checkCsr("FeatureActs.sparse", rows);
    return new FeatureActs(backend, [...lead, rows.cols], rows, null);
  }

  /** Wraps a dense f32 tensor [..., width]. */
  static dense(values: Tensor<"f32">): FeatureActs {
    if (values.rank < 1) throw new DictionaryError("feature acts: a dense tensor needs a width axis");
    return new FeatureActs(values.backend, values.shape, null, values);
  }

  get isSparse(): boolean {
    return this.csr !== null;
  }

  /** Number of stored entries (sparse) or of non-zero entries (dense). */
  get nnz(): number {
    if (this.csr) return this.csr.offsets[this.rows];
    let n = 0;
    for (const v of this.denseData()) if (v !== 0) n++;
    return n;
  }

  /** The activations as sparse rows (zeros dropped when converting from dense). */
  toSparse(): CsrRows {
    if (this.csr) return this.csr;
    const data = this.denseData();
    const w = this.width;
    const offsets = new Int32Array(this.rows + 1);
    for (let r = 0; r < this.rows; r++) {
      let k = 0;
      for (let c = 0; c < w; c++) if (data[r * w + c] !== 0) k++;
      offsets[r + 1] = offsets[r] + k;
    }
    const indices = new Int32Array(offsets[this.rows]);
    const values = new Float32Array(offsets[this.rows]);
    for (let r = 0, j = 0; r < this.rows; r++) {
      for (let c = 0; c < w; c++) {
        const v = data[r * w + c];
        if (v !== 0) {
          indices[j] = c;
          values[j++] = v;
        }
      }
    }
    return { rows: this.rows, cols: w, offsets, indices, values };
  }

  /** The activations as a dense f32 tensor [..., width] (allocates rows x width floats when sparse). */
  toDense(): Tensor<"f32"> {
    if (this.tensor) return this.tensor;
    const s = this.csr as CsrRows;
    const out = new Float32Array(this.rows * this.width);
    for (let r = 0; r < this.rows; r++) {
      for (let j = s.offsets[r]; j < s.offsets[r + 1]; j++) out[r * this.width + s.indices[j]] = s.values[j];
    }
    return fromStorage(this.backend, "f32", this.shape, out);
  }

  /** The active features of row `r` (non-zero entries, ascending index). */
  row(r: number): ActiveFeatures {
    if (!Number.isInteger(r) || r < 0 || r >= this.rows)
      throw new DictionaryError(`feature acts: no row ${r}`);
    if (this.csr) {
      const a = this.csr.offsets[r];
      const b = this.csr.offsets[r + 1];
      return { indices: this.csr.indices.subarray(a, b), values: this.csr.values.subarray(a, b) };
    }
    const data = this.denseData().subarray(r * this.width, (r + 1) * this.width);
    const idx: number[] = [];
    for (let c = 0; c < data.length; c++) if (data[c] !== 0) idx.push(c);
    return { indices: Int32Array.from(idx), values: Float32Array.from(idx, (c) => data[c]) };
  }

  /** Active features per row. */
  l0(): Int32Array {
    const out = new Int32Array(this.rows);
    for (let r = 0; r < this.rows; r++) out[r] = this.row(r).indices.length;
    return out;
  }

  /**
   * Rows [start, start + count) of the flattened rows, as acts with leading dims `lead` (e.g. one
   * layer [tokens] of a CLT's [layers, tokens]). No copy of values for either form.
   */
  rowRange(start: number, count: number, lead: readonly number[] = [count]): FeatureActs {
    if (start < 0 || count < 0 || start + count > this.rows || shapeSize(lead) !== count) {
      throw new DictionaryError(
        `feature acts: rows [${start}, ${start + count}) as ${formatShape(lead)} out of ${this.rows}`,
      );
    }
    if (this.csr) {
      const s = this.csr;
      const base = s.offsets[start];
      const offsets = Int32Array.from(s.offsets.subarray(start, start + count + 1), (o) => o - base);
      const end = s.offsets[start + count];
      return new FeatureActs(
        this.backend,
        [...lead, this.width],
        {
          rows: count,
          cols: this.width,
          offsets,
          indices: s.indices.subarray(base, end),
          values: s.values.subarray(base, end),
        },
        null,
      );
    }
    const data = this.denseData().subarray(start * this.width, (start + count) * this.width);
    return FeatureActs.dense(fromStorage(this.backend, "f32", [...lead, this.width], data));
  }

  /**
   * The `k` largest activations of each row (ties: lower index first), as [rows] lists of
   * { index, value } sorted by value descending. Zero activations are never listed.
   */
  top(k: number): { index: number; value: number }[][] {
    const out: { index: number; value: number }[][] = [];
    for (let r = 0; r < this.rows; r++) {
      const { indices, values } = this.row(r);
      const order = Array.from(indices.keys()).sort(
        (a, b) => values[b] - values[a] || indices[a] - indices[b],
      );
      out.push(order.slice(0, k).map((j) => ({ index: indices[j], value: values[j] })));
    }
    return out;
  }

  private denseData(): Float32Array {
    return (this.tensor as Tensor<"f32">).data;
  }
}
