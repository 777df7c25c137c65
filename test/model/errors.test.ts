/**
 * Bad inputs fail with errors that name what is wrong: missing or misshapen tensors (naming tensor
 * and file), a checkpoint without a Gemma 3 text model, a non-Gemma config, bad forward inputs and
 * over-long prompts.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { referenceBackend } from "../../src/backends/index.js";
import { ConfigError, ModelError } from "../../src/core/errors.js";
import { transpose } from "../../src/core/ops/shape.js";
import { generate } from "../../src/model/gemma3/generate.js";
import { interventions } from "../../src/model/gemma3/interventions.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { sites } from "../../src/model/gemma3/sites.js";
import {
  checkpointTensors,
  randomWeights,
  tempDir,
  tinyConfig,
  tinyModel,
  writeCheckpoint,
} from "./helpers.js";

const backend = referenceBackend;
const CONFIG = {
  model_type: "gemma3_text",
  vocab_size: 40,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  layer_types: ["sliding_attention", "full_attention"],
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  sliding_window: 4,
  max_position_embeddings: 64,
};
const config = tinyConfig(CONFIG);
const weights = randomWeights(config, backend, 7);

function isModelError(pattern: RegExp) {
  return (e: unknown) => e instanceof ModelError && pattern.test(e.message);
}

describe("loading", () => {
  const root = tempDir();
  test("a written checkpoint loads and runs (the error cases below differ from it in one thing)", () => {
    const dir = writeCheckpoint(root, "good", CONFIG, checkpointTensors(weights));
    const m = loadGemma3(dir, backend);
    assert.deepEqual([...m.forward([[1, 2, 3]]).logits.shape], [1, 3, 40]);
  });
  test("missing tensor", () => {
    const tensors = checkpointTensors(weights);
    tensors.delete("model.layers.1.mlp.up_proj.weight");
    const dir = writeCheckpoint(root, "missing", CONFIG, tensors);
    assert.throws(
      () => loadGemma3(dir, backend),
      isModelError(/model\.safetensors: missing tensor "model\.layers\.1\.mlp\.up_proj\.weight"/),
    );
  });
  test("wrong shape", () => {
    const tensors = checkpointTensors(weights);
    tensors.set("model.layers.0.self_attn.o_proj.weight", transpose(weights.layers[0].oProj));
    const dir = writeCheckpoint(root, "shape", CONFIG, tensors);
    assert.throws(
      () => loadGemma3(dir, backend),
      isModelError(
        /model\.safetensors: tensor "model\.layers\.0\.self_attn\.o_proj\.weight" has shape \[32, 16\], the config needs \[16, 32\]/,
      ),
    );
  });
  test("no Gemma 3 text model under any known prefix", () => {
    const dir = writeCheckpoint(root, "prefix", CONFIG, checkpointTensors(weights, "transformer."));
    assert.throws(() => loadGemma3(dir, backend), isModelError(/no Gemma 3 text embedding found/));
  });
  test("untied lm_head must exist", () => {
    const dir = writeCheckpoint(
      root,
      "untied",
      { ...CONFIG, tie_word_embeddings: false },
      checkpointTensors(weights),
    );
    assert.throws(() => loadGemma3(dir, backend), isModelError(/tie_word_embeddings is false/));
  });
  test("non-Gemma config", () => {
    const dir = writeCheckpoint(
      root,
      "llama",
      { ...CONFIG, model_type: "llama" },
      checkpointTensors(weights),
    );
    assert.throws(
      () => loadGemma3(dir, backend),
      (e: unknown) =>
        e instanceof ConfigError && /config\.json: model_type: "llama" is not Gemma 3/.test(e.message),
    );
  });
});

describe("forward and generation inputs", () => {
  const model = tinyModel(backend, CONFIG);
  test("token id outside the vocabulary", () => {
    assert.throws(
      () => model.forward([[1, 40]]),
      isModelError(/token id 40 is outside the vocabulary \[0, 40\)/),
    );
  });
  test("ragged ids and misshapen masks", () => {
    assert.throws(() => model.forward([[1, 2], [3]]), isModelError(/different lengths/));
    assert.throws(
      () => model.forward([[1, 2]], { attentionMask: [[1, 1, 1]] }),
      isModelError(/attention mask is \[1, 3\]/),
    );
    assert.throws(() => model.forward([[1, 2]], { attentionMask: [[1, 2]] }), isModelError(/0 or 1/));
    assert.throws(() => model.forward([[1, 2]], { positionIds: [[0]] }), isModelError(/position ids/));
  });
  test("sequences beyond max_position_embeddings", () => {
    const long = Array.from({ length: 65 }, () => 1);
    assert.throws(() => model.forward([long]), isModelError(/exceeds max_position_embeddings 64/));
    assert.throws(
      () => generate(model, long, { maxNewTokens: 1 }),
      isModelError(/prompt of 65 tokens is longer than the model's context \(max_position_embeddings 64\)/),
    );
  });
  test("a site of a layer the model lacks", () => {
    assert.throws(
      () => model.forward([[1]], { capture: [sites.residPost(2)] }),
      isModelError(/layer 2 is out of range/),
    );
    assert.throws(
      () => model.forward([[1]], { interventions: [interventions.zeroAblate(sites.z(5))] }),
      isModelError(/blocks\.5\.z: layer 5 is out of range/),
    );
  });
});
