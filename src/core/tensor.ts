/**
 * `Tensor`: an immutable n-d array value (dtype, shape, contiguous row-major storage, backend), and
 * the factories that make one on an explicitly chosen backend.
 *
 * Memory ownership: a tensor's storage is a plain typed array owned by the JavaScript garbage
 * collector. Nothing else holds per-tensor state (backends keep none; the autograd tape lives only
 * while `grad` runs), so a tensor is freed when it becomes unreachable; there is no `dispose`.
 * Views (reshape, squeeze, ...) share their source's storage. Storage is never written after a
 * tensor is built: ops allocate new outputs, so callers must not write into `data` either.
 * See docs/architecture.md, "Memory ownership".
 */
import type { Backend } from "./backend.js";
import { allocStorage, DTYPE_BYTES, type DType, type StorageMap } from "./dtype.js";
import { TensorError } from "./errors.js";

/** A number, or nested arrays of numbers (rectangular). */
export type NestedArray = number | readonly NestedArray[];

/** Anything `tensor()` accepts as values. */
export type TensorValues = NestedArray | Float32Array | Int32Array | Float64Array;

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

function checkShape(shape: readonly number[]): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new TensorError(`invalid shape ${formatShape(shape)}`);
  }
}

function storageMatches(dtype: DType, data: unknown): boolean {
  switch (dtype) {
    case "f32":
      return data instanceof Float32Array;
    case "bf16":
    case "f16":
      return data instanceof Uint16Array;
    case "i32":
      return data instanceof Int32Array;
  }
  return false;
}

export class Tensor<D extends DType = DType> {
  readonly backend: Backend;
  readonly dtype: D;
  /** Dimensions, outermost first; `[]` for a scalar. */
  readonly shape: readonly number[];
  /** Contiguous row-major storage (bf16/f16 as raw 16-bit patterns). Read-only by convention. */
  readonly data: StorageMap[D];
  /** Number of elements. */
  readonly size: number;

