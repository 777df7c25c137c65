/**
 * Reference elementwise kernels: unary maps, broadcasting binary ops, `where` and `affine`.
 * Each op is written once as a scalar function; results are stored (rounded) to float32.
 */
import type { BinaryOp, BroadcastArgs, UnaryOp } from "../../core/backend.js";
import { forEachRow, lastDim } from "./strided.js";

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

export const UNARY: Readonly<Record<UnaryOp, (x: number) => number>> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  abs: Math.abs,
  sign: Math.sign,
  square: (x) => x * x,
  reciprocal: (x) => 1 / x,
  tanh: Math.tanh,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  // NaN propagates (as in PyTorch); -0 and negatives give +0.
  relu: (x) => (x > 0 || Number.isNaN(x) ? x : 0),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(GELU_C * (x + GELU_A * x * x * x))),
  gelu_tanh_grad: (x) => {
    const t = Math.tanh(GELU_C * (x + GELU_A * x * x * x));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * GELU_A * x * x);
  },
  step: (x) => (x > 0 ? 1 : 0),
};

export const BINARY: Readonly<Record<BinaryOp, (a: number, b: number) => number>> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  // Math.max/min propagate NaN, like torch.maximum/minimum.
  max: Math.max,
  min: Math.min,
  pow: Math.pow,
  eq: (a, b) => (a === b ? 1 : 0),
  ne: (a, b) => (a !== b ? 1 : 0),
  lt: (a, b) => (a < b ? 1 : 0),
  le: (a, b) => (a <= b ? 1 : 0),
  gt: (a, b) => (a > b ? 1 : 0),
  ge: (a, b) => (a >= b ? 1 : 0),
};

export function unary(op: UnaryOp, x: Float32Array, out: Float32Array): void {
  const f = UNARY[op];
  for (let i = 0; i < x.length; i++) out[i] = f(x[i]);
}

export function binary(
  op: BinaryOp,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  args: BroadcastArgs,
): void {
  const f = BINARY[op];
  const strides = [args.aStrides, args.bStrides];
  const [n, [as, bs]] = lastDim(args.shape, strides);
  let o = 0;
  forEachRow(args.shape, strides, [0, 0], ([ao, bo]) => {
    for (let j = 0; j < n; j++) out[o++] = f(a[ao + j * as], b[bo + j * bs]);
  });
}

export function where(
  cond: Float32Array,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  args: BroadcastArgs & { readonly cStrides: readonly number[] },
): void {
  const strides = [args.cStrides, args.aStrides, args.bStrides];
  const [n, [cs, as, bs]] = lastDim(args.shape, strides);
  let o = 0;
  forEachRow(args.shape, strides, [0, 0, 0], ([co, ao, bo]) => {
    for (let j = 0; j < n; j++) out[o++] = cond[co + j * cs] !== 0 ? a[ao + j * as] : b[bo + j * bs];
  });
}

export function affine(x: Float32Array, s: number, t: number, out: Float32Array): void {
  for (let i = 0; i < x.length; i++) out[i] = x[i] * s + t;
}
