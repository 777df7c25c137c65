/**
 * Hook sites of the Gemma 3 forward pass: typed `Site` values (never strings inside the library),
 * their shapes, display names (`blocks.6.resid_post`, as in the parity fixtures) and Hugging Face
 * module names (`model.layers.6.output`, as Gemma Scope 2 configs write them), and `parseSite`, the
 * one place a name becomes a Site.
 *
 * Follows the hook points of TransformerLens (typed, shape-documented) and the Gemma Scope 2 table in
 * /work/shared/reference/gemma-scope-2-format.md. Note that Gemma Scope 2's folder `attn_out` reads
 * `self_attn.o_proj.input`, which is the site `z` here; the site `attn_out` is the attention output
 * after its post-norm (`post_attention_layernorm.output`).
 */
import { ModelError } from "../../core/errors.js";
import type { Gemma3Config } from "./config.js";

/**
 * Axis names (docs/architecture.md vocabulary); `keys` is the number of key positions a query sees
 * in the tensor: seq, plus the cached keys when decoding with a KV cache.
 */
export type Axis =
  | "batch"
  | "seq"
  | "keys"
  | "d_model"
  | "heads"
  | "kv_heads"
  | "head_dim"
  /** heads and head_dim flattened, head-major (what o_proj reads) */
  | "heads*head_dim"
  | "d_mlp"
  | "vocab";

interface KindSpec {
  readonly axes: readonly Axis[];
  /** Module path after `layers.L.` (or after the model prefix for model-level sites); null when none. */
  readonly hfModule: string | null;
  readonly description: string;
}

/** Per-layer sites, in the order the forward pass reaches them. */
const LAYER_KINDS = {
  resid_pre: {
    axes: ["batch", "seq", "d_model"],
    hfModule: "input",
    description: "input of decoder layer L (residual stream)",
  },
  attn_in: {
    axes: ["batch", "seq", "d_model"],
    hfModule: "input_layernorm.output",
    description: "input_layernorm output (attention input)",
  },
  q: {
    axes: ["batch", "heads", "seq", "head_dim"],
    hfModule: null,
    description: "queries after q_proj, q_norm and RoPE",
  },
  k: {
    axes: ["batch", "kv_heads", "seq", "head_dim"],
    hfModule: null,
    description: "keys after k_proj, k_norm and RoPE (not repeated over query groups; new tokens only)",
  },
  v: {
    axes: ["batch", "kv_heads", "seq", "head_dim"],
    hfModule: null,
    description: "values from v_proj (not repeated; new tokens only)",
  },
  pattern: {
    axes: ["batch", "heads", "seq", "keys"],
    hfModule: null,
    description: "attention probabilities (0 on masked keys)",
  },
  z: {
    axes: ["batch", "seq", "heads*head_dim"],
    hfModule: "self_attn.o_proj.input",
    description: "concatenated head outputs, the input of o_proj (Gemma Scope 2 'attn_out' SAEs)",
  },
  attn_out: {
    axes: ["batch", "seq", "d_model"],
    hfModule: "post_attention_layernorm.output",
    description: "attention output after post_attention_layernorm",
  },
  resid_mid: {
    axes: ["batch", "seq", "d_model"],
    hfModule: null,
    description: "resid_pre + attn_out",
  },
  mlp_in: {
    axes: ["batch", "seq", "d_model"],
    hfModule: "pre_feedforward_layernorm.output",
    description: "pre_feedforward_layernorm output (transcoder / CLT input)",
  },
  mlp_hidden: {
    axes: ["batch", "seq", "d_mlp"],
    hfModule: "mlp.down_proj.input",
    description: "gelu_tanh(gate_proj(mlp_in)) * up_proj(mlp_in), the input of down_proj",
  },
  mlp_out: {
    axes: ["batch", "seq", "d_model"],
    hfModule: "post_feedforward_layernorm.output",
    description: "MLP output after post_feedforward_layernorm (transcoder / CLT target)",
  },
  resid_post: {
    axes: ["batch", "seq", "d_model"],
    hfModule: "output",
    description: "output of decoder layer L (residual stream)",
  },
} as const satisfies Record<string, KindSpec>;

