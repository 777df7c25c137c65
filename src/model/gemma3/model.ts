/**
 * `Gemma3Model`: a loaded checkpoint (config + weights on one backend) and its forward pass.
 * Deliberately small: generation, losses and analyses are functions that take a model.
 */
import type { Backend } from "../../core/backend.js";
import type { FloatDType } from "../../core/dtype.js";
import { openSafetensors } from "../../io/safetensors-sharded.js";
import { KVCache, type KVCacheOptions } from "./cache.js";
import { type Gemma3Config, loadGemma3Config, loadGenerationStopIds } from "./config.js";
import { type ForwardOptions, type ForwardResult, forward, type IdBatch } from "./forward.js";
import { type Gemma3Weights, loadGemma3Weights } from "./weights.js";

export class Gemma3Model {
  readonly config: Gemma3Config;
  readonly weights: Gemma3Weights;
  /** Storage dtype of the weights (compute is always f32). */
  readonly dtype: FloatDType;
  /** Token ids that end generation: the config's eos ids plus generation_config.json's. */
  readonly stopTokenIds: readonly number[];

  constructor(
    config: Gemma3Config,
    weights: Gemma3Weights,
    dtype: FloatDType,
    stopTokenIds: readonly number[],
  ) {
    this.config = config;
    this.weights = weights;
    this.dtype = dtype;
    this.stopTokenIds = [...new Set(stopTokenIds)];
  }

  get backend(): Backend {
    return this.weights.embed.backend;
  }

  /** Logits [batch, seq, vocab] and captured activations; see `ForwardOptions`. */
  forward(ids: IdBatch, options: ForwardOptions = {}): ForwardResult {
    return forward(this.config, this.weights, ids, options);
  }

  /** An empty KV cache for `batch` sequences (see `KVCacheOptions` for `reserve`). */
  newCache(batch = 1, options: KVCacheOptions = {}): KVCache {
    return new KVCache(this.config, batch, options);
  }
}

/**
 * Loads a Hugging Face Gemma 3 checkpoint directory (config.json, model.safetensors or a sharded
 * index, optional generation_config.json) onto `backend`.
 */
export function loadGemma3(dir: string, backend: Backend): Gemma3Model {
  const config = loadGemma3Config(dir);
  const st = openSafetensors(dir);
  try {
    const loaded = loadGemma3Weights(st, config, backend);
    const stops = [...config.eosTokenIds, ...loadGenerationStopIds(dir)];
    return new Gemma3Model(config, loaded.weights, loaded.dtype, stops);
  } finally {
    st.close();
  }
}