  /** Wraps existing storage without copying; `data.length` must equal the shape's element count. */
  constructor(backend: Backend, dtype: D, shape: readonly number[], data: StorageMap[D]) {
    checkShape(shape);
    if (!storageMatches(dtype, data)) {
      throw new TensorError(`storage ${data.constructor.name} does not hold dtype ${dtype}`);
    }
    const size = shapeSize(shape);
    if (data.length !== size) {
      throw new TensorError(
        `storage has ${data.length} elements but shape ${formatShape(shape)} needs ${size}`,
      );
    }
    this.backend = backend;
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.data = data;
    this.size = size;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Storage size in bytes. */
  get byteLength(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  /** A new Float32Array holding the values (16-bit floats widened, i32 converted). */
  toFloat32Array(): Float32Array {
    const out = new Float32Array(this.size);
    if (this.dtype === "bf16" || this.dtype === "f16") {
      this.backend.halfToFloat(this.data as Uint16Array, this.dtype, out);
    } else {
      out.set(this.data as Float32Array | Int32Array);
    }
    return out;
  }

  /** The values as a flat array of numbers, row-major. */
  toFlatArray(): number[] {
    return Array.from(this.dtype === "i32" ? (this.data as Int32Array) : this.toFloat32Array());
  }

  /** The values as nested arrays following the shape (a number for a scalar). */
  toArray(): NestedArray {
    const flat = this.toFlatArray();
    const build = (dim: number, offset: number): NestedArray => {
      if (dim === this.shape.length) return flat[offset];
      const inner = shapeSize(this.shape.slice(dim + 1));
      const out: NestedArray[] = [];
      for (let i = 0; i < this.shape[dim]; i++) out.push(build(dim + 1, offset + i * inner));
      return out;
    };
    return build(0, 0);
  }

  /** The single value of a one-element tensor. */
  item(): number {
    if (this.size !== 1)
      throw new TensorError(`item() needs one element, shape is ${formatShape(this.shape)}`);
    return this.toFlatArray()[0];
  }

  /**
   * Hands f32 storage back to the backend for later outputs to reuse (`Backend.recycle`), so a loop
   * of forward passes does not leave one dead array per result until the collector runs. Neither
   * this tensor nor any view sharing its storage (a reshape, say) may be used afterwards. Storage
   * the backend did not hand out (weights, a view's slice, another dtype) is left alone.
   */
  dispose(): void {
    if (this.dtype === "f32") this.backend.recycle?.(this.data as Float32Array);
  }

  toString(): string {
    return `Tensor(${this.dtype}, ${formatShape(this.shape)}, ${this.backend.name})`;
  }
}

/** Wraps existing storage (no copy), e.g. bytes read from a safetensors file. */
export function fromStorage<D extends DType>(
  backend: Backend,
  dtype: D,
  shape: readonly number[],
  data: StorageMap[D],
): Tensor<D> {
  return new Tensor(backend, dtype, shape, data);
}

function inferShape(values: NestedArray): number[] {
  const shape: number[] = [];
  let v: NestedArray = values;
  while (Array.isArray(v)) {
    shape.push(v.length);
    if (v.length === 0) break;
    v = v[0];
  }
  return shape;
}

function flatten(values: NestedArray, shape: readonly number[]): number[] {
  const out: number[] = [];
  const walk = (v: NestedArray, dim: number): void => {
    if (dim === shape.length) {
      if (typeof v !== "number") throw new TensorError("ragged nested array: expected a number");
      out.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[dim]) {
      throw new TensorError(`ragged nested array: expected length ${shape[dim]} at depth ${dim}`);
    }
    for (const x of v) walk(x, dim + 1);
  };
  walk(values, 0);
  return out;
}

/** Converts float values (any array-like) into storage of `dtype`, rounding to nearest even. */
function toStorage<D extends DType>(backend: Backend, dtype: D, values: ArrayLike<number>): StorageMap[D] {
  const out = allocStorage(dtype, values.length);
  if (dtype === "bf16" || dtype === "f16") {
    backend.floatToHalf(Float32Array.from(values), dtype, out as Uint16Array);
  } else if (dtype === "i32") {
    for (let i = 0; i < values.length; i++) {
      if (!Number.isInteger(values[i]))
        throw new TensorError(`i32 tensor value ${values[i]} is not an integer`);
    }
    (out as Int32Array).set(values);
  } else {
    (out as Float32Array).set(values);
  }
  return out;
}

export interface TensorOptions<D extends DType> {
  /** Defaults to the nested array's shape, or `[length]` for a typed array. */
  readonly shape?: readonly number[];
  /** Defaults to "f32". */
  readonly dtype?: D;
}

/** Makes a tensor from numbers (copied): `tensor(backend, [[1, 2], [3, 4]])`. */
export function tensor<D extends DType = "f32">(
  backend: Backend,
  values: TensorValues,
  options: TensorOptions<D> = {},
): Tensor<D> {
  const dtype = (options.dtype ?? "f32") as D;
  let flat: ArrayLike<number>;
  let shape: readonly number[];
  if (typeof values === "number" || Array.isArray(values)) {
    const nested = values as NestedArray;
    const inferred = inferShape(nested);
    flat = flatten(nested, inferred);
    shape = options.shape ?? inferred;
  } else {
    flat = values as ArrayLike<number>;
    shape = options.shape ?? [flat.length];
  }
  checkShape(shape);
  if (shapeSize(shape) !== flat.length) {
    throw new TensorError(`${flat.length} values do not fill shape ${formatShape(shape)}`);
  }
  return new Tensor(backend, dtype, shape, toStorage(backend, dtype, flat));
}

/** A tensor filled with `value`. */
export function full<D extends DType = "f32">(
  backend: Backend,
  shape: readonly number[],
  value: number,
  dtype: D = "f32" as D,
): Tensor<D> {
  checkShape(shape);
  const size = shapeSize(shape);
  const one = toStorage(backend, dtype, [value]);
  const data = allocStorage(dtype, size);
  data.fill(one[0]);
  return new Tensor(backend, dtype, shape, data);
}

export function zeros<D extends DType = "f32">(
  backend: Backend,
  shape: readonly number[],
  dtype: D = "f32" as D,
): Tensor<D> {
  checkShape(shape);
  return new Tensor(backend, dtype, shape, allocStorage(dtype, shapeSize(shape)));
}

export function ones<D extends DType = "f32">(
  backend: Backend,
  shape: readonly number[],
  dtype: D = "f32" as D,
): Tensor<D> {
  return full(backend, shape, 1, dtype);
}

/** A 0-d f32 tensor. */
export function scalar(backend: Backend, value: number): Tensor<"f32"> {
  return full(backend, [], value);
}

/** `[start, start + step, ...)` below `stop` (numpy's arange); `arange(b, n)` is `[0, n)`. */
export function arange<D extends DType = "f32">(
  backend: Backend,
  start: number,
  stop?: number,
  step = 1,
  dtype: D = "f32" as D,
): Tensor<D> {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (step === 0 || !Number.isFinite(step)) throw new TensorError(`arange step must be finite and non-zero`);
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = start + i * step;
  return tensor(backend, values, { dtype, shape: [n] });
}
