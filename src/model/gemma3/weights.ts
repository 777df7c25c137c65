/**
 * Gemma 3 text weights from a Hugging Face checkpoint (one file or sharded, via `openSafetensors`).
 *
 * Tensor names follow transformers' Gemma3ForCausalLM / Gemma3ForConditionalGeneration (see
 * /work/shared/reference/gemma3.md): the text model sits under `model.`, `language_model.model.`
 * (older multimodal saves) or `model.language_model.` (newer ones); which one is detected from the
 * tensors present. Vision tower and projector tensors are never read. Weights keep their stored
 * dtype (bf16 stays bf16; kernels widen it per use); projections are [out, in] as stored.
 * `lmHead` is the embedding table itself when the config ties them.
 */
import type { Backend } from "../../core/backend.js";
import type { FloatDType } from "../../core/dtype.js";
import { ModelError } from "../../core/errors.js";
import { formatShape, type Tensor } from "../../core/tensor.js";
import type { TensorCollection } from "../../io/safetensors.js";
import type { Gemma3Config } from "./config.js";

/** One decoder layer. Projections are [out, in]; norm weights are offsets around 0 (scale 1 + w). */
export interface LayerWeights {
  /** [d_model] */
  readonly inputNorm: Tensor;
  /** [d_model] */
  readonly postAttentionNorm: Tensor;
  /** [d_model] */
  readonly preFeedforwardNorm: Tensor;
  /** [d_model] */
  readonly postFeedforwardNorm: Tensor;
  /** [heads * head_dim, d_model] */
  readonly qProj: Tensor;
  /** [kv_heads * head_dim, d_model] */
  readonly kProj: Tensor;
  /** [kv_heads * head_dim, d_model] */
  readonly vProj: Tensor;
  /** [d_model, heads * head_dim] */
  readonly oProj: Tensor;
  /** [head_dim] */
  readonly qNorm: Tensor;
  /** [head_dim] */
  readonly kNorm: Tensor;
  /** [d_mlp, d_model] */
  readonly gateProj: Tensor;
  /** [d_mlp, d_model] */
  readonly upProj: Tensor;
  /** [d_model, d_mlp] */
  readonly downProj: Tensor;
}

/** All text-model weights: a plain tree of tensors (usable as `grad` parameters). */
export interface Gemma3Weights {
  /** [vocab, d_model] */
  readonly embed: Tensor;
  /** [d_model] */
  readonly finalNorm: Tensor;
  /** [vocab, d_model]; the same tensor as `embed` when tied. */
  readonly lmHead: Tensor;
  readonly layers: readonly LayerWeights[];
}

/** Where the text model's tensors start in a checkpoint: text-only, newer and older multimodal. */
export const TEXT_PREFIXES = ["model.", "model.language_model.", "language_model.model."] as const;

/** Names relative to a layer prefix `layers.L.`, with expected shapes. */
function layerSpec(c: Gemma3Config): Record<keyof LayerWeights, [string, number[]]> {
  const d = c.dModel;
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  return {
    inputNorm: ["input_layernorm.weight", [d]],
    postAttentionNorm: ["post_attention_layernorm.weight", [d]],
    preFeedforwardNorm: ["pre_feedforward_layernorm.weight", [d]],
    postFeedforwardNorm: ["post_feedforward_layernorm.weight", [d]],
    qProj: ["self_attn.q_proj.weight", [q, d]],
    kProj: ["self_attn.k_proj.weight", [kv, d]],
    vProj: ["self_attn.v_proj.weight", [kv, d]],
    oProj: ["self_attn.o_proj.weight", [d, q]],
    qNorm: ["self_attn.q_norm.weight", [c.headDim]],
    kNorm: ["self_attn.k_norm.weight", [c.headDim]],
    gateProj: ["mlp.gate_proj.weight", [c.dMlp, d]],
    upProj: ["mlp.up_proj.weight", [c.dMlp, d]],
    downProj: ["mlp.down_proj.weight", [d, c.dMlp]],
  };
}

