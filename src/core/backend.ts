/**
 * The backend interface: the kernels every backend implements.
 *
 * Contract (read this before writing a backend):
 * - Kernels work on flat, contiguous typed arrays plus the sizes/strides they need. They never
 *   allocate their outputs: the caller (an op in `src/core/ops`) allocates `out` and has already
 *   validated shapes and dtypes. A kernel must not read or write outside the ranges implied by its
 *   arguments.
 * - Inputs are never modified. `out` never aliases an input unless a kernel says so.
 * - All floating compute is float32. Where an argument may be `Float32Array | Uint16Array`, a
 *   `HalfDType` argument says how to interpret 16-bit storage; the kernel widens elements on the
 *   fly and never materialises a full f32 copy of a large operand.
 * - Strides are in elements. A stride of 0 broadcasts that dimension.
 * - Kernels are synchronous, except the `*Async` ones, which must not block the event loop
 *   (the native backend runs them on a worker thread; the reference backend may run them inline).
 * - Backends hold no per-tensor state: memory is owned by the typed arrays (see docs/architecture.md,
 *   "Memory ownership").
 *
 * The pure TypeScript backend (`src/backends/reference`) is the readable definition of every kernel;
 * the native backend is tested against it.
 */

import type { HalfDType } from "./dtype.js";

export type UnaryOp =
  | "neg"
  | "exp"
  | "log"
  | "sqrt"
  | "rsqrt"
  | "abs"
  | "sign"
  | "square"
  | "reciprocal"
  | "tanh"
  | "sigmoid"
  | "relu"
  /** tanh-approximated GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
  | "gelu_tanh"
  /** derivative of gelu_tanh with respect to x */
  | "gelu_tanh_grad"
  /** Heaviside step: 1 where x > 0, else 0 */
  | "step";

/** Comparison ops write 1 where true, 0 where false (float32 masks). */
export type BinaryOp =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "max"
  | "min"
  | "pow"
  | "eq"
  | "ne"
  | "lt"
  | "le"
  | "gt"
  | "ge";

export type ReduceOp = "sum" | "max" | "min";

/** Right-operand storage for matmul / gather: f32, or 16-bit floats widened in the kernel. */
export type FloatSource = Float32Array | Uint16Array;

/**
 * Batched matmul `out[b] = op(A[b]) @ op(B[b])` with `op(X) = X^T` when the trans flag is set.
 * Logical shapes: op(A[b]) is [m, k], op(B[b]) is [k, n], out[b] is [m, n] (row-major, contiguous).
 * Stored A[b] is [m, k] (or [k, m] when transA); stored B[b] is [k, n] (or [n, k] when transB).
 * `aBatchStride` / `bBatchStride` are element offsets between batches (0 broadcasts one matrix).
 */
export interface MatmulArgs {
  readonly batch: number;
  readonly m: number;
  readonly k: number;
  readonly n: number;
  readonly transA: boolean;
  readonly transB: boolean;
  readonly aBatchStride: number;
  readonly bBatchStride: number;
  /** How to read `b`: "f32" for a Float32Array, or "bf16"/"f16" for a Uint16Array. */
  readonly bDtype: "f32" | HalfDType;
  /** When true, add into `out` instead of overwriting it. */
  readonly accumulate: boolean;
  /**
   * When true, A's elements are first rounded to bf16 (nearest even): products with a bf16 B are then
   * exact in f32, and backends may use native bf16 dot products. Default false (A used as is).
   */
  readonly aBf16?: boolean;
  /**
   * When true (with an f32 `b`), B's elements are first rounded to bf16 too: with `aBf16` every
   * product is then of two bf16 values (attention in bf16-inputs mode). Ignored for 16-bit `b`.
   */
  readonly bBf16?: boolean;
}

