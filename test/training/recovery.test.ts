// Planted-feature recovery: data made from a known sparse dictionary; each trainer must find the
// planted directions (a learned decoder row with cosine > 0.9 for >= 90% of them) and reach its
// L0 target. SAE variants train together from one pass over the data, as do the transcoders.
import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultBackend } from "../../src/backends/index.js";
import { parseTrainingConfig } from "../../src/training/config.js";
import { bestCosines, PlantedSource } from "../../src/training/synthetic.js";
import { Trainer } from "../../src/training/trainer.js";

const backend = defaultBackend();
const D = 64;
const F = 64;
const STEPS = 300;
/** Fast-schedule settings for a short synthetic run (the Gemma Scope 2 defaults are for 10^9 tokens). */
const FAST = { lr: 1e-2, lrWarmupSteps: 50, lrDecaySteps: 60, sparsityWarmupSteps: 100, deadWindow: 20_000 };

function recovered(planted: Float32Array, learned: Float32Array, d: number): number {
  return Array.from(bestCosines(planted, learned, d)).filter((c) => c > 0.9).length;
}

test("SAEs (JumpReLU, TopK, BatchTopK, Matryoshka JumpReLU and BatchTopK) recover planted features from one pass", async () => {
  // Frequencies capped below the 10% high-frequency threshold of the JumpReLU recipe.
  const source = new PlantedSource({
    d: D,
    features: F,
    meanL0: 3,
    kind: "sae",
    seed: 1,
    maxFrequency: 0.08,
  });
  const l0 = source.truth.frequencies.reduce((a, b) => a + b, 0);
  const sae = { inputs: ["in.0"], width: 2 * F, ...FAST };
  const groups = [16, 16, 32, 64];
  const config = parseTrainingConfig({
    batchSize: 512,
    steps: STEPS,
    logEvery: 20,
    scaleTokens: 4096,
    dictionaries: [
      { id: "jumprelu", ...sae, rule: { kind: "jumprelu", targetL0: l0 } },
      { id: "topk", ...sae, rule: { kind: "topk", k: 3 } },
      { id: "batchtopk", ...sae, rule: { kind: "batchtopk", k: l0 } },
      { id: "matryoshka-jumprelu", ...sae, groups, rule: { kind: "jumprelu", targetL0: l0 } },
      { id: "matryoshka-batchtopk", ...sae, groups, rule: { kind: "batchtopk", k: l0 } },
    ],
  });
  const trainer = await Trainer.open({ backend, source, config, outDir: null });
  const result = await trainer.run();
  assert.equal(result.steps, STEPS);
  const last = result.last?.dictionaries;
  assert.ok(last !== undefined);
  for (const [id, coder] of trainer.coders) {
    const n = recovered(source.truth.inputs[0], coder.layers[0].dec.data, D);
    assert.ok(n >= 0.9 * F, `${id}: ${n}/${F} planted features recovered`);
    const m = last[id];
    if (id === "topk") assert.ok(m.l0 <= 3 && m.l0 > 2.5, `${id}: L0 ${m.l0}`);
    else assert.ok(Math.abs(m.l0 - l0) < 0.15 * l0, `${id}: L0 ${m.l0}, target ${l0.toFixed(2)}`);
    assert.ok(m.fvu < 0.15, `${id}: FVU ${m.fvu}`);
  }
});

