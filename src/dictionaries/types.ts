/**
 * The one interface every sparse dictionary implements (SAEs, transcoders, skip-transcoders,
 * cross-layer transcoders), its declared properties (`DictionarySpec`) and the activation functions'
 * interface. Shapes use the project axis names; `width` is the number of features (per layer for a
 * cross-layer transcoder), `rows` the flattened leading dims of an input.
 */
import type { Backend } from "../core/backend.js";
import type { FloatDType } from "../core/dtype.js";
import type { CsrRows } from "../core/ops/sparse.js";
import type { Tensor } from "../core/tensor.js";
import type { JsonValue } from "../io/strict-json.js";
import type { FeatureActs } from "./feature-acts.js";

/** What the activation function is, with its scalar settings (per-feature thresholds are parameters). */
export type ActivationInfo =
  /** f = relu(pre) */
  | { readonly kind: "relu" }
  /** f = pre * H(pre - threshold_i), and f > 0 (Rajamanoharan et al. 2024) */
  | { readonly kind: "jumprelu" }
  /** the k largest pre-activations of each token, after relu */
  | { readonly kind: "topk"; readonly k: number }
  /**
   * Bussmann et al. 2024: top k x batch over a batch while training; at inference one global
   * threshold, f = pre * H(pre - threshold), f > 0.
   */
  | { readonly kind: "batchtopk"; readonly k: number; readonly threshold: number };

/**
 * An activation function with its parameters (a JumpReLU holds its thresholds). Each kind declares
 * how it selects features, how decoder-norm folding changes it and how it is stored.
 */
export interface Activation {
  readonly info: ActivationInfo;
  /** The number of features its parameters cover (a JumpReLU's thresholds), or null when any width fits. */
  readonly width: number | null;
  /** Whether a feature's selection depends on its own pre-activation alone (not TopK's ranking). */
  readonly columnwise: boolean;
  /** The activation of features [start, start + count) (columnwise activations only). */
  columns(start: number, count: number): Activation;
  /**
   * The active features of pre + bias (pre [rows, width] f32, bias [width] or null), ascending
   * index within each row.
   */
  select(pre: Tensor<"f32">, bias: Tensor<"f32"> | null): CsrRows;
  /**
   * The activation after every feature's pre-activation is multiplied by scale[i] > 0 ([width]; decoder-norm
   * folding), selecting the same features with values scaled by scale[i]; throws `DictionaryError`
   * when no such activation exists (TopK: the per-token ranking changes).
   */
  fold(scale: Tensor<"f32">): Activation;
  /** Its Gemma Scope 2 form: the config `architecture`, the `threshold` tensor, extra config keys. */
  gemmaScope2(
    backend: Backend,
    width: number,
  ): {
    readonly architecture: string;
    readonly threshold: Tensor<"f32"> | null;
    readonly config: Readonly<Record<string, JsonValue>>;
  };
}

/** Declared properties of a dictionary. */
export interface DictionarySpec {
  /** The architecture module: "sae", "transcoder", "skip_transcoder" or "clt" (see registry.ts). */
  readonly architecture: string;
  readonly activation: ActivationInfo;
  readonly dIn: number;
  readonly dOut: number;
  /** Features (per source layer for a cross-layer transcoder). */
  readonly width: number;
  /** Whether the reconstruction adds x @ A (affine skip connection, A [d_in, d_out] as stored). */
  readonly skip: boolean;
  /**
   * The Hugging Face module names it reads and writes, as published (`model.layers.5.output`);
   * `{all}` stands for every layer in a cross-layer transcoder. Null when the format does not say
   * (Gemma Scope 1 files carry no hook point). `sites.ts` turns them into model sites.
   */
  readonly hookIn: string | null;
  readonly hookOut: string | null;
  /** Layers spanned by a cross-layer transcoder (it reads and writes at layers 0 .. layers-1); null otherwise. */
  readonly layers: number | null;
  /** True when the reconstruction target is the input itself (SAE), false when it is another site (transcoders). */
  readonly reconstructsInput: boolean;
  /** The L0 the release was trained for (config `l0`), when given. */
  readonly l0: number | null;
  readonly modelName: string | null;
  /** Storage dtype of the encoder and decoder matrices. */
  readonly dtype: FloatDType;
  /** The folder or file it was loaded from (for messages), or "memory". */
  readonly source: string;
}

export interface EncodeOptions {
  /** Return dense activations [..., width] instead of sparse rows (default false). */
  readonly dense?: boolean;
  /**
   * The most dense pre-activations (floats) held at once, default 2^24 (64 MB): wide dictionaries
   * are encoded in blocks of features (or of tokens, for activations that need a whole row), which
   * bounds peak memory whatever the width.
   */
  readonly maxPreFloats?: number;
}

/** One Gemma Scope 2 parameter file: `params.safetensors` (layer null) or `params_layer_{layer}.safetensors`. */
export interface ParameterFile {
  readonly layer: number | null;
  /** Tensors by their Gemma Scope 2 names (w_enc, b_enc, w_dec, b_dec, threshold, affine_skip_connection). */
  tensors(): Readonly<Record<string, Tensor>>;
}

export interface GemmaScope2Form {
  readonly architecture: string;
  readonly extraConfig: Readonly<Record<string, JsonValue>>;
  readonly files: readonly ParameterFile[];
}

/**
 * A sparse dictionary. Inputs are [..., d_in] for single-site dictionaries and [layers, ..., d_in]
 * for a cross-layer transcoder (the MLP input of every layer); outputs follow the same leading dims
 * with d_out.
 */
export interface Dictionary {
  readonly spec: DictionarySpec;
  /** Feature activations of x (sparse unless `options.dense`). */
  encode(x: Tensor, options?: EncodeOptions): FeatureActs;
  /**
   * acts @ W_dec + b_dec (+ input @ A when the dictionary has a skip connection, which then needs
   * `input`, the tensor that was encoded).
   */
  decode(acts: FeatureActs, input?: Tensor): Tensor<"f32">;
  /** decode(encode(x), x). */
  reconstruct(x: Tensor): Tensor<"f32">;
  /**
   * target - reconstruct(x): the part of the target the dictionary misses (target defaults to x
   * for a dictionary that reconstructs its input; transcoders need the true output).
   */
  error(x: Tensor, target?: Tensor): Tensor<"f32">;
  /** An equivalent dictionary with unit-norm decoder rows (see fold.ts). */
  foldDecoderNorms(): Dictionary;
  /** What `saveGemmaScope2` writes: the config `architecture` and extra keys, and the parameter files. */
  gemmaScope2Form(): GemmaScope2Form;
}

/**
 * A dictionary spanning several layers (`spec.layers` set), read and written layer by layer: what
 * splicing into a forward pass needs of a cross-layer transcoder.
 */
export interface LayerwiseDictionary extends Dictionary {
  /** Feature activations of source layer i from its input x_i [..., d_in]. */
  encodeLayer(i: number, x: Tensor, options?: EncodeOptions): FeatureActs;
  /** Output at target layer l [rows, d_out] from the acts of source layers 0..l (and x_l with skip connections). */
  decodeLayer(l: number, sources: readonly FeatureActs[], input?: Tensor): Tensor<"f32">;
}

export function isLayerwise(d: Dictionary): d is LayerwiseDictionary {
  return d.spec.layers !== null && "encodeLayer" in d && "decodeLayer" in d;
}
