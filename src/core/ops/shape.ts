/**
 * Shape ops for every dtype: reshape / squeeze / unsqueeze (views sharing storage), and copies for
 * permute / transpose, slice / narrow / select, concat / stack and broadcastTo. f32 data is moved by
 * the backend's `copy` kernel; i32 and 16-bit storage by a plain strided loop (no arithmetic).
 */

import type { Backend } from "../backend.js";
import { allocStorage, type DType, type StorageMap } from "../dtype.js";
import { isRecording, recordOp } from "../tape.js";
import { formatShape, shapeSize, type Tensor } from "../tensor.js";
import { sumTo } from "./reduce.js";
import {
  backendOf,
  broadcastShapes,
  broadcastStrides,
  contiguousStrides,
  copyStrided,
  fail,
  makeF32,
  makeTensor,
  normAxis,
  sameShape,
} from "./util.js";

/** Moves strided elements of `src` to strided positions of `out` (same dtype). */
function moveElements<D extends DType>(
  x: Tensor<D>,
  out: StorageMap[D],
  shape: readonly number[],
  srcOffset: number,
  srcStrides: readonly number[],
  dstOffset: number,
  dstStrides: readonly number[],
): void {
  if (x.dtype === "f32") {
    x.backend.copy(x.data as Float32Array, out as Float32Array, {
      shape,
      srcOffset,
      srcStrides,
      dstOffset,
      dstStrides,
    });
  } else {
    copyStrided(x.data, out, shape, srcOffset, srcStrides, dstOffset, dstStrides);
  }
}

/** Storage that the caller overwrites entirely: f32 from the backend's `allocOutput` where it has one. */
function allocFilled<D extends DType>(backend: Backend, dtype: D, size: number): StorageMap[D] {
  if (dtype === "f32" && backend.allocOutput) return backend.allocOutput(size) as StorageMap[D];
  return allocStorage(dtype, size) as StorageMap[D];
}

/** A contiguous tensor of `shape` read from `x` at `offset` with `strides`. */
function readStrided<D extends DType>(
  x: Tensor<D>,
  shape: readonly number[],
  offset: number,
  strides: readonly number[],
): Tensor<D> {
  const out = allocFilled(x.backend, x.dtype, shapeSize(shape));
  moveElements(x, out, shape, offset, strides, 0, contiguousStrides(shape));
  return makeTensor(x.backend, x.dtype, shape, out);
}

/** Same storage, new shape; one dimension may be -1 (inferred). */
export function reshape<D extends DType>(x: Tensor<D>, shape: readonly number[]): Tensor<D> {
  const unknown = shape.indexOf(-1);
  let resolved = [...shape];
  if (unknown >= 0) {
    const known = shapeSize(shape.filter((_, i) => i !== unknown));
    if (shape.lastIndexOf(-1) !== unknown || known === 0 || x.size % known !== 0) {
      fail("reshape", `cannot reshape ${formatShape(x.shape)} to ${formatShape(shape)}`);
    }
    resolved = shape.map((d, i) => (i === unknown ? x.size / known : d));
  }
  if (resolved.some((d) => !Number.isInteger(d) || d < 0) || shapeSize(resolved) !== x.size) {
    fail("reshape", `cannot reshape ${formatShape(x.shape)} to ${formatShape(shape)}`);
  }
  const out = makeTensor(x.backend, x.dtype, resolved, x.data);
  if (isRecording()) recordOp("reshape", [x], out, (g) => [reshape(g, x.shape)]);
  return out;
}

/** Removes the given size-1 axes (all size-1 axes when none are given). */
export function squeeze<D extends DType>(x: Tensor<D>, axes?: number | readonly number[]): Tensor<D> {
  const list =
    axes === undefined
      ? x.shape.flatMap((d, i) => (d === 1 ? [i] : []))
      : (typeof axes === "number" ? [axes] : axes).map((a) => normAxis("squeeze", a, x.rank));
  for (const a of list) {
    if (x.shape[a] !== 1)
      fail("squeeze", `axis ${a} of ${formatShape(x.shape)} has size ${x.shape[a]}, not 1`);
  }
  return reshape(
    x,
    x.shape.filter((_, i) => !list.includes(i)),
  );
}