/** The text-model prefix of a checkpoint, found by which embedding tensor exists. */
export function detectPrefix(st: TensorCollection): string {
  const found = TEXT_PREFIXES.filter((p) => st.has(`${p}embed_tokens.weight`));
  if (found.length === 1) return found[0];
  if (found.length > 1) {
    throw new ModelError(`several text models in one checkpoint (prefixes ${found.join(", ")})`, st.path);
  }
  throw new ModelError(
    `no Gemma 3 text embedding found (looked for ${TEXT_PREFIXES.map((p) => `${p}embed_tokens.weight`).join(", ")})`,
    st.path,
  );
}

function readChecked(st: TensorCollection, name: string, shape: readonly number[], backend: Backend): Tensor {
  if (!st.has(name)) throw new ModelError(`missing tensor ${JSON.stringify(name)}`, st.path);
  const info = st.info(name);
  const same = info.shape.length === shape.length && info.shape.every((d, i) => d === shape[i]);
  if (!same) {
    throw new ModelError(
      `tensor ${JSON.stringify(name)} has shape ${formatShape(info.shape)}, the config needs ${formatShape(shape)}`,
      info.file,
    );
  }
  const t = st.readTensorSync(name, backend);
  if (t.dtype === "i32") {
    throw new ModelError(`tensor ${JSON.stringify(name)} is ${info.dtype}, not a float type`, info.file);
  }
  return t;
}

export interface LoadedWeights {
  readonly weights: Gemma3Weights;
  /** The prefix the text model was found under. */
  readonly prefix: string;
  /** Storage dtype of the projection weights (the embedding's dtype). */
  readonly dtype: FloatDType;
  /** Bytes of all tensors held. */
  readonly bytes: number;
}

/** Reads and checks every text-model tensor of `st` against `config`. */
export function loadGemma3Weights(
  st: TensorCollection,
  config: Gemma3Config,
  backend: Backend,
): LoadedWeights {
  const prefix = detectPrefix(st);
  let bytes = 0;
  const read = (name: string, shape: readonly number[]): Tensor => {
    const t = readChecked(st, name, shape, backend);
    bytes += t.byteLength;
    return t;
  };
  const embed = read(`${prefix}embed_tokens.weight`, [config.vocab, config.dModel]);
  const spec = layerSpec(config);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.layers; l++) {
    const get = (key: keyof LayerWeights): Tensor =>
      read(`${prefix}layers.${l}.${spec[key][0]}`, spec[key][1]);
    layers.push({
      inputNorm: get("inputNorm"),
      qProj: get("qProj"),
      kProj: get("kProj"),
      vProj: get("vProj"),
      qNorm: get("qNorm"),
      kNorm: get("kNorm"),
      oProj: get("oProj"),
      postAttentionNorm: get("postAttentionNorm"),
      preFeedforwardNorm: get("preFeedforwardNorm"),
      gateProj: get("gateProj"),
      upProj: get("upProj"),
      downProj: get("downProj"),
      postFeedforwardNorm: get("postFeedforwardNorm"),
    });
  }
  const finalNorm = read(`${prefix}norm.weight`, [config.dModel]);
  let lmHead = embed;
  if (!config.tieWordEmbeddings) {
    const candidates = ["lm_head.weight", "language_model.lm_head.weight"];
    const name = candidates.find((n) => st.has(n));
    if (name === undefined) {
      throw new ModelError(
        `tie_word_embeddings is false but there is no ${candidates.map((n) => JSON.stringify(n)).join(" or ")}`,
        st.path,
      );
    }
    lmHead = read(name, [config.vocab, config.dModel]);
  }
  return {
    weights: { embed, finalNorm, lmHead, layers },
    prefix,
    dtype: embed.dtype as FloatDType,
    bytes,
  };
}
