/**
 * Checks the committed parity fixtures (written by reference/fixtures.py): every fixture file under
 * test/fixtures/gemma3 and test/fixtures/dictionaries carries the glassbox fixture format and
 * version, says how it was generated, and holds the tensors its description lists. Weight files next
 * to them (model*.safetensors, params*.safetensors, sae_weights.safetensors) must be readable
 * safetensors. Parity itself is tested by the model and dictionary tests that use these files.
 */

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { writeSafetensorsSync } from "../../src/io/safetensors-write.js";

const FORMAT = "glassbox-fixture";
const FORMAT_VERSION = "1";
const HINT = "regenerate with `bash reference/regen_fixtures.sh` (set up with `bash reference/setup.sh`)";

const here = fileURLToPath(new URL(".", import.meta.url));
const compiled = import.meta.url.endsWith(".js");
const repoRoot = compiled ? join(here, "..", "..", "..") : join(here, "..", "..");
const fixturesRoot = join(repoRoot, "test", "fixtures");
/** The folders reference/fixtures.py writes (test/fixtures/npz and others belong to other generators). */
const roots = ["gemma3", "dictionaries"].map((d) => join(fixturesRoot, d));

/** Fixtures that must exist; a missing one fails instead of silently shrinking the check. */
const required = [
  "gemma3/text-mqa-f32-legacy/fixture.safetensors",
  "gemma3/text-gqa-bf16-scaled/fixture.safetensors",
  "gemma3/mm-legacy-prefix-f32/fixture.safetensors",
  "gemma3/mm-new-prefix-bf16/fixture.safetensors",
  "dictionaries/expected/resid_post_layer_2.safetensors",
  "dictionaries/expected/transcoder_layer_5.safetensors",
  "dictionaries/expected/transcoder_layer_5_affine.safetensors",
  "dictionaries/expected/clt.safetensors",
];

const LAYER_SITES = [
  "resid_pre",
  "attn_in",
  "q",
  "k",
  "v",
  "pattern",
  "z",
  "attn_out",
  "resid_mid",
  "mlp_in",
  "mlp_hidden",
  "mlp_out",
  "resid_post",
] as const;

function isWeightFile(name: string): boolean {
  return /^(model(-\d{5}-of-\d{5})?|params(_layer_\d+)?|sae_weights)\.safetensors$/.test(name);
}

function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith(".safetensors")) out.push(p);
  }
  return out;
}

interface ListedTensor {
  dtype: string;
  shape: number[];
}
interface Description {
  kind: string;
  tensors: Record<string, ListedTensor>;
  text_config?: {
    num_hidden_layers: number;
    hidden_size: number;
    intermediate_size: number;
    num_attention_heads: number;
    num_key_value_heads: number;
    head_dim: number;
    vocab_size: number;
  };
  model_dir?: string;
  folders?: Record<string, string>;
}

function withFile<T>(path: string, fn: (f: SafetensorsFile) => T): T {
  let f: SafetensorsFile;
  try {
    f = SafetensorsFile.open(path);
  } catch (e) {
    throw new Error(`${relative(repoRoot, path)}: not a readable safetensors file (${String(e)}); ${HINT}`);
  }
  try {
    return fn(f);
  } finally {
    f.close();
  }
}

function meta(f: SafetensorsFile, rel: string, key: string): string {
  const v = f.metadata[key];
  assert.equal(typeof v, "string", `${rel}: metadata has no "${key}"; ${HINT}`);
  return v as string;
}

function expectShape(f: SafetensorsFile, rel: string, name: string, shape: readonly number[]): void {
  assert.ok(f.has(name), `${rel}: missing tensor ${name}; ${HINT}`);
  assert.deepEqual(f.info(name).shape, shape, `${rel}: ${name} has the wrong shape; ${HINT}`);
}

function checkModelFixture(f: SafetensorsFile, rel: string, d: Description): void {
  const c = d.text_config;
  assert.ok(c, `${rel}: description has no text_config; ${HINT}`);
  const [b, s] = f.info("input_ids").shape as [number, number];
  const dm = c.hidden_size;
  const nh = c.num_attention_heads;
  const nkv = c.num_key_value_heads;
  const hd = c.head_dim;
  for (const n of ["input_ids", "attention_mask", "position_ids"]) expectShape(f, rel, n, [b, s]);
  expectShape(f, rel, "logits", [b, s, c.vocab_size]);
  expectShape(f, rel, "act.logits", [b, s, c.vocab_size]);
  expectShape(f, rel, "act.embed", [b, s, dm]);
  expectShape(f, rel, "act.final_norm", [b, s, dm]);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const shapes: Record<(typeof LAYER_SITES)[number], number[]> = {
      resid_pre: [b, s, dm],
      attn_in: [b, s, dm],
      q: [b, nh, s, hd],
      k: [b, nkv, s, hd],
      v: [b, nkv, s, hd],
      pattern: [b, nh, s, s],
      z: [b, s, nh * hd],
      attn_out: [b, s, dm],
      resid_mid: [b, s, dm],
      mlp_in: [b, s, dm],
      mlp_hidden: [b, s, c.intermediate_size],
      mlp_out: [b, s, dm],
      resid_post: [b, s, dm],
    };
    for (const site of LAYER_SITES) expectShape(f, rel, `act.blocks.${i}.${site}`, shapes[site]);
  }
  assert.ok(f.has("greedy.input_ids") && f.has("greedy.output_ids"), `${rel}: missing greedy.*; ${HINT}`);
  for (const name of f.names()) {
    if (name.startsWith("act.")) assert.equal(f.info(name).dtype, "F32", `${rel}: ${name} is not F32`);
  }
  if (d.model_dir !== undefined) {
    const dir = join(repoRoot, d.model_dir);
    assert.ok(existsSync(join(dir, "config.json")), `${rel}: ${d.model_dir}/config.json missing; ${HINT}`);
  }
}