/** Inserts a size-1 axis at `axis` (in the result's numbering; -1 appends). */
export function unsqueeze<D extends DType>(x: Tensor<D>, axis: number): Tensor<D> {
  const a = normAxis("unsqueeze", axis, x.rank + 1);
  return reshape(x, [...x.shape.slice(0, a), 1, ...x.shape.slice(a)]);
}

/**
 * Reorders the axes: result axis i is input axis perm[i]. A copy, except when only size-1 axes move:
 * then a reshape sharing the storage.
 */
export function permute<D extends DType>(x: Tensor<D>, perm: readonly number[]): Tensor<D> {
  const p = perm.map((a) => normAxis("permute", a, x.rank));
  if (p.length !== x.rank || new Set(p).size !== p.length) {
    fail("permute", `[${perm.join(", ")}] is not a permutation of ${x.rank} axes`);
  }
  // Moving only size-1 axes keeps the elements in order: the same storage, reshaped.
  const moved = p.filter((a) => x.shape[a] !== 1);
  if (moved.every((a, i) => i === 0 || moved[i - 1] < a))
    return reshape(
      x,
      p.map((a) => x.shape[a]),
    );
  const strides = contiguousStrides(x.shape);
  const out = readStrided(
    x,
    p.map((a) => x.shape[a]),
    0,
    p.map((a) => strides[a]),
  );
  if (isRecording()) {
    const inverse = new Array<number>(p.length);
    p.forEach((a, i) => {
      inverse[a] = i;
    });
    recordOp("permute", [x], out, (g) => [permute(g, inverse)]);
  }
  return out;
}

/** Swaps two axes (the last two by default). */
export function transpose<D extends DType>(x: Tensor<D>, axis0 = -2, axis1 = -1): Tensor<D> {
  const a = normAxis("transpose", axis0, x.rank);
  const b = normAxis("transpose", axis1, x.rank);
  const perm = x.shape.map((_, i) => (i === a ? b : i === b ? a : i));
  return permute(x, perm);
}

/** Python-style range on one axis: start/stop may be negative or past the end; step >= 1. */
export interface SliceRange {
  readonly start?: number;
  readonly stop?: number;
  readonly step?: number;
}

interface ResolvedRange {
  readonly start: number;
  readonly length: number;
  readonly step: number;
}

function resolveRanges(x: Tensor, ranges: readonly (SliceRange | null | undefined)[]): ResolvedRange[] {
  if (ranges.length > x.rank) fail("slice", `${ranges.length} ranges for a rank-${x.rank} tensor`);
  return x.shape.map((size, d) => {
    const r = ranges[d] ?? {};
    const step = r.step ?? 1;
    if (!Number.isInteger(step) || step < 1) fail("slice", `step must be a positive integer, got ${step}`);
    const clamp = (v: number) => Math.min(size, Math.max(0, v < 0 ? v + size : v));
    const start = clamp(r.start ?? 0);
    const stop = clamp(r.stop ?? size);
    return { start, step, length: Math.max(0, Math.ceil((stop - start) / step)) };
  });
}

function rangeLayout(x: Tensor, rs: readonly ResolvedRange[]) {
  const strides = contiguousStrides(x.shape);
  return {
    shape: rs.map((r) => r.length),
    offset: rs.reduce((o, r, d) => o + r.start * strides[d], 0),
    strides: rs.map((r, d) => r.step * strides[d]),
  };
}

function sliceResolved<D extends DType>(x: Tensor<D>, rs: readonly ResolvedRange[]): Tensor<D> {
  const { shape, offset, strides } = rangeLayout(x, rs);
  const out = readStrided(x, shape, offset, strides);
  if (isRecording()) recordOp("slice", [x], out, (g) => [unslice(g, x.shape, rs)]);
  return out;
}

/** The adjoint of slicing: `g` placed into zeros of `fullShape` at the sliced positions. */
function unslice(
  g: Tensor<"f32">,
  fullShape: readonly number[],
  rs: readonly ResolvedRange[],
): Tensor<"f32"> {
  const out = makeF32(g.backend, fullShape);
  const { offset, strides } = rangeLayout(out, rs);
  moveElements(g, out.data, g.shape, 0, contiguousStrides(g.shape), offset, strides);
  if (isRecording()) recordOp("unslice", [g], out, (gg) => [sliceResolved(gg, rs)]);
  return out;
}

