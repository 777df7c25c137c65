/**
 * In-place ops for inference code that owns its intermediates (the Gemma 3 forward pass): each
 * overwrites its first operand with the result and returns it, so a chain such as
 * gelu(gate) * up, softmax(q k^T * s + mask) or rope(norm(x W_q)) needs one buffer instead of one
 * per step. The arithmetic is the same kernels' as the out-of-place ops, so results are identical.
 *
 * The caller must own the overwritten tensor: an op's own f32 output that no other live tensor reads
 * (a view or reshape sharing its storage counts). They record nothing, and refuse to run while a
 * tape records, since a backward pass would read the overwritten values. `fillOutsideBands` fills
 * the storage directly (`TypedArray.fill`, native-speed), as every backend's storage is a host array.
 */
import type { Backend, BinaryOp } from "../backend.js";
import { isRecording } from "../tape.js";
import { formatShape, type Tensor } from "../tensor.js";
import { type RmsnormOptions, type RopeOptions, rmsnormArgs, ropeArgs } from "./nn.js";
import {
  asTensor,
  backendOf,
  broadcastShapes,
  broadcastStrides,
  contiguousStrides,
  f32Data,
  fail,
  normAxis,
  outputF32,
  sameShape,
} from "./util.js";

function owned(op: string, x: Tensor): Float32Array {
  if (isRecording())
    fail(op, "cannot run while a tape records (the backward pass would read the old values)");
  const data = f32Data(op, x);
  if (data.length !== x.size) fail(op, `storage of ${data.length} elements for ${formatShape(x.shape)}`);
  return data;
}

/** Whether two arrays share any bytes of storage. */
function overlap(a: Float32Array, b: Float32Array): boolean {
  return (
    a.buffer === b.buffer &&
    a.byteOffset < b.byteOffset + b.byteLength &&
    b.byteOffset < a.byteOffset + a.byteLength
  );
}

function binaryInPlace(op: BinaryOp, name: string, a: Tensor<"f32">, b: Tensor | number): Tensor<"f32"> {
  const backend = backendOf(name, a, b);
  const out = owned(name, a);
  const tb = asTensor(backend, b);
  const shape = broadcastShapes(name, a.shape, tb.shape);
  if (!sameShape(shape, a.shape))
    fail(
      name,
      `${formatShape(tb.shape)} would broadcast the result to ${formatShape(shape)}, not ${formatShape(a.shape)}`,
    );
  const bd = f32Data(name, tb, "right operand");
  // Reading b[i] as out[i] is written is fine only when b is a itself.
  if (overlap(bd, out) && !(bd.byteOffset === out.byteOffset && sameShape(tb.shape, a.shape)))
    fail(name, "the right operand overlaps the left one's storage");
  backend.binary(op, out, bd, out, {
    shape,
    aStrides: broadcastStrides(a.shape, shape),
    bStrides: broadcastStrides(tb.shape, shape),
  });
  return a;
}

/** a += b (b broadcast to a's shape). */
export const addInPlace = (a: Tensor<"f32">, b: Tensor | number): Tensor<"f32"> =>
  binaryInPlace("add", "addInPlace", a, b);

/** a *= b (b broadcast to a's shape). */
export const mulInPlace = (a: Tensor<"f32">, b: Tensor | number): Tensor<"f32"> =>
  binaryInPlace("mul", "mulInPlace", a, b);

/** x = x * scale + shift. */
export function affineInPlace(x: Tensor<"f32">, scale: number, shift: number): Tensor<"f32"> {
  const data = owned("affineInPlace", x);
  x.backend.affine(data, scale, shift, data);
  return x;
}

/** x = gelu_tanh(x). */
export function geluTanhInPlace(x: Tensor<"f32">): Tensor<"f32"> {
  const data = owned("geluTanhInPlace", x);
  x.backend.unary("gelu_tanh", data, data);
  return x;
}

/** x = softmax(x) over the last axis. */
export function softmaxInPlace(x: Tensor<"f32">): Tensor<"f32"> {
  const data = owned("softmaxInPlace", x);
  if (x.rank === 0) fail("softmaxInPlace", "needs at least one axis");
  const cols = x.shape[x.rank - 1];
  x.backend.softmax(data, data, cols === 0 ? 0 : x.size / cols, cols);
  return x;
}

/**
 * Sets x[..., r, j] = value for every key column j outside [lo[r], hi[r]] (an empty range when
 * hi[r] < lo[r]), for x viewed as [..., rows, cols] with rows = lo.length: a banded (causal and
 * sliding-window) attention mask written into the scores, with no mask tensor.
 */
