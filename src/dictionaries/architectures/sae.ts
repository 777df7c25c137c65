/**
 * Sparse autoencoder: reads and writes the same site and reconstructs its input
 * (Gemma Scope 2 `type: "sae"`; SAELens `standard` / `jumprelu` / `topk` SAEs). The activation
 * (ReLU, JumpReLU, TopK, BatchTopK) is a separate module; error(x) = x - reconstruct(x).
 */
import { type DictionaryMeta, SingleLayerDictionary, type SingleLayerParams } from "../single-layer.js";
import type { Activation } from "../types.js";

export class Sae extends SingleLayerDictionary {
  constructor(params: SingleLayerParams, activation: Activation, meta: DictionaryMeta) {
    super({ architecture: "sae", reconstructsInput: true, skip: false }, params, activation, meta);
  }

  protected rebuild(params: SingleLayerParams, activation: Activation): Sae {
    return new Sae(params, activation, this.meta);
  }
}
