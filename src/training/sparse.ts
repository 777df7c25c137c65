/**
 * Sparse codes for training: CSR matrices over batch rows (`[batch, width]`), their transposes (the
 * layout the weight-gradient products need), splitting by latent group (Matryoshka), and reusable
 * growable buffers so a training step allocates almost nothing.
 *
 * The products themselves are backend kernels: `sparseMatmul` (decode, and with a transposed CSR
 * the weight gradients `W_grad[i] += sum_t v[t,i] A[t]`) and `sparseDot` (the gradient with respect to
 * each stored entry, `dot(A[t], W[i])`).
 */
import type { Backend } from "../core/backend.js";

/** A sparse [rows, cols] matrix in CSR form; row r holds entries offsets[r] .. offsets[r + 1]. */
export interface Csr {
  readonly rows: number;
  readonly cols: number;
  /** [rows + 1]; offsets[0] = 0. */
  readonly offsets: Int32Array;
  /** [nnz] column of each entry. */
  readonly indices: Int32Array;
  /** [nnz] value of each entry. */
  readonly values: Float32Array;
  readonly nnz: number;
}

/**
 * The transpose of a CSR matrix (a CSC view): column c holds entries offsets[c] .. offsets[c + 1]
 * with their rows in `rows` and their position in the source CSR in `source`, so values of any
 * per-entry array `v` in this order are `v[source[j]]`.
 */
export interface Transposed {
  readonly offsets: Int32Array;
  readonly rows: Int32Array;
  readonly source: Int32Array;
}

/** A growable typed-array buffer: `get(n)` returns a view of at least n elements (contents undefined). */
export class Buffer<T extends Float32Array | Int32Array> {
  private data: T;
  constructor(private readonly make: (n: number) => T) {
    this.data = make(0);
  }
  get(n: number): T {
    if (this.data.length < n) this.data = this.make(Math.max(n, Math.ceil(this.data.length * 1.5)));
    return this.data.subarray(0, n) as T;
  }
}

export const f32Buffer = (): Buffer<Float32Array> => new Buffer((n) => new Float32Array(n));
export const i32Buffer = (): Buffer<Int32Array> => new Buffer((n) => new Int32Array(n));

/** Selects x > threshold (and x > 0) into CSR with the backend's threshold kernels. */
export function selectAbove(
  backend: Backend,
  x: Float32Array,
  rows: number,
  cols: number,
  threshold: Float32Array,
  bufs: CsrBuffers,
): Csr {
  const args = { rows, cols, thresholdStride: threshold.length === 1 ? 0 : 1 } as const;
  const counts = bufs.counts.get(rows);
  backend.thresholdCount(x, null, threshold, counts, args);
  const offsets = bufs.offsets.get(rows + 1);
  offsets[0] = 0;
  for (let r = 0; r < rows; r++) offsets[r + 1] = offsets[r] + counts[r];
  const nnz = offsets[rows];
  const indices = bufs.indices.get(nnz);
  const values = bufs.values.get(nnz);
  backend.thresholdSelect(x, null, threshold, offsets, indices, values, args);
  return { rows, cols, offsets, indices, values, nnz };
}

/** Buffers backing one CSR matrix. */
export class CsrBuffers {
  readonly counts = i32Buffer();
  readonly offsets = i32Buffer();
  readonly indices = i32Buffer();
  readonly values = f32Buffer();
}

/** Buffers backing one transposed view. */
export class TransposeBuffers {
  readonly offsets = i32Buffer();
  readonly rows = i32Buffer();
  readonly source = i32Buffer();
}

