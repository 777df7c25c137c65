/**
 * Loading from disk: a fake Gemma Scope 2 repository tree built from the fixtures (listing, sizes
 * from tensors not folder names, lazy loading), hook points resolved to model sites, and every kind
 * of bad input failing with a DictionaryError that names the file and the problem.
 */
import assert from "node:assert/strict";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { referenceBackend as B } from "../../src/backends/reference/index.js";
import { DictionaryError } from "../../src/core/errors.js";
import { inspectDictionary, loadDictionary } from "../../src/dictionaries/load.js";
import { listRepository, loadRepositoryEntry } from "../../src/dictionaries/repository.js";
import { dictionarySites } from "../../src/dictionaries/sites.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { type TensorToWrite, writeSafetensorsSync } from "../../src/io/safetensors-write.js";
import { loadGemma3Config } from "../../src/model/gemma3/config.js";
import { tempDir } from "../io/helpers.js";
import { AFFINE, CLT, expected, MODEL, RESID, TRANSCODER } from "./helpers.js";

const dir = tempDir("glassbox-dict-fmt-");
const config = loadGemma3Config(MODEL);

type Edit = (t: Map<string, TensorToWrite>) => void;

/** Copies a Gemma Scope 2 folder to `dst`, editing its config and params on the way. */
function variant(
  src: string,
  dst: string,
  cfg: (c: Record<string, unknown>) => void = () => {},
  edit: Edit = () => {},
): string {
  mkdirSync(dst, { recursive: true });
  const c = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  cfg(c);
  writeFileSync(join(dst, "config.json"), JSON.stringify(c));
  const f = SafetensorsFile.open(join(src, "params.safetensors"));
  const tensors = new Map<string, TensorToWrite>();
  for (const n of f.names()) {
    const r = f.readRawSync(n);
    tensors.set(n, { dtype: r.dtype, shape: r.shape, bytes: r.bytes });
  }
  f.close();
  edit(tensors);
  writeSafetensorsSync(join(dst, "params.safetensors"), tensors);
  return dst;
}

function expectError(f: () => unknown, file: string, message: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof DictionaryError, `expected a DictionaryError, got ${String(e)}`);
    assert.ok(e.message.includes(file), `message ${JSON.stringify(e.message)} should name ${file}`);
    assert.match(e.message, message);
    return true;
  });
}

test("a Gemma Scope 2 repository copy: list what it holds, load entries lazily", () => {
  const root = join(dir, "gemma-scope-2-tiny-pt");
  cpSync(RESID, join(root, "resid_post", "layer_2_width_128_l0_small"), { recursive: true });
  cpSync(TRANSCODER, join(root, "transcoder", "layer_5_width_128_l0_small"), { recursive: true });
  cpSync(AFFINE, join(root, "transcoder", "layer_5_width_128_l0_small_affine"), { recursive: true });
  cpSync(CLT, join(root, "clt", "width_64_l0_small"), { recursive: true });
  // The folder name claims 16k: the listing must report the tensors' width.
  variant(RESID, join(root, "resid_post_all", "layer_3_width_16k_l0_big_seed_1"), (c) => {
    c.hf_hook_point_in = "model.layers.3.output";
    c.hf_hook_point_out = "model.layers.3.output";
  });
  variant(RESID, join(root, "resid_post", "layer_4_width_16k_l0_medium"), undefined, (t) =>
    t.delete("w_dec"),
  );
  mkdirSync(join(root, "resid_post", "notes"));
  const listing = listRepository(root);
  const rows = listing.entries.map((e) => [
    e.folder,
    e.group,
    e.layer,
    e.width,
    e.l0Label,
    e.architecture,
    e.skip,
    e.layers,
  ]);
  assert.deepEqual(rows, [
    ["clt/width_64_l0_small", "clt", null, 64, "small", "clt", false, 7],
    ["resid_post/layer_2_width_128_l0_small", "resid_post", 2, 128, "small", "sae", false, null],
    ["resid_post_all/layer_3_width_16k_l0_big_seed_1", "resid_post_all", 3, 128, "big", "sae", false, null],
    ["transcoder/layer_5_width_128_l0_small", "transcoder", 5, 128, "small", "transcoder", false, null],
    [
      "transcoder/layer_5_width_128_l0_small_affine",
      "transcoder",
      5,
      128,
      "small",
      "skip_transcoder",
      true,
      null,
    ],
  ]);
  assert.equal(listing.entries[2].seed, 1);
  assert.deepEqual(
    listing.problems.map((p) => p.folder),
    ["resid_post/layer_4_width_16k_l0_medium", "resid_post/notes"],
  );
  assert.match(listing.problems[0].message, /missing tensor "w_dec"/);
  const clt = listing.entries[0];
  assert.equal(clt.files.length, 8);
  const d = loadRepositoryEntry(clt, B);
  const e = expected("clt", B);
  const err = d.error(e.x, e.target);
  assert.deepEqual([...err.shape], [7, 40, 48]);
  const info = inspectDictionary(join(root, listing.entries[4].folder));
  assert.equal(info.hookOut, "model.layers.5.post_feedforward_layernorm.output");
});

