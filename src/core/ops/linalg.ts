/**
 * Matrix multiplication: `matmul(a, b, { transA, transB })` over the last two axes with numpy-style
 * broadcast batch dims, and `matmulAsync` (same result, the kernel runs off the event loop).
 * The left operand is f32; the right may be f32, bf16 or f16 storage, widened inside the kernel
 * (so a bf16 weight [out, in] is used as-is with `transB: true`).
 */
import type { MatmulArgs } from "../backend.js";
import { isRecording, recordOp } from "../tape.js";
import { formatShape, shapeSize, type Tensor } from "../tensor.js";
import { sumTo } from "./reduce.js";
import { reshape, transpose } from "./shape.js";
import {
  backendOf,
  broadcastShapes,
  broadcastStrides,
  fail,
  outputF32,
  requireDType,
  sameShape,
} from "./util.js";

export interface MatmulOptions {
  /** Use a's last two axes transposed. */
  readonly transA?: boolean;
  /** Use b's last two axes transposed. */
  readonly transB?: boolean;
  /**
   * Round a's elements to bf16 before multiplying (what bf16 inference frameworks compute; with a
   * bf16 b the native backend then uses bf16 dot products). Gradients treat the rounding as the
   * identity. Default false.
   */
  readonly aBf16?: boolean;
  /**
   * Round an f32 b's elements to bf16 as well (with `aBf16`: products of two activations as bf16
   * inference computes them, e.g. attention). Gradients treat it as the identity. No effect on a
   * 16-bit b. Default false.
   */
  readonly bBf16?: boolean;
}

interface KernelCall {
  readonly aOffset: number;
  readonly bOffset: number;
  readonly outOffset: number;
  readonly args: MatmulArgs;
}

interface Plan {
  readonly outShape: number[];
  readonly calls: KernelCall[];
}

interface Rounding {
  readonly aBf16: boolean;
  readonly bBf16: boolean;
}

