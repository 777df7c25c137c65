/**
 * Transcoder (Dunefsky et al. 2024; Gemma Scope 2 `type: "transcoder"`): reads the MLP input
 * (`pre_feedforward_layernorm.output`) and predicts the MLP output
 * (`post_feedforward_layernorm.output`); error(x, target) = target - reconstruct(x) with target the
 * true MLP output, so reconstruction + error is exactly the MLP output.
 */
import { type DictionaryMeta, SingleLayerDictionary, type SingleLayerParams } from "../single-layer.js";
import type { Activation } from "../types.js";

export class Transcoder extends SingleLayerDictionary {
  constructor(params: SingleLayerParams, activation: Activation, meta: DictionaryMeta) {
    super({ architecture: "transcoder", reconstructsInput: false, skip: false }, params, activation, meta);
  }

  protected rebuild(params: SingleLayerParams, activation: Activation): Transcoder {
    return new Transcoder(params, activation, this.meta);
  }
}
