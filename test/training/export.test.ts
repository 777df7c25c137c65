// Export: a trained coder saved in Gemma Scope 2 format and loaded back through src/dictionaries
// reconstructs raw activations exactly as the trainer does (scales and pre-encoder bias folded in),
// for every kind of dictionary; the files follow the published layout.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { defaultBackend } from "../../src/backends/index.js";
import { tensor } from "../../src/core/tensor.js";
import { saveGemmaScope2 } from "../../src/dictionaries/formats/gemma-scope-2.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { parseTrainingConfig } from "../../src/training/config.js";
import { exportDictionary } from "../../src/training/export.js";
import { PlantedSource } from "../../src/training/synthetic.js";
import { Trainer } from "../../src/training/trainer.js";

const backend = defaultBackend();
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const D = 16;
const B = 64;

function closeEnough(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, what);
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  assert.ok(scale > 0, `${what}: all-zero reconstruction`);
  for (let i = 0; i < got.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= 1e-4 * scale, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

test("exported dictionaries reconstruct raw activations like the trainer", async () => {
  const layers = 2;
  const source = new PlantedSource({
    d: D,
    features: 24,
    meanL0: 3,
    layers,
    kind: "transcoder",
    seed: 4,
    skip: 0.3,
  });
  const common = { width: 40, lr: 3e-3, lrWarmupSteps: 5, sparsityWarmupSteps: 10, deadWindow: 128 };
  const config = parseTrainingConfig({
    batchSize: B,
    steps: 30,
    scaleTokens: 512,
    dictionaries: [
      {
        id: "jumprelu-sae",
        inputs: ["in.0"],
        preEncoderBias: true,
        ...common,
        rule: { kind: "jumprelu", targetL0: 4 },
      },
      { id: "batchtopk-sae", inputs: ["in.1"], ...common, rule: { kind: "batchtopk", k: 3 } },
      { id: "topk-sae", inputs: ["in.0"], ...common, rule: { kind: "topk", k: 3 } },
      {
        id: "skip-transcoder",
        inputs: ["in.0"],
        outputs: ["out.0"],
        skip: true,
        ...common,
        rule: { kind: "jumprelu", targetL0: 4 },
      },
      {
        id: "clt",
        inputs: ["in.0", "in.1"],
        outputs: ["out.0", "out.1"],
        ...common,
        rule: { kind: "batchtopk", k: 3 },
      },
    ],
  });
  const trainer = await Trainer.open({ backend, source, config, outDir: null });
  await trainer.run();
  const raw = source.nextSync(B, [...source.sites.keys()]);
  assert.ok(raw !== null);
  const root = mkdtempSync(join(tmpdir(), "glassbox-export-"));
  dirs.push(root);
  for (const [id, coder] of trainer.coders) {
    const isClt = coder.layers.length > 1;
    const hook = (dir: string) => (isClt ? `model.layers.{all}.${dir}` : `model.layers.0.${dir}`);
    const dict = exportDictionary(backend, coder, trainer.scales, {
      hookIn: hook("pre_feedforward_layernorm.output"),
      hookOut: hook("post_feedforward_layernorm.output"),
      modelName: "planted",
      l0: 3,
    });
    const dir = join(root, id);
    await saveGemmaScope2(dict, dir);
    const loaded = loadDictionary(dir, backend);
    const want = coder.reconstruct(raw.sites, B, trainer.scales);
    const input = (site: string) => tensor(backend, raw.sites.get(site) as Float32Array, { shape: [B, D] });
    if (isClt) {
      const x = new Float32Array(layers * B * D);
      coder.shape.inputs.forEach((s, l) => {
        x.set(raw.sites.get(s) as Float32Array, l * B * D);
      });
      const got = loaded.reconstruct(tensor(backend, x, { shape: [layers, B, D] })).toFloat32Array();
      coder.shape.outputs.forEach((s, l) => {
        closeEnough(got.subarray(l * B * D, (l + 1) * B * D), want.get(s)!, `${id} layer ${l}`);
      });
    } else {
      const got = loaded.reconstruct(input(coder.shape.inputs[0])).toFloat32Array();
      closeEnough(got, want.get(coder.shape.outputs[0])!, id);
    }
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    assert.equal(cfg.architecture, id === "topk-sae" ? "topk" : "jump_relu", id);
    assert.equal(cfg.affine_connection, id === "skip-transcoder", id);
    assert.equal(cfg.type, isClt ? "clt" : id.endsWith("sae") ? "sae" : "transcoder", id);
    assert.equal(cfg.hf_hook_point_in, hook("pre_feedforward_layernorm.output"));
    assert.equal(cfg.l0, 3);
    const file = SafetensorsFile.open(join(dir, isClt ? "params_layer_1.safetensors" : "params.safetensors"));
    for (const name of file.names()) assert.equal(file.info(name).dtype, "F32", `${id} ${name}`);
    assert.deepEqual(file.info("w_enc").shape, [D, 40]);
    assert.deepEqual(file.info("w_dec").shape, isClt ? [40, layers, D] : [40, D]);
    file.close();
  }
});

test("a run initialised from an exported dictionary starts from the same function (init), under new scales", async () => {
  const layers = 2;
  const planted = (seed: number) =>
    new PlantedSource({ d: D, features: 24, meanL0: 3, layers, kind: "transcoder", seed, skip: 0.3 });
  const common = { width: 40, lr: 3e-3, lrWarmupSteps: 5, sparsityWarmupSteps: 10, deadWindow: 128 };
  const dicts = [
    { id: "jumprelu-sae", inputs: ["in.0"], preEncoderBias: true, rule: { kind: "jumprelu", targetL0: 4 } },
    { id: "topk-sae", inputs: ["in.1"], rule: { kind: "topk", k: 3 } },
    {
      id: "skip-transcoder",
      inputs: ["in.0"],
      outputs: ["out.0"],
      skip: true,
      rule: { kind: "jumprelu", targetL0: 4 },
    },
    { id: "clt", inputs: ["in.0", "in.1"], outputs: ["out.0", "out.1"], rule: { kind: "batchtopk", k: 3 } },
  ];
  const first = await Trainer.open({
    backend,
    source: planted(4),
    config: parseTrainingConfig({
      batchSize: B,
      steps: 20,
      scaleTokens: 512,
      dictionaries: dicts.map((d) => ({ ...d, ...common })),
    }),
    outDir: null,
  });
  await first.run();
  const root = mkdtempSync(join(tmpdir(), "glassbox-init-"));
  dirs.push(root);
  const meta = (isClt: boolean) => ({
    hookIn: isClt ? "model.layers.{all}.pre_feedforward_layernorm.output" : "model.layers.0.x",
    hookOut: isClt ? "model.layers.{all}.post_feedforward_layernorm.output" : "model.layers.0.y",
    modelName: "planted",
    l0: 3,
  });
  for (const [id, coder] of first.coders) {
    await saveGemmaScope2(
      exportDictionary(backend, coder, first.scales, meta(coder.layers.length > 1)),
      join(root, id),
    );
  }
  // Another data distribution: other input scales, so the inverse folding is exercised.
  const source = planted(9);
  const second = await Trainer.open({
    backend,
    source,
    config: parseTrainingConfig({
      batchSize: B,
      steps: 1,
      scaleTokens: 256,
      dictionaries: dicts.map((d) => ({ ...d, ...common, init: join(root, d.id) })),
    }),
    outDir: null,
  });
  assert.notEqual(second.scales.get("in.0"), first.scales.get("in.0"));
  const raw = source.nextSync(B, [...source.sites.keys()]);
  assert.ok(raw !== null);
  for (const [id, coder] of second.coders) {
    const isClt = coder.layers.length > 1;
    const loaded = loadDictionary(join(root, id), backend);
    // Exporting the initialised coder gives back the dictionary it started from.
    const again = join(root, `${id}-again`);
    await saveGemmaScope2(exportDictionary(backend, coder, second.scales, meta(isClt)), again);
    for (const file of isClt
      ? ["params_layer_0.safetensors", "params_layer_1.safetensors"]
      : ["params.safetensors"]) {
      const a = SafetensorsFile.open(join(root, id, file));
      const b = SafetensorsFile.open(join(again, file));
      for (const name of [
        "w_enc",
        "b_enc",
        "w_dec",
        "b_dec",
        ...(id === "skip-transcoder" ? ["affine_skip_connection"] : []),
      ]) {
        closeEnough(
          (await b.readTyped(name)).data as Float32Array,
          (await a.readTyped(name)).data as Float32Array,
          `${id} ${file} ${name}`,
        );
      }
      a.close();
      b.close();
    }
    if (!isClt) {
      // Same function on raw activations: the trainer's own reconstruction matches the dictionary's.
      const want = loaded
        .reconstruct(tensor(backend, raw.sites.get(coder.shape.inputs[0]) as Float32Array, { shape: [B, D] }))
        .toFloat32Array();
      closeEnough(
        coder.reconstruct(raw.sites, B, second.scales).get(coder.shape.outputs[0])!,
        want,
        `${id} init`,
      );
    }
  }
  const openWith = (dictionary: Record<string, unknown>) =>
    Trainer.open({
      backend,
      source: planted(9),
      config: parseTrainingConfig({ batchSize: B, steps: 1, dictionaries: [{ ...common, ...dictionary }] }),
      outDir: null,
    });
  await assert.rejects(
    openWith({ ...dicts[0], width: 48, init: join(root, "jumprelu-sae") }),
    (e: Error) =>
      e.message.includes("w_enc is [16,40], the run needs [16,48]") && e.message.includes("jumprelu-sae"),
  );
  await assert.rejects(
    openWith({ ...dicts[0], init: join(root, "skip-transcoder") }),
    /it is a transcoder, the run trains an SAE/,
  );
});