const MODEL_KINDS = {
  embed: {
    axes: ["batch", "seq", "d_model"],
    hfModule: "embed_tokens.output",
    description: "embed_tokens[ids] * sqrt(d_model), the scale rounded to the weight dtype",
  },
  final_norm: {
    axes: ["batch", "seq", "d_model"],
    hfModule: "norm.output",
    description: "model.norm output",
  },
  logits: {
    axes: ["batch", "seq", "vocab"],
    hfModule: "lm_head.output",
    description:
      "final_norm @ embed_tokens^T (tied lm_head); seq is 1 when only the last position is computed",
  },
} as const satisfies Record<string, KindSpec>;

export type LayerSiteKind = keyof typeof LAYER_KINDS;
export type ModelSiteKind = keyof typeof MODEL_KINDS;
export type SiteKind = LayerSiteKind | ModelSiteKind;

/** The per-layer site kinds in forward order. */
export const LAYER_SITE_KINDS = Object.keys(LAYER_KINDS) as LayerSiteKind[];

function spec(kind: SiteKind): KindSpec {
  return kind in LAYER_KINDS ? LAYER_KINDS[kind as LayerSiteKind] : MODEL_KINDS[kind as ModelSiteKind];
}

function isLayerKind(kind: string): kind is LayerSiteKind {
  return Object.hasOwn(LAYER_KINDS, kind);
}

function isModelKind(kind: string): kind is ModelSiteKind {
  return Object.hasOwn(MODEL_KINDS, kind);
}

/** A hook point of the forward pass. Compare sites by `name` (or `key`), not identity. */
export class Site {
  readonly kind: SiteKind;
  /** The decoder layer, or null for embed / final_norm / logits. */
  readonly layer: number | null;
  /** Display name: `embed`, `blocks.6.resid_post`, `final_norm`, `logits`. */
  readonly name: string;
  /** Axis names of the activation, outermost first. */
  readonly axes: readonly Axis[];
  /** What the activation is. */
  readonly description: string;

  private constructor(kind: SiteKind, layer: number | null) {
    this.kind = kind;
    this.layer = layer;
    this.name = layer === null ? kind : `blocks.${layer}.${kind}`;
    this.axes = spec(kind).axes;
    this.description = spec(kind).description;
  }

  /** @internal Use `sites.*` or `parseSite`. */
  static make(kind: SiteKind, layer: number | null): Site {
    if (layer !== null && (!Number.isInteger(layer) || layer < 0)) {
      throw new ModelError(`layer must be a non-negative integer, got ${layer}`, kind);
    }
    return new Site(kind, layer);
  }

  /** Index of the axis that runs over token positions (query positions for `pattern`). */
  get seqAxis(): number {
    return this.axes.indexOf("seq");
  }

  /**
   * The Hugging Face module name Gemma Scope 2 configs use (`model.layers.6.output`), or null for
   * sites that are no module's input or output (q, k, v, pattern, resid_mid).
   */
  get hfName(): string | null {
    const m = spec(this.kind).hfModule;
    if (m === null) return null;
    if (this.kind === "logits") return m;
    return this.layer === null ? `model.${m}` : `model.layers.${this.layer}.${m}`;
  }

  /** The module name inside this config's transformers model (multimodal: under `model.language_model.`). */
  hfModuleName(config: Gemma3Config): string | null {
    const name = this.hfName;
    if (name === null || !config.multimodal || this.kind === "logits") return name;
    return `model.language_model.${name.slice("model.".length)}`;
  }

  /** The activation's shape for `batch` sequences of `seq` new tokens seeing `keys` key positions. */
  shape(config: Gemma3Config, batch: number, seq: number, keys = seq): number[] {
    const size: Record<Axis, number> = {
      batch,
      seq,
      keys,
      d_model: config.dModel,
      heads: config.heads,
      kv_heads: config.kvHeads,
      head_dim: config.headDim,
      "heads*head_dim": config.heads * config.headDim,
      d_mlp: config.dMlp,
      vocab: config.vocab,
    };
    return this.axes.map((a) => size[a]);
  }

  /** Throws unless the site exists in a model with this config. */
  check(config: Gemma3Config): this {
    if (this.layer !== null && this.layer >= config.layers) {
      throw new ModelError(
        `layer ${this.layer} is out of range (the model has ${config.layers} layers, 0 to ${config.layers - 1})`,
        this.name,
      );
    }
    return this;
  }

  toString(): string {
    return this.name;
  }
}

