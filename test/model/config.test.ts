/**
 * Config parsing: every fixture config against the values transformers resolved when it wrote the
 * fixture (its description's `text_config`), old and new spellings, transformers' defaults for
 * sparse configs, errors naming file and field, and estimateMemory against real checkpoints.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { referenceBackend } from "../../src/backends/index.js";
import { ConfigError } from "../../src/core/errors.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { openSafetensors } from "../../src/io/safetensors-sharded.js";
import { estimateMemory, loadGemma3Config, parseGemma3Config } from "../../src/model/gemma3/config.js";
import { loadGemma3Weights } from "../../src/model/gemma3/weights.js";
import { modelFixtures, randomWeights, tempDir, tinyConfig } from "./helpers.js";

interface ResolvedTextConfig {
  head_dim: number;
  hidden_size: number;
  intermediate_size: number;
  layer_types: string[];
  num_attention_heads: number;
  num_hidden_layers: number;
  num_key_value_heads: number;
  query_pre_attn_scalar: number;
  rms_norm_eps: number;
  rope_local_base_freq: number;
  rope_scaling: { factor: number; rope_type: string } | null;
  rope_theta: number;
  sliding_window: number;
  vocab_size: number;
}

describe("fixture configs match what transformers resolved", () => {
  for (const fx of modelFixtures()) {
    test(fx.name, () => {
      const f = SafetensorsFile.open(fx.fixture);
      const want = JSON.parse(f.metadata.description).text_config as ResolvedTextConfig;
      f.close();
      const c = loadGemma3Config(fx.modelDir);
      assert.equal(c.dModel, want.hidden_size);
      assert.equal(c.dMlp, want.intermediate_size);
      assert.equal(c.layers, want.num_hidden_layers);
      assert.equal(c.heads, want.num_attention_heads);
      assert.equal(c.kvHeads, want.num_key_value_heads);
      assert.equal(c.headDim, want.head_dim);
      assert.equal(c.queryPreAttnScalar, want.query_pre_attn_scalar);
      assert.equal(c.vocab, want.vocab_size);
      assert.equal(c.slidingWindow, want.sliding_window);
      assert.equal(c.rmsNormEps, want.rms_norm_eps);
      assert.deepEqual(c.layerTypes, want.layer_types);
      assert.deepEqual(c.rope.full_attention, {
        theta: want.rope_theta,
        factor: want.rope_scaling?.rope_type === "linear" ? want.rope_scaling.factor : 1,
      });
      assert.deepEqual(c.rope.sliding_attention, { theta: want.rope_local_base_freq, factor: 1 });
    });
  }
});

const OLD = {
  model_type: "gemma3_text",
  num_hidden_layers: 4,
  rope_theta: 500000,
  rope_local_base_freq: 20000,
  rope_scaling: { rope_type: "linear", factor: 8 },
  sliding_window_pattern: 2,
};

test("old and new RoPE / layer-type spellings give the same config", () => {
  const old = parseGemma3Config(OLD);
  const fresh = parseGemma3Config({
    model_type: "gemma3_text",
    num_hidden_layers: 4,
    layer_types: ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
    rope_parameters: {
      full_attention: { rope_type: "linear", factor: 8, rope_theta: 500000 },
      sliding_attention: { rope_type: "default", rope_theta: 20000 },
    },
  });
  assert.deepEqual({ ...fresh, source: "" }, { ...old, source: "" });
  // `type` is the older key for `rope_type`; rope_scaling updates the full-attention entry.
  const legacyType = parseGemma3Config({ ...OLD, rope_scaling: { type: "linear", factor: 8 } });
  assert.deepEqual(legacyType.rope, old.rope);
  const merged = parseGemma3Config({
    model_type: "gemma3_text",
    rope_parameters: { full_attention: { rope_type: "default", rope_theta: 7 } },
    rope_scaling: { rope_type: "linear", factor: 3 },
  });
  assert.deepEqual(merged.rope.full_attention, { theta: 7, factor: 3 });
});

test("a sparse multimodal config gets transformers' Gemma3TextConfig defaults", () => {
  // The shape of gemma-3-4b's config.json: most text fields left to their defaults.
  const c = parseGemma3Config({
    architectures: ["Gemma3ForConditionalGeneration"],
    model_type: "gemma3",
    eos_token_id: [1, 106],
    text_config: {
      hidden_size: 2560,
      intermediate_size: 10240,
      model_type: "gemma3_text",
      num_hidden_layers: 34,
      rope_scaling: { factor: 8.0, rope_type: "linear" },
      sliding_window: 1024,
    },
    torch_dtype: "bfloat16",
    vision_config: { hidden_size: 1152 },
  });
  assert.equal(c.multimodal, true);
  assert.deepEqual(
    [c.heads, c.kvHeads, c.headDim, c.queryPreAttnScalar, c.vocab, c.maxPositionEmbeddings],
    [8, 4, 256, 256, 262208, 131072],
  );
  assert.deepEqual(c.rope, {
    full_attention: { theta: 1e6, factor: 8 },
    sliding_attention: { theta: 1e4, factor: 1 },
  });
  assert.deepEqual(
    c.layerTypes.flatMap((t, i) => (t === "full_attention" ? [i] : [])),
    [5, 11, 17, 23, 29],
  );
  assert.deepEqual(c.eosTokenIds, [1, 106]);
  assert.equal(c.savedDtype, "bf16");
  assert.equal(c.tieWordEmbeddings, true);
  assert.equal(c.finalLogitSoftcapping, null);
});

describe("bad configs throw ConfigError naming the file and field", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["non-Gemma model_type", { model_type: "llama" }, /model_type.*not Gemma 3/],
    ["no model_type", { hidden_size: 8 }, /model_type/],
    [
      "kv heads not dividing heads",
      { model_type: "gemma3_text", num_attention_heads: 4, num_key_value_heads: 3 },
      /num_key_value_heads: 3 does not divide/,
    ],
    [
      "layer_types length",
      { model_type: "gemma3_text", num_hidden_layers: 3, layer_types: ["full_attention"] },
      /layer_types: has 1 entries but num_hidden_layers is 3/,
    ],
    [
      "unknown layer type",
      { model_type: "gemma3_text", num_hidden_layers: 1, layer_types: ["chunked"] },
      /layer_types\[0\]/,
    ],
    [
      "unsupported RoPE type",
      { model_type: "gemma3_text", rope_scaling: { rope_type: "yarn", factor: 2 } },
      /rope_scaling: RoPE type "yarn"/,
    ],
    [
      "linear RoPE without factor",
      { model_type: "gemma3_text", rope_scaling: { rope_type: "linear" } },
      /needs a "factor"/,
    ],
    [
      "non-integer size",
      { model_type: "gemma3_text", hidden_size: "640" },
      /hidden_size: must be an integer/,
    ],
    ["odd head_dim", { model_type: "gemma3_text", head_dim: 7 }, /head_dim: must be even/],
    [
      "wrong text_config model_type",
      { model_type: "gemma3", text_config: { model_type: "gemma2" } },
      /text_config\.model_type/,
    ],
    [
      "nested field error names its path",
      { model_type: "gemma3", text_config: { num_hidden_layers: 0 } },
      /text_config\.num_hidden_layers/,
    ],
    ["other activation", { model_type: "gemma3_text", hidden_activation: "silu" }, /hidden_activation/],
    [
      "bidirectional",
      { model_type: "gemma3_text", use_bidirectional_attention: true },
      /use_bidirectional_attention/,
    ],
  ];
  for (const [what, json, pattern] of cases) {
    test(what, () => {
      assert.throws(
        () => parseGemma3Config(json, "/some/config.json"),
        (e: unknown) =>
          e instanceof ConfigError && e.message.startsWith("/some/config.json: ") && pattern.test(e.message),
      );
    });
  }
  test("unreadable and malformed files", () => {
    const dir = tempDir();
    assert.throws(() => loadGemma3Config(join(dir, "nope")), ConfigError);
    assert.throws(
      () => loadGemma3Config(dir),
      (e: unknown) => e instanceof ConfigError && /config\.json/.test(e.message),
    );
    writeFileSync(join(dir, "config.json"), "{not json");
    assert.throws(() => loadGemma3Config(dir), /not valid JSON/);
  });
});

describe("estimateMemory", () => {
  for (const fx of modelFixtures()) {
    test(`${fx.name}: parameters and bytes equal the checkpoint's text tensors`, () => {
      const config = loadGemma3Config(fx.modelDir);
      const st = openSafetensors(fx.modelDir);
      const loaded = loadGemma3Weights(st, config, referenceBackend);
      let params = 0;
      for (const name of st.names()) {
        if (name.startsWith(loaded.prefix)) params += st.info(name).shape.reduce((a, b) => a * b, 1);
      }
      st.close();
      const est = estimateMemory(config, loaded.dtype);
      assert.equal(est.parameters, params);
      assert.equal(est.bytes, loaded.bytes);
    });
  }
  test("counts an untied lm_head and scales with the dtype", () => {
    const tied = tinyConfig();
    const w = randomWeights(tied, referenceBackend);
    const count = [w.embed, w.finalNorm, ...w.layers.flatMap((l) => Object.values(l))].reduce(
      (n, t) => n + t.size,
      0,
    );
    assert.equal(estimateMemory(tied, "f32").parameters, count);
    const untied = tinyConfig({ tie_word_embeddings: false });
    assert.equal(estimateMemory(untied, "f32").parameters, count + w.embed.size);
    assert.equal(estimateMemory(tied, "bf16").bytes * 2, estimateMemory(tied, "f32").bytes);
  });
});