/** Elementwise binary op over an N-d output with broadcast strides for each input. */
export interface BroadcastArgs {
  /** Output shape; `out` is contiguous with this shape. */
  readonly shape: readonly number[];
  /** Strides (elements) of `a` for each output dim, 0 where `a` is broadcast. */
  readonly aStrides: readonly number[];
  readonly bStrides: readonly number[];
}

/** Strided copy: out[dstOffset + sum i_d dstStrides[d]] = src[srcOffset + sum i_d srcStrides[d]]. */
export interface CopyArgs {
  readonly shape: readonly number[];
  readonly srcOffset: number;
  readonly srcStrides: readonly number[];
  readonly dstOffset: number;
  readonly dstStrides: readonly number[];
}

/**
 * An axis viewed as [outer, size, inner] (contiguous): reductions, softmax-like and gather/scatter
 * kernels address element (o, i, j) at `(o * size + i) * inner + j`.
 */
export interface AxisArgs {
  readonly outer: number;
  readonly size: number;
  readonly inner: number;
}

/**
 * Sparse rows (CSR) times a dense matrix, for `sparseMatmul`: row r of the sparse left operand has
 * entries `indices[j]`, `values[j]` for j in [offsets[r], offsets[r + 1]), and
 *   out[r * n + c] (+)= sum_j values[j] * w[indices[j] * wRowStride + c]     (r < rows, c < n).
 * `w` holds `wRows` rows of which the first `n` elements (from the start of `w`) are used, so a
 * column block of a wider matrix is passed as `w.subarray(firstColumn)` with `wRowStride` its width.
 */
export interface SparseMatmulArgs {
  readonly rows: number;
  readonly n: number;
  readonly wRows: number;
  readonly wRowStride: number;
  readonly wDtype: "f32" | HalfDType;
  /** When true, add into `out` instead of overwriting it. */
  readonly accumulate: boolean;
}

/**
 * Threshold selection over v = x + bias, x [rows, cols] and bias [cols] (no bias: v = x), for
 * `thresholdCount` / `thresholdSelect`: entry (r, c) is selected, with value v (the float32 sum), when
 * v > threshold[c * thresholdStride] and v > 0 (NaN never is). A stride of 0 applies one threshold
 * to every column.
 */
export interface ThresholdArgs {
  readonly rows: number;
  readonly cols: number;
  readonly thresholdStride: 0 | 1;
}

/**
 * Sampled dense-dense product over a CSR pattern, for `sparseDot` (the gradient with respect to each
 * stored entry of a sparse code): for j in [offsets[r], offsets[r + 1]),
 *   out[j] = sum_{c < n} a[r * n + c] * w[indices[j] * wRowStride + c].
 */
export interface SparseDotArgs {
  readonly rows: number;
  readonly n: number;
  readonly wRows: number;
  readonly wRowStride: number;
}

/**
 * One Adam step in place (`adamUpdate`), with bias corrections folded into two numbers:
 *   m = beta1 m + (1 - beta1) g            (skipped when m is null: the update uses g)
 *   v = beta2 v + (1 - beta2) g^2
 *   w -= stepSize * m / (sqrt(v) * vScale + eps)
 * where stepSize = lr / (1 - beta1^t) and vScale = 1 / sqrt(1 - beta2^t).
 */
export interface AdamArgs {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly stepSize: number;
  readonly vScale: number;
}

export interface Backend {
  /** "reference" or "native"; also shown in benchmark and error output. */
  readonly name: string;