export function fillOutsideBands(
  x: Tensor<"f32">,
  lo: Int32Array,
  hi: Int32Array,
  value: number,
): Tensor<"f32"> {
  const data = owned("fillOutsideBands", x);
  if (x.rank < 2) fail("fillOutsideBands", `needs [..., rows, cols], got ${formatShape(x.shape)}`);
  const rows = x.shape[x.rank - 2];
  const cols = x.shape[x.rank - 1];
  if (lo.length !== rows || hi.length !== rows)
    fail("fillOutsideBands", `${lo.length} / ${hi.length} bands for ${rows} rows`);
  const outer = rows * cols === 0 ? 0 : x.size / (rows * cols);
  for (let o = 0; o < outer; o++) {
    for (let r = 0; r < rows; r++) {
      const row = (o * rows + r) * cols;
      const a = Math.min(cols, Math.max(0, lo[r]));
      const b = Math.min(cols, Math.max(a, hi[r] + 1));
      data.fill(value, row, row + a);
      data.fill(value, row + b, row + cols);
    }
  }
  return x;
}

/**
 * Writes `src` into dst's entries [start, start + src.shape[axis]) along `axis` (every other axis
 * equal): concatenation one piece at a time, without holding every piece.
 */
export function assignNarrow(
  dst: Tensor<"f32">,
  axis: number,
  start: number,
  src: Tensor<"f32">,
): Tensor<"f32"> {
  const a = normAxis("assignNarrow", axis, dst.rank);
  if (src.rank !== dst.rank || !src.shape.every((d, i) => i === a || d === dst.shape[i]))
    fail(
      "assignNarrow",
      `${formatShape(src.shape)} does not fit ${formatShape(dst.shape)} at ${start} on axis ${a}`,
    );
  return assignRegion(
    dst,
    dst.shape.map((_, i) => (i === a ? start : 0)),
    src,
  );
}

/**
 * Writes permute(src, perm) into the block of dst that starts at index `starts` (one per axis) and
 * has the permuted shape: dst[starts + i] = src[i permuted back]. Without `perm`, src as it is.
 */
export function assignRegion(
  dst: Tensor<"f32">,
  starts: readonly number[],
  src: Tensor<"f32">,
  perm?: readonly number[],
): Tensor<"f32"> {
  const backend = backendOf("assignRegion", dst, src);
  const out = owned("assignRegion", dst);
  const p = perm ?? src.shape.map((_, i) => i);
  if (p.length !== src.rank || new Set(p).size !== p.length || !p.every((a) => a >= 0 && a < src.rank))
    fail("assignRegion", `[${p.join(", ")}] is not a permutation of ${src.rank} axes`);
  const shape = p.map((a) => src.shape[a]);
  const fits =
    shape.length === dst.rank &&
    starts.length === dst.rank &&
    shape.every((d, i) => Number.isInteger(starts[i]) && starts[i] >= 0 && starts[i] + d <= dst.shape[i]);
  if (!fits)
    fail(
      "assignRegion",
      `${formatShape(shape)} does not fit ${formatShape(dst.shape)} at [${starts.join(", ")}]`,
    );
  const data = f32Data("assignRegion", src, "source");
  if (overlap(data, out)) fail("assignRegion", "the source overlaps the destination's storage");
  const srcStrides = contiguousStrides(src.shape);
  const dstStrides = contiguousStrides(dst.shape);
  backend.copy(data, out, {
    shape,
    srcOffset: 0,
    srcStrides: p.map((a) => srcStrides[a]),
    dstOffset: starts.reduce((o, s, i) => o + s * dstStrides[i], 0),
    dstStrides,
  });
  return dst;
}

/** x = rmsnorm(x, weight) over the last axis (see `rmsnorm`). */
export function rmsnormInPlace(
  x: Tensor<"f32">,
  weight: Tensor | null,
  options: RmsnormOptions = {},
): Tensor<"f32"> {
  const data = owned("rmsnormInPlace", x);
  const { rows, cols, eps, offset, backend, w } = rmsnormArgs("rmsnormInPlace", x, weight, options);
  backend.rmsnorm(data, w ? w.data : null, data, rows, cols, eps, offset, null);
  return x;
}

/** x = rope(x, cos, sin) (see `rope`). */
export function ropeInPlace(
  x: Tensor<"f32">,
  cos: Tensor,
  sin: Tensor,
  options: RopeOptions = {},
): Tensor<"f32"> {
  const data = owned("ropeInPlace", x);
  const { backend, rows, seq, heads, dim, inverse } = ropeArgs("ropeInPlace", x, cos, sin, options);
  backend.rope(
    data,
    f32Data("ropeInPlace", cos, "cos"),
    f32Data("ropeInPlace", sin, "sin"),
    data,
    rows,
    seq,
    dim,
    inverse,
    heads,
  );
  return x;
}

/** An f32 tensor whose contents are unspecified, for a caller that overwrites all of it. */
export function empty(backend: Backend, shape: readonly number[]): Tensor<"f32"> {
  return outputF32(backend, shape);
}
