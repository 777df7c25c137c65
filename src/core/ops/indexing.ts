/**
 * Indexing ops: indexSelect (torch.index_select, any float storage source), embedding lookup,
 * scatterAdd (torch.index_add, functional) and topk along the last axis.
 * Indices are i32 tensors; every index is checked against the axis size before a kernel runs.
 */
import { isRecording, recordOp } from "../tape.js";
import { formatShape, type Tensor, zeros } from "../tensor.js";
import { reshape } from "./shape.js";
import {
  axisArgs,
  backendOf,
  f32Data,
  fail,
  makeF32,
  makeTensor,
  normAxis,
  outputF32,
  requireDType,
} from "./util.js";

function checkIndices(op: string, indices: Tensor, size: number): Int32Array {
  const idx = requireDType(op, indices, "i32", "indices").data;
  for (let i = 0; i < idx.length; i++) {
    if (idx[i] < 0 || idx[i] >= size) fail(op, `index ${idx[i]} out of range [0, ${size})`);
  }
  return idx;
}

/**
 * Entries `indices` of `axis`: result shape is x.shape[:axis] + indices.shape + x.shape[axis+1:].
 * x may be f32, bf16 or f16 (widened per row); the result is f32.
 */
export function indexSelect(x: Tensor, axis: number, indices: Tensor): Tensor<"f32"> {
  const backend = backendOf("indexSelect", x, indices);
  if (x.dtype === "i32") fail("indexSelect", "source must be a float tensor");
  const a = normAxis("indexSelect", axis, x.rank);
  const idx = checkIndices("indexSelect", indices, x.shape[a]);
  const shape = [...x.shape.slice(0, a), ...indices.shape, ...x.shape.slice(a + 1)];
  const out = outputF32(backend, shape);
  const args = { ...axisArgs(x.shape, a), size: idx.length };
  backend.gather(
    x.data as Float32Array | Uint16Array,
    x.dtype === "f32" ? "f32" : x.dtype,
    idx,
    out.data,
    args,
    x.shape[a],
  );
  if (isRecording()) {
    recordOp("indexSelect", [x, indices], out, (g) => {
      const flat = reshape(g, [...x.shape.slice(0, a), idx.length, ...x.shape.slice(a + 1)]);
      return [scatterAdd(zeros(backend, x.shape), a, indices, flat), null];
    });
  }
  return out;
}

/** Rows `ids` of `table` ([vocab, d], usually bf16): [...ids.shape, d] f32. */
export function embedding(table: Tensor, ids: Tensor): Tensor<"f32"> {
  if (table.rank !== 2) fail("embedding", `table must be [vocab, d], got ${formatShape(table.shape)}`);
  return indexSelect(table, 0, ids);
}

/**
 * `target` with `src` added at `indices` along `axis` (repeated indices accumulate).
 * src shape: target.shape[:axis] + [indices.size] + target.shape[axis+1:].
 */
export function scatterAdd(target: Tensor, axis: number, indices: Tensor, src: Tensor): Tensor<"f32"> {
  const backend = backendOf("scatterAdd", target, indices, src);
  const a = normAxis("scatterAdd", axis, target.rank);
  const idx = checkIndices("scatterAdd", indices, target.shape[a]);
  const expected = [...target.shape.slice(0, a), idx.length, ...target.shape.slice(a + 1)];
  if (src.rank !== expected.length || src.shape.some((d, i) => d !== expected[i])) {
    fail("scatterAdd", `src must be ${formatShape(expected)}, got ${formatShape(src.shape)}`);
  }
  const out = makeF32(backend, target.shape, Float32Array.from(f32Data("scatterAdd", target, "target")));
  backend.scatterAdd(
    f32Data("scatterAdd", src, "src"),
    idx,
    out.data,
    { ...axisArgs(expected, a) },
    target.shape[a],
  );
  if (isRecording()) {
    recordOp("scatterAdd", [target, indices, src], out, (g, needs) => [
      needs[0] ? g : null,
      null,
      needs[2] ? reshape(indexSelect(g, a, reshape(indices, [idx.length])), src.shape) : null,
    ]);
  }
  return out;
}

/**
 * The k largest entries along the last axis, sorted descending (ties: lower index first; NaN
 * ranks below every number). values [..., k] f32 (differentiable), indices [..., k] i32.
 */
export function topk(x: Tensor, k: number): { values: Tensor<"f32">; indices: Tensor<"i32"> } {
  if (x.rank < 1) fail("topk", "needs at least one dim");
  const cols = x.shape[x.rank - 1];
  if (!Number.isInteger(k) || k < 0 || k > cols) fail("topk", `k = ${k} out of range [0, ${cols}]`);
  const rows = cols === 0 ? 0 : x.size / cols;
  const shape = [...x.shape.slice(0, -1), k];
  const values = outputF32(x.backend, shape);
  const idx = new Int32Array(rows * k);
  x.backend.topk(f32Data("topk", x), rows, cols, k, values.data, idx);
  const indices = makeTensor(x.backend, "i32", shape, idx);
  if (isRecording()) {
    recordOp("topk", [x], values, (g) => {
      const flatIdx = new Int32Array(rows * k);
      for (let i = 0; i < flatIdx.length; i++) flatIdx[i] = Math.floor(i / k) * cols + idx[i];
      const positions = makeTensor(x.backend, "i32", [rows * k], flatIdx);
      const flat = scatterAdd(zeros(x.backend, [rows * cols]), 0, positions, reshape(g, [rows * k]));
      return [reshape(flat, x.shape)];
    });
  }
  return { values, indices };
}
