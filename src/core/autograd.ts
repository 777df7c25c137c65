/**
 * Reverse-mode differentiation over the ops in `ops/` (tape recording lives in `tape.ts`).
 *
 * `grad(f)` / `valueAndGrad(f)` differentiate a scalar-valued `f(params, ...args)` with respect to
 * `params`, a tree of plain records and arrays whose leaves are float tensors; gradients come back
 * in the same tree shape as f32 tensors. The tape exists only during the call. Nested `grad` works
 * for ops whose backward is itself differentiable (all but geluTanh). `f` must be synchronous.
 */
import { TensorError } from "./errors.js";
import { add } from "./ops/elementwise.js";
import { sameShape } from "./ops/util.js";
import { isRecording, recordOp, Tape, withoutRecording, withTape } from "./tape.js";
import { formatShape, ones, Tensor, zeros } from "./tensor.js";

/** The gradient tree for a parameter tree `P`: each tensor leaf becomes an f32 tensor. */
export type GradTree<P> = P extends Tensor
  ? Tensor<"f32">
  : P extends readonly unknown[]
    ? { -readonly [K in keyof P]: GradTree<P[K]> }
    : P extends object
      ? { -readonly [K in keyof P]: GradTree<P[K]> }
      : P;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Maps the tensor leaves of a tree of arrays and plain objects; other leaves are kept. */
function mapTree(tree: unknown, f: (t: Tensor) => Tensor): unknown {
  if (tree instanceof Tensor) return f(tree);
  if (Array.isArray(tree)) return tree.map((x) => mapTree(x, f));
  if (isPlainObject(tree)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(tree)) out[k] = mapTree(v, f);
    return out;
  }
  return tree;
}

/** A new tensor object sharing `x`'s storage, recorded as an identity on the active tapes. */
function track(x: Tensor): Tensor {
  const v = new Tensor(x.backend, x.dtype, x.shape, x.data);
  recordOp("identity", [x], v, (g) => [g]);
  return v;
}

/** Runs the tape backwards from `output` (seeded with ones); returns the cotangent of every tracked tensor. */
function backward(tape: Tape, output: Tensor): Map<Tensor, Tensor<"f32">> {
  const cot = new Map<Tensor, Tensor<"f32">>();
  cot.set(output, ones(output.backend, output.shape));
  for (let n = tape.nodes.length - 1; n >= 0; n--) {
    const node = tape.nodes[n];
    const g = cot.get(node.output);
    if (g === undefined) continue;
    cot.delete(node.output);
    const needs = node.inputs.map((t) => tape.tracked.has(t));
    if (!needs.some((x) => x)) continue;
    const grads = node.backward(g, needs);
    node.inputs.forEach((input, i) => {
      const gi = grads[i];
      if (!needs[i] || gi === null || gi === undefined) return;
      if (!sameShape(gi.shape, input.shape)) {
        throw new TensorError(
          `backward of ${node.name} gave a ${formatShape(gi.shape)} gradient for a ${formatShape(input.shape)} input`,
        );
      }
      const prev = cot.get(input);
      cot.set(input, prev === undefined ? gi : add(prev, gi));
    });
  }
  return cot;
}

interface Differentiated<P> {
  /** f's (scalar) output. */
  readonly value: Tensor<"f32">;
  /** d value / d params, shaped like the params tree. */
  readonly grads: GradTree<P>;
}

function run<P, A extends unknown[], R>(
  f: (params: P, ...args: A) => R,
  toValue: (r: R) => Tensor,
  params: P,
  args: A,
): { result: R; value: Tensor<"f32">; grads: GradTree<P> } {
  const tape = new Tape();
  const wrapped = mapTree(params, (p) => {
    if (p.dtype === "i32") throw new TensorError("grad: an i32 tensor cannot be a parameter");
    const v = track(p);
    tape.tracked.add(v);
    return v;
  }) as P;
  const result = withTape(tape, () => f(wrapped, ...args));
  const value = toValue(result);
  if (!(value instanceof Tensor) || value.dtype !== "f32" || value.size !== 1) {
    throw new TensorError(
      `grad: f must return a one-element f32 tensor, got ${value instanceof Tensor ? value.toString() : typeof value}`,
    );
  }
  const cot = backward(tape, value);
  const grads = mapTree(wrapped, (w) => cot.get(w) ?? zeros(w.backend, w.shape)) as GradTree<P>;
  return { result, value: value as Tensor<"f32">, grads };
}

/** `(params, ...args) => { value, grads }` for a scalar-valued `f`. */
export function valueAndGrad<P, A extends unknown[]>(
  f: (params: P, ...args: A) => Tensor,
): (params: P, ...args: A) => Differentiated<P> {
  return (params, ...args) => {
    const { value, grads } = run(f, (r) => r, params, args);
    return { value, grads };
  };
}

/** Like `valueAndGrad`, for an `f` that returns `[scalar, aux]`; `aux` is passed through. */
export function valueAndGradWithAux<P, A extends unknown[], X>(
  f: (params: P, ...args: A) => readonly [Tensor, X],
): (params: P, ...args: A) => Differentiated<P> & { readonly aux: X } {
  return (params, ...args) => {
    const { result, value, grads } = run(f, (r) => r[0], params, args);
    return { value, grads, aux: result[1] };
  };
}

/** `(params, ...args) => grads` for a scalar-valued `f`. */
export function grad<P, A extends unknown[]>(
  f: (params: P, ...args: A) => Tensor,
): (params: P, ...args: A) => GradTree<P> {
  return (params, ...args) => run(f, (r) => r, params, args).grads;
}

/** The same values, treated as a constant by every tape. */
export function stopGradient<D extends Tensor["dtype"]>(x: Tensor<D>): Tensor<D> {
  return new Tensor(x.backend, x.dtype, x.shape, x.data);
}

/** Runs `fn` without recording (inference inside a `grad` call, or to save the closures). */
export function noGrad<T>(fn: () => T): T {
  return withoutRecording(fn);
}

/**
 * An op with a hand-written gradient: `forward` runs unrecorded, and `backward(g, inputs, output)`
 * returns each input's cotangent (or null). Used for straight-through estimators such as JumpReLU's.
 * The backward may use any ops (it is recorded on outer tapes, so nested grad sees it).
 */
export function customGrad<I extends Tensor[]>(
  forward: (...inputs: I) => Tensor<"f32">,
  backwardFn: (g: Tensor<"f32">, inputs: I, output: Tensor<"f32">) => readonly (Tensor<"f32"> | null)[],
): (...inputs: I) => Tensor<"f32"> {
  return (...inputs: I) => {
    const raw = withoutRecording(() => forward(...inputs));
    const out = new Tensor(raw.backend, "f32", raw.shape, raw.data);
    if (isRecording()) {
      recordOp("customGrad", inputs, out, (g, needs) => {
        const gs = backwardFn(g, inputs, out);
        return inputs.map((_, i) => (needs[i] ? (gs[i] ?? null) : null));
      });
    }
    return out;
  };
}