/** Counting-sort transpose; within a column, entries keep row order (deterministic). */
export function transpose(m: Csr, bufs: TransposeBuffers): Transposed {
  const offsets = bufs.offsets.get(m.cols + 1);
  offsets.fill(0);
  const { indices, nnz } = m;
  for (let j = 0; j < nnz; j++) offsets[indices[j] + 1]++;
  for (let c = 0; c < m.cols; c++) offsets[c + 1] += offsets[c];
  const rows = bufs.rows.get(nnz);
  const source = bufs.source.get(nnz);
  // `offsets[c]` is used as the fill cursor of column c, then shifted back.
  for (let r = 0; r < m.rows; r++) {
    for (let j = m.offsets[r]; j < m.offsets[r + 1]; j++) {
      const at = offsets[indices[j]]++;
      rows[at] = r;
      source[at] = j;
    }
  }
  for (let c = m.cols; c > 0; c--) offsets[c] = offsets[c - 1];
  offsets[0] = 0;
  return { offsets, rows, source };
}

/** `out[j] = v[t.source[j]]`: a per-entry array in transposed order. */
export function permute(v: Float32Array, t: Transposed, out: Float32Array): Float32Array {
  const { source } = t;
  for (let j = 0; j < source.length; j++) out[j] = v[source[j]];
  return out;
}

/**
 * Weight gradient `grad[i, :] += sum_t v[t, i] a[t, :]` for the entries of `m` with per-entry values
 * `v` (in `m`'s order), `a` [rows, n]; `grad` [cols, n].
 */
export function accumulateOuter(
  backend: Backend,
  m: Csr,
  v: Float32Array,
  a: Float32Array,
  n: number,
  grad: Float32Array,
  tb: TransposeBuffers,
  scratch: Buffer<Float32Array>,
): void {
  if (m.nnz === 0) return;
  const t = transpose(m, tb);
  const vt = permute(v, t, scratch.get(m.nnz));
  backend.sparseMatmul(t.offsets, t.rows, vt, a, grad, {
    rows: m.cols,
    n,
    wRows: m.rows,
    wRowStride: n,
    wDtype: "f32",
    accumulate: true,
  });
}

/** `out[j] = dot(a[row(j), :], w[indices[j], :])` (n columns) for every entry of `m`. */
export function entryGradients(
  backend: Backend,
  m: Csr,
  a: Float32Array,
  w: Float32Array,
  n: number,
  out: Float32Array,
): void {
  if (m.nnz === 0) return;
  backend.sparseDot(m.offsets, m.indices, a, w, out, { rows: m.rows, n, wRows: m.cols, wRowStride: n });
}

/**
 * Splits `m` into consecutive column ranges (`bounds` = [0, b1, ..., cols]); block g keeps the
 * entries with bounds[g] <= column < bounds[g + 1], row order preserved. `position[g][k]` is the index
 * in `m` of block g's entry k.
 */
export function splitColumns(
  m: Csr,
  bounds: readonly number[],
  group: Int32Array,
  blocks: readonly { csr: CsrBuffers; position: Buffer<Int32Array> }[],
): { csr: Csr; position: Int32Array }[] {
  const G = bounds.length - 1;
  const counts = new Int32Array(G);
  for (let j = 0; j < m.nnz; j++) counts[group[m.indices[j]]]++;
  const out: { csr: Csr; position: Int32Array }[] = [];
  const cursor = new Int32Array(G);
  const parts = blocks.slice(0, G).map((b, g) => {
    const offsets = b.csr.offsets.get(m.rows + 1);
    const indices = b.csr.indices.get(counts[g]);
    const values = b.csr.values.get(counts[g]);
    const position = b.position.get(counts[g]);
    return { offsets, indices, values, position };
  });
  for (let r = 0; r < m.rows; r++) {
    for (let g = 0; g < G; g++) parts[g].offsets[r] = cursor[g];
    for (let j = m.offsets[r]; j < m.offsets[r + 1]; j++) {
      const g = group[m.indices[j]];
      const p = parts[g];
      const at = cursor[g]++;
      p.indices[at] = m.indices[j];
      p.values[at] = m.values[j];
      p.position[at] = j;
    }
  }
  for (let g = 0; g < G; g++) {
    const p = parts[g];
    p.offsets[m.rows] = cursor[g];
    out.push({
      csr: {
        rows: m.rows,
        cols: m.cols,
        offsets: p.offsets,
        indices: p.indices,
        values: p.values,
        nnz: counts[g],
      },
      position: p.position,
    });
  }
  return out;
}