test("hook points resolve to model sites, checked against d_in / d_out", () => {
  const sae = dictionarySites(loadDictionary(RESID, B).spec, config);
  assert.deepEqual(
    [sae.read.map((s) => s.name), sae.write.map((s) => s.name)],
    [["blocks.2.resid_post"], ["blocks.2.resid_post"]],
  );
  const tc = dictionarySites(loadDictionary(TRANSCODER, B).spec, config);
  assert.deepEqual([tc.read[0].name, tc.write[0].name], ["blocks.5.mlp_in", "blocks.5.mlp_out"]);
  const clt = dictionarySites(loadDictionary(CLT, B).spec, config);
  assert.deepEqual(
    clt.read.map((s) => s.name),
    Array.from({ length: 7 }, (_, l) => `blocks.${l}.mlp_in`),
  );
  assert.deepEqual(clt.write[6].name, "blocks.6.mlp_out");
});

test("bad input: DictionaryError naming the file and the problem", () => {
  const bad = (name: string) => join(dir, "bad", name);
  mkdirSync(bad("empty"), { recursive: true });
  expectError(() => loadDictionary(bad("empty"), B), bad("empty"), /not a dictionary: expected config\.json/);
  expectError(() => loadDictionary(bad("nowhere"), B), bad("nowhere"), /no such file or folder/);

  const missing = variant(RESID, bad("missing"), undefined, (t) => t.delete("threshold"));
  expectError(
    () => loadDictionary(missing, B),
    join(missing, "params.safetensors"),
    /missing tensor "threshold"/,
  );

  const shape = variant(RESID, bad("shape"), undefined, (t) => {
    t.set("b_enc", { dtype: "F32", shape: [127], data: new Float32Array(127) });
  });
  expectError(() => loadDictionary(shape, B), "params.safetensors", /"b_enc" must be \[128\], got \[127\]/);

  const dtype = variant(RESID, bad("dtype"), undefined, (t) => {
    t.set("w_enc", { dtype: "I32", shape: [48, 128], data: new Int32Array(48 * 128) });
  });
  expectError(() => loadDictionary(dtype, B), "params.safetensors", /"w_enc" has dtype I32/);

  const type = variant(RESID, bad("type"), (c) => {
    c.type = "banana";
  });
  expectError(() => loadDictionary(type, B), join(type, "config.json"), /unsupported type "banana"/);

  const arch = variant(RESID, bad("arch"), (c) => {
    c.architecture = "gated";
  });
  expectError(() => loadDictionary(arch, B), "config.json", /unsupported architecture "gated"/);

  const affine = variant(RESID, bad("affine"), (c) => {
    c.affine_connection = true;
    c.type = "transcoder";
  });
  expectError(
    () => loadDictionary(affine, B),
    "params.safetensors",
    /missing tensor "affine_skip_connection"/,
  );

  const notJson = variant(RESID, bad("json"));
  writeFileSync(join(notJson, "config.json"), "{ nope");
  expectError(() => loadDictionary(notJson, B), "config.json", /not valid JSON/);

  const allInSae = variant(RESID, bad("all"), (c) => {
    c.hf_hook_point_in = "model.layers.{all}.output";
  });
  expectError(() => loadDictionary(allInSae, B), "config.json", /\{all\}.*only for cross-layer transcoders/);

  const site = variant(RESID, bad("site"), (c) => {
    c.hf_hook_point_in = "model.layers.2.banana";
    c.hf_hook_point_out = "model.layers.2.banana";
  });
  expectError(
    () => dictionarySites(loadDictionary(site, B).spec, config),
    site,
    /"model\.layers\.2\.banana" is not a site/,
  );

  const far = variant(RESID, bad("far"), (c) => {
    c.hf_hook_point_in = "model.layers.40.output";
    c.hf_hook_point_out = "model.layers.40.output";
  });
  expectError(() => dictionarySites(loadDictionary(far, B).spec, config), far, /out of range/);

  const z = variant(RESID, bad("z"), (c) => {
    c.hf_hook_point_in = "model.layers.2.self_attn.o_proj.input";
    c.hf_hook_point_out = "model.layers.2.self_attn.o_proj.input";
  });
  expectError(
    () => dictionarySites(loadDictionary(z, B).spec, config),
    z,
    /d_in is 48 but site blocks\.2\.z has width 64/,
  );

  const cltGap = bad("clt-gap");
  cpSync(CLT, cltGap, { recursive: true });
  rmSync(join(cltGap, "params_layer_3.safetensors"));
  expectError(() => loadDictionary(cltGap, B), cltGap, /params_layer_3\.safetensors is missing/);

  const cltShape = bad("clt-shape");
  cpSync(CLT, cltShape, { recursive: true });
  const l2 = join(cltShape, "params_layer_2.safetensors");
  variant(RESID, bad("tmp"));
  cpSync(join(bad("tmp"), "params.safetensors"), l2);
  expectError(() => loadDictionary(cltShape, B), l2, /"w_dec" must have 3 dims/);
});

