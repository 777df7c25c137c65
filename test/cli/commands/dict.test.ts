import assert from "node:assert/strict";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { referenceBackend as B } from "../../../src/backends/reference/index.js";
import { SafetensorsFile } from "../../../src/io/safetensors.js";
import { writeSafetensorsSync } from "../../../src/io/safetensors-write.js";
import { tensorToWrite } from "../../../src/io/to-tensor.js";
import {
  assertCloseToScale,
  CLT,
  expected,
  GS1,
  GS2,
  RESID,
  TRANSCODER,
} from "../../dictionaries/helpers.js";
import { runCli, tempDir } from "../../io/helpers.js";

const dir = tempDir("glassbox-cli-dict-");

function readOut(path: string): Record<string, ReturnType<SafetensorsFile["readTensorSync"]>> {
  const f = SafetensorsFile.open(path);
  try {
    return Object.fromEntries(f.names().map((n) => [n, f.readTensorSync(n, B)]));
  } finally {
    f.close();
  }
}

test("dict info --json describes each fixture from its headers", () => {
  const r = runCli(["dict", "info", "--json", TRANSCODER]);
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  assert.equal(info.architecture, "transcoder");
  assert.equal(info.activation, "jumprelu");
  assert.equal(info.hookIn, "model.layers.5.pre_feedforward_layernorm.output");
  assert.deepEqual(
    [info.dIn, info.dOut, info.width, info.layers, info.l0, info.dtype],
    [48, 48, 128, null, 21, "F32"],
  );
  const clt = JSON.parse(runCli(["dict", "info", "--json", CLT]).stdout);
  assert.deepEqual([clt.architecture, clt.width, clt.layers, clt.files.length], ["clt", 64, 7, 8]);
  const text = runCli(["dict", "info", GS1]);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /format\s+gemma-scope-1/);
  assert.match(text.stdout, /reads\s+\(not recorded\)/);
});

test("dict list --json lists a repository copy", () => {
  const r = runCli(["dict", "list", "--json", GS2]);
  assert.equal(r.status, 0, r.stderr);
  const l = JSON.parse(r.stdout);
  assert.deepEqual(
    l.entries.map((e: { folder: string }) => e.folder),
    [
      "clt/width_64_l0_small",
      "resid_post/layer_2_width_128_l0_small",
      "transcoder/layer_5_width_128_l0_small",
      "transcoder/layer_5_width_128_l0_small_affine",
    ],
  );
  assert.deepEqual(l.problems, []);
});

test("dict apply writes acts (dense f32) and recon matching the reference", () => {
  for (const [dict, name] of [
    [RESID, "resid_post_layer_2"],
    [TRANSCODER, "transcoder_layer_5"],
    [CLT, "clt"],
  ] as const) {
    const e = expected(name, B);
    const input = join(dir, `${name}-in.safetensors`);
    const output = join(dir, `${name}-out.safetensors`);
    writeSafetensorsSync(input, { x: tensorToWrite(e.x) });
    const r = runCli(["dict", "apply", "--dict", dict, "--input", input, "--output", output, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.deepEqual(s.acts, [...e.acts.shape]);
    assert.deepEqual(s.recon, [...e.recon.shape]);
    const out = readOut(output);
    assert.equal(out.acts.dtype, "f32");
    assertCloseToScale(out.acts, e.acts, 1e-5, `${name} acts`);
    assertCloseToScale(out.recon, e.recon, 1e-5, `${name} recon`);
    let nnz = 0;
    for (const v of e.acts.toFloat32Array()) if (v !== 0) nnz++;
    assert.ok(Math.abs(s.meanL0 - nnz / s.rows) < 1e-9);
  }
});

test("dict apply and info: bad input exits 1 with one line naming the file", () => {
  const e = expected("resid_post_layer_2", B);
  const noX = join(dir, "no-x.safetensors");
  writeSafetensorsSync(noX, { y: tensorToWrite(e.x) });
  const wide = join(dir, "wide.safetensors");
  writeSafetensorsSync(wide, { x: { dtype: "F32", shape: [2, 47], data: new Float32Array(94) } });
  const out = join(dir, "never.safetensors");
  const cases: [string[], RegExp][] = [
    [["dict", "apply", "--dict", RESID, "--input", noX, "--output", out], /no-x\.safetensors: no tensor "x"/],
    [
      ["dict", "apply", "--dict", RESID, "--input", wide, "--output", out],
      /wide\.safetensors: tensor "x" must be \[n, 48\]/,
    ],
    [["dict", "apply", "--dict", CLT, "--input", wide, "--output", out], /must be \[7, n, 48\]/],
    [["dict", "apply", "--dict", dir, "--input", noX, "--output", out], /is not a dictionary/],
    [["dict", "info", join(dir, "absent")], /absent: no such file or folder/],
    [
      ["dict", "info", GS2],
      /not a dictionary.*it holds dictionary folders: list them with `glassbox dict list`/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = runCli(args);
    assert.equal(r.status, 1, args.join(" "));
    assert.equal(r.stdout, "");
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
  }
  const broken = join(dir, "broken");
  cpSync(RESID, broken, { recursive: true });
  writeSafetensorsSync(join(broken, "params.safetensors"), { w_enc: tensorToWrite(e.x) });
  const r = runCli(["dict", "info", broken]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /broken\/params\.safetensors: missing tensors "b_enc", "w_dec", "b_dec"/);
});
