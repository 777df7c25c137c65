/**
 * Neural-network building blocks for Gemma 3 (see /work/shared/reference/gemma3.md and Hugging
 * Face's modeling_gemma3.py): softmax / logSoftmax over the last axis, RMSNorm with Gemma's
 * `1 + weight` offset, rotary embeddings (non-interleaved rotate_half) and their tables, and
 * causal / sliding-window attention masks.
 */
import type { Backend } from "../backend.js";
import { isRecording, recordOp } from "../tape.js";
import { formatShape, shapeSize, type Tensor } from "../tensor.js";
import { add, mul, rsqrt, square, sub } from "./elementwise.js";
import { mean, sum, sumTo } from "./reduce.js";
import { backendOf, f32Data, fail, makeF32, outputF32 } from "./util.js";

function rowsCols(op: string, x: Tensor): [number, number] {
  if (x.rank < 1) fail(op, "needs at least one dim");
  const cols = x.shape[x.rank - 1];
  return [cols === 0 ? 0 : x.size / cols, cols];
}

/** Softmax over the last axis. */
export function softmax(x: Tensor): Tensor<"f32"> {
  const [rows, cols] = rowsCols("softmax", x);
  const out = outputF32(x.backend, x.shape);
  x.backend.softmax(f32Data("softmax", x), out.data, rows, cols);
  if (isRecording()) {
    recordOp("softmax", [x], out, (g) => [mul(out, sub(g, sum(mul(g, out), -1, true)))]);
  }
  return out;
}

/** log(softmax(x)) over the last axis, computed stably. */
export function logSoftmax(x: Tensor): Tensor<"f32"> {
  const [rows, cols] = rowsCols("logSoftmax", x);
  const out = outputF32(x.backend, x.shape);
  x.backend.logSoftmax(f32Data("logSoftmax", x), out.data, rows, cols);
  if (isRecording()) {
    recordOp("logSoftmax", [x], out, (g) => [sub(g, mul(softmax(x), sum(g, -1, true)))]);
  }
  return out;
}

export interface RmsnormOptions {
  /** Added to mean(x^2) before the square root; Gemma uses 1e-6 (the default). */
  readonly eps?: number;
  /** The scale is `weightOffset + weight`; Gemma stores weights around 0 and uses 1. Default 0. */
  readonly weightOffset?: number;
}

/** The checked arguments of an RMSNorm over x's last axis. @internal (rmsnorm, rmsnormInPlace) */
export function rmsnormArgs(op: string, x: Tensor, weight: Tensor | null, options: RmsnormOptions) {
  const eps = options.eps ?? 1e-6;
  const offset = options.weightOffset ?? 0;
  const [rows, cols] = rowsCols(op, x);
  const backend = weight ? backendOf(op, x, weight) : x.backend;
  let w: Tensor<"f32"> | null = null;
  if (weight) {
    if (weight.rank !== 1 || weight.shape[0] !== cols) {
      fail(
        op,
        `weight ${formatShape(weight.shape)} does not match last dim ${cols} of ${formatShape(x.shape)}`,
      );
    }
    if (weight.dtype === "i32") fail(op, "weight must be a float tensor");
    w =
      weight.dtype === "f32" ? (weight as Tensor<"f32">) : makeF32(backend, [cols], weight.toFloat32Array());
  }
  return { rows, cols, eps, offset, backend, w };
}

/**
 * RMSNorm over the last axis: x * rsqrt(mean(x^2) + eps) * (weightOffset + weight).
 * x: [..., d]; weight: [d] (f32, or bf16/f16, widened: norm weights are small) or null (no scale).
 */
export function rmsnorm(x: Tensor, weight: Tensor | null, options: RmsnormOptions = {}): Tensor<"f32"> {
  const { rows, cols, eps, offset, backend, w } = rmsnormArgs("rmsnorm", x, weight, options);
  const out = outputF32(backend, x.shape);
  backend.rmsnorm(f32Data("rmsnorm", x), w ? w.data : null, out.data, rows, cols, eps, offset, null);
  if (isRecording()) {
    const inputs = weight ? [x, weight] : [x];
    recordOp("rmsnorm", inputs, out, (g, needs) => {
      const inv = rsqrt(add(mean(square(x), -1, true), eps));
      const normed = mul(x, inv);
      const scale = w ? add(w, offset) : null;
      const dn = scale ? mul(g, scale) : g;
      const gx = needs[0] ? mul(inv, sub(dn, mul(normed, mean(mul(dn, normed), -1, true)))) : null;
      const gw = weight && needs[1] ? sumTo(mul(g, normed), [cols]) : null;
      return [gx, gw];
    });
  }
  return out;
}

export interface RopeOptions {
  /** Rotate by minus the angle (undoes the rotation; also the backward pass). */
  readonly inverse?: boolean;
  /**
   * The axis of x that the tables' rows follow: -2 for x [..., seq, head_dim] (the default), -3 for
   * x [..., seq, heads, head_dim] (every head of a position turned by that position's angles).
   */
  readonly seqAxis?: -2 | -3;
}