  /**
   * Storage for an op's output that the kernel overwrites entirely: its initial contents are
   * unspecified. Optional; without it ops allocate zero-filled arrays. Skipping the zero fill (and
   * reusing freed memory) matters for large outputs such as logits. With `exact`, a reused array
   * is never a view of a longer buffer: for arrays kept a long time (a KV cache), which would
   * otherwise hold a longer buffer's unused tail.
   */
  allocOutput?(size: number, exact?: boolean): Float32Array;
  /**
   * Hands back an array from `allocOutput` that nothing will read or write again, so that a later
   * `allocOutput` that fits can reuse its memory (already mapped: no page faults, no garbage
   * left for the collector). Optional. The caller must hold the only reference: no other tensor or
   * view may share the array (a reshape does, and so does a permute that moves only size-1 axes).
   * A reused output may be a view of a buffer up to twice its length.
   */
  recycle?(data: Float32Array): void;
  /**
   * Like `recycle`, but the memory goes back to the system at once instead of waiting for reuse:
   * for large arrays whose sizes later work is unlikely to ask for (a finished KV cache), which
   * would otherwise be taken, with slack, for unrelated outputs. Optional; same contract.
   */
  discard?(data: Float32Array): void;
  /**
   * Gives up the recycled arrays that nothing took since the previous call, so that buffers of
   * shapes a workload no longer uses are not held. Optional; the forward pass calls it at its end.
   */
  trimRecycled?(): void;
  /**
   * Gives up the recycled arrays too large for any output of at most `length` elements to reuse.
   * Optional; the forward pass calls it at its start with its largest output's length.
   */
  limitRecycled?(length: number): void;

  matmul(a: Float32Array, b: FloatSource, out: Float32Array, args: MatmulArgs): void;
  /** Same as `matmul`, off the event loop. */
  matmulAsync(a: Float32Array, b: FloatSource, out: Float32Array, args: MatmulArgs): Promise<void>;

  /** out[i] = op(x[i]); `out` may alias `x`. */
  unary(op: UnaryOp, x: Float32Array, out: Float32Array): void;
  /** out = op(a, b) with broadcasting; `out` may alias `a` when `a` has the output's shape. */
  binary(op: BinaryOp, a: Float32Array, b: Float32Array, out: Float32Array, args: BroadcastArgs): void;
  /** out = cond != 0 ? a : b, all three broadcast to `args.shape` (cStrides for cond). */
  where(
    cond: Float32Array,
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    args: BroadcastArgs & { readonly cStrides: readonly number[] },
  ): void;
  /** out[i] = x[i] * s + t (fused scale and shift; used by many ops and optimisers); `out` may alias `x`. */
  affine(x: Float32Array, s: number, t: number, out: Float32Array): void;

  /** Reduce the middle axis: out[o, j] = op_i x[o, i, j]. `out` has outer*inner elements. */
  reduce(op: ReduceOp, x: Float32Array, out: Float32Array, axis: AxisArgs): void;
  /** Index of the max (or min) along the middle axis; ties pick the first. */
  argReduce(op: "argmax" | "argmin", x: Float32Array, out: Int32Array, axis: AxisArgs): void;

  /** Softmax over the last axis of a [rows, cols] matrix, in float32 with max subtraction; `out` may alias `x`. */
  softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void;
  /** log-softmax over the last axis. */
  logSoftmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void;
  /**
   * RMSNorm over the last axis: out = x * rsqrt(mean(x^2) + eps) * (weightOffset + weight).
   * `weight` (length cols) may be null for a plain normalisation; `invRms` (length rows), if given,
   * receives rsqrt(mean(x^2) + eps) for each row (used by backward passes and frozen-norm analyses).
   */
  rmsnorm(
    x: Float32Array,
    weight: Float32Array | null,
    out: Float32Array,
    rows: number,
    cols: number,
    eps: number,
    weightOffset: number,
    invRms: Float32Array | null,
  ): void;
  /**
   * Rotary embedding, non-interleaved (rotate_half) over the last axis of size `dim`:
   * x viewed as [rows, seq, heads, dim] (every head of a position turns by that position's
   * angles); cos/sin are [seq, dim/2]; for j < dim/2:
   *   out[.., j]         = x[.., j] cos - x[.., j + dim/2] sin
   *   out[.., j + dim/2] = x[.., j + dim/2] cos + x[.., j] sin
   * Passing `inverse` rotates by -angle (the backward pass). `out` may be `x`.
   */
  rope(
    x: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    out: Float32Array,
    rows: number,
    seq: number,
    dim: number,
    inverse: boolean,
    heads: number,
  ): void;

