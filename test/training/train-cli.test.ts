// `glassbox train`: several dictionaries from one pass over a store, Gemma Scope 2 exports that
// load back, automatic resume, streaming from the model, a JSON config file, and clear errors for
// bad input.
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { referenceBackend } from "../../src/backends/index.js";
import { runTrain, type TrainFlags } from "../../src/cli/commands/train.js";
import { type GlassboxError, TrainingError, UsageError } from "../../src/core/errors.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { writeTestModel } from "../activations/model-fixture.js";
import { runCli, tempDir } from "../io/helpers.js";

const root = tempDir("glassbox-train-cli-");
const modelDir = writeTestModel(join(root, "model"));
const otherModel = writeTestModel(join(root, "other-model"), true);
const words = "the quick brown fox jumps over a lazy dog while five boxes of jugs wait by black quartz".split(
  " ",
);
const data = join(root, "data.jsonl");
writeFileSync(
  data,
  Array.from({ length: 40 }, (_, d) =>
    JSON.stringify({
      text: Array.from({ length: 50 }, (_, i) => words[(d * 7 + i * 13 + i * i) % words.length]).join(" "),
    }),
  ).join("\n"),
);
const store = join(root, "store");
const harvest = runCli([
  "harvest",
  "--model",
  modelDir,
  "--sites",
  "blocks.1.resid_post,blocks.2.mlp_in,blocks.2.mlp_out",
  "--data",
  data,
  "--out",
  store,
  "--json",
]);
assert.equal(harvest.status, 0, harvest.stderr);

const FAST = [
  "--lr",
  "3e-3",
  "--lr-warmup",
  "3",
  "--sparsity-warmup",
  "5",
  "--scale-tokens",
  "1024",
  "--batch-size",
  "128",
];

