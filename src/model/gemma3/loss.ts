/**
 * Language-modelling losses on logits from the forward pass: per-token log-probabilities of the next
 * token, and the mean next-token cross-entropy over chosen tokens (transformers' causal LM loss
 * with ignored labels). Differentiable, so usable inside `grad()`.
 */
import { ModelError } from "../../core/errors.js";
import { div, mul } from "../../core/ops/elementwise.js";
import { indexSelect } from "../../core/ops/indexing.js";
import { logSoftmax } from "../../core/ops/nn.js";
import { sum } from "../../core/ops/reduce.js";
import { narrow, reshape } from "../../core/ops/shape.js";
import { fromStorage, type Tensor } from "../../core/tensor.js";
import type { IdBatch } from "./forward.js";

function idRows(what: string, x: IdBatch, rows: number, cols: number): Int32Array {
  let data: Int32Array;
  let shape: readonly number[];
  if (Array.isArray(x)) {
    const list = x as readonly (readonly number[])[];
    shape = [list.length, list[0]?.length ?? 0];
    data = Int32Array.from(list.flat());
  } else {
    const t = x as Tensor;
    shape = t.shape;
    data = t.dtype === "i32" ? (t.data as Int32Array) : Int32Array.from(t.toFloat32Array());
  }
  if (shape.length !== 2 || shape[0] !== rows || shape[1] !== cols || data.length !== rows * cols) {
    throw new ModelError(`${what} must be [${rows}, ${cols}], got [${shape.join(", ")}]`);
  }
  return data;
}

/**
 * log p(ids[:, t + 1] | ids[:, <= t]) for t = 0 .. seq - 2: [batch, seq - 1].
 * logits: [batch, seq, vocab] from a forward over `ids` [batch, seq].
 */
export function nextTokenLogprobs(logits: Tensor<"f32">, ids: IdBatch): Tensor<"f32"> {
  if (logits.rank !== 3) throw new ModelError(`logits must be [batch, seq, vocab], got ${logits.rank} dims`);
  const [batch, seq, vocab] = logits.shape;
  if (seq < 2) throw new ModelError("next-token log-probs need at least 2 positions");
  const tok = idRows("ids", ids, batch, seq);
  const lp = logSoftmax(narrow(logits, 1, 0, seq - 1));
  const flat = new Int32Array(batch * (seq - 1));
  for (let r = 0; r < batch; r++) {
    for (let t = 0; t < seq - 1; t++) {
      const target = tok[r * seq + t + 1];
      if (target < 0 || target >= vocab) throw new ModelError(`token id ${target} is outside the vocabulary`);
      flat[r * (seq - 1) + t] = (r * (seq - 1) + t) * vocab + target;
    }
  }
  const picked = indexSelect(reshape(lp, [-1]), 0, fromStorage(logits.backend, "i32", [flat.length], flat));
  return reshape(picked, [batch, seq - 1]);
}

/**
 * Mean next-token cross-entropy (a scalar f32 tensor). `mask` [batch, seq] (1/0) picks the target
 * tokens that count: position t + 1 is predicted from logits at t and counts when mask[:, t + 1] is
 * 1 (e.g. the attention mask, or 1 only on a completion's tokens). Default: every target counts.
 */
export function lossOnTokens(logits: Tensor<"f32">, ids: IdBatch, mask?: IdBatch): Tensor<"f32"> {
  const lp = nextTokenLogprobs(logits, ids);
  const [batch, n] = lp.shape;
  if (mask === undefined) return div(sum(lp), -(batch * n));
  const m = idRows("mask", mask, batch, n + 1);
  const w = new Float32Array(batch * n);
  let count = 0;
  for (let r = 0; r < batch; r++) {
    for (let t = 0; t < n; t++) {
      const v = m[r * (n + 1) + t + 1];
      if (v !== 0 && v !== 1) throw new ModelError(`mask values must be 0 or 1, got ${v}`);
      w[r * n + t] = v;
      count += v;
    }
  }
  if (count === 0) throw new ModelError("the mask selects no target tokens");
  return div(sum(mul(lp, fromStorage(logits.backend, "f32", [batch, n], w))), -count);
}