/** The checked layout of a rotary embedding of x. @internal (rope, ropeInPlace) */
export function ropeArgs(op: string, x: Tensor, cos: Tensor, sin: Tensor, options: RopeOptions) {
  const backend = backendOf(op, x, cos, sin);
  const axis = options.seqAxis ?? -2;
  if (axis !== -2 && axis !== -3) fail(op, `seqAxis must be -2 or -3, got ${axis}`);
  const inner = -axis;
  if (x.rank < inner) fail(op, `x needs ${inner} or more dims, got ${formatShape(x.shape)}`);
  const [seq, ...rest] = x.shape.slice(-inner);
  const dim = rest[rest.length - 1];
  const heads = inner === 3 ? rest[0] : 1;
  if (dim % 2 !== 0) fail(op, `last dim ${dim} must be even`);
  for (const t of [cos, sin]) {
    if (t.rank !== 2 || t.shape[0] !== seq || t.shape[1] !== dim / 2) {
      fail(op, `tables must be [${seq}, ${dim / 2}], got ${formatShape(t.shape)}`);
    }
  }
  const rows = shapeSize(x.shape.slice(0, -inner));
  return { backend, rows, seq, heads, dim, inverse: options.inverse ?? false };
}

/**
 * Rotary position embedding, Gemma/Hugging Face convention (rotate_half: the first and second halves
 * of the last axis are the pairs). x: [..., seq, head_dim] (or [..., seq, heads, head_dim] with
 * `seqAxis: -3`); cos, sin: [seq, head_dim / 2].
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor, options: RopeOptions = {}): Tensor<"f32"> {
  const { backend, rows, seq, heads, dim, inverse } = ropeArgs("rope", x, cos, sin, options);
  const out = outputF32(backend, x.shape);
  backend.rope(
    f32Data("rope", x),
    f32Data("rope", cos, "cos"),
    f32Data("rope", sin, "sin"),
    out.data,
    rows,
    seq,
    dim,
    inverse,
    heads,
  );
  if (isRecording())
    recordOp("rope", [x, cos, sin], out, (g) => [
      rope(g, cos, sin, { ...options, inverse: !inverse }),
      null,
      null,
    ]);
  return out;
}

/**
 * cos/sin tables [seq, dim / 2] for `rope` at the given positions (1-d, i32 or f32), with
 * inv_freq[i] = 1 / base^(2i / dim) / scalingFactor (linear RoPE scaling). Intermediate values are
 * rounded to float32 as in Hugging Face's float32 computation.
 */
export function ropeTables(
  positions: Tensor,
  dim: number,
  base: number,
  scalingFactor = 1,
): { cos: Tensor<"f32">; sin: Tensor<"f32"> } {
  if (positions.rank !== 1) fail("ropeTables", `positions must be 1-d, got ${formatShape(positions.shape)}`);
  if (!Number.isInteger(dim) || dim <= 0 || dim % 2 !== 0) fail("ropeTables", `dim must be even, got ${dim}`);
  if (!(base > 0) || !(scalingFactor > 0)) fail("ropeTables", "base and scalingFactor must be positive");
  const half = dim / 2;
  const pos = positions.toFloat32Array();
  const invFreq = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    invFreq[i] = Math.fround(
      Math.fround(1 / Math.fround(base ** Math.fround((2 * i) / dim))) / scalingFactor,
    );
  }
  const cos = new Float32Array(pos.length * half);
  const sin = new Float32Array(pos.length * half);
  for (let t = 0; t < pos.length; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos[t] * invFreq[i]);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return {
    cos: makeF32(positions.backend, [pos.length, half], cos),
    sin: makeF32(positions.backend, [pos.length, half], sin),
  };
}

export interface MaskOptions {
  /** Absolute position of query 0 (keys are at 0..keyLen-1). Default keyLen - queryLen. */
  readonly queryOffset?: number;
  /** Sliding window: a query at q sees keys k with q - window < k <= q. Default: unlimited. */
  readonly window?: number;
  /** "additive": 0 where allowed, -Infinity elsewhere (add to logits); "boolean": 1 / 0. */
  readonly form?: "additive" | "boolean";
}

/** Causal (optionally sliding-window) attention mask, [queryLen, keyLen] f32. */
export function causalMask(
  backend: Backend,
  queryLen: number,
  keyLen = queryLen,
  options: MaskOptions = {},
): Tensor<"f32"> {
  const offset = options.queryOffset ?? keyLen - queryLen;
  const window = options.window ?? Number.POSITIVE_INFINITY;
  if (!(window >= 1)) fail("causalMask", `window must be >= 1, got ${window}`);
  const additive = (options.form ?? "additive") === "additive";
  const out = makeF32(backend, [queryLen, keyLen]);
  for (let q = 0; q < queryLen; q++) {
    const pos = q + offset;
    for (let k = 0; k < keyLen; k++) {
      const allowed = k <= pos && k > pos - window;
      out.data[q * keyLen + k] = additive ? (allowed ? 0 : Number.NEGATIVE_INFINITY) : allowed ? 1 : 0;
    }
  }
  return out;
}
