/**
 * TopK activation (Gao et al. 2024; SAELens `TopKSAE`): per token, the k largest pre-activations,
 * then relu (so fewer than k are active when some of the k largest are <= 0); ties go to the lower
 * index. Not invariant under decoder-norm folding: scaling features changes each token's ranking.
 */
import { DictionaryError } from "../../core/errors.js";
import { add } from "../../core/ops/elementwise.js";
import { topk as topkOp } from "../../core/ops/indexing.js";
import type { CsrRows } from "../../core/ops/sparse.js";
import type { Activation } from "../types.js";

export function topK(k: number): Activation {
  if (!Number.isInteger(k) || k < 1) throw new DictionaryError(`TopK k must be a positive integer, got ${k}`);
  const act: Activation = {
    info: { kind: "topk", k },
    width: null,
    columnwise: false,
    columns: () => {
      throw new DictionaryError("TopK selects over whole rows; it has no per-feature form");
    },
    select: (x, bias): CsrRows => {
      const pre = bias ? add(x, bias) : x;
      const [rows, width] = pre.shape;
      const kk = Math.min(k, width);
      const { values, indices } = topkOp(pre, kk);
      const offsets = new Int32Array(rows + 1);
      const idx: number[] = [];
      const vals: number[] = [];
      for (let r = 0; r < rows; r++) {
        const row: number[] = [];
        for (let j = r * kk; j < (r + 1) * kk; j++) if (values.data[j] > 0) row.push(j);
        row.sort((a, b) => indices.data[a] - indices.data[b]);
        for (const j of row) {
          idx.push(indices.data[j]);
          vals.push(values.data[j]);
        }
        offsets[r + 1] = idx.length;
      }
      return { rows, cols: width, offsets, indices: Int32Array.from(idx), values: Float32Array.from(vals) };
    },
    fold: () => {
      throw new DictionaryError(
        "decoder-norm folding would change which features a TopK dictionary selects (per-token ranking); not folded",
      );
    },
    gemmaScope2: () => ({ architecture: "topk", threshold: null, config: { k } }),
  };
  return act;
}
