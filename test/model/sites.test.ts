/**
 * Hook sites: display and Hugging Face names round-trip through `parseSite`, the Gemma Scope 2
 * hook points map to the right sites, shapes match the fixtures' activations, and bad names fail.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ModelError } from "../../src/core/errors.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { loadGemma3Config } from "../../src/model/gemma3/config.js";
import { LAYER_SITE_KINDS, listSites, parseSite, sites } from "../../src/model/gemma3/sites.js";
import { modelFixtures, tinyConfig } from "./helpers.js";

const text = tinyConfig();
const multimodal = { ...text, multimodal: true };

test("listSites: embed, every kind of every layer in forward order, final_norm, logits", () => {
  const all = listSites(text);
  assert.equal(all.length, 3 + LAYER_SITE_KINDS.length * text.layers);
  assert.equal(new Set(all.map((s) => s.name)).size, all.length);
  assert.equal(all[0].name, "embed");
  assert.equal(all[1].name, "blocks.0.resid_pre");
  assert.equal(all.at(-3)?.name, `blocks.${text.layers - 1}.resid_post`);
  assert.deepEqual(
    all.slice(-2).map((s) => s.name),
    ["final_norm", "logits"],
  );
});

test("every display name and Hugging Face name parses back to its site", () => {
  for (const site of listSites(text)) {
    assert.equal(parseSite(site.name, text).name, site.name);
    if (site.hfName !== null) {
      assert.equal(parseSite(site.hfName, text).name, site.name, site.hfName);
      const mm = site.hfModuleName(multimodal);
      assert.ok(mm !== null);
      assert.equal(parseSite(mm, multimodal).name, site.name, mm);
      // Older multimodal saves name the text model language_model.model.
      const older =
        site.kind === "logits"
          ? `language_model.${mm}`
          : mm.replace("model.language_model.", "language_model.model.");
      assert.equal(parseSite(older, multimodal).name, site.name, older);
    }
  }
});

test("Gemma Scope 2 hook points", () => {
  const cases: [string, string][] = [
    ["model.layers.2.output", "blocks.2.resid_post"],
    ["model.layers.1.self_attn.o_proj.input", "blocks.1.z"],
    ["model.layers.0.pre_feedforward_layernorm.output", "blocks.0.mlp_in"],
    ["model.layers.2.post_feedforward_layernorm.output", "blocks.2.mlp_out"],
    ["model.language_model.layers.2.output", "blocks.2.resid_post"],
  ];
  for (const [hf, display] of cases) assert.equal(parseSite(hf, text).name, display, hf);
  assert.equal(sites.residPost(2).hfName, "model.layers.2.output");
  assert.equal(sites.z(1).hfName, "model.layers.1.self_attn.o_proj.input");
  assert.equal(
    sites.mlpIn(0).hfModuleName(multimodal),
    "model.language_model.layers.0.pre_feedforward_layernorm.output",
  );
  assert.equal(sites.q(0).hfName, null);
});

describe("bad names", () => {
  const cases: [string, RegExp][] = [
    ["blocks.3.resid_post", /layer 3 is out of range \(the model has 3 layers, 0 to 2\)/],
    ["model.layers.9.output", /layer 9 is out of range/],
    ["blocks.x.q", /unknown site/],
    ["blocks.-1.q", /unknown site/],
    ["blocks.1.resid", /unknown site/],
    ["resid_post", /unknown site/],
    ["model.layers.1.self_attn.q_proj.output", /unknown site/],
    ["", /unknown site/],
  ];
  for (const [name, pattern] of cases) {
    test(JSON.stringify(name), () => {
      assert.throws(
        () => parseSite(name, text),
        (e: unknown) => e instanceof ModelError && pattern.test(e.message),
      );
    });
  }
});

describe("site shapes match the fixtures' activations", () => {
  for (const fx of modelFixtures()) {
    test(fx.name, () => {
      const config = loadGemma3Config(fx.modelDir);
      const f = SafetensorsFile.open(fx.fixture);
      const [batch, seq] = f.info("input_ids").shape;
      for (const site of listSites(config)) {
        assert.deepEqual(site.shape(config, batch, seq), [...f.info(`act.${site.name}`).shape], site.name);
      }
      f.close();
    });
  }
});
