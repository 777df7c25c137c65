/**
 * Attribution graphs, their defining properties (shared/reference/algorithms.md, "Attribution
 * graphs"), on random tiny configs (GQA, sliding windows) and on tiny-gemma3, for per-layer
 * transcoders, skip-transcoders and a CLT, on every backend:
 * - edge exactness: adding a source node's write to the frozen replacement model (the forward map,
 *   an implementation independent of the backward passes) changes every computed target by its
 *   edge weight;
 * - completeness: each target's real value on the prompt (a feature's pre-activation, a demeaned
 *   logit, from the real forward pass) equals the sum of its incoming edges plus its bias terms;
 * - the replacement reproduces the real model: errors + reconstruction = the true MLP outputs.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { type Attribution, attribute, edge, nodeIndex } from "../../src/circuits/attribute.js";
import { propagate, readSeed, type Seed } from "../../src/circuits/linear.js";
import { sourceWrites, targetSeed } from "../../src/circuits/nodes.js";
import { LocalReplacement } from "../../src/circuits/replacement.js";
import { TranscoderSet } from "../../src/circuits/transcoders.js";
import { CircuitError } from "../../src/core/errors.js";
import { Rng } from "../../src/core/random.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { Tokenizer } from "../../src/io/tokenizer.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { MODEL } from "../features/helpers.js";
import { tinyModel } from "../model/helpers.js";
import { type RandomKind, randomTranscoders } from "./helpers.js";

const KINDS: RandomKind[] = ["transcoders", "skip", "clt"];

function rowSum(a: Attribution, row: number): number {
  let s = a.bias[row];
  for (let j = 0; j < a.nNodes; j++) s += edge(a, j, row);
  return s;
}

function checkCompleteness(a: Attribution, what: string): void {
  const f = a.replacement.features;
  for (let k = 0; k < a.nLogits; k++) {
    const got = rowSum(a, nodeIndex.logit(a, k));
    const want = a.logits[k].value;
    assert.ok(Math.abs(got - want) <= 1e-3 * (1 + Math.abs(want)), `${what}: logit ${k}: ${got} vs ${want}`);
  }
  for (const i of a.visited) {
    const got = rowSum(a, i);
    const want = f.preactivation[i];
    assert.ok(
      Math.abs(got - want) <= 1e-3 * (1 + Math.abs(want)),
      `${what}: feature node ${i} (layer ${f.layer[i]}, pos ${f.position[i]}): ${got} vs ${want}`,
    );
  }
}

/** Every computed target row changes by A[s -> t] when source s's write is added to the frozen model. */
function checkEdges(a: Attribution, sources: readonly number[], what: string): void {
  const rep = a.replacement;
  const rows = [...Array.from({ length: a.nLogits }, (_, k) => nodeIndex.logit(a, k)), ...a.visited];
  const seeds = rows.map((r) => targetSeed(a, r) as Seed);
  for (const s of sources) {
    const p = propagate(rep, sourceWrites(a, s));
    rows.forEach((t, i) => {
      const want = edge(a, s, t);
      const got = readSeed(rep, p, seeds[i]);
      // Relative to the row's scale: tiny edges are sums of cancelling terms.
      let scale = 0;
      for (let j = 0; j < a.nNodes; j++) scale = Math.max(scale, Math.abs(edge(a, j, t)));
      assert.ok(
        Math.abs(got - want) <= 1e-4 * scale + 1e-6,
        `${what}: edge ${s} -> ${t}: perturbation ${got}, edge ${want} (row scale ${scale})`,
      );
    });
  }
}

function sampleSources(a: Attribution, count: number, seed: number): number[] {
  const rng = new Rng(seed);
  const firstLogit = nodeIndex.logit(a, 0);
  const out = new Set<number>();
  // Always some of each kind: features, errors, tokens.
  for (let i = 0; i < Math.min(count, a.nFeatures); i++) out.add(rng.int(a.nFeatures));
  for (let i = 0; i < 4; i++) out.add(a.nFeatures + rng.int(a.nErrors));
  for (let i = 0; i < 3; i++) out.add(nodeIndex.token(a, 0) + rng.int(a.nTokens));
  return [...out].filter((s) => s < firstLogit);
}

