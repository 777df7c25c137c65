/**
 * Elementwise ops: arithmetic with numpy broadcasting and number operands, comparisons (f32 0/1
 * masks), `where`, the fused `affine` (x * scale + shift), and unary maps. Inputs are f32.
 * Each differentiable op records a backward written with these same ops.
 */
import type { BinaryOp, UnaryOp } from "../backend.js";
import { isRecording, recordOp } from "../tape.js";
import type { Tensor } from "../tensor.js";
import { sumTo } from "./reduce.js";
import {
  asTensor,
  backendOf,
  broadcastShapes,
  broadcastStrides,
  f32Data,
  fail,
  type Operand,
  outputF32,
} from "./util.js";

function binaryRaw(op: BinaryOp, a: Operand, b: Operand): [Tensor<"f32">, Tensor, Tensor] {
  const backend = backendOf(op, a, b);
  const ta = asTensor(backend, a);
  const tb = asTensor(backend, b);
  const ad = f32Data(op, ta, "left operand");
  const bd = f32Data(op, tb, "right operand");
  const shape = broadcastShapes(op, ta.shape, tb.shape);
  const out = outputF32(backend, shape);
  backend.binary(op, ad, bd, out.data, {
    shape,
    aStrides: broadcastStrides(ta.shape, shape),
    bStrides: broadcastStrides(tb.shape, shape),
  });
  return [out, ta, tb];
}

type BinaryBackward = (
  g: Tensor<"f32">,
  a: Tensor,
  b: Tensor,
  out: Tensor<"f32">,
  needs: readonly boolean[],
) => readonly (Tensor<"f32"> | null)[];

function binaryOp(op: BinaryOp, a: Operand, b: Operand, backward: BinaryBackward): Tensor<"f32"> {
  const [out, ta, tb] = binaryRaw(op, a, b);
  if (isRecording()) {
    recordOp(op, [ta, tb], out, (g, needs) => {
      const [ga, gb] = backward(g, ta, tb, out, needs);
      return [ga && needs[0] ? sumTo(ga, ta.shape) : null, gb && needs[1] ? sumTo(gb, tb.shape) : null];
    });
  }
  return out;
}

/** out = x * scale + shift. */
export function affine(x: Tensor, scale: number, shift: number): Tensor<"f32"> {
  const out = outputF32(x.backend, x.shape);
  x.backend.affine(f32Data("affine", x), scale, shift, out.data);
  if (isRecording()) recordOp("affine", [x], out, (g) => [affine(g, scale, 0)]);
  return out;
}

export function add(a: Operand, b: Operand): Tensor<"f32"> {
  if (typeof b === "number" && typeof a !== "number") return affine(a, 1, b);
  if (typeof a === "number" && typeof b !== "number") return affine(b, 1, a);
  return binaryOp("add", a, b, (g) => [g, g]);
}

export function sub(a: Operand, b: Operand): Tensor<"f32"> {
  if (typeof b === "number" && typeof a !== "number") return affine(a, 1, -b);
  if (typeof a === "number" && typeof b !== "number") return affine(b, -1, a);
  return binaryOp("sub", a, b, (g, _a, _b, _o, needs) => [g, needs[1] ? neg(g) : null]);
}

export function mul(a: Operand, b: Operand): Tensor<"f32"> {
  if (typeof b === "number" && typeof a !== "number") return affine(a, b, 0);
  if (typeof a === "number" && typeof b !== "number") return affine(b, a, 0);
  return binaryOp("mul", a, b, (g, ta, tb, _o, needs) => [
    needs[0] ? mul(g, tb) : null,
    needs[1] ? mul(g, ta) : null,
  ]);
}

export function div(a: Operand, b: Operand): Tensor<"f32"> {
  return binaryOp("div", a, b, (g, _ta, tb, out, needs) => [
    needs[0] ? div(g, tb) : null,
    needs[1] ? neg(div(mul(g, out), tb)) : null,
  ]);
}

/** Elementwise maximum; at ties the gradient is split equally. NaN propagates. */
export function maximum(a: Operand, b: Operand): Tensor<"f32"> {
  return binaryOp("max", a, b, (g, ta, tb) => {
    const share = add(gt(ta, tb), mul(eq(ta, tb), 0.5));
    return [mul(g, share), mul(g, sub(1, share))];
  });
}

export function minimum(a: Operand, b: Operand): Tensor<"f32"> {
  return binaryOp("min", a, b, (g, ta, tb) => {
    const share = add(lt(ta, tb), mul(eq(ta, tb), 0.5));
    return [mul(g, share), mul(g, sub(1, share))];
  });
}

/** a ** b. The gradient with respect to b is taken as 0 where a <= 0. */
export function pow(a: Operand, b: Operand): Tensor<"f32"> {
  return binaryOp("pow", a, b, (g, ta, tb, out, needs) => [
    needs[0] ? mul(g, mul(tb, pow(ta, sub(tb, 1)))) : null,
    needs[1] ? mul(g, where(gt(ta, 0), mul(out, log(where(gt(ta, 0), ta, 1))), 0)) : null,
  ]);
}