test("Gemma Scope 1 npz: missing arrays are named", () => {
  const d = join(dir, "gs1-bad");
  mkdirSync(d);
  writeFileSync(join(d, "params.npz"), Buffer.alloc(10));
  assert.throws(() => loadDictionary(d, B), DictionaryError);
});

test("an affine CLT adds x_l @ A_l to each layer's output", () => {
  const src = CLT;
  const dst = join(dir, "clt-affine");
  mkdirSync(dst);
  const c = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  c.affine_connection = true;
  writeFileSync(join(dst, "config.json"), JSON.stringify(c));
  for (let l = 0; l < 7; l++) {
    const f = SafetensorsFile.open(join(src, `params_layer_${l}.safetensors`));
    const tensors = new Map<string, TensorToWrite>();
    for (const n of f.names()) {
      const r = f.readRawSync(n);
      tensors.set(n, { dtype: r.dtype, shape: r.shape, bytes: r.bytes });
    }
    f.close();
    const a = new Float32Array(48 * 48).map((_, i) => Math.sin(i * 0.37 + l) * 0.1);
    tensors.set("affine_skip_connection", { dtype: "F32", shape: [48, 48], data: a });
    writeSafetensorsSync(join(dst, `params_layer_${l}.safetensors`), tensors);
  }
  const plain = loadDictionary(CLT, B);
  const affine = loadDictionary(dst, B);
  assert.equal(affine.spec.skip, true);
  const e = expected("clt", B);
  const x = e.x.toFloat32Array();
  const n = 40;
  const got = affine.reconstruct(e.x).toFloat32Array();
  const base = plain.reconstruct(e.x).toFloat32Array();
  for (let l = 0; l < 7; l++) {
    for (let t = 0; t < n; t += 13) {
      for (let o = 0; o < 48; o += 7) {
        let s = 0;
        for (let i = 0; i < 48; i++) s += x[(l * n + t) * 48 + i] * Math.sin((i * 48 + o) * 0.37 + l) * 0.1;
        const k = (l * n + t) * 48 + o;
        assert.ok(Math.abs(got[k] - base[k] - s) < 1e-4, `layer ${l} token ${t} out ${o}`);
      }
    }
  }
  const a = affine.encode(e.x);
  assert.throws(() => affine.decode(a), /decodes with its input/);
});
