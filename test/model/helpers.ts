/**
 * Shared helpers for the model tests: fixture discovery, tiny random Gemma 3 models built in memory
 * (or written as a checkpoint directory), and error measures over valid positions.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import type { Backend } from "../../src/core/backend.js";
import type { FloatDType } from "../../src/core/dtype.js";
import { randomNormal } from "../../src/core/random.js";
import type { Tensor } from "../../src/core/tensor.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { writeSafetensorsSync } from "../../src/io/safetensors-write.js";
import { tensorToWrite } from "../../src/io/to-tensor.js";
import { type Gemma3Config, parseGemma3Config } from "../../src/model/gemma3/config.js";
import { Gemma3Model } from "../../src/model/gemma3/model.js";
import type { Gemma3Weights, LayerWeights } from "../../src/model/gemma3/weights.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const compiled = import.meta.url.endsWith(".js");
export const repoRoot = compiled ? join(here, "..", "..", "..") : join(here, "..", "..");

/** A fresh temp directory, removed when the test file finishes. */
export function tempDir(prefix = "glassbox-model-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface ModelFixture {
  /** Short name for test titles. */
  readonly name: string;
  /** fixture.safetensors (inputs, activations, greedy ids). */
  readonly fixture: string;
  /** The checkpoint directory the fixture was made from (absolute). */
  readonly modelDir: string;
  /** transformers' compute dtype for the fixture ("float32" or "bfloat16"). */
  readonly computeDtype: string;
  /** Sharded copies of the checkpoint that must give identical results. */
  readonly shardedDirs: readonly string[];
}

interface FixtureDescription {
  readonly model_dir: string;
  readonly compute_dtype: string;
}

function readDescription(path: string): FixtureDescription {
  const f = SafetensorsFile.open(path);
  try {
    return JSON.parse(f.metadata.description ?? "{}") as FixtureDescription;
  } finally {
    f.close();
  }
}

/**
 * Every Gemma 3 model fixture: `test/fixtures/gemma3/<name>/fixture.safetensors` and any
 * `test/fixtures/gemma3/<name>.safetensors` (trained models, whose `model_dir` is in the metadata).
 */
export function modelFixtures(): ModelFixture[] {
  const root = join(repoRoot, "test", "fixtures", "gemma3");
  const out: ModelFixture[] = [];
  for (const entry of readdirSync(root, { withFileTypes: true }).sort((a, b) =>
    a.name.localeCompare(b.name),
  )) {
    let fixture: string;
    if (entry.isDirectory() && existsSync(join(root, entry.name, "fixture.safetensors"))) {
      fixture = join(root, entry.name, "fixture.safetensors");
    } else if (entry.isFile() && entry.name.endsWith(".safetensors")) {
      fixture = join(root, entry.name);
    } else {
      continue;
    }
    const d = readDescription(fixture);
    const modelDir = join(repoRoot, d.model_dir);
    const sharded = join(modelDir, "sharded");
    out.push({
      name: entry.name.replace(/\.safetensors$/, ""),
      fixture,
      modelDir,
      computeDtype: d.compute_dtype,
      shardedDirs: existsSync(sharded) ? [sharded] : [],
    });
  }
  return out;
}

/** The config.json of `tinyConfig` (before parsing), with `overrides`. */
export function tinyConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: "gemma3_text",
    vocab_size: 40,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    query_pre_attn_scalar: 6,
    sliding_window: 4,
    layer_types: ["sliding_attention", "full_attention", "sliding_attention"],
    rope_theta: 10000,
    rope_local_base_freq: 100,
    rope_scaling: { rope_type: "linear", factor: 2 },
    max_position_embeddings: 64,
    ...overrides,
  };
}

/** A tiny text config (every-6th-layer rule off: layer types given), through the real parser. */
export function tinyConfig(overrides: Record<string, unknown> = {}): Gemma3Config {
  return parseGemma3Config(tinyConfigJson(overrides), "tiny-config");
}