function compare(op: BinaryOp, a: Operand, b: Operand): Tensor<"f32"> {
  return binaryRaw(op, a, b)[0];
}

export const eq = (a: Operand, b: Operand): Tensor<"f32"> => compare("eq", a, b);
export const ne = (a: Operand, b: Operand): Tensor<"f32"> => compare("ne", a, b);
export const lt = (a: Operand, b: Operand): Tensor<"f32"> => compare("lt", a, b);
export const le = (a: Operand, b: Operand): Tensor<"f32"> => compare("le", a, b);
export const gt = (a: Operand, b: Operand): Tensor<"f32"> => compare("gt", a, b);
export const ge = (a: Operand, b: Operand): Tensor<"f32"> => compare("ge", a, b);

/** cond != 0 ? a : b, all three broadcast together. `cond` is not differentiated. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor<"f32"> {
  const backend = backendOf("where", cond, a, b);
  const ta = asTensor(backend, a);
  const tb = asTensor(backend, b);
  const cd = f32Data("where", cond, "condition");
  const ad = f32Data("where", ta, "first branch");
  const bd = f32Data("where", tb, "second branch");
  const shape = broadcastShapes("where", cond.shape, ta.shape, tb.shape);
  const out = outputF32(backend, shape);
  backend.where(cd, ad, bd, out.data, {
    shape,
    cStrides: broadcastStrides(cond.shape, shape),
    aStrides: broadcastStrides(ta.shape, shape),
    bStrides: broadcastStrides(tb.shape, shape),
  });
  if (isRecording()) {
    recordOp("where", [cond, ta, tb], out, (g, needs) => [
      null,
      needs[1] ? sumTo(where(cond, g, 0), ta.shape) : null,
      needs[2] ? sumTo(where(cond, 0, g), tb.shape) : null,
    ]);
  }
  return out;
}

function unaryRaw(op: UnaryOp, x: Tensor): Tensor<"f32"> {
  const out = outputF32(x.backend, x.shape);
  x.backend.unary(op, f32Data(op, x), out.data);
  return out;
}

function unaryOp(
  op: UnaryOp,
  x: Tensor,
  backward: ((g: Tensor<"f32">, x: Tensor, out: Tensor<"f32">) => Tensor<"f32">) | null,
): Tensor<"f32"> {
  const out = unaryRaw(op, x);
  if (backward && isRecording()) recordOp(op, [x], out, (g) => [backward(g, x, out)]);
  return out;
}

export const neg = (x: Tensor): Tensor<"f32"> => affine(x, -1, 0);
export const exp = (x: Tensor): Tensor<"f32"> => unaryOp("exp", x, (g, _x, y) => mul(g, y));
export const log = (x: Tensor): Tensor<"f32"> => unaryOp("log", x, (g, x) => div(g, x));
export const sqrt = (x: Tensor): Tensor<"f32"> => unaryOp("sqrt", x, (g, _x, y) => div(mul(g, 0.5), y));
export const rsqrt = (x: Tensor): Tensor<"f32"> =>
  unaryOp("rsqrt", x, (g, _x, y) => mul(g, mul(mul(y, square(y)), -0.5)));
/** |x|; the gradient at 0 is 0. */
export const abs = (x: Tensor): Tensor<"f32"> => unaryOp("abs", x, (g, x) => mul(g, sign(x)));
/** -1, 0 or 1 (not differentiated: zero gradient almost everywhere). */
export const sign = (x: Tensor): Tensor<"f32"> => unaryOp("sign", x, null);
export const square = (x: Tensor): Tensor<"f32"> => unaryOp("square", x, (g, x) => mul(g, mul(x, 2)));
export const reciprocal = (x: Tensor): Tensor<"f32"> =>
  unaryOp("reciprocal", x, (g, _x, y) => neg(mul(g, square(y))));
export const tanh = (x: Tensor): Tensor<"f32"> => unaryOp("tanh", x, (g, _x, y) => mul(g, sub(1, square(y))));
export const sigmoid = (x: Tensor): Tensor<"f32"> =>
  unaryOp("sigmoid", x, (g, _x, y) => mul(g, mul(y, sub(1, y))));
/** max(x, 0); the gradient at 0 is 0. */
export const relu = (x: Tensor): Tensor<"f32"> => unaryOp("relu", x, (g, x) => mul(g, step(x)));
/** Heaviside step (1 where x > 0); zero gradient (use `customGrad` for straight-through estimators). */
export const step = (x: Tensor): Tensor<"f32"> => unaryOp("step", x, null);

/** GELU with the tanh approximation (Gemma's MLP activation). */
export function geluTanh(x: Tensor): Tensor<"f32"> {
  return unaryOp("gelu_tanh", x, (g, x) => {
    const d = unaryRaw("gelu_tanh_grad", x);
    if (isRecording()) {
      recordOp("gelu_tanh_grad", [x], d, () => {
        return fail("geluTanh", "the second derivative is not implemented");
      });
    }
    return mul(g, d);
  });
}
