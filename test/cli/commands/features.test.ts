/**
 * `glassbox features` against the reference fixtures: the tiny model's first fixture sequence (all
 * 20 tokens real) through the resid_post SAE gives exactly the reference's active features and
 * activations; a CLT labels features with layers; a dictionary for another model is refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { referenceBackend as B } from "../../../src/backends/reference/index.js";
import { SafetensorsFile } from "../../../src/io/safetensors.js";
import { CLT, expected, GS1, MODEL, RESID } from "../../dictionaries/helpers.js";
import { fixture, runCli } from "../../io/helpers.js";

interface Report {
  dictionary: { architecture: string; width: number; reads: string[] };
  tokens: {
    position: number;
    id: number;
    token: string | null;
    l0: number;
    top: { feature: number; activation: number; layer?: number }[];
  }[];
}

const f = SafetensorsFile.open(join(MODEL, "fixture.safetensors"));
const ids = f.readTensorSync("input_ids", B).toFlatArray().slice(0, 20);
const mask = f.readTensorSync("attention_mask", B).toFlatArray().slice(0, 20);
f.close();

function run(args: string[]): Report {
  const r = runCli(["features", "--json", ...args]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Report;
}

test("features: every token's active features equal the reference (resid_post SAE)", () => {
  assert.ok(
    mask.every((m) => m === 1),
    "the first fixture sequence has no padding",
  );
  const r = run(["--model", MODEL, "--dict", RESID, "--ids", ids.join(","), "--top", "128"]);
  assert.deepEqual(r.dictionary.reads, ["blocks.2.resid_post"]);
  const e = expected("resid_post_layer_2", B);
  const acts = e.acts.toFloat32Array();
  const batch = e.batch_index.toFlatArray();
  const pos = e.position.toFlatArray();
  let scale = 0;
  for (const v of acts) scale = Math.max(scale, Math.abs(v));
  assert.equal(r.tokens.length, 20);
  for (const t of r.tokens) {
    const row = batch.findIndex((b, i) => b === 0 && pos[i] === t.position);
    assert.ok(row >= 0);
    const want = new Map<number, number>();
    for (let j = 0; j < 128; j++) if (acts[row * 128 + j] !== 0) want.set(j, acts[row * 128 + j]);
    assert.equal(t.l0, want.size, `position ${t.position} L0`);
    assert.deepEqual(
      new Set(t.top.map((x) => x.feature)),
      new Set(want.keys()),
      `position ${t.position} features`,
    );
    for (const x of t.top) assert.ok(Math.abs(x.activation - (want.get(x.feature) ?? 0)) <= 1e-5 * scale);
    for (let i = 1; i < t.top.length; i++)
      assert.ok(t.top[i - 1].activation >= t.top[i].activation, "sorted");
  }
  const few = run(["--model", MODEL, "--dict", RESID, "--ids", ids.join(","), "--top", "3"]);
  assert.deepEqual(
    few.tokens.map((t) => t.top),
    r.tokens.map((t) => t.top.slice(0, 3)),
  );
});

test("features: Gemma Scope 1 files need their hook point, then agree with Gemma Scope 2", () => {
  const args = ["--model", MODEL, "--ids", "2,15,186", "--top", "6"];
  const none = runCli(["features", "--dict", GS1, ...args]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /params\.npz: the dictionary does not say which site it reads.*--hook-in/);
  const gs1 = run(["--dict", GS1, "--hook-in", "model.layers.2.output", ...args]);
  assert.deepEqual(gs1.tokens, run(["--dict", RESID, ...args]).tokens);
});

test("features: a CLT's features carry their layer; table output", () => {
  const r = run(["--model", MODEL, "--dict", CLT, "--ids", "2,15,186", "--top", "4"]);
  assert.equal(r.dictionary.reads.length, 7);
  for (const t of r.tokens) {
    assert.equal(t.top.length, 4);
    for (const x of t.top) assert.ok(x.layer !== undefined && x.layer >= 0 && x.layer < 7);
  }
  const text = runCli(["features", "--model", MODEL, "--dict", CLT, "--ids", "2,15,186", "--top", "2"]);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /clt, 64 features, reads blocks\.0\.mlp_in \.\. blocks\.6\.mlp_in/);
  assert.match(text.stdout, /^\s+2\s+186\s+\d+\s+L\d\/\d+=/m);
});

test("features: a dictionary that does not fit the model exits 1", () => {
  const other = fixture("gemma3", "text-gqa-bf16-scaled");
  const r = runCli(["features", "--model", other, "--dict", RESID, "--ids", "2,5"]);
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    /layer_2_width_128_l0_small: d_in is 48 but site blocks\.2\.resid_post has width 64/,
  );
  const top = runCli(["features", "--model", MODEL, "--dict", RESID, "--ids", "2", "--top", "0"]);
  assert.equal(top.status, 1);
  assert.match(top.stderr, /--top/);
});