test("a transcoder recovers a planted sparse map; a skip-transcoder also captures the planted linear part", async () => {
  const options = { d: D, features: F, meanL0: 3, kind: "transcoder", seed: 2, maxFrequency: 0.08 } as const;
  const plain = new PlantedSource(options);
  const l0 = plain.truth.frequencies.reduce((a, b) => a + b, 0);
  const tc = {
    inputs: ["in.0"],
    outputs: ["out.0"],
    width: 2 * F,
    ...FAST,
    rule: { kind: "jumprelu", targetL0: l0 },
  };
  const trainer = await Trainer.open({
    backend,
    source: plain,
    config: parseTrainingConfig({
      batchSize: 512,
      steps: STEPS,
      scaleTokens: 4096,
      dictionaries: [{ id: "transcoder", ...tc }],
    }),
    outDir: null,
  });
  await trainer.run();
  const n = recovered(plain.truth.outputs[0], trainer.coders.get("transcoder")!.layers[0].dec.data, D);
  assert.ok(n >= 0.9 * F, `transcoder: ${n}/${F} planted output directions recovered`);

  // y = sum f u + x A: the skip map explains what no sparse code of this width can.
  const withSkip = new PlantedSource({ ...options, skip: 0.5 });
  const both = await Trainer.open({
    backend,
    source: withSkip,
    config: parseTrainingConfig({
      batchSize: 512,
      steps: STEPS,
      logEvery: 20,
      scaleTokens: 4096,
      dictionaries: [
        { id: "transcoder", ...tc },
        { id: "skip", ...tc, skip: true },
      ],
    }),
    outDir: null,
  });
  const r = await both.run();
  const fvu = (id: string) => r.last?.dictionaries[id].fvu ?? Number.NaN;
  assert.ok(fvu("skip") < 0.6 * fvu("transcoder"), `FVU skip ${fvu("skip")} vs plain ${fvu("transcoder")}`);
});

test("a cross-layer transcoder recovers features writing to every later layer", async () => {
  const layers = 3;
  const features = 48;
  const source = new PlantedSource({
    d: D,
    features,
    meanL0: 3,
    layers,
    kind: "transcoder",
    seed: 3,
    maxFrequency: 0.08,
  });
  const l0 = source.truth.frequencies.reduce((a, b) => a + b, 0);
  const trainer = await Trainer.open({
    backend,
    source,
    config: parseTrainingConfig({
      batchSize: 512,
      steps: STEPS,
      logEvery: 20,
      scaleTokens: 4096,
      dictionaries: [
        {
          id: "clt",
          inputs: ["in.0", "in.1", "in.2"],
          outputs: ["out.0", "out.1", "out.2"],
          width: 2 * features,
          ...FAST,
          rule: { kind: "batchtopk", k: l0 },
        },
      ],
    }),
    outDir: null,
  });
  const r = await trainer.run();
  const clt = trainer.coders.get("clt")!;
  for (let l = 0; l < layers; l++) {
    // Each planted feature's decoders to layers l..2, concatenated, against the learned rows.
    const n = recovered(source.truth.outputs[l], clt.layers[l].dec.data, (layers - l) * D);
    assert.ok(n >= 0.9 * features, `layer ${l}: ${n}/${features} recovered`);
  }
  const m = r.last?.dictionaries.clt;
  assert.ok(m !== undefined && Math.abs(m.l0 - l0) < 0.01 * l0, `L0 per layer ${m?.l0} vs ${l0}`);
});

test("JumpReLU reaches its target L0 without the high-frequency penalty; the penalty pulls L0 under it", async () => {
  // Frequent planted features (up to half the tokens), so the penalty (tau = 0.1) binds.
  const source = new PlantedSource({ d: D, features: 512, meanL0: 12, kind: "sae", seed: 3, noise: 0.02 });
  const dictionaries = [0, 1].map((mu) => ({
    id: `mu${mu}`,
    inputs: ["in.0"],
    width: 512,
    lr: 2e-3,
    lrWarmupSteps: 50,
    sparsityWarmupSteps: 100,
    deadWindow: 100_000,
    rule: {
      kind: "jumprelu",
      targetL0: 16,
      frequencyCoefficient: mu,
      bandwidth: 0.005,
      initialThreshold: 0.05,
    },
  }));
  const config = parseTrainingConfig({
    batchSize: 1024,
    steps: 400,
    scaleTokens: 4096,
    logEvery: 50,
    dictionaries,
  });
  const r = await (await Trainer.open({ backend, source, config, outDir: null })).run();
  const l0 = (id: string) => r.last?.dictionaries[id]?.l0 ?? Number.NaN;
  assert.ok(Math.abs(l0("mu0") - 16) < 0.08 * 16, `without the penalty: L0 ${l0("mu0")}, target 16`);
  assert.ok(l0("mu1") < 0.9 * l0("mu0"), `with it: L0 ${l0("mu1")} vs ${l0("mu0")} without`);
});
