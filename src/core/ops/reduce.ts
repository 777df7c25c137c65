/**
 * Reductions: sum, mean, max, min over one or several axes (keepDims optional), argmax/argmin,
 * and `sumTo` (sum a broadcast result back to an operand's shape, used by backward passes).
 * Gradients of max/min are shared equally among tied maxima (as torch.amax does).
 */
import type { ReduceOp } from "../backend.js";
import { isRecording, recordOp } from "../tape.js";
import type { Tensor } from "../tensor.js";
import { affine, div, eq, mul } from "./elementwise.js";
import { broadcastTo, reshape } from "./shape.js";
import {
  axisArgs,
  f32Data,
  fail,
  makeF32,
  makeTensor,
  normAxes,
  normAxis,
  requireDType,
  sameShape,
} from "./util.js";

export type Axes = number | readonly number[];

/** Reduces the (sorted) axes in place, keeping them as size-1 dims. */
function reduceKeep(op: ReduceOp, name: string, x: Tensor, axes: readonly number[]): Tensor<"f32"> {
  const backend = x.backend;
  let data = f32Data(name, x);
  const shape = [...x.shape];
  // Adjacent axes are reduced by one kernel call; runs are processed from the innermost.
  let i = axes.length - 1;
  while (i >= 0) {
    let from = axes[i];
    const to = axes[i] + 1;
    while (i > 0 && axes[i - 1] === from - 1) {
      i--;
      from--;
    }
    i--;
    const args = axisArgs(shape, from, to);
    if (args.size === 0 && op !== "sum") fail(name, `cannot reduce an empty axis`);
    const out = new Float32Array(args.outer * args.inner);
    backend.reduce(op, data, out, args);
    data = out;
    for (let d = from; d < to; d++) shape[d] = 1;
  }
  return makeF32(backend, shape, data);
}

function dropAxes(shape: readonly number[], axes: readonly number[]): number[] {
  return shape.filter((_, d) => !axes.includes(d));
}

function finish(keep: Tensor<"f32">, axes: readonly number[], keepDims: boolean): Tensor<"f32"> {
  return keepDims ? keep : reshape(keep, dropAxes(keep.shape, axes));
}

/** Shape of the reduced result with the reduced axes kept as 1. */
function keptShape(shape: readonly number[], axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

export function sum(x: Tensor, axes?: Axes, keepDims = false): Tensor<"f32"> {
  const ax = normAxes("sum", axes, x.rank);
  const keep = reduceKeep("sum", "sum", x, ax);
  if (isRecording()) {
    recordOp("sum", [x], keep, (g) => [broadcastTo(g, x.shape)]);
  }
  return finish(keep, ax, keepDims);
}

export function mean(x: Tensor, axes?: Axes, keepDims = false): Tensor<"f32"> {
  const ax = normAxes("mean", axes, x.rank);
  let count = 1;
  for (const a of ax) count *= x.shape[a];
  if (count === 0) fail("mean", "cannot average over an empty axis");
  return affine(sum(x, ax, keepDims), 1 / count, 0);
}

function extremum(op: "max" | "min", x: Tensor, axes: Axes | undefined, keepDims: boolean): Tensor<"f32"> {
  const ax = normAxes(op, axes, x.rank);
  const keep = reduceKeep(op, op, x, ax);
  if (isRecording()) {
    recordOp(op, [x], keep, (g) => {
      const mask = eq(x, keep);
      const ties = reduceKeep("sum", op, mask, ax);
      return [mul(mask, div(g, ties))];
    });
  }
  return finish(keep, ax, keepDims);
}

export function max(x: Tensor, axes?: Axes, keepDims = false): Tensor<"f32"> {
  return extremum("max", x, axes, keepDims);
}

export function min(x: Tensor, axes?: Axes, keepDims = false): Tensor<"f32"> {
  return extremum("min", x, axes, keepDims);
}

function argReduce(op: "argmax" | "argmin", x: Tensor, axis: number, keepDims: boolean): Tensor<"i32"> {
  const a = normAxis(op, axis, x.rank);
  const args = axisArgs(x.shape, a);
  if (args.size === 0) fail(op, "cannot reduce an empty axis");
  const out = new Int32Array(args.outer * args.inner);
  x.backend.argReduce(op, f32Data(op, x), out, args);
  const shape = keepDims ? keptShape(x.shape, [a]) : dropAxes(x.shape, [a]);
  return makeTensor(x.backend, "i32", shape, out);
}

/** Index of the largest value along `axis` (NaN never wins; ties pick the first). */
export function argmax(x: Tensor, axis = -1, keepDims = false): Tensor<"i32"> {
  return argReduce("argmax", x, axis, keepDims);
}

export function argmin(x: Tensor, axis = -1, keepDims = false): Tensor<"i32"> {
  return argReduce("argmin", x, axis, keepDims);
}

/** Sums `g` over the dims along which `shape` was broadcast to `g.shape`; returns `shape`. */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor<"f32"> {
  if (sameShape(g.shape, shape)) return requireDType("sumTo", g, "f32");
  const lead = g.rank - shape.length;
  if (lead < 0) fail("sumTo", `cannot sum shape [${g.shape}] to the larger shape [${shape}]`);
  const axes: number[] = [];
  for (let d = 0; d < g.rank; d++) {
    if (d < lead || (shape[d - lead] === 1 && g.shape[d] !== 1)) axes.push(d);
  }
  return reshape(sum(g, axes, true), shape);
}
