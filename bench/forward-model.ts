/**
 * Random-weight Gemma 3 checkpoints for the forward benchmark (`bench/forward.ts`): a real
 * config.json (gemma-3-270m's below, or gemma-3-1b's committed test fixture) with seeded weights,
 * written once as a Hugging Face directory (config.json + model.safetensors) so that glassbox and
 * PyTorch/transformers load the very same weights.
 *
 * Weights are uniform with the usual scales (projections 1/sqrt(fan_in), norm offsets 0.1,
 * embeddings 1/sqrt(d_model)); a fast integer generator keeps writing 268M parameters to seconds.
 */
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { referenceBackend } from "../src/backends/index.js";
import { SafetensorsWriter } from "../src/io/safetensors-write.js";

/** google/gemma-3-270m config.json (transformers 4.55 save). */
export const GEMMA3_270M_CONFIG = {
  _sliding_window_pattern: 6,
  architectures: ["Gemma3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  attn_logit_softcapping: null,
  bos_token_id: 2,
  eos_token_id: 1,
  final_logit_softcapping: null,
  head_dim: 256,
  hidden_activation: "gelu_pytorch_tanh",
  hidden_size: 640,
  initializer_range: 0.02,
  intermediate_size: 2048,
  layer_types: Array.from({ length: 18 }, (_, i) =>
    (i + 1) % 6 === 0 ? "full_attention" : "sliding_attention",
  ),
  max_position_embeddings: 32768,
  model_type: "gemma3_text",
  num_attention_heads: 4,
  num_hidden_layers: 18,
  num_key_value_heads: 1,
  pad_token_id: 0,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_local_base_freq: 10000.0,
  rope_scaling: null,
  rope_theta: 1000000.0,
  sliding_window: 512,
  transformers_version: "4.57.3",
  use_bidirectional_attention: false,
  use_cache: true,
  vocab_size: 262144,
} as const;

type Dtype = "f32" | "bf16";

/** The config.json fields the tensor list needs. */
export interface CheckpointShape {
  readonly hidden_size: number;
  readonly num_attention_heads: number;
  readonly num_key_value_heads: number;
  readonly head_dim: number;
  readonly intermediate_size: number;
  readonly num_hidden_layers: number;
  readonly vocab_size: number;
}

function tensorList(c: CheckpointShape): [string, number[], number][] {
  const d = c.hidden_size;
  const q = c.num_attention_heads * c.head_dim;
  const kv = c.num_key_value_heads * c.head_dim;
  const m = c.intermediate_size;
  const out: [string, number[], number][] = [["model.embed_tokens.weight", [c.vocab_size, d], d ** -0.5]];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      [`${p}input_layernorm.weight`, [d], 0.1],
      [`${p}post_attention_layernorm.weight`, [d], 0.1],
      [`${p}pre_feedforward_layernorm.weight`, [d], 0.1],
      [`${p}post_feedforward_layernorm.weight`, [d], 0.1],
      [`${p}self_attn.q_proj.weight`, [q, d], d ** -0.5],
      [`${p}self_attn.k_proj.weight`, [kv, d], d ** -0.5],
      [`${p}self_attn.v_proj.weight`, [kv, d], d ** -0.5],
      [`${p}self_attn.o_proj.weight`, [d, q], q ** -0.5],
      [`${p}self_attn.q_norm.weight`, [c.head_dim], 0.1],
      [`${p}self_attn.k_norm.weight`, [c.head_dim], 0.1],
      [`${p}mlp.gate_proj.weight`, [m, d], d ** -0.5],
      [`${p}mlp.up_proj.weight`, [m, d], d ** -0.5],
      [`${p}mlp.down_proj.weight`, [d, m], m ** -0.5],
    );
  }
  out.push(["model.norm.weight", [d], 0.1]);
  return out;
}

/** Uniform values with standard deviation `std` from a seeded xorshift32. */
function fill(n: number, std: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  const a = std * Math.sqrt(3) * 2 ** -31;
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s | 0) * a;
  }
  return out;
}

/** Writes (once) and returns the directory of a random gemma-3-270m checkpoint in `dtype`. */
export function randomGemma3_270m(root: string, dtype: Dtype): Promise<string> {
  return randomGemma3(root, "gemma-3-270m", GEMMA3_270M_CONFIG, dtype);
}

/** Writes (once) and returns `root/NAME-random-DTYPE`: `config` with seeded weights in `dtype`. */
export async function randomGemma3(
  root: string,
  name: string,
  config: CheckpointShape,
  dtype: Dtype,
): Promise<string> {
  const dir = join(root, `${name}-random-${dtype}`);
  if (existsSync(join(dir, "model.safetensors"))) return dir;
  const tmp = `${dir}.partial`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const saved = { ...config, torch_dtype: dtype === "f32" ? "float32" : "bfloat16" };
  writeFileSync(join(tmp, "config.json"), JSON.stringify(saved, null, 2));
  const list = tensorList(config);
  const stored = dtype === "f32" ? "F32" : "BF16";
  const specs = Object.fromEntries(list.map(([name, shape]) => [name, { dtype: stored, shape }] as const));
  const w = await SafetensorsWriter.create(join(tmp, "model.safetensors"), specs, { format: "pt" });
  let seed = 1;
  for (const [name, shape, std] of list) {
    const values = fill(
      shape.reduce((x, y) => x * y, 1),
      std,
      seed++,
    );
    if (dtype === "f32") {
      await w.write(name, new Uint8Array(values.buffer));
    } else {
      const half = new Uint16Array(values.length);
      referenceBackend.floatToHalf(values, "bf16", half);
      await w.write(name, new Uint8Array(half.buffer));
    }
  }
  await w.finish();
  renameSync(tmp, dir);
  return dir;
}