  /** out[o, i, j] = src[o, idx[i], j]; src axis has `srcSize` entries, idx has `axis.size` entries. */
  gather(
    src: FloatSource,
    srcDtype: "f32" | HalfDType,
    idx: Int32Array,
    out: Float32Array,
    axis: AxisArgs,
    srcSize: number,
  ): void;
  /** out[o, idx[i], j] += src[o, i, j]; `out` axis has `outSize` entries (index_add / gather's backward). */
  scatterAdd(src: Float32Array, idx: Int32Array, out: Float32Array, axis: AxisArgs, outSize: number): void;
  /**
   * Top-k along the last axis of [rows, cols]: values sorted descending, ties broken by lower index.
   * NaN never wins.
   */
  topk(
    x: Float32Array,
    rows: number,
    cols: number,
    k: number,
    values: Float32Array,
    indices: Int32Array,
  ): void;

  /** General strided copy (slice, concat, transpose, broadcast materialisation). */
  copy(src: Float32Array, out: Float32Array, args: CopyArgs): void;
  /** Widen 16-bit floats to f32. */
  halfToFloat(src: Uint16Array, dtype: HalfDType, out: Float32Array): void;
  /** Narrow f32 to bf16/f16 with round-to-nearest-even (NaN stays NaN, overflow to inf). */
  floatToHalf(src: Float32Array, dtype: HalfDType, out: Uint16Array): void;

  /**
   * Sparse (CSR) rows times dense `w` (`SparseMatmulArgs`); float32 accumulation in any order.
   * Every index must lie in [0, wRows).
   */
  sparseMatmul(
    offsets: Int32Array,
    indices: Int32Array,
    values: Float32Array,
    w: FloatSource,
    out: Float32Array,
    args: SparseMatmulArgs,
  ): void;
  /** counts[r] = number of selected entries of row r (`ThresholdArgs`). */
  thresholdCount(
    x: Float32Array,
    bias: Float32Array | null,
    threshold: Float32Array,
    counts: Int32Array,
    args: ThresholdArgs,
  ): void;
  /**
   * Writes the selected entries of each row, in column order, to indices/values from offsets[r]
   * (offsets as made from thresholdCount's counts; offsets[rows] entries in all).
   */
  thresholdSelect(
    x: Float32Array,
    bias: Float32Array | null,
    threshold: Float32Array,
    offsets: Int32Array,
    indices: Int32Array,
    values: Float32Array,
    args: ThresholdArgs,
  ): void;

  /** `SparseDotArgs`: out[j] = dot(a row of entry j, w row indices[j]); every index in [0, wRows). */
  sparseDot(
    offsets: Int32Array,
    indices: Int32Array,
    a: Float32Array,
    w: Float32Array,
    out: Float32Array,
    args: SparseDotArgs,
  ): void;
  /**
   * The k-th largest positive value among x[0..n) (k >= 1), counting repeats; the smallest positive
   * value when fewer than k are positive; 0 when none is. NaN is never counted.
   */
  kthLargest(x: Float32Array, n: number, k: number): number;
  /** One Adam step over w, g, v (and m unless null), all the same length (`AdamArgs`). */
  adamUpdate(w: Float32Array, g: Float32Array, m: Float32Array | null, v: Float32Array, args: AdamArgs): void;
  /**
   * For each row i of w and g ([rows, cols]): g_i -= (g_i . w_i) w_i, which removes the component
   * parallel to w_i when w_i has unit norm (decoder-row gradients of dictionary training).
   */
  projectOutRows(w: Float32Array, g: Float32Array, rows: number, cols: number): void;
  /** Scales each row of w [rows, cols] to unit norm in place; all-zero rows stay zero. */
  normalizeRows(w: Float32Array, rows: number, cols: number): void;
}
