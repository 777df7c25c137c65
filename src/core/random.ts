/**
 * Deterministic random numbers: xoshiro128** (Blackman & Vigna, 2018) seeded through splitmix32,
 * with uniform, integer and normal (Marsaglia polar method) sampling, and random tensor factories.
 *
 * Same seed, same bytes, on every platform and JavaScript engine: only 32-bit integer ops and
 * correctly rounded float64 arithmetic (+ - * / sqrt) are used. `Math.log` is not guaranteed to be
 * identical across engines, so the normal sampler uses its own logarithm (`detLog`).
 */
import type { Backend } from "./backend.js";
import type { FloatDType } from "./dtype.js";
import { TensorError } from "./errors.js";
import { shapeSize, type Tensor, tensor } from "./tensor.js";

function splitmix32(state: number): [number, number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [next, (z ^ (z >>> 16)) >>> 0];
}

const LN2 = Math.LN2;
const SQRT2 = Math.SQRT2;
const f64 = new Float64Array(1);
const u32of64 = new Uint32Array(f64.buffer);
// Index of the high word of a float64 in this platform's byte order.
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

/** Natural log of a positive finite number from exact float64 operations only. */
export function detLog(x: number): number {
  if (!(x > 0) || !Number.isFinite(x))
    throw new RangeError(`detLog needs a positive finite number, got ${x}`);
  let e = 0;
  if (x < 2 ** -1000) {
    x *= 2 ** 100;
    e -= 100;
  }
  f64[0] = x;
  const hi = u32of64[HI];
  e += ((hi >>> 20) & 0x7ff) - 1023;
  // Mantissa in [1, 2), then moved to [sqrt(1/2), sqrt(2)) so the series below converges fast.
  u32of64[HI] = (hi & 0x800fffff) | (1023 << 20);
  let m = f64[0];
  if (m > SQRT2) {
    m /= 2;
    e += 1;
  }
  // ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172.
  const s = (m - 1) / (m + 1);
  const s2 = s * s;
  let term = s;
  let sum = 0;
  for (let k = 1; k < 40; k += 2) {
    sum += term / k;
    term *= s2;
  }
  return e * LN2 + 2 * sum;
}

/** xoshiro128** words, then the cached second normal sample (or null). */
export type RngState = readonly [number, number, number, number, number | null];

export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private spare: number | null = null;

  /** Seed: any integer in [0, 2^53). */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new TensorError(`seed must be a non-negative integer`);
    let st = (seed >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32), 0x27d4eb2d);
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      const [next, w] = splitmix32(st);
      st = next;
      words.push(w);
    }
    [this.s0, this.s1, this.s2, this.s3] = words;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** The generator's full state (JSON-safe, for checkpoints). */
  getState(): RngState {
    return [this.s0, this.s1, this.s2, this.s3, this.spare];
  }

  static fromState(state: RngState): Rng {
    const words = state.slice(0, 4);
    const spare = state[4];
    if (
      state.length !== 5 ||
      words.some((w) => typeof w !== "number" || !Number.isInteger(w) || w < 0 || w >= 2 ** 32) ||
      (spare !== null && typeof spare !== "number")
    ) {
      throw new TensorError("invalid Rng state");
    }
    const r = new Rng(0);
    [r.s0, r.s1, r.s2, r.s3] = words as number[];
    r.spare = spare;
    return r;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    this.s3 >>>= 0;
    return result;
  }

  /** Uniform in [0, 1) on a 2^-24 grid (every value exact in float32). */
  uniform(): number {
    return (this.nextU32() >>> 8) * 2 ** -24;
  }

  /** Uniform in [0, 1) on a 2^-53 grid. */
  uniform53(): number {
    const a = this.nextU32() >>> 5;
    const b = this.nextU32() >>> 6;
    return (a * 2 ** 26 + b) * 2 ** -53;
  }

  /** Uniform integer in [0, n), unbiased (rejection sampling); n <= 2^32. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 2 ** 32) throw new TensorError(`int(n) needs 1 <= n <= 2^32`);
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** Standard normal sample (Marsaglia polar method). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    for (;;) {
      const u = 2 * this.uniform53() - 1;
      const v = 2 * this.uniform53() - 1;
      const s = u * u + v * v;
      if (s > 0 && s < 1) {
        const f = Math.sqrt((-2 * detLog(s)) / s);
        this.spare = v * f;
        return u * f;
      }
    }
  }

  /** A random permutation of 0..n-1 (Fisher-Yates). */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }

  /** A new generator seeded from this one (an independent stream for a sub-task). */
  split(): Rng {
    return new Rng(this.nextU32() * 2 ** 21 + (this.nextU32() >>> 11));
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function asRng(rng: Rng | number): Rng {
  return typeof rng === "number" ? new Rng(rng) : rng;
}

export interface UniformOptions<D extends FloatDType> {
  readonly low?: number;
  readonly high?: number;
  readonly dtype?: D;
}

/** Uniform samples in [low, high). `rng` is a generator (advanced) or a seed. */
export function randomUniform<D extends FloatDType = "f32">(
  backend: Backend,
  shape: readonly number[],
  rng: Rng | number,
  options: UniformOptions<D> = {},
): Tensor<D> {
  const r = asRng(rng);
  const { low = 0, high = 1 } = options;
  const values = new Float64Array(shapeSize(shape));
  for (let i = 0; i < values.length; i++) values[i] = low + (high - low) * r.uniform();
  return tensor(backend, values, { shape, dtype: options.dtype ?? ("f32" as D) });
}

export interface NormalOptions<D extends FloatDType> {
  readonly mean?: number;
  readonly std?: number;
  readonly dtype?: D;
}

/** Normal samples with the given mean and standard deviation. */
export function randomNormal<D extends FloatDType = "f32">(
  backend: Backend,
  shape: readonly number[],
  rng: Rng | number,
  options: NormalOptions<D> = {},
): Tensor<D> {
  const r = asRng(rng);
  const { mean = 0, std = 1 } = options;
  const values = new Float64Array(shapeSize(shape));
  for (let i = 0; i < values.length; i++) values[i] = mean + std * r.normal();
  return tensor(backend, values, { shape, dtype: options.dtype ?? ("f32" as D) });
}

/** Uniform integers in [low, high) as an i32 tensor. */
export function randomInt(
  backend: Backend,
  shape: readonly number[],
  rng: Rng | number,
  low: number,
  high: number,
): Tensor<"i32"> {
  const r = asRng(rng);
  if (!(Number.isInteger(low) && Number.isInteger(high) && high > low)) {
    throw new TensorError(`randomInt needs integers low < high, got ${low}, ${high}`);
  }
  const values = new Int32Array(shapeSize(shape));
  for (let i = 0; i < values.length; i++) values[i] = low + r.int(high - low);
  return tensor(backend, values, { shape, dtype: "i32" });
}
