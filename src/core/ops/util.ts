/**
 * Shared validation and layout helpers for ops: backend agreement, dtype checks, broadcasting,
 * strides and axis normalisation. Every failure is a `TensorError` naming the op.
 */
import type { AxisArgs, Backend } from "../backend.js";
import type { DType, StorageMap } from "../dtype.js";
import { TensorError } from "../errors.js";
import { formatShape, shapeSize, Tensor } from "../tensor.js";

/** A tensor or a plain number (a 0-d f32 tensor on the other operand's backend). */
export type Operand = Tensor | number;

export function fail(op: string, message: string): never {
  throw new TensorError(`${op}: ${message}`);
}

/** The backend shared by every tensor among `xs`; mixing backends is an error. */
export function backendOf(op: string, ...xs: readonly Operand[]): Backend {
  let backend: Backend | null = null;
  for (const x of xs) {
    if (typeof x === "number") continue;
    if (backend === null) backend = x.backend;
    else if (x.backend !== backend) {
      fail(op, `inputs are on different backends (${backend.name} and ${x.backend.name})`);
    }
  }
  if (backend === null) return fail(op, "needs at least one tensor operand");
  return backend;
}

export function asTensor(backend: Backend, x: Operand): Tensor {
  return typeof x === "number" ? new Tensor(backend, "f32", [], Float32Array.of(x)) : x;
}

export function requireDType<D extends DType>(op: string, x: Tensor, dtype: D, name = "input"): Tensor<D> {
  if (x.dtype !== dtype) {
    const hint = dtype === "f32" && x.dtype !== "i32" ? " (cast it to f32 first)" : "";
    fail(op, `${name} must be ${dtype}, got ${x.dtype}${hint}`);
  }
  return x as Tensor<D>;
}

export function f32Data(op: string, x: Tensor, name = "input"): Float32Array {
  return requireDType(op, x, "f32", name).data;
}

export function makeF32(backend: Backend, shape: readonly number[], data?: Float32Array): Tensor<"f32"> {
  return new Tensor(backend, "f32", shape, data ?? new Float32Array(shapeSize(shape)));
}

/** An f32 tensor for a kernel to overwrite completely (contents unspecified until then). */
export function outputF32(backend: Backend, shape: readonly number[]): Tensor<"f32"> {
  const n = shapeSize(shape);
  return new Tensor(
    backend,
    "f32",
    shape,
    backend.allocOutput ? backend.allocOutput(n) : new Float32Array(n),
  );
}

export function makeTensor<D extends DType>(
  backend: Backend,
  dtype: D,
  shape: readonly number[],
  data: StorageMap[D],
): Tensor<D> {
  return new Tensor(backend, dtype, shape, data);
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

/** numpy broadcasting of several shapes. */
export function broadcastShapes(op: string, ...shapes: readonly (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const d = rank - s.length + i;
      if (s[i] === out[d] || s[i] === 1) continue;
      if (out[d] === 1) out[d] = s[i];
      else fail(op, `shapes ${shapes.map(formatShape).join(" and ")} do not broadcast`);
    }
  }
  return out;
}

/** Strides for reading a contiguous `shape` as if broadcast to `outShape` (0 on broadcast dims). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const own = contiguousStrides(shape);
  const out = new Array<number>(outShape.length).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const d = outShape.length - shape.length + i;
    out[d] = shape[i] === 1 && outShape[d] !== 1 ? 0 : own[i];
  }
  return out;
}

export function normAxis(op: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    fail(op, `axis ${axis} out of range for rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}

/** Sorted, de-duplicated, non-negative axes; `undefined` means every axis. */
export function normAxes(op: string, axes: number | readonly number[] | undefined, rank: number): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axes === "number" ? [axes] : axes;
  const set = new Set(list.map((a) => normAxis(op, a, rank)));
  if (set.size !== list.length) fail(op, `repeated axis in [${list.join(", ")}]`);
  return [...set].sort((a, b) => a - b);
}

/** A run of axes [from, to) of a contiguous `shape` viewed as [outer, size, inner]. */
export function axisArgs(shape: readonly number[], from: number, to = from + 1): AxisArgs {
  return {
    outer: shapeSize(shape.slice(0, from)),
    size: shapeSize(shape.slice(from, to)),
    inner: shapeSize(shape.slice(to)),
  };
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Strided copy for storage the f32 `copy` kernel does not cover (i32, raw 16-bit floats). */
export function copyStrided<T extends Int32Array | Uint16Array | Float32Array>(
  src: T,
  out: T,
  shape: readonly number[],
  srcOffset: number,
  srcStrides: readonly number[],
  dstOffset: number,
  dstStrides: readonly number[],
): void {
  const n = shapeSize(shape);
  const index = new Array<number>(shape.length).fill(0);
  let s = srcOffset;
  let d = dstOffset;
  for (let e = 0; e < n; e++) {
    out[d] = src[s];
    for (let k = shape.length - 1; k >= 0; k--) {
      index[k]++;
      s += srcStrides[k];
      d += dstStrides[k];
      if (index[k] < shape[k]) break;
      s -= srcStrides[k] * shape[k];
      d -= dstStrides[k] * shape[k];
      index[k] = 0;
    }
  }
}