function plan(a: Tensor, b: Tensor, transA: boolean, transB: boolean, r: Rounding): Plan {
  backendOf("matmul", a, b);
  requireDType("matmul", a, "f32", "left operand");
  if (b.dtype === "i32") fail("matmul", "right operand must be f32, bf16 or f16, got i32");
  if (a.rank < 2 || b.rank < 2) {
    fail("matmul", `operands need at least 2 dims, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
  }
  const [a0, a1] = a.shape.slice(-2);
  const [b0, b1] = b.shape.slice(-2);
  const [m, k] = transA ? [a1, a0] : [a0, a1];
  const [kb, n] = transB ? [b1, b0] : [b0, b1];
  if (k !== kb) {
    fail(
      "matmul",
      `inner dims differ: ${formatShape(a.shape)}${transA ? "^T" : ""} @ ${formatShape(b.shape)}${transB ? "^T" : ""}`,
    );
  }
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const batchShape = broadcastShapes("matmul", aBatch, bBatch);
  const batch = shapeSize(batchShape);
  const outShape = [...batchShape, m, n];
  const base = {
    m,
    k,
    n,
    transA,
    transB,
    bDtype: b.dtype === "f32" ? "f32" : b.dtype,
    accumulate: false,
    ...(r.aBf16 ? { aBf16: true } : {}),
    ...(r.bBf16 && b.dtype === "f32" ? { bBf16: true } : {}),
  } as const;

  // A 2-d right operand with a plain left operand: all of a's rows form one [batch * m, k] matrix.
  if (b.rank === 2 && !transA) {
    return {
      outShape,
      calls: [
        {
          aOffset: 0,
          bOffset: 0,
          outOffset: 0,
          args: { ...base, m: batch * m, batch: 1, aBatchStride: 0, bBatchStride: 0 },
        },
      ],
    };
  }
  const padded = (s: readonly number[]) => [...new Array<number>(batchShape.length - s.length).fill(1), ...s];
  const stride = (s: readonly number[], matrix: number): number | null =>
    shapeSize(s) === 1 ? 0 : sameShape(padded(s), batchShape) ? matrix : null;
  const aStride = stride(aBatch, m * k);
  const bStride = stride(bBatch, k * n);
  if (aStride !== null && bStride !== null) {
    return {
      outShape,
      calls: [
        {
          aOffset: 0,
          bOffset: 0,
          outOffset: 0,
          args: { ...base, batch, aBatchStride: aStride, bBatchStride: bStride },
        },
      ],
    };
  }
  // Partial broadcasting of the batch dims: one kernel call per output matrix.
  const aStrides = broadcastStrides(aBatch, batchShape);
  const bStrides = broadcastStrides(bBatch, batchShape);
  const calls: KernelCall[] = [];
  for (let t = 0; t < batch; t++) {
    let rest = t;
    let ai = 0;
    let bi = 0;
    for (let d = batchShape.length - 1; d >= 0; d--) {
      const i = rest % batchShape[d];
      rest = Math.floor(rest / batchShape[d]);
      ai += i * aStrides[d];
      bi += i * bStrides[d];
    }
    calls.push({
      aOffset: ai * m * k,
      bOffset: bi * k * n,
      outOffset: t * m * n,
      args: { ...base, batch: 1, aBatchStride: 0, bBatchStride: 0 },
    });
  }
  return { outShape, calls };
}

function record(a: Tensor, b: Tensor, transA: boolean, transB: boolean, out: Tensor<"f32">): void {
  recordOp("matmul", [a, b], out, (g, needs) => {
    let ga: Tensor<"f32"> | null = null;
    let gb: Tensor<"f32"> | null = null;
    if (needs[0]) {
      // d op(A) = g @ op(B)^T; stored A^T when transA.
      const d = matmul(g, b, { transB: !transB });
      ga = sumTo(transA ? transpose(d) : d, a.shape);
    }
    if (needs[1]) {
      if (b.rank === 2 && a.rank > 2) {
        // Fold the batch into the rows so the weight gradient is one matmul.
        const a2 = transA
          ? reshape(transpose(a), [-1, a.shape[a.rank - 2]])
          : reshape(a, [-1, a.shape[a.rank - 1]]);
        const g2 = reshape(g, [-1, g.shape[g.rank - 1]]);
        gb = transB ? matmul(g2, a2, { transA: true }) : matmul(a2, g2, { transA: true });
      } else {
        // d op(B) = op(A)^T @ g; stored B^T when transB.
        gb = transB ? matmul(g, a, { transA: true, transB: transA }) : matmul(a, g, { transA: !transA });
        gb = sumTo(gb, b.shape);
      }
    }
    return [ga, gb];
  });
}

function rounding(options: MatmulOptions): Rounding {
  return { aBf16: options.aBf16 ?? false, bBf16: options.bBf16 ?? false };
}

/** [..., m, k] @ [..., k, n] -> [..., m, n] (with the trans flags applied to the stored operands). */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor<"f32"> {
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  const p = plan(a, b, transA, transB, rounding(options));
  const out = outputF32(a.backend, p.outShape);
  for (const c of p.calls) {
    a.backend.matmul(
      (a.data as Float32Array).subarray(c.aOffset),
      b.data.subarray(c.bOffset) as Float32Array | Uint16Array,
      out.data.subarray(c.outOffset),
      c.args,
    );
  }
  if (isRecording()) record(a, b, transA, transB, out);
  return out;
}

/** `matmul` with the kernel off the event loop. Recording for `grad` happens when it resolves. */
export async function matmulAsync(a: Tensor, b: Tensor, options: MatmulOptions = {}): Promise<Tensor<"f32">> {
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  const p = plan(a, b, transA, transB, rounding(options));
  const out = outputF32(a.backend, p.outShape);
  for (const c of p.calls) {
    await a.backend.matmulAsync(
      (a.data as Float32Array).subarray(c.aOffset),
      b.data.subarray(c.bOffset) as Float32Array | Uint16Array,
      out.data.subarray(c.outOffset),
      c.args,
    );
  }
  if (isRecording()) record(a, b, transA, transB, out);
  return out;
}
