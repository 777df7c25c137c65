import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readDocuments, tokenizeDocuments } from "../../src/activations/documents.js";
import { maskingRules } from "../../src/activations/sequences.js";
import { referenceBackend } from "../../src/backends/index.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { evaluateDictionary } from "../../src/eval/evaluate.js";
import { Tokenizer } from "../../src/io/tokenizer.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { writeTestModel } from "../activations/model-fixture.js";
import { fixture, runCli, tempDir } from "../io/helpers.js";

const root = tempDir("glassbox-eval-cli-");
const modelDir = writeTestModel(join(root, "model"));
const data = join(root, "held-out.jsonl");
writeFileSync(
  data,
  [
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs.",
    "How vexingly quick daft zebras jump!",
  ]
    .map((text) => JSON.stringify({ text }))
    .join("\n"),
);
const sae = fixture("dictionaries", "gemma-scope-2-tiny", "resid_post", "layer_2_width_128_l0_small");

test("eval --json reports every metric, equal to evaluateDictionary on the same data", async () => {
  const r = runCli(["eval", "--model", modelDir, "--dict", sae, "--data", data, "--context", "32", "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout);
  for (const k of [
    "l0",
    "mse",
    "fvu",
    "dead_fraction",
    "dense_fraction",
    "delta_lm_loss",
    "ce_loss_recovered",
    "kl_score",
  ])
    assert.equal(typeof got[k], "number", k);
  assert.deepEqual(Object.keys(got.density_histogram), ["edges", "counts", "dead"]);
  const tok = Tokenizer.fromDir(modelDir);
  const want = await evaluateDictionary({
    model: loadGemma3(modelDir, referenceBackend),
    dictionary: loadDictionary(sae, referenceBackend),
    documents: () =>
      tokenizeDocuments(readDocuments({ path: data, format: "jsonl", textField: "text" }), tok, null),
    context: 32,
    bos: 2,
    rules: maskingRules("text", tok.special),
    longDocuments: "split",
  });
  assert.equal(got.tokens, want.tokens);
  assert.equal(got.read_site, "blocks.2.resid_post");
  // The CLI runs on the default backend: a latent at its threshold may flip, so allow one firing in a few.
  for (const k of ["l0", "dead_fraction", "dense_fraction"] as const)
    assert.ok(Math.abs(got[k] - want[k]) <= 3 / want.tokens, `${k}: ${got[k]} vs ${want[k]}`);
  for (const k of ["mse", "fvu", "delta_lm_loss", "ce_loss_recovered", "kl_score"] as const)
    assert.ok(
      Math.abs(got[k] - want[k]) <= 1e-4 * Math.max(1, Math.abs(want[k])),
      `${k}: ${got[k]} vs ${want[k]}`,
    );
});

test("eval prints a readable table", () => {
  const r = runCli([
    "eval",
    "--model",
    modelDir,
    "--dict",
    sae,
    "--data",
    data,
    "--tokens",
    "5",
    "--batch",
    "1",
  ]);
  assert.equal(r.status, 0, r.stderr);
  for (const label of [
    "L0",
    "FVU",
    "dead latents",
    "delta LM loss",
    "CE loss recovered",
    "KL score",
    "log10 firing density",
  ])
    assert.match(r.stdout, new RegExp(`^${label}`, "m"));
});

test("eval: bad input (empty, missing, unknown or site-less dictionary, bad flags) exits 1 with one line", () => {
  const empty = join(root, "empty.jsonl");
  writeFileSync(empty, "");
  const cases: [string[], RegExp][] = [
    [["--dict", sae, "--data", empty], /the dataset is empty/],
    [["--dict", sae, "--data", join(root, "nope.jsonl")], /cannot read the dataset/],
    [["--dict", join(root, "no-dict"), "--data", data], /no-dict/],
    [
      [
        "--dict",
        fixture("dictionaries", "gemma-scope-1-tiny", "layer_2", "width_128", "average_l0_20"),
        "--data",
        data,
      ],
      /does not say which site it reads/,
    ],
    [["--dict", sae, "--data", data, "--tokens", "x"], /--tokens: must be a positive integer/],
  ];
  for (const [args, re] of cases) {
    const r = runCli(["eval", "--model", modelDir, ...args]);
    assert.equal(r.status, 1, `${args.join(" ")}: ${r.stdout}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});
