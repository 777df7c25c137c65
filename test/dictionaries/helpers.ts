/** Shared helpers for the dictionary tests: fixture paths, expected tensors, scale-relative closeness. */
import assert from "node:assert/strict";
import type { Backend } from "../../src/core/backend.js";
import type { Tensor } from "../../src/core/tensor.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { fixture } from "../io/helpers.js";

export const GS2 = fixture("dictionaries", "gemma-scope-2-tiny");
export const RESID = `${GS2}/resid_post/layer_2_width_128_l0_small`;
export const TRANSCODER = `${GS2}/transcoder/layer_5_width_128_l0_small`;
export const AFFINE = `${GS2}/transcoder/layer_5_width_128_l0_small_affine`;
export const CLT = `${GS2}/clt/width_64_l0_small`;
export const GS1 = fixture("dictionaries", "gemma-scope-1-tiny", "layer_2", "width_128", "average_l0_20");
export const GS1_TRANSCODER = fixture(
  "dictionaries",
  "gemma-scope-1-tiny-transcoders",
  "layer_5",
  "width_128",
  "average_l0_21",
);
export const SAELENS = fixture("dictionaries", "saelens", "resid_post_layer_2");
export const MODEL = fixture("gemma3", "text-mqa-f32-legacy");

/** The tensors of `expected/<name>.safetensors`. */
export function expected(name: string, backend: Backend): Record<string, Tensor> {
  const f = SafetensorsFile.open(fixture("dictionaries", "expected", `${name}.safetensors`));
  try {
    return Object.fromEntries(f.names().map((n) => [n, f.readTensorSync(n, backend)]));
  } finally {
    f.close();
  }
}

/** Max |a - b| <= rtol * max|b| (the activation scale) over the whole tensor; returns the error ratio. */
export function assertCloseToScale(
  got: Tensor | Float32Array,
  want: Tensor | Float32Array,
  rtol: number,
  what: string,
): number {
  const g = got instanceof Float32Array ? got : got.toFloat32Array();
  const w = want instanceof Float32Array ? want : want.toFloat32Array();
  assert.equal(g.length, w.length, `${what}: ${g.length} values, want ${w.length}`);
  let scale = 0;
  let err = 0;
  for (let i = 0; i < w.length; i++) {
    scale = Math.max(scale, Math.abs(w[i]));
    err = Math.max(err, Math.abs(g[i] - w[i]));
  }
  assert.ok(scale > 0, `${what}: expected values are all zero`);
  assert.ok(err <= rtol * scale, `${what}: max abs error ${err} > ${rtol} x scale ${scale}`);
  return err / scale;
}

/** The set of non-zero positions must be identical. */
export function assertSameSupport(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    assert.equal(
      got[i] !== 0,
      want[i] !== 0,
      `${what}: entry ${i} active ${got[i] !== 0}, want ${want[i] !== 0}`,
    );
  }
}
