/**
 * Attention attribution (src/circuits/attention.ts), the extension beyond circuit-tracer, by its
 * defining properties:
 * - the per-head outputs sum to the frozen model's attention output;
 * - an edge's parts by (layer, head), plus the part that never leaves the source position, sum to
 *   the edge that `attribute` computed (tokens, features and errors; transcoders, skip-transcoders
 *   and a CLT; a random GQA config and tiny-gemma3);
 * - the linear query and key maps (norm denominators frozen, RoPE) reproduce the real model's q and
 *   k sites at every head and position;
 * - the sources' shares of an attention score, over a complete decomposition of the residual
 *   stream (tokens, every feature, every error, the b_dec biases), sum to the score on each side.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { headOutput, headSplit, qkContributions, queryKey } from "../../src/circuits/attention.js";
import { type Attribution, attribute, edge, nodeIndex } from "../../src/circuits/attribute.js";
import { propagate, type Seed, type Write } from "../../src/circuits/linear.js";
import { sourceWrites, targetSeed } from "../../src/circuits/nodes.js";
import { LocalReplacement } from "../../src/circuits/replacement.js";
import { TranscoderSet } from "../../src/circuits/transcoders.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { Tokenizer } from "../../src/io/tokenizer.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { sites } from "../../src/model/gemma3/sites.js";
import { backend, MODEL } from "../features/helpers.js";
import { tinyModel } from "../model/helpers.js";
import { type RandomKind, randomTranscoders } from "./helpers.js";

function checkSplits(a: Attribution, sources: readonly number[], what: string): void {
  const targets: [number, Seed][] = [[nodeIndex.logit(a, 0), targetSeed(a, nodeIndex.logit(a, 0)) as Seed]];
  const deep = Array.from(a.visited).find((i) => a.replacement.features.layer[i] >= 2);
  if (deep !== undefined) targets.push([deep, targetSeed(a, deep) as Seed]);
  for (const [t, seed] of targets) {
    for (const s of sources) {
      const split = headSplit(a.replacement, sourceWrites(a, s), seed);
      let sum = split.stayed;
      for (const row of split.parts) for (const x of row) sum += x;
      const want = edge(a, s, t);
      const tol = 1e-4 * (1 + Math.abs(want));
      assert.ok(Math.abs(split.total - want) <= tol, `${what}: total ${split.total} vs edge ${want}`);
      assert.ok(Math.abs(sum - want) <= tol, `${what}: ${s} -> ${t}: parts sum to ${sum}, edge ${want}`);
    }
  }
}

describe("attention attribution on a random GQA config", () => {
  const model = tinyModel(backend, {}, 3);
  const ids = [2, 7, 11, 5, 19, 23, 3, 30, 8, 12];
  for (const kind of ["transcoders", "skip", "clt"] as RandomKind[]) {
    test(`${kind}: head parts sum to the edge; head outputs sum to attention`, () => {
      const set = TranscoderSet.from(randomTranscoders(model.config, backend, kind, 24, 5), model.config);
      const rep = LocalReplacement.build(model, set, ids, { bosFeatures: true });
      const a = attribute(rep, { maxFeatureNodes: 30, batchSize: 16 });
      // Head outputs sum to the attention part of the forward map.
      const D = model.config.dModel;
      const x = rep.embedding.slice();
      const mid0 = propagate(
        rep,
        [...Array(ids.length).keys()].map((p) => ({
          layer: -1,
          position: p,
          vector: x.slice(p * D, (p + 1) * D),
        })),
      ).mid[0];
      const heads = new Float32Array(x.length);
      for (let h = 0; h < model.config.heads; h++) {
        const o = headOutput(rep, 0, h, x);
        for (let i = 0; i < o.length; i++) heads[i] += o[i];
      }
      for (let i = 0; i < x.length; i++)
        assert.ok(Math.abs(x[i] + heads[i] - mid0[i]) < 1e-4 * (1 + Math.abs(mid0[i])));
      const sources = [
        0,
        5,
        a.nFeatures - 1,
        nodeIndex.error(a, 0, 3),
        nodeIndex.token(a, 2),
        nodeIndex.token(a, 6),
      ];
      checkSplits(a, sources, kind);
    });
  }

  test("attention score shares over a complete decomposition sum to the score", () => {
    const set = TranscoderSet.from(randomTranscoders(model.config, backend, "skip", 24, 5), model.config);
    const rep = LocalReplacement.build(model, set, ids);
    const a = attribute(rep, { maxFeatureNodes: 0 });
    const T = ids.length;
    // Every node's writes, and the b_dec biases at every layer and position.
    const sources: Write[][] = [];
    for (let s = 0; s < nodeIndex.logit(a, 0); s++) sources.push(sourceWrites(a, s));
    for (let l = 0; l < model.config.layers; l++)
      sources.push(
        Array.from({ length: T }, (_, p) => ({ layer: l, position: p, vector: set.decoderBias(l) })),
      );
    const l = 2;
    for (const [h, q, k] of [
      [0, 9, 4],
      [3, 7, 7],
      [1, 9, 0],
    ]) {
      const r = qkContributions(rep, l, h, q, k, sources);
      const keySum = r.shares.reduce((x, y) => x + y.key, 0);
      const querySum = r.shares.reduce((x, y) => x + y.query, 0);
      const tol = 1e-3 * (1 + Math.abs(r.score));
      assert.ok(
        Math.abs(keySum - r.score) < tol,
        `head ${h} q ${q} k ${k}: key shares ${keySum} vs score ${r.score}`,
      );
      assert.ok(Math.abs(querySum - r.score) < tol, `head ${h}: query shares ${querySum} vs ${r.score}`);
    }
    assert.throws(() => qkContributions(rep, l, 0, 2, 5, []), /after query position/);
  });
});

describe("attention attribution on tiny-gemma3", () => {
  const model = loadGemma3(MODEL, backend);
  const ids = Tokenizer.fromDir(MODEL).encode("The old man walked slowly to the river and", { addBos: true });
  const GS = join(MODEL, "gemma-scope");

  test("queries and keys from the frozen linear maps equal the real model's", () => {
    const set = TranscoderSet.from(
      [loadDictionary(join(GS, "clt", "width_3k_l0_medium"), backend)],
      model.config,
    );
    const rep = LocalReplacement.build(model, set, ids);
    const c = model.config;
    const D = c.dModel;
    const T = ids.length;
    const dh = c.headDim;
    for (const l of [0, 3, 5]) {
      const cap = model.forward([ids], {
        capture: [sites.q(l), sites.k(l), sites.residPre(l)],
        logits: "none",
      }).activations;
      const pre = cap.get(sites.residPre(l)).toFloat32Array();
      const qd = cap.get(sites.q(l)).toFloat32Array();
      const kd = cap.get(sites.k(l)).toFloat32Array();
      for (let h = 0; h < c.heads; h++) {
        const kv = Math.floor(h / (c.heads / c.kvHeads));
        for (let p = 0; p < T; p++) {
          const row = pre.slice(p * D, (p + 1) * D);
          const { query, key } = queryKey(rep, l, h, p, p, row, row);
          for (let j = 0; j < dh; j++) {
            assert.ok(
              Math.abs(query[j] - qd[(h * T + p) * dh + j]) < 1e-4,
              `layer ${l} head ${h} pos ${p} q[${j}]`,
            );
            assert.ok(
              Math.abs(key[j] - kd[(kv * T + p) * dh + j]) < 1e-4,
              `layer ${l} kv ${kv} pos ${p} k[${j}]`,
            );
          }
        }
      }
    }
  });

  for (const [kind, dicts] of [
    ["clt", () => [loadDictionary(join(GS, "clt", "width_3k_l0_medium"), backend)]],
    [
      "skip",
      () =>
        Array.from({ length: 6 }, (_, l) =>
          loadDictionary(join(GS, "transcoder", `layer_${l}_width_1k_l0_medium_affine`), backend),
        ),
    ],
  ] as const) {
    test(`${kind}: head parts sum to the edge`, () => {
      const rep = LocalReplacement.build(model, TranscoderSet.from(dicts(), model.config), ids);
      const a = attribute(rep, { maxFeatureNodes: 32 });
      const early =
        Array.from({ length: a.nFeatures }, (_, i) => i).find(
          (i) => rep.features.position[i] < ids.length - 2,
        ) ?? 0;
      checkSplits(a, [early, nodeIndex.token(a, 4), nodeIndex.error(a, 1, 3)], kind);
    });
  }
});
