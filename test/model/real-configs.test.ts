/**
 * The real Gemma 3 config.json files (test/fixtures/configs, sources in its README) parsed by the
 * model's config parser, checked against transformers' reading of the same files (expected.json,
 * from reference/config_fixtures.py) and against the parameter counts keras-hub publishes; every
 * hook site of every model parses back. Nothing here allocates weights.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { estimateMemory, listSites, parseGemma3Config, parseSite } from "../../src/model/gemma3/index.js";
import { fixture } from "../io/helpers.js";

interface ExpectedModel {
  architecture: string;
  text_params: number;
  embedding_params: number;
  text_config: {
    vocab_size: number;
    hidden_size: number;
    intermediate_size: number;
    num_hidden_layers: number;
    num_attention_heads: number;
    num_key_value_heads: number;
    head_dim: number;
    query_pre_attn_scalar: number;
    sliding_window: number;
    max_position_embeddings: number;
    rope_theta: number;
    rope_local_base_freq: number;
    rope_scaling: { factor: number; rope_type: string } | null;
    layer_types: string[];
    rms_norm_eps: number;
  };
}

const DIR = fixture("configs");
const expected = JSON.parse(readFileSync(join(DIR, "expected.json"), "utf8")) as {
  format: string;
  format_version: number;
  generator: string;
  models: Record<string, ExpectedModel>;
};
const files = readdirSync(DIR).filter((f) => /^gemma-3-.*\.json$/.test(f));

/**
 * Text-model parameter counts keras-hub publishes for its Gemma 3 presets
 * (keras_hub/src/models/gemma3/gemma3_presets.py); its text-only presets have a 262,144-row embedding.
 */
const PUBLISHED: Record<string, number> = {
  "270m": 268_098_176,
  "1b": 999_885_952,
  "4b": 3_880_099_328,
  "12b": 11_765_788_416,
  "27b": 27_009_002_240,
};
const KERAS_VOCAB = 262_144;

test("fixture format and coverage", () => {
  assert.equal(expected.format, "glassbox-config-fixture");
  assert.equal(expected.format_version, 1, `regenerate with: ${expected.generator}`);
  assert.deepEqual(files.map((f) => f.replace(/\.json$/, "")).sort(), Object.keys(expected.models).sort());
  for (const size of Object.keys(PUBLISHED)) {
    assert.ok(
      files.some((f) => f.startsWith(`gemma-3-${size}`)),
      `no config for ${size}`,
    );
  }
});

for (const file of files) {
  const name = file.replace(/\.json$/, "");
  test(`${name}: parses as transformers reads it`, () => {
    const path = join(DIR, file);
    const cfg = parseGemma3Config(JSON.parse(readFileSync(path, "utf8")), path);
    const e = expected.models[name];
    const t = e.text_config;
    assert.equal(cfg.multimodal, e.architecture === "Gemma3ForConditionalGeneration");
    assert.equal(cfg.vocab, t.vocab_size);
    assert.equal(cfg.dModel, t.hidden_size);
    assert.equal(cfg.dMlp, t.intermediate_size);
    assert.equal(cfg.layers, t.num_hidden_layers);
    assert.equal(cfg.heads, t.num_attention_heads);
    assert.equal(cfg.kvHeads, t.num_key_value_heads);
    assert.equal(cfg.headDim, t.head_dim);
    assert.equal(cfg.queryPreAttnScalar, t.query_pre_attn_scalar);
    assert.equal(cfg.slidingWindow, t.sliding_window);
    assert.equal(cfg.maxPositionEmbeddings, t.max_position_embeddings);
    assert.equal(cfg.rmsNormEps, t.rms_norm_eps);
    assert.deepEqual(cfg.layerTypes, t.layer_types);
    assert.deepEqual(cfg.rope.full_attention, { theta: t.rope_theta, factor: t.rope_scaling?.factor ?? 1 });
    assert.deepEqual(cfg.rope.sliding_attention, { theta: t.rope_local_base_freq, factor: 1 });
  });

  test(`${name}: parameter count and memory estimate without weights`, () => {
    const path = join(DIR, file);
    const cfg = parseGemma3Config(JSON.parse(readFileSync(path, "utf8")), path);
    const e = expected.models[name];
    const bf16 = estimateMemory(cfg, "bf16");
    const f32 = estimateMemory(cfg, "f32");
    assert.equal(bf16.parameters, e.text_params, "transformers' count on the meta device");
    assert.equal(bf16.embeddingParameters, e.embedding_params);
    assert.equal(bf16.bytes, 2 * e.text_params);
    assert.equal(f32.bytes, 4 * e.text_params);
    const size = name.split("-")[2];
    const published = PUBLISHED[size];
    assert.equal(bf16.parameters - (cfg.vocab - KERAS_VOCAB) * cfg.dModel, published, `keras-hub's ${size}`);
  });

  test(`${name}: every site parses back, by display and Hugging Face name`, () => {
    const path = join(DIR, file);
    const cfg = parseGemma3Config(JSON.parse(readFileSync(path, "utf8")), path);
    const all = listSites(cfg);
    assert.equal(all.length, 3 + 13 * cfg.layers);
    assert.equal(new Set(all.map((s) => s.name)).size, all.length);
    let hf = 0;
    for (const site of all) {
      assert.equal(parseSite(site.name, cfg).name, site.name);
      const module = site.hfModuleName(cfg);
      if (module !== null) {
        assert.equal(parseSite(module, cfg).name, site.name, module);
        hf++;
      }
      const shape = site.shape(cfg, 2, 7);
      assert.ok(
        shape.every((n) => Number.isInteger(n) && n > 0),
        `${site.name}: ${shape}`,
      );
    }
    assert.ok(hf > 0);
    assert.throws(() => parseSite(`blocks.${cfg.layers}.resid_post`, cfg), /out of range/);
  });
}