function trainJson(args: string[]) {
  const r = runCli(["train", "--model", modelDir, ...args, ...FAST, "--json"]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as {
    resumed: boolean;
    resumed_at_step: number;
    steps: number;
    dictionaries: { id: string; path: string; l0: number; fvu: number }[];
  };
}

test("train --store: sites x widths x L0 targets from one pass, exported, then resumed", () => {
  const out = join(root, "run-sae");
  const args = [
    "--store",
    store,
    "--out",
    out,
    "--sites",
    "blocks.1.resid_post",
    "--widths",
    "64,96",
    "--l0",
    "4,8",
  ];
  const r = trainJson([...args, "--steps", "12", "--checkpoint-every", "5"]);
  assert.equal(r.resumed, false);
  assert.equal(r.steps, 12);
  assert.deepEqual(
    r.dictionaries.map((d) => d.id),
    [
      "resid_post/layer_1_width_64_l0_4",
      "resid_post/layer_1_width_64_l0_8",
      "resid_post/layer_1_width_96_l0_4",
      "resid_post/layer_1_width_96_l0_8",
    ],
  );
  for (const d of r.dictionaries) {
    const dict = loadDictionary(d.path, referenceBackend);
    assert.equal(dict.spec.hookIn, "model.layers.1.output");
    assert.equal(dict.spec.width, d.id.includes("width_64") ? 64 : 96);
    assert.ok(Number.isFinite(d.fvu) && d.l0 > 0);
  }
  const lines = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n");
  assert.equal(JSON.parse(lines[lines.length - 1]).step, 12);
  const again = trainJson([...args, "--steps", "20", "--checkpoint-every", "5"]);
  assert.equal(again.resumed, true);
  assert.equal(again.resumed_at_step, 12);
  assert.equal(again.steps, 20);
  // A finished run trains nothing more, re-exports and reports the last logged metrics.
  const done = trainJson([...args, "--steps", "20", "--checkpoint-every", "5"]);
  assert.equal(done.resumed_at_step, 20);
  assert.deepEqual(
    done.dictionaries.map((d) => d.l0),
    again.dictionaries.map((d) => d.l0),
  );
});

test("train --data streams from the model: skip-transcoder at one layer; a JSON config file works too", () => {
  const out = join(root, "run-stream");
  const r = trainJson([
    "--data",
    data,
    "--out",
    out,
    "--kind",
    "skip-transcoder",
    "--layers",
    "2",
    "--widths",
    "64",
    "--l0",
    "4",
    "--steps",
    "6",
  ]);
  assert.equal(r.dictionaries[0].id, "transcoder/layer_2_width_64_l0_4_affine");
  const dict = loadDictionary(r.dictionaries[0].path, referenceBackend);
  assert.equal(dict.spec.skip, true);
  assert.equal(dict.spec.hookOut, "model.layers.2.post_feedforward_layernorm.output");

  const config = join(root, "config.json");
  writeFileSync(
    config,
    JSON.stringify({
      batchSize: 128,
      steps: 6,
      scaleTokens: 512,
      dictionaries: [
        {
          id: "m",
          inputs: "blocks.1.resid_post",
          width: 64,
          groups: [16, 16, 32],
          lr: 3e-3,
          rule: { kind: "batchtopk", k: 4 },
        },
        {
          id: "t",
          inputs: "blocks.2.mlp_in",
          outputs: "blocks.2.mlp_out",
          width: 64,
          lr: 3e-3,
          rule: { kind: "topk", k: 4 },
        },
      ],
    }),
  );
  const c = runCli([
    "train",
    "--model",
    modelDir,
    "--store",
    store,
    "--out",
    join(root, "run-config"),
    "--config",
    config,
    "--json",
  ]);
  assert.equal(c.status, 0, c.stderr);
  const rep = JSON.parse(c.stdout);
  assert.deepEqual(
    rep.dictionaries.map((d: { id: string }) => d.id),
    ["m", "t"],
  );
  assert.equal(
    JSON.parse(readFileSync(join(root, "run-config", "t", "config.json"), "utf8")).architecture,
    "topk",
  );
});

const base: TrainFlags = {
  model: modelDir,
  out: "",
  store,
  textField: "text",
  context: "256",
  forwardBatch: "8",
  kind: "sae",
  sites: "blocks.1.resid_post",
  widths: "64",
  l0: "4",
  steps: "2",
  batchSize: "128",
  scaleTokens: "256",
  seed: "0",
  epochs: "1",
  shuffleBuffer: "65536",
  json: true,
};

test("bad input fails with a clear error and no stack trace", async () => {
  const cases: [
    { [K in keyof TrainFlags]?: TrainFlags[K] | undefined },
    new (...a: never[]) => GlassboxError,
    RegExp,
  ][] = [
    [{ sites: "blocks.1.resid_middle" }, TrainingError, /unknown site/],
    [{ sites: "blocks.99.resid_post" }, TrainingError, /out of range/],
    [{ sites: "blocks.3.resid_post" }, TrainingError, /unknown site "blocks.3.resid_post" \(the data has/],
    [{ widths: "0" }, UsageError, /positive integer/],
    [{ widths: "8", l0: "16" }, TrainingError, /L0 target 16 exceeds the width 8/],
    [{ widths: String(2 ** 27) }, TrainingError, /larger than/],
    [{ model: otherModel }, TrainingError, /another model/],
    [{ out: join(data, "sub") }, TrainingError, /output directory/],
    [{ store: undefined }, UsageError, /exactly one of --store/],
    [{ kind: "crosscoder" }, UsageError, /must be one of/],
    [{ matryoshka: "1/2,1/4" }, UsageError, /sum to/],
  ];
  for (const [flags, type, message] of cases) {
    const out = join(root, `bad-${Math.random().toString(36).slice(2)}`);
    const merged = { ...base, out, ...flags };
    if (merged.store === undefined) delete merged.store;
    await assert.rejects(
      runTrain(merged as TrainFlags),
      (e: unknown) => e instanceof type && message.test(e.message),
      JSON.stringify(flags),
    );
  }
  const badConfig = join(root, "bad.json");
  writeFileSync(
    badConfig,
    JSON.stringify({
      steps: 2,
      dictionaries: [{ inputs: "blocks.1.resid_post", width: 64, widht: 3, rule: { kind: "topk", k: 2 } }],
    }),
  );
  const r = runCli([
    "train",
    "--model",
    modelDir,
    "--store",
    store,
    "--out",
    join(root, "bad-config"),
    "--config",
    badConfig,
  ]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^glassbox: .*unknown setting "widht"\n$/);
  assert.ok(!existsSync(join(root, "bad-config", "checkpoint.safetensors")));
  // Dictionary flags next to a config file would be ignored: refused instead.
  const mixed = runCli([
    "train",
    "--model",
    modelDir,
    "--store",
    store,
    "--out",
    join(root, "mixed"),
    "--config",
    badConfig,
    "--widths",
    "128",
    "--lr-warmup",
    "5",
  ]);
  assert.equal(mixed.status, 1);
  assert.match(mixed.stderr, /^glassbox: .*--widths, --lr-warmup cannot be combined with a config file/);
  assert.ok(!existsSync(join(root, "mixed")));
});
