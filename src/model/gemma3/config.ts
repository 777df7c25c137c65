/**
 * Gemma 3 `config.json` parsing into a typed, validated `Gemma3Config`, and `estimateMemory`.
 *
 * Follows Hugging Face transformers 4.57.3 `configuration_gemma3.py` (defaults for missing fields,
 * `sliding_window_pattern` when `layer_types` is absent) and transformers 5's `rope_parameters`
 * spelling (one entry per layer type; old `rope_theta` / `rope_local_base_freq` / `rope_scaling`
 * fill what it leaves out, `rope_scaling` updating the full-attention entry, as
 * `Gemma3TextConfig.convert_rope_params_to_dict` does). Text-only configs (`gemma3_text`,
 * Gemma3ForCausalLM) keep the fields at the top level; multimodal ones (`gemma3`,
 * Gemma3ForConditionalGeneration) nest them in `text_config` and the vision tower is ignored.
 *
 * The result is data only: every model size is the same code with different numbers.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { DTYPE_BYTES, type FloatDType } from "../../core/dtype.js";
import { ConfigError } from "../../core/errors.js";

export type LayerType = "sliding_attention" | "full_attention";

/** Rotary embedding parameters of one layer type: inv_freq = 1 / theta^(2i/head_dim) / factor. */
export interface RopeParams {
  readonly theta: number;
  /** Linear position scaling (1 = none). */
  readonly factor: number;
}

export interface Gemma3Config {
  /** The file (or label) the config came from; used in error messages. */
  readonly source: string;
  /** Whether the config is multimodal (`gemma3` with `text_config`): weights then sit under a language-model prefix. */
  readonly multimodal: boolean;
  readonly vocab: number;
  readonly dModel: number;
  readonly dMlp: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Attention logits are scaled by queryPreAttnScalar^-0.5. */
  readonly queryPreAttnScalar: number;
  /** Keys visible to a query on a sliding layer: q - window < k <= q. */
  readonly slidingWindow: number;
  /** One entry per layer. */
  readonly layerTypes: readonly LayerType[];
  readonly rope: Readonly<Record<LayerType, RopeParams>>;
  readonly rmsNormEps: number;
  readonly maxPositionEmbeddings: number;
  /** logits = c * tanh(logits / c) when set (null in every released Gemma 3). */
  readonly finalLogitSoftcapping: number | null;
  readonly tieWordEmbeddings: boolean;
  readonly bosTokenId: number | null;
  readonly padTokenId: number | null;
  /** End-of-sequence ids from the config (instruction-tuned configs list `<end_of_turn>` too). */
  readonly eosTokenIds: readonly number[];
  /** The dtype the config says the weights were saved in (`torch_dtype` / `dtype`), if any. */
  readonly savedDtype: FloatDType | null;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const TEXT_MODEL_TYPE = "gemma3_text";
const MULTIMODAL_MODEL_TYPE = "gemma3";

/** transformers 4.57.3 `Gemma3TextConfig.__init__` defaults. */
const DEFAULTS = {
  vocab_size: 262_208,
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  hidden_activation: "gelu_pytorch_tanh",
  max_position_embeddings: 131_072,
  rms_norm_eps: 1e-6,
  pad_token_id: 0,
  eos_token_id: 1,
  bos_token_id: 2,
  tie_word_embeddings: true,
  rope_theta: 1_000_000,
  query_pre_attn_scalar: 256,
  sliding_window: 4096,
  rope_local_base_freq: 10_000,
  sliding_window_pattern: 6,
} as const;

const DTYPE_NAMES: Readonly<Record<string, FloatDType>> = {
  float32: "f32",
  bfloat16: "bf16",
  float16: "f16",
};

/** Reads fields of one JSON object, naming `prefix + key` in errors. */
class Fields {
  constructor(
    private readonly obj: JsonObject,
    private readonly prefix: string,
    private readonly source: string,
  ) {}

