/**
 * Test helpers for core ops: seeded inputs, float64 expectations with numpy broadcasting, and
 * NaN/infinity-aware closeness assertions.
 */
import assert from "node:assert/strict";
import type { Backend } from "../../src/core/backend.js";
import { randomNormal, randomUniform } from "../../src/core/random.js";
import { shapeSize, type Tensor } from "../../src/core/tensor.js";

export function randn(backend: Backend, shape: readonly number[], seed: number, std = 1): Tensor<"f32"> {
  return randomNormal(backend, shape, seed, { std });
}

export function randu(
  backend: Backend,
  shape: readonly number[],
  seed: number,
  low: number,
  high: number,
): Tensor<"f32"> {
  return randomUniform(backend, shape, seed, { low, high });
}

/** Values as float64 (widened from any dtype). */
export function vals(t: Tensor): Float64Array {
  return Float64Array.from(t.dtype === "i32" ? (t.data as Int32Array) : t.toFloat32Array());
}

export interface Tolerance {
  readonly rtol?: number;
  readonly atol?: number;
}

/** |a - e| <= atol + rtol * |e| elementwise; NaN must match NaN, infinities must match exactly. */
export function assertClose(
  actual: Tensor | ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance = {},
  what = "",
): void {
  const a = "shape" in actual ? vals(actual) : Float64Array.from(actual);
  const rtol = tol.rtol ?? 1e-5;
  const atol = tol.atol ?? 1e-6;
  assert.equal(a.length, expected.length, `${what}: length ${a.length} != ${expected.length}`);
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const e = expected[i];
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      assert.ok(
        Object.is(x, e) || (Number.isNaN(x) && Number.isNaN(e)),
        `${what}[${i}]: got ${x}, want ${e}`,
      );
      continue;
    }
    assert.ok(Math.abs(x - e) <= atol + rtol * Math.abs(e), `${what}[${i}]: got ${x}, want ${e}`);
  }
}

export function assertShape(t: Tensor, shape: readonly number[], what = ""): void {
  assert.deepEqual([...t.shape], [...shape], `${what}: shape`);
}

/** Row-major multi-index of flat index `i` in `shape`. */
export function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

export function ravel(idx: readonly number[], shape: readonly number[]): number {
  let f = 0;
  for (let d = 0; d < shape.length; d++) f = f * shape[d] + idx[d];
  return f;
}

/** numpy broadcast result shape, computed independently of the library. */
export function npBroadcast(...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let d = 0; d < rank; d++) {
    let v = 1;
    for (const s of shapes) {
      const x = s[d - (rank - s.length)] ?? 1;
      if (x !== 1) v = x;
    }
    out.push(v);
  }
  return out;
}

/** Flat index into `shape` for output multi-index `outIdx` under broadcasting. */
export function bIndex(outIdx: readonly number[], shape: readonly number[]): number {
  const lead = outIdx.length - shape.length;
  return ravel(
    shape.map((d, i) => (d === 1 ? 0 : outIdx[lead + i])),
    shape,
  );
}

/** Expected elementwise result in float64 with broadcasting. */
export function expectBroadcast(
  inputs: readonly { shape: readonly number[]; values: ArrayLike<number> }[],
  f: (...xs: number[]) => number,
): { shape: number[]; values: Float64Array } {
  const shape = npBroadcast(...inputs.map((x) => x.shape));
  const values = new Float64Array(shapeSize(shape));
  for (let i = 0; i < values.length; i++) {
    const idx = unravel(i, shape);
    values[i] = f(...inputs.map((x) => x.values[bIndex(idx, x.shape)]));
  }
  return { shape, values };
}

/** bfloat16 bits -> value, via DataView (independent of src/core/half.ts). */
export function bf16Value(h: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint32(0, h << 16);
  return dv.getFloat32(0);
}

/** IEEE half bits -> value from the format's definition. */
export function f16Value(h: number): number {
  const s = h >> 15 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return e === 0 ? s * m * 2 ** -24 : s * 2 ** (e - 15) * (1 + m / 1024);
}