for (const B of availableBackends()) {
  describe(`attribution on random tiny configs (${B.name})`, () => {
    for (const kind of KINDS) {
      test(`${kind}: edges equal perturbations of the frozen model; totals equal the real forward`, () => {
        const model = tinyModel(B, {}, 3);
        const set = TranscoderSet.from(randomTranscoders(model.config, B, kind, 24, 5), model.config);
        const ids = [2, 7, 11, 5, 19, 23, 3, 30, 8, 12];
        const rep = LocalReplacement.build(model, set, ids, { bosFeatures: true });
        assert.ok(rep.features.count > 20, `active features ${rep.features.count}`);
        const a = attribute(rep, { maxFeatureNodes: 40, batchSize: 16 });
        assert.ok(a.visited.length > 0);
        checkCompleteness(a, kind);
        checkEdges(a, sampleSources(a, 12, 1), kind);
      });
    }
  });
}

describe("attribution on tiny-gemma3", () => {
  const B = availableBackends()[availableBackends().length - 1];
  const model = loadGemma3(MODEL, B);
  const tok = Tokenizer.fromDir(MODEL);
  const ids = tok.encode("The old man walked slowly to the river and", { addBos: true });
  const GS = join(MODEL, "gemma-scope");
  const sets: Record<RandomKind, () => TranscoderSet> = {
    transcoders: () =>
      TranscoderSet.from(
        Array.from({ length: 6 }, (_, l) =>
          loadDictionary(join(GS, "transcoder", `layer_${l}_width_1k_l0_medium`), B),
        ),
        model.config,
      ),
    skip: () =>
      TranscoderSet.from(
        Array.from({ length: 6 }, (_, l) =>
          loadDictionary(join(GS, "transcoder", `layer_${l}_width_1k_l0_medium_affine`), B),
        ),
        model.config,
      ),
    clt: () => TranscoderSet.from([loadDictionary(join(GS, "clt", "width_3k_l0_medium"), B)], model.config),
  };
  for (const kind of KINDS) {
    test(`${kind}: edge exactness and completeness`, () => {
      const rep = LocalReplacement.build(model, sets[kind](), ids);
      for (let i = 0; i < rep.features.count; i++)
        assert.notEqual(rep.features.position[i], 0, "no BOS features");
      const a = attribute(rep, { maxFeatureNodes: 48, batchSize: 16 });
      checkCompleteness(a, kind);
      checkEdges(a, sampleSources(a, 6, 2), kind);
      // The most probable logit is the model's own argmax.
      let best = 0;
      for (let v = 1; v < rep.lastLogits.length; v++) if (rep.lastLogits[v] > rep.lastLogits[best]) best = v;
      assert.equal(a.logits[0].token, best);
      let cum = 0;
      for (const l of a.logits) cum += l.probability;
      assert.ok(a.logits.length === 10 || cum >= 0.95);
    });
  }

  test("a dictionary set that does not form a replacement model is a clear error", () => {
    const one = loadDictionary(join(GS, "transcoder", "layer_2_width_1k_l0_medium"), B);
    assert.throws(
      () => TranscoderSet.from([one], model.config),
      (e: unknown) => e instanceof CircuitError && /no transcoders for layers 0, 1, 3, 4, 5/.test(e.message),
    );
    assert.throws(() => TranscoderSet.from([one, one], model.config), /two transcoders for layer 2/);
    const sae = loadDictionary(join(GS, "resid_post", "layer_2_width_1k_l0_small"), B);
    assert.throws(() => TranscoderSet.from([sae], model.config), /is not a transcoder of an MLP/);
    const clt = loadDictionary(join(GS, "clt", "width_3k_l0_medium"), B);
    assert.throws(() => TranscoderSet.from([clt, one], model.config), /give it alone/);
    assert.throws(() => TranscoderSet.from([], model.config), /no dictionaries/);
  });
});