  fail(key: string, message: string): never {
    throw new ConfigError(`${this.prefix}${key}: ${message}`, this.source);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  raw(key: string): Json | undefined {
    return this.obj[key];
  }

  /** The fields of the nested object `obj`, found at `key`. */
  nested(key: string, obj: JsonObject): Fields {
    return new Fields(obj, `${this.prefix}${key}.`, this.source);
  }

  int(key: string, fallback: number, min = 1): number {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      this.fail(key, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  positive(key: string, fallback: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      this.fail(key, `must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  optionalPositive(key: string): number | null {
    return this.has(key) ? this.positive(key, 1) : null;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") this.fail(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  string(key: string, fallback: string): string {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "string") this.fail(key, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A token id, null when explicitly null; `fallback` when absent. */
  tokenId(key: string, fallback: number | null): number | null {
    const v = this.obj[key];
    if (v === undefined) return fallback;
    if (v === null) return null;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      this.fail(key, `must be a token id, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  /** One id or a list of ids; `fallback` when absent, [] when null. */
  tokenIds(key: string, fallback: readonly number[]): number[] {
    const v = this.obj[key];
    if (v === undefined) return [...fallback];
    if (v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const id of list) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
        this.fail(key, `must be a token id or a list of them, got ${JSON.stringify(v)}`);
      }
    }
    return list as number[];
  }
}

function parseDtype(f: Fields, key: string): FloatDType | null {
  const v = f.raw(key);
  if (v === undefined || v === null) return null;
  if (typeof v !== "string" || DTYPE_NAMES[v] === undefined) {
    return f.fail(key, `unsupported dtype ${JSON.stringify(v)} (expected float32, bfloat16 or float16)`);
  }
  return DTYPE_NAMES[v];
}

function parseLayerTypes(f: Fields, layers: number): LayerType[] {
  const v = f.raw("layer_types");
  if (v !== undefined && v !== null) {
    if (!Array.isArray(v)) return f.fail("layer_types", "must be a list");
    if (v.length !== layers) {
      f.fail("layer_types", `has ${v.length} entries but num_hidden_layers is ${layers}`);
    }
    return v.map((t, i) => {
      if (t !== "sliding_attention" && t !== "full_attention") {
        return f.fail(
          `layer_types[${i}]`,
          `must be "sliding_attention" or "full_attention", got ${JSON.stringify(t)}`,
        );
      }
      return t;
    });
  }
  const pattern = f.int("sliding_window_pattern", DEFAULTS.sliding_window_pattern);
  return Array.from({ length: layers }, (_, i) =>
    (i + 1) % pattern === 0 ? "full_attention" : "sliding_attention",
  );
}

/** A rope-parameter dict (`rope_scaling` or a `rope_parameters` entry) merged onto `base`. */
interface RopeEntry {
  type: string;
  theta: number | null;
  factor: number | null;
}

function readRopeEntry(f: Fields, key: string, v: Json | undefined, into: RopeEntry): void {
  if (v === undefined || v === null) return;
  if (!isObject(v)) f.fail(key, `must be an object, got ${JSON.stringify(v)}`);
  const sub = f.nested(key, v);
  const typeKey = v.rope_type !== undefined ? "rope_type" : "type";
  if (sub.has(typeKey)) into.type = sub.string(typeKey, "default");
  if (sub.has("rope_theta")) into.theta = sub.positive("rope_theta", 1);
  if (sub.has("factor")) into.factor = sub.positive("factor", 1);
}

function finishRope(f: Fields, key: string, e: RopeEntry, theta: number): RopeParams {
  if (e.type === "default") return { theta: e.theta ?? theta, factor: 1 };
  if (e.type === "linear") {
    if (e.factor === null) f.fail(key, `linear RoPE scaling needs a "factor"`);
    return { theta: e.theta ?? theta, factor: e.factor };
  }
  return f.fail(
    key,
    `RoPE type ${JSON.stringify(e.type)} is not used by Gemma 3 (expected "default" or "linear")`,
  );
}

function parseRope(f: Fields): Record<LayerType, RopeParams> {
  const full: RopeEntry = { type: "default", theta: null, factor: null };
  const sliding: RopeEntry = { type: "default", theta: null, factor: null };
  const params = f.raw("rope_parameters");
  if (params !== undefined && params !== null) {
    if (!isObject(params)) return f.fail("rope_parameters", "must be an object keyed by layer type");
    for (const k of Object.keys(params)) {
      if (k !== "full_attention" && k !== "sliding_attention") {
        f.fail(
          `rope_parameters.${k}`,
          `unknown layer type (expected "full_attention" and "sliding_attention")`,
        );
      }
    }
    readRopeEntry(f, "rope_parameters.full_attention", params.full_attention, full);
    readRopeEntry(f, "rope_parameters.sliding_attention", params.sliding_attention, sliding);
  }
  readRopeEntry(f, "rope_scaling", f.raw("rope_scaling"), full);
  const fullTheta = f.positive("rope_theta", DEFAULTS.rope_theta);
  const localTheta = f.positive("rope_local_base_freq", DEFAULTS.rope_local_base_freq);
  return {
    full_attention: finishRope(
      f,
      params ? "rope_parameters.full_attention" : "rope_scaling",
      full,
      fullTheta,
    ),
    sliding_attention: finishRope(f, "rope_parameters.sliding_attention", sliding, localTheta),
  };
}

/**
 * Parses a config.json object. `source` names the file in errors.
 * Throws `ConfigError` naming the file and field for anything missing, malformed or inconsistent.
 */
export function parseGemma3Config(json: unknown, source = "config.json"): Gemma3Config {
  const root = json as Json;
  if (!isObject(root)) throw new ConfigError("config must be a JSON object", source);
  const top = new Fields(root, "", source);
  const modelType = root.model_type;
  let text: Fields;
  let multimodal: boolean;
  if (modelType === TEXT_MODEL_TYPE) {
    text = top;
    multimodal = false;
  } else if (modelType === MULTIMODAL_MODEL_TYPE) {
    const tc = root.text_config ?? {};
    if (!isObject(tc)) return top.fail("text_config", "must be an object");
    text = new Fields(tc, "text_config.", source);
    const inner = tc.model_type;
    if (inner !== undefined && inner !== null && inner !== TEXT_MODEL_TYPE) {
      text.fail("model_type", `expected "${TEXT_MODEL_TYPE}", got ${JSON.stringify(inner)}`);
    }
    multimodal = true;
  } else {
    return top.fail(
      "model_type",
      `${JSON.stringify(modelType ?? null)} is not Gemma 3 (expected "${TEXT_MODEL_TYPE}" or "${MULTIMODAL_MODEL_TYPE}")`,
    );
  }

  const activation = text.string("hidden_activation", DEFAULTS.hidden_activation);
  if (activation !== "gelu_pytorch_tanh") {
    text.fail("hidden_activation", `${JSON.stringify(activation)} is not Gemma 3's "gelu_pytorch_tanh"`);
  }
  if (text.bool("attention_bias", false)) text.fail("attention_bias", "Gemma 3 has no attention biases");
  if (text.bool("use_bidirectional_attention", false)) {
    text.fail("use_bidirectional_attention", "bidirectional (embedding) models are not supported");
  }

  const layers = text.int("num_hidden_layers", DEFAULTS.num_hidden_layers);
  const heads = text.int("num_attention_heads", DEFAULTS.num_attention_heads);
  const kvHeads = text.int("num_key_value_heads", DEFAULTS.num_key_value_heads);
  if (heads % kvHeads !== 0) {
    text.fail("num_key_value_heads", `${kvHeads} does not divide num_attention_heads ${heads}`);
  }
  const headDim = text.int("head_dim", DEFAULTS.head_dim);
  if (headDim % 2 !== 0) text.fail("head_dim", `must be even for RoPE, got ${headDim}`);
  const layerTypes = parseLayerTypes(text, layers);
  const slidingWindow = text.int("sliding_window", DEFAULTS.sliding_window);
  const rope = parseRope(text);

  // Multimodal configs keep token ids and tying at the top level (PretrainedConfig kwargs).
  const ids = multimodal && top.raw("eos_token_id") !== undefined ? top : text;
  return {
    source,
    multimodal,
    vocab: text.int("vocab_size", DEFAULTS.vocab_size),
    dModel: text.int("hidden_size", DEFAULTS.hidden_size),
    dMlp: text.int("intermediate_size", DEFAULTS.intermediate_size),
    layers,
    heads,
    kvHeads,
    headDim,
    queryPreAttnScalar: text.positive("query_pre_attn_scalar", DEFAULTS.query_pre_attn_scalar),
    slidingWindow,
    layerTypes,
    rope,
    rmsNormEps: text.positive("rms_norm_eps", DEFAULTS.rms_norm_eps),
    maxPositionEmbeddings: text.int("max_position_embeddings", DEFAULTS.max_position_embeddings),
    finalLogitSoftcapping: text.optionalPositive("final_logit_softcapping"),
    tieWordEmbeddings: (multimodal && top.has("tie_word_embeddings") ? top : text).bool(
      "tie_word_embeddings",
      DEFAULTS.tie_word_embeddings,
    ),
    bosTokenId: text.tokenId("bos_token_id", DEFAULTS.bos_token_id),
    padTokenId: text.tokenId("pad_token_id", DEFAULTS.pad_token_id),
    eosTokenIds: ids.tokenIds("eos_token_id", [DEFAULTS.eos_token_id]),
    savedDtype: parseDtype(top, top.has("dtype") ? "dtype" : "torch_dtype"),
  };
}

function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read: ${(e as Error).message}`, path);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`not valid JSON: ${(e as Error).message}`, path);
  }
}

/** The config.json path for a checkpoint directory or a config file path. */
export function configPath(dirOrFile: string): string {
  let isDir = false;
  try {
    isDir = statSync(dirOrFile).isDirectory();
  } catch (e) {
    throw new ConfigError(`cannot open: ${(e as Error).message}`, dirOrFile);
  }
  return isDir ? join(dirOrFile, "config.json") : dirOrFile;
}

/** Reads and parses `config.json` from a checkpoint directory (or a config file path). */
export function loadGemma3Config(dirOrFile: string): Gemma3Config {
  const path = configPath(dirOrFile);
  return parseGemma3Config(readJsonFile(path), path);
}

/** Stop ids from a directory's `generation_config.json` (its `eos_token_id`), or [] without one. */
export function loadGenerationStopIds(dir: string): number[] {
  const path = join(dir, "generation_config.json");
  try {
    statSync(path);
  } catch {
    return [];
  }
  const json = readJsonFile(path) as Json;
  if (!isObject(json)) throw new ConfigError("must be a JSON object", path);
  return new Fields(json, "", path).tokenIds("eos_token_id", []);
}

/** The attention of one layer: its key window (null = all earlier keys) and its RoPE. */
export interface LayerAttention {
  readonly type: LayerType;
  readonly window: number | null;
  readonly rope: RopeParams;
}

export function layerAttention(config: Gemma3Config, layer: number): LayerAttention {
  const type = config.layerTypes[layer];
  return {
    type,
    window: type === "sliding_attention" ? config.slidingWindow : null,
    rope: config.rope[type],
  };
}

export interface MemoryEstimate {
  /** Parameters of the text model (the tied lm_head counted once). */
  readonly parameters: number;
  /** Bytes to hold them in `dtype` (norm weights included; no activations). */
  readonly bytes: number;
  readonly embeddingParameters: number;
  readonly parametersPerLayer: number;
  /** Bytes of KV cache per token and sequence, in f32, if every layer kept every key. */
  readonly kvBytesPerToken: number;
}

/** Parameter count and bytes of a config's text model, without allocating anything. */
export function estimateMemory(config: Gemma3Config, dtype: FloatDType): MemoryEstimate {
  const { dModel: d, dMlp, heads, kvHeads, headDim } = config;
  const attention = d * heads * headDim * 2 + d * kvHeads * headDim * 2 + headDim * 2;
  const mlp = 3 * d * dMlp;
  const perLayer = attention + mlp + 4 * d;
  const embedding = config.vocab * d;
  const lmHead = config.tieWordEmbeddings ? 0 : embedding;
  const parameters = embedding + lmHead + config.layers * perLayer + d;
  return {
    parameters,
    bytes: parameters * DTYPE_BYTES[dtype],
    embeddingParameters: embedding,
    parametersPerLayer: perLayer,
    kvBytesPerToken: config.layers * 2 * kvHeads * headDim * 4,
  };
}