/** Site factories: `sites.residPost(6)`, `sites.embed`. */
export const sites = {
  embed: Site.make("embed", null),
  finalNorm: Site.make("final_norm", null),
  logits: Site.make("logits", null),
  residPre: (layer: number): Site => Site.make("resid_pre", layer),
  attnIn: (layer: number): Site => Site.make("attn_in", layer),
  q: (layer: number): Site => Site.make("q", layer),
  k: (layer: number): Site => Site.make("k", layer),
  v: (layer: number): Site => Site.make("v", layer),
  pattern: (layer: number): Site => Site.make("pattern", layer),
  z: (layer: number): Site => Site.make("z", layer),
  attnOut: (layer: number): Site => Site.make("attn_out", layer),
  residMid: (layer: number): Site => Site.make("resid_mid", layer),
  mlpIn: (layer: number): Site => Site.make("mlp_in", layer),
  mlpHidden: (layer: number): Site => Site.make("mlp_hidden", layer),
  mlpOut: (layer: number): Site => Site.make("mlp_out", layer),
  residPost: (layer: number): Site => Site.make("resid_post", layer),
  /** Any per-layer kind by its display name. */
  layer: (kind: LayerSiteKind, layer: number): Site => Site.make(kind, layer),
} as const;

/** Every site of a model, in forward order. */
export function listSites(config: Gemma3Config): Site[] {
  const out = [sites.embed];
  for (let l = 0; l < config.layers; l++) {
    for (const kind of LAYER_SITE_KINDS) out.push(Site.make(kind, l));
  }
  out.push(sites.finalNorm, sites.logits);
  return out;
}

/** Model prefixes of Hugging Face module names, longest first (text-only, newer and older multimodal). */
const HF_PREFIXES = [["model", "language_model"], ["language_model", "model"], ["model"]] as const;

function parseLayerIndex(s: string | undefined): number | null {
  if (s === undefined || s.length === 0 || s.length > 6) return null;
  for (const c of s) if (c < "0" || c > "9") return null;
  return Number(s);
}

function startsWith(parts: readonly string[], prefix: readonly string[]): boolean {
  return prefix.every((p, i) => parts[i] === p);
}

/** Display names: `embed`, `final_norm`, `logits`, `blocks.L.<kind>`. */
function parseDisplay(parts: readonly string[]): Site | null {
  if (parts.length === 1 && isModelKind(parts[0])) return Site.make(parts[0], null);
  if (parts.length === 3 && parts[0] === "blocks" && isLayerKind(parts[2])) {
    const layer = parseLayerIndex(parts[1]);
    return layer === null ? null : Site.make(parts[2], layer);
  }
  return null;
}

/** Hugging Face module names, with any model prefix: `model.layers.L.output`, `lm_head.output`, ... */
function parseHf(parts: readonly string[]): Site | null {
  const logitsPath = MODEL_KINDS.logits.hfModule.split(".");
  for (const head of [[], ["language_model"]]) {
    if (parts.length === head.length + logitsPath.length && startsWith(parts, [...head, ...logitsPath])) {
      return sites.logits;
    }
  }
  for (const prefix of HF_PREFIXES) {
    if (!startsWith(parts, prefix)) continue;
    const rest = parts.slice(prefix.length).join(".");
    for (const kind of ["embed", "final_norm"] as const) {
      if (rest === MODEL_KINDS[kind].hfModule) return Site.make(kind, null);
    }
    const tail = parts.slice(prefix.length);
    if (tail[0] !== "layers") continue;
    const layer = parseLayerIndex(tail[1]);
    if (layer === null) continue;
    const module = tail.slice(2).join(".");
    for (const kind of LAYER_SITE_KINDS) {
      if (LAYER_KINDS[kind].hfModule === module) return Site.make(kind, layer);
    }
  }
  return null;
}

/**
 * The Site a display name (`blocks.6.resid_post`) or Hugging Face module name
 * (`model.layers.6.output`, `model.language_model.layers.6.output`, ...) refers to, checked against
 * `config`. Throws `ModelError` for an unknown name or a layer out of range.
 */
export function parseSite(name: string, config: Gemma3Config): Site {
  const parts = name.trim().split(".");
  const site = parseDisplay(parts) ?? parseHf(parts);
  if (site === null) {
    throw new ModelError(
      `unknown site (expected embed, blocks.L.<${LAYER_SITE_KINDS.join("|")}>, final_norm, logits, ` +
        `or a Hugging Face module name such as model.layers.L.output)`,
      JSON.stringify(name),
    );
  }
  return site.check(config);
}