/** `x[r0, r1, ...]` with one range per leading axis (null or missing: the whole axis). */
export function slice<D extends DType>(
  x: Tensor<D>,
  ranges: readonly (SliceRange | null | undefined)[],
): Tensor<D> {
  return sliceResolved(x, resolveRanges(x, ranges));
}

/** `length` entries of `axis` from `start`. */
export function narrow<D extends DType>(
  x: Tensor<D>,
  axis: number,
  start: number,
  length: number,
): Tensor<D> {
  const a = normAxis("narrow", axis, x.rank);
  const size = x.shape[a];
  const s = start < 0 ? start + size : start;
  if (!Number.isInteger(s) || !Number.isInteger(length) || s < 0 || length < 0 || s + length > size) {
    fail("narrow", `range [${start}, ${start}+${length}) out of bounds for axis ${a} of size ${size}`);
  }
  const ranges: SliceRange[] = x.shape.map(() => ({}));
  ranges[a] = { start: s, stop: s + length };
  return slice(x, ranges);
}

/** Entry `index` of `axis`, with that axis removed. */
export function select<D extends DType>(x: Tensor<D>, axis: number, index: number): Tensor<D> {
  const a = normAxis("select", axis, x.rank);
  return squeeze(narrow(x, a, index, 1), a);
}

/** Joins tensors of the same dtype along `axis`; other dims must match. */
export function concat<D extends DType>(xs: readonly Tensor<D>[], axis: number): Tensor<D> {
  if (xs.length === 0) fail("concat", "needs at least one tensor");
  const backend = backendOf("concat", ...xs);
  const first = xs[0];
  const a = normAxis("concat", axis, first.rank);
  for (const x of xs) {
    if (x.dtype !== first.dtype) fail("concat", `mixed dtypes ${first.dtype} and ${x.dtype}`);
    if (x.rank !== first.rank || x.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      fail("concat", `shapes ${formatShape(first.shape)} and ${formatShape(x.shape)} differ off axis ${a}`);
    }
  }
  const shape = [...first.shape];
  shape[a] = xs.reduce((n, x) => n + x.shape[a], 0);
  const out = allocFilled(backend, first.dtype, shapeSize(shape));
  const outStrides = contiguousStrides(shape);
  const offsets: number[] = [];
  let along = 0;
  for (const x of xs) {
    offsets.push(along);
    moveElements(x, out, x.shape, 0, contiguousStrides(x.shape), along * outStrides[a], outStrides);
    along += x.shape[a];
  }
  const result = makeTensor(backend, first.dtype, shape, out);
  if (isRecording()) {
    recordOp("concat", xs, result, (g, needs) =>
      xs.map((x, i) => (needs[i] ? narrow(g, a, offsets[i], x.shape[a]) : null)),
    );
  }
  return result;
}

/** Joins tensors of one shape along a new axis. */
export function stack<D extends DType>(xs: readonly Tensor<D>[], axis = 0): Tensor<D> {
  if (xs.length === 0) fail("stack", "needs at least one tensor");
  const a = normAxis("stack", axis, xs[0].rank + 1);
  return concat(
    xs.map((x) => unsqueeze(x, a)),
    a,
  );
}

/** Materialises `x` broadcast (numpy rules) to `shape`. */
export function broadcastTo<D extends DType>(x: Tensor<D>, shape: readonly number[]): Tensor<D> {
  const full = broadcastShapes("broadcastTo", x.shape, shape);
  if (!sameShape(full, shape))
    fail("broadcastTo", `cannot broadcast ${formatShape(x.shape)} to ${formatShape(shape)}`);
  if (sameShape(x.shape, shape)) return x;
  const out = readStrided(x, shape, 0, broadcastStrides(x.shape, shape));
  if (isRecording()) recordOp("broadcastTo", [x], out, (g) => [sumTo(g, x.shape)]);
  return out;
}

/** Alias of `broadcastTo`. */
export const expand = broadcastTo;
