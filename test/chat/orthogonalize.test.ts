/**
 * Weight orthogonalisation (src/chat/orthogonalize.ts) by its defining properties:
 * - the written checkpoint loads like any other, untied, with the original unembedding;
 * - its logits equal the original model's under `componentAblationInterventions` (the runtime form
 *   of the same edit), on tied and untied sources;
 * - the residual stream of the new model has zero projection on r at every site;
 * - bad input (wrong length, an existing output) is refused and leaves nothing behind.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { componentAblationInterventions, orthogonalizeCheckpoint } from "../../src/chat/orthogonalize.js";
import { ablationInterventions } from "../../src/chat/refusal.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { sites } from "../../src/model/gemma3/sites.js";
import { backend } from "../features/helpers.js";
import {
  checkpointTensors,
  randomWeights,
  tinyConfig,
  tinyConfigJson,
  writeCheckpoint,
} from "../model/helpers.js";

function direction(D: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: D }, () => {
    s = (s * 16807) % 2147483647;
    return s / 2147483647 - 0.5;
  });
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("weight orthogonalisation", () => {
  const root = mkdtempSync(join(tmpdir(), "glassbox-ortho-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  const ids = [[2, 5, 9, 30, 31, 7, 12, 3, 3, 18]];
  const residSites = [sites.embed, ...[0, 1, 2].flatMap((l) => [sites.residMid(l), sites.residPost(l)])];

  for (const tied of [true, false]) {
    test(`${tied ? "tied" : "untied"} source: same logits as the runtime edit, zero projection everywhere`, async () => {
      const config = tinyConfig(tied ? {} : { tie_word_embeddings: false });
      const weights = randomWeights(config, backend, tied ? 3 : 4);
      const tensors = checkpointTensors(weights);
      if (!tied) tensors.set("lm_head.weight", randomWeights(config, backend, 9).embed);
      const src = writeCheckpoint(
        root,
        `src-${tied}`,
        tinyConfigJson({ tie_word_embeddings: tied }),
        tensors,
      );
      const original = loadGemma3(src, backend);
      const r = direction(config.dModel, 11);
      const out = join(root, `out-${tied}`);
      const rep = await orthogonalizeCheckpoint(src, r, out, backend, { dtype: "f32" });
      assert.equal(rep.changed.length, 1 + 2 * config.layers);
      assert.equal(rep.untied, tied);
      const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as Record<string, unknown>;
      assert.equal(cfg.tie_word_embeddings, false);
      const m = loadGemma3(out, backend);
      // The unembedding is the original one, although the embedding changed.
      assert.equal(maxDiff(m.weights.lmHead.toFloat32Array(), original.weights.lmHead.toFloat32Array()), 0);
      assert.ok(maxDiff(m.weights.embed.toFloat32Array(), original.weights.embed.toFloat32Array()) > 1e-3);

      const got = m.forward(ids, { capture: residSites });
      const want = original.forward(ids, { interventions: componentAblationInterventions(original, r) });
      const lg = got.logits.toFloat32Array();
      const scale = Math.max(...lg.map(Math.abs));
      assert.ok(
        maxDiff(lg, want.logits.toFloat32Array()) < 1e-4 * scale,
        "logits = runtime component ablation",
      );
      // Residual-stream ablation is a different function (the norms rescale other directions).
      const resid = original.forward(ids, { interventions: ablationInterventions(original, r) });
      assert.ok(maxDiff(lg, resid.logits.toFloat32Array()) > 1e-3, "differs from residual-stream ablation");
      const base = original.forward(ids, { capture: residSites });

      let n = 0;
      for (const v of r) n += v * v;
      n = Math.sqrt(n);
      const D = config.dModel;
      for (const site of residSites) {
        const proj = (x: Float32Array) => {
          let worst = 0;
          for (let p = 0; p < x.length / D; p++) {
            let d = 0;
            for (let j = 0; j < D; j++) d += (x[p * D + j] * r[j]) / n;
            worst = Math.max(worst, Math.abs(d));
          }
          return worst;
        };
        const x = got.activations.get(site).toFloat32Array();
        const xs = Math.max(...x.map(Math.abs));
        assert.ok(proj(x) < 1e-5 * xs, `${site.name}: projection ${proj(x)}`);
        assert.ok(proj(base.activations.get(site).toFloat32Array()) > 1e-3, `${site.name}: nonzero before`);
      }
    });
  }

  test("bad input: wrong length, existing output, output = source; nothing left behind", async () => {
    const config = tinyConfig();
    const src = writeCheckpoint(
      root,
      "src-bad",
      tinyConfigJson(),
      checkpointTensors(randomWeights(config, backend, 5)),
    );
    await assert.rejects(
      orthogonalizeCheckpoint(src, new Float32Array(3), join(root, "x"), backend),
      /the direction has 3 entries; .* has d_model 16/,
    );
    await assert.rejects(
      orthogonalizeCheckpoint(src, direction(16, 2), src, backend),
      /is the source checkpoint/,
    );
    await assert.rejects(orthogonalizeCheckpoint(src, direction(16, 2), root, backend), /already exists/);
    await assert.rejects(
      orthogonalizeCheckpoint(src, new Float32Array(16), join(root, "zero"), backend),
      /the direction is zero/,
    );
    assert.ok(!existsSync(join(root, "x")) && !existsSync(join(root, "zero")));
    assert.deepEqual(
      readdirSync(root).filter((f) => f.includes("partial")),
      [],
    );
  });
});