function checkDictionaryFixture(f: SafetensorsFile, rel: string, d: Description): void {
  for (const n of ["x", "acts", "recon"]) assert.ok(f.has(n), `${rel}: missing tensor ${n}; ${HINT}`);
  const x = f.info("x").shape;
  const acts = f.info("acts").shape;
  assert.deepEqual(acts.slice(0, -1), x.slice(0, -1), `${rel}: acts and x disagree on leading dims`);
  assert.deepEqual(f.info("recon").shape.slice(0, -1), x.slice(0, -1), `${rel}: recon and x disagree`);
  for (const folder of Object.values(d.folders ?? {})) {
    assert.ok(existsSync(join(repoRoot, folder)), `${rel}: dictionary ${folder} missing; ${HINT}`);
  }
}

/** Throws (with the regeneration hint) unless `path` is a well-formed glassbox fixture. */
function checkFixtureFile(path: string): void {
  const rel = relative(repoRoot, path);
  withFile(path, (f) => {
    assert.equal(f.metadata.format, FORMAT, `${rel}: metadata format is not "${FORMAT}"; ${HINT}`);
    assert.equal(
      f.metadata.format_version,
      FORMAT_VERSION,
      `${rel}: fixture format_version ${String(f.metadata.format_version)} != ${FORMAT_VERSION}; ${HINT}`,
    );
    const generator = meta(f, rel, "generator");
    assert.match(
      generator,
      /reference\/fixtures\.py /,
      `${rel}: generator does not name reference/fixtures.py`,
    );
    meta(f, rel, "torch_version");
    meta(f, rel, "transformers_version");
    const d = JSON.parse(meta(f, rel, "description")) as Description;
    const listed = Object.keys(d.tensors).sort();
    assert.deepEqual(f.names().sort(), listed, `${rel}: tensors differ from the description's list; ${HINT}`);
    for (const [name, t] of Object.entries(d.tensors)) {
      const info = f.info(name);
      assert.equal(info.dtype, t.dtype, `${rel}: ${name} dtype`);
      assert.deepEqual(info.shape, t.shape, `${rel}: ${name} shape`);
    }
    if (d.kind === "gemma3-model-parity") checkModelFixture(f, rel, d);
    else if (d.kind.startsWith("jumprelu-")) checkDictionaryFixture(f, rel, d);
    else assert.fail(`${rel}: unknown fixture kind ${d.kind}; ${HINT}`);
  });
}

const all = roots.flatMap(walk);
const fixtureFiles = all.filter((p) => !isWeightFile(p.split("/").pop() ?? ""));
const weightFiles = all.filter((p) => isWeightFile(p.split("/").pop() ?? ""));

describe("reference fixtures", () => {
  test("every required fixture is present", () => {
    const have = new Set(fixtureFiles.map((p) => relative(fixturesRoot, p)));
    for (const r of required) assert.ok(have.has(r), `test/fixtures/${r} is missing; ${HINT}`);
  });

  for (const path of fixtureFiles) {
    test(`${relative(repoRoot, path)}: format, version, generator and listed tensors`, () =>
      checkFixtureFile(path));
  }

  test("a fixture of another format_version fails with the regeneration hint", () => {
    const dir = mkdtempSync(join(tmpdir(), "glassbox-fixture-"));
    try {
      const path = join(dir, "stale.safetensors");
      const tensors = { x: { dtype: "F32" as const, shape: [1], data: new Float32Array([1]) } };
      const description = JSON.stringify({
        kind: "jumprelu-sae",
        tensors: { x: { dtype: "F32", shape: [1] } },
      });
      writeSafetensorsSync(path, tensors, { format: FORMAT, format_version: "0", description });
      assert.throws(() => checkFixtureFile(path), /format_version 0 != 1.*reference\/regen_fixtures\.sh/);
      writeSafetensorsSync(path, tensors, {});
      assert.throws(() => checkFixtureFile(path), /format is not "glassbox-fixture".*regen_fixtures\.sh/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("weight files next to the fixtures are readable safetensors", () => {
    assert.ok(weightFiles.length > 0, `no weight files under test/fixtures; ${HINT}`);
    for (const path of weightFiles) withFile(path, (f) => assert.ok(f.names().length > 0));
  });
});
