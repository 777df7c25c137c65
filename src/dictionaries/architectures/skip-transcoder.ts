/**
 * Skip-transcoder (Paulo, Shabalin, Belrose 2025; Gemma Scope 2 `_affine` folders): a transcoder
 * plus an affine skip connection, recon = f @ w_dec + b_dec + x @ A with A = affine_skip_connection
 * [d_in, d_out] used as stored (the transpose is a known loader bug; see gemma-scope-2-format.md).
 * Decoding therefore needs the input x.
 */
import { DictionaryError } from "../../core/errors.js";
import { add } from "../../core/ops/elementwise.js";
import { matmul } from "../../core/ops/linalg.js";
import { reshape } from "../../core/ops/shape.js";
import type { Tensor } from "../../core/tensor.js";
import type { FeatureActs } from "../feature-acts.js";
import {
  asRows,
  type DictionaryMeta,
  SingleLayerDictionary,
  type SingleLayerParams,
} from "../single-layer.js";
import type { Activation } from "../types.js";

export class SkipTranscoder extends SingleLayerDictionary {
  constructor(params: SingleLayerParams, activation: Activation, meta: DictionaryMeta) {
    super(
      { architecture: "skip_transcoder", reconstructsInput: false, skip: true },
      params,
      activation,
      meta,
    );
  }

  protected rebuild(params: SingleLayerParams, activation: Activation): SkipTranscoder {
    return new SkipTranscoder(params, activation, this.meta);
  }

  override decode(acts: FeatureActs, input?: Tensor): Tensor<"f32"> {
    if (input === undefined) {
      throw new DictionaryError(
        "a skip-transcoder decodes with its input (x @ affine_skip_connection)",
        this.spec.source,
      );
    }
    const { rows } = asRows(input, this.spec.dIn, "input", this.spec.source);
    if (rows.shape[0] !== acts.rows) {
      throw new DictionaryError(
        `input has ${rows.shape[0]} rows, the feature acts ${acts.rows}`,
        this.spec.source,
      );
    }
    const features = super.decode(acts);
    const skip = matmul(rows, this.params.skip as Tensor);
    return add(features, reshape(skip, features.shape));
  }
}
