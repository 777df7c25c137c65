/**
 * Parity with circuit-tracer 0.5.0 (test/fixtures/circuits/*.safetensors, made by
 * reference/bench_circuits.py --fixture; the command is in each file's metadata): on tiny-gemma3
 * with its CLT, per-layer transcoders and skip-transcoders, the same active features with the same
 * activations, the same logit targets and probabilities, and the same edges, except two documented
 * deviations where circuit-tracer is wrong for Gemma 3 or drops information:
 * - token edges: circuit-tracer multiplies the gradient at the embedding by the raw embedding row
 *   (`token_vectors = embed_weight[tokens]`), leaving out Gemma's sqrt(d_model) normaliser; glassbox
 *   uses the embedding as the model adds it, so its token edges are sqrt(d_model) = 16 times larger
 *   (and completeness holds: a target's edges sum to its value);
 * - the error node at position 0 (BOS): circuit-tracer zeroes it (with the BOS features); glassbox
 *   keeps the BOS position's MLP output in that error node, so totals stay exact.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { attribute } from "../../src/circuits/attribute.js";
import { toGraph } from "../../src/circuits/graph.js";
import { LocalReplacement } from "../../src/circuits/replacement.js";
import { TranscoderSet } from "../../src/circuits/transcoders.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { backend, MODEL } from "../features/helpers.js";
import { fixture } from "../io/helpers.js";

const GS = join(MODEL, "gemma-scope");
const CASES = {
  clt: () => [loadDictionary(join(GS, "clt", "width_3k_l0_medium"), backend)],
  transcoders: () =>
    Array.from({ length: 6 }, (_, l) =>
      loadDictionary(join(GS, "transcoder", `layer_${l}_width_1k_l0_medium`), backend),
    ),
  "skip-transcoders": () =>
    Array.from({ length: 6 }, (_, l) =>
      loadDictionary(join(GS, "transcoder", `layer_${l}_width_1k_l0_medium_affine`), backend),
    ),
} as const;

function read(path: string): Record<string, { data: Float32Array | Int32Array; shape: number[] }> {
  const f = SafetensorsFile.open(path);
  try {
    const out: Record<string, { data: Float32Array | Int32Array; shape: number[] }> = {};
    for (const name of f.names()) {
      const t = f.readTypedSync(name);
      out[name] = { data: t.data as Float32Array | Int32Array, shape: [...t.shape] };
    }
    return out;
  } finally {
    f.close();
  }
}

describe("parity with circuit-tracer 0.5.0 on tiny-gemma3", () => {
  const model = loadGemma3(MODEL, backend);
  const sqrtD = Math.sqrt(model.config.dModel);
  for (const [name, load] of Object.entries(CASES)) {
    test(`${name}: nodes, activations, logits and edges`, () => {
      const fx = read(fixture("circuits", `${name}.safetensors`));
      const ids = Array.from(fx.prompt_ids.data);
      const rep = LocalReplacement.build(model, TranscoderSet.from(load(), model.config), ids);
      const a = attribute(rep, { maxFeatureNodes: 7500 });
      const g = toGraph(a);
      const f = rep.features;
      // Features: the same (layer, position, index) in the same order, the same activations.
      const af = fx.active_features.data;
      assert.equal(af.length / 3, f.count, "active feature count");
      for (let i = 0; i < f.count; i++) {
        assert.deepEqual(
          [af[3 * i], af[3 * i + 1], af[3 * i + 2]],
          [f.layer[i], f.position[i], f.feature[i]],
        );
        const want = fx.activation_values.data[i];
        assert.ok(Math.abs(f.activation[i] - want) <= 1e-4 * (1 + Math.abs(want)), `activation ${i}`);
      }
      assert.equal(fx.selected_features.data.length, a.visited.length, "every feature visited");
      // Logit targets.
      assert.deepEqual(
        a.logits.map((l) => l.token),
        Array.from(fx.logit_targets.data),
      );
      a.logits.forEach((l, k) => {
        assert.ok(Math.abs(l.probability - fx.logit_probabilities.data[k]) < 1e-5);
      });
      // Edges of the sampled rows, column by column.
      const n = g.nodes.length;
      const rows = Array.from(fx.sample_rows.data);
      assert.equal(fx.sample_adjacency.shape[1], n, "same node count");
      let checked = 0;
      for (const [k, t] of rows.entries()) {
        const theirs = fx.sample_adjacency.data.subarray(k * n, (k + 1) * n);
        const mine = g.adjacency.subarray(t * n, (t + 1) * n);
        let scale = 0;
        for (let s = 0; s < n; s++) scale = Math.max(scale, Math.abs(mine[s]));
        for (let s = 0; s < n; s++) {
          const node = g.nodes[s];
          let want = theirs[s];
          if (node.kind === "token") want *= sqrtD;
          else if (node.kind === "error" && node.position === 0) {
            assert.equal(theirs[s], 0, "circuit-tracer zeroes the BOS error node");
            continue;
          }
          assert.ok(
            Math.abs(mine[s] - want) <= 1e-4 * scale + 1e-6,
            `row ${t} (${g.nodes[t].kind}), source ${s} (${node.kind}): ${mine[s]} vs ${want}`,
          );
          checked++;
        }
      }
      assert.ok(checked > 1000, `${checked} edges compared`);
    });
  }
});