/** Seeded random weights for `config` (projections ~ N(0, 1/in), norm offsets ~ N(0, 0.2)). */
export function randomWeights(
  config: Gemma3Config,
  backend: Backend,
  seed = 1,
  dtype: FloatDType = "f32",
): Gemma3Weights {
  let s = seed * 1000;
  const rand = (shape: number[], std: number): Tensor => randomNormal(backend, shape, s++, { std, dtype });
  const d = config.dModel;
  const q = config.heads * config.headDim;
  const kv = config.kvHeads * config.headDim;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.layers; l++) {
    layers.push({
      inputNorm: rand([d], 0.2),
      postAttentionNorm: rand([d], 0.2),
      preFeedforwardNorm: rand([d], 0.2),
      postFeedforwardNorm: rand([d], 0.2),
      qProj: rand([q, d], d ** -0.5),
      kProj: rand([kv, d], d ** -0.5),
      vProj: rand([kv, d], d ** -0.5),
      oProj: rand([d, q], q ** -0.5),
      qNorm: rand([config.headDim], 0.2),
      kNorm: rand([config.headDim], 0.2),
      gateProj: rand([config.dMlp, d], d ** -0.5),
      upProj: rand([config.dMlp, d], d ** -0.5),
      downProj: rand([d, config.dMlp], config.dMlp ** -0.5),
    });
  }
  const embed = rand([config.vocab, d], 0.5);
  return { embed, finalNorm: rand([d], 0.2), lmHead: embed, layers };
}

export function tinyModel(backend: Backend, overrides: Record<string, unknown> = {}, seed = 1): Gemma3Model {
  const config = tinyConfig(overrides);
  return new Gemma3Model(config, randomWeights(config, backend, seed), "f32", config.eosTokenIds);
}

const LAYER_NAMES: Readonly<Record<keyof LayerWeights, string>> = {
  inputNorm: "input_layernorm.weight",
  postAttentionNorm: "post_attention_layernorm.weight",
  preFeedforwardNorm: "pre_feedforward_layernorm.weight",
  postFeedforwardNorm: "post_feedforward_layernorm.weight",
  qProj: "self_attn.q_proj.weight",
  kProj: "self_attn.k_proj.weight",
  vProj: "self_attn.v_proj.weight",
  oProj: "self_attn.o_proj.weight",
  qNorm: "self_attn.q_norm.weight",
  kNorm: "self_attn.k_norm.weight",
  gateProj: "mlp.gate_proj.weight",
  upProj: "mlp.up_proj.weight",
  downProj: "mlp.down_proj.weight",
};

/** Hugging Face tensor names -> tensors for `weights` under `prefix`. */
export function checkpointTensors(weights: Gemma3Weights, prefix = "model."): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  out.set(`${prefix}embed_tokens.weight`, weights.embed);
  out.set(`${prefix}norm.weight`, weights.finalNorm);
  weights.layers.forEach((lw, l) => {
    for (const [key, name] of Object.entries(LAYER_NAMES)) {
      out.set(`${prefix}layers.${l}.${name}`, lw[key as keyof LayerWeights]);
    }
  });
  return out;
}

/** Writes `config.json` and `model.safetensors` into a new directory under `parent`. */
export function writeCheckpoint(
  parent: string,
  name: string,
  configJson: Record<string, unknown>,
  tensors: ReadonlyMap<string, Tensor>,
): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(configJson));
  const toWrite = Object.fromEntries([...tensors].map(([n, t]) => [n, tensorToWrite(t)]));
  writeSafetensorsSync(join(dir, "model.safetensors"), toWrite);
  return dir;
}

export interface ErrorStats {
  readonly maxAbs: number;
  readonly meanAbs: number;
  /** max |reference| over the compared entries. */
  readonly scale: number;
  readonly count: number;
}

/**
 * Errors of `actual` against `expected` (same shape), over entries whose batch index (axis 0) and
 * position along `seqAxis` are valid in `mask` [batch, seq].
 */
export function errorsAtValid(
  actual: Tensor,
  expected: Tensor,
  seqAxis: number,
  mask: Int32Array,
  seq: number,
): ErrorStats {
  assert.deepEqual([...actual.shape], [...expected.shape], "shape");
  const a = actual.toFloat32Array();
  const e = expected.toFloat32Array();
  const shape = expected.shape;
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((x, y) => x * y, 1));
  let maxAbs = 0;
  let sum = 0;
  let scale = 0;
  let count = 0;
  for (let i = 0; i < e.length; i++) {
    const row = Math.floor(i / strides[0]) % shape[0];
    const pos = Math.floor(i / strides[seqAxis]) % shape[seqAxis];
    if (mask[row * seq + pos] !== 1) continue;
    const err = Math.abs(a[i] - e[i]);
    if (!(err <= maxAbs)) maxAbs = Number.isNaN(err) ? Number.POSITIVE_INFINITY : err;
    sum += err;
    scale = Math.max(scale, Math.abs(e[i]));
    count++;
  }
  return { maxAbs, meanAbs: sum / count, scale, count };
}

/** max |a - b| over all entries. */
export function maxAbsDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape], "shape");
  const x = a.toFloat32Array();
  const y = b.toFloat32Array();
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    const d = Math.abs(x[i] - y[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return m;
}
