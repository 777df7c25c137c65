/**
 * Saving in the Gemma Scope 2 layout and loading back is bit-exact: every tensor's bytes, the spec
 * and the outputs, for each fixture (including the CLT and the skip-transcoder), for dictionaries
 * converted from the other formats, and for in-memory ReLU / TopK / BatchTopK dictionaries.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { referenceBackend as B } from "../../src/backends/reference/index.js";
import { randomNormal } from "../../src/core/random.js";
import { batchTopK } from "../../src/dictionaries/activations/batchtopk.js";
import { relu } from "../../src/dictionaries/activations/relu.js";
import { topK } from "../../src/dictionaries/activations/topk.js";
import { Sae } from "../../src/dictionaries/architectures/sae.js";
import { loadGemmaScope2, saveGemmaScope2 } from "../../src/dictionaries/formats/gemma-scope-2.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import type { Dictionary } from "../../src/dictionaries/types.js";
import { tempDir } from "../io/helpers.js";
import { AFFINE, CLT, expected, GS1, RESID, SAELENS, TRANSCODER } from "./helpers.js";

const dir = tempDir("glassbox-dict-rt-");

function bytesOf(d: Dictionary): Map<string, { shape: readonly number[]; dtype: string; bytes: Buffer }> {
  const out = new Map<string, { shape: readonly number[]; dtype: string; bytes: Buffer }>();
  for (const f of d.gemmaScope2Form().files) {
    for (const [name, t] of Object.entries(f.tensors())) {
      const data = t.data;
      out.set(`${f.layer}/${name}`, {
        shape: t.shape,
        dtype: t.dtype,
        bytes: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
      });
    }
  }
  return out;
}

async function roundTrip(
  d: Dictionary,
  name: string,
  input: Parameters<Dictionary["encode"]>[0],
): Promise<Dictionary> {
  const out = join(dir, name);
  await saveGemmaScope2(d, out);
  const back = loadGemmaScope2(out, B);
  assert.deepEqual({ ...back.spec, source: "" }, { ...d.spec, source: "" }, `${name}: spec`);
  const a = bytesOf(d);
  const b = bytesOf(back);
  assert.deepEqual([...b.keys()], [...a.keys()], `${name}: tensor names`);
  for (const [k, v] of a) {
    const w = b.get(k);
    assert.ok(w);
    assert.deepEqual([...w.shape], [...v.shape], `${name} ${k} shape`);
    assert.equal(w.dtype, v.dtype, `${name} ${k} dtype`);
    assert.ok(w.bytes.equals(v.bytes), `${name} ${k}: bytes differ`);
  }
  const r1 = d.reconstruct(input).data;
  const r2 = back.reconstruct(input).data;
  assert.ok(Buffer.from(r1.buffer).equals(Buffer.from(r2.buffer)), `${name}: reconstructions differ`);
  // Saving the loaded copy again gives byte-identical files.
  const again = join(dir, `${name}-again`);
  await saveGemmaScope2(back, again);
  for (const f of readdirSync(out)) {
    assert.ok(
      readFileSync(join(out, f)).equals(readFileSync(join(again, f))),
      `${name}: ${f} differs after a second save`,
    );
  }
  return back;
}

test("Gemma Scope 2 fixtures (SAE, transcoder, skip-transcoder, CLT) round-trip bit-exactly", async () => {
  await roundTrip(loadDictionary(RESID, B), "resid", expected("resid_post_layer_2", B).x);
  await roundTrip(loadDictionary(TRANSCODER, B), "tc", expected("transcoder_layer_5", B).x);
  await roundTrip(loadDictionary(AFFINE, B), "affine", expected("transcoder_layer_5_affine", B).x);
  const clt = await roundTrip(loadDictionary(CLT, B), "clt", expected("clt", B).x);
  assert.equal(clt.spec.layers, 7);
  const cfg = JSON.parse(readFileSync(join(dir, "clt", "config.json"), "utf8"));
  assert.equal(cfg.width, 7 * 64, "a CLT config's width counts every layer's features, as published");
  assert.equal(cfg.hf_hook_point_in, "model.layers.{all}.pre_feedforward_layernorm.output");
  assert.deepEqual(readdirSync(join(dir, "clt")).sort(), [
    "config.json",
    ...Array.from({ length: 7 }, (_, i) => `params_layer_${i}.safetensors`).sort(),
  ]);
});

test("the saved config.json has the published keys and values", async () => {
  const original = JSON.parse(readFileSync(join(AFFINE, "config.json"), "utf8"));
  await saveGemmaScope2(loadDictionary(AFFINE, B), join(dir, "affine-cfg"));
  const saved = JSON.parse(readFileSync(join(dir, "affine-cfg", "config.json"), "utf8"));
  assert.deepEqual(saved, original);
});

test("SAELens and Gemma Scope 1 dictionaries convert to Gemma Scope 2 exactly", async () => {
  const x = expected("resid_post_layer_2", B).x;
  const gs2 = bytesOf(loadDictionary(RESID, B));
  const hook = "model.layers.2.output";
  for (const [d, name] of [
    [loadDictionary(SAELENS, B), "from-saelens"],
    [loadDictionary(GS1, B, { gemmaScope1: { hookIn: hook, hookOut: hook } }), "from-gs1"],
  ] as const) {
    assert.equal(d.spec.hookIn, hook);
    const back = await roundTrip(d, name, x);
    for (const [k, v] of bytesOf(back))
      assert.ok(v.bytes.equals(gs2.get(k)?.bytes ?? Buffer.alloc(0)), `${name} ${k}`);
  }
});

test("ReLU, TopK and BatchTopK SAEs save and reload with the same outputs", async () => {
  const dIn = 12;
  const width = 40;
  const params = {
    wEnc: randomNormal(B, [dIn, width], 1),
    bEnc: randomNormal(B, [width], 2, { std: 0.1 }),
    wDec: randomNormal(B, [width, dIn], 3),
    bDec: randomNormal(B, [dIn], 4),
  };
  const x = randomNormal(B, [9, dIn], 5);
  const meta = {
    hookIn: "model.layers.1.output",
    hookOut: "model.layers.1.output",
    l0: null,
    modelName: null,
    source: "memory",
  };
  for (const [act, name, kind] of [
    [relu, "relu", "jumprelu"],
    [topK(5), "topk", "topk"],
    [batchTopK(5, 0.7), "batchtopk", "jumprelu"],
  ] as const) {
    const d = new Sae(params, act, meta);
    const out = join(dir, name);
    await saveGemmaScope2(d, out);
    const back = loadGemmaScope2(out, B);
    assert.equal(back.spec.activation.kind, kind, `${name} is stored as ${kind}`);
    const a = d.encode(x).toDense().data;
    const b = back.encode(x).toDense().data;
    assert.deepEqual(b, a, `${name}: acts`);
    assert.deepEqual(back.reconstruct(x).data, d.reconstruct(x).data, `${name}: recon`);
    assert.ok(a.some((v) => v !== 0));
  }
});
