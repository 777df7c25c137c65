/**
 * Defining properties: decoder-norm folding leaves reconstructions and active sets unchanged (and
 * makes decoder rows unit-norm, CLT decoders over all their targets); TopK keeps each token's k
 * largest positive pre-activations; BatchTopK keeps the k x batch largest of the batch and its
 * inference threshold reproduces that selection; sparse and dense decoding agree.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { add } from "../../src/core/ops/elementwise.js";
import { matmul } from "../../src/core/ops/linalg.js";
import { randomNormal } from "../../src/core/random.js";
import { fromStorage, type Tensor } from "../../src/core/tensor.js";
import { batchTopK } from "../../src/dictionaries/activations/batchtopk.js";
import { relu } from "../../src/dictionaries/activations/relu.js";
import { topK } from "../../src/dictionaries/activations/topk.js";
import { CrossLayerTranscoder } from "../../src/dictionaries/architectures/clt.js";
import { Sae } from "../../src/dictionaries/architectures/sae.js";
import { foldDecoderNorms } from "../../src/dictionaries/fold.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import type { Dictionary } from "../../src/dictionaries/types.js";
import {
  AFFINE,
  assertCloseToScale,
  assertSameSupport,
  CLT,
  expected,
  RESID,
  TRANSCODER,
} from "./helpers.js";

const META = {
  hookIn: "model.layers.0.output",
  hookOut: "model.layers.0.output",
  l0: null,
  modelName: null,
  source: "memory",
};

function rowNorms(w: Tensor, start: number, end: number): number[] {
  const width = w.shape[0];
  const stride = w.size / width;
  const d = w.toFloat32Array();
  return Array.from({ length: width }, (_, i) => {
    let s = 0;
    for (let c = start; c < end; c++) s += d[i * stride + c] ** 2;
    return Math.sqrt(s);
  });
}

for (const B of availableBackends()) {
  describe(`dictionary properties on ${B.name}`, () => {
    function checkFold(d: Dictionary, x: Tensor): void {
      const f = foldDecoderNorms(d);
      assert.deepEqual(f.spec.width, d.spec.width);
      const files = f.gemmaScope2Form().files;
      const before = d.gemmaScope2Form().files;
      files.forEach((file, i) => {
        const w = file.tensors().w_dec;
        const L = d.spec.layers;
        const start = L === null ? 0 : i * d.spec.dOut;
        const end = L === null ? d.spec.dOut : L * d.spec.dOut;
        for (const n of rowNorms(w, start, end))
          assert.ok(Math.abs(n - 1) < 1e-5, `folded decoder row norm ${n}`);
        const old = rowNorms(before[i].tensors().w_dec, start, end);
        assert.ok(
          old.some((n) => Math.abs(n - 1) > 1e-3),
          "the test needs decoders that are not unit-norm already",
        );
      });
      const a = d.encode(x).toDense().data;
      const b = f.encode(x).toDense().data;
      assertSameSupport(b, a, `${d.spec.architecture} folded active set`);
      assertCloseToScale(
        f.decode(f.encode(x), x),
        d.decode(d.encode(x), x),
        1e-5,
        `${d.spec.architecture} folded recon`,
      );
    }

    test("folding leaves active sets and reconstructions unchanged (SAE, transcoder, skip, CLT)", () => {
      checkFold(loadDictionary(RESID, B), expected("resid_post_layer_2", B).x);
      checkFold(loadDictionary(TRANSCODER, B), expected("transcoder_layer_5", B).x);
      checkFold(loadDictionary(AFFINE, B), expected("transcoder_layer_5_affine", B).x);
      checkFold(loadDictionary(CLT, B), expected("clt", B).x);
    });

    const dIn = 16;
    const width = 96;
    const params = {
      wEnc: randomNormal(B, [dIn, width], 11),
      bEnc: randomNormal(B, [width], 12, { std: 0.3 }),
      wDec: randomNormal(B, [width, dIn], 13, { std: 0.5 }),
      bDec: randomNormal(B, [dIn], 14),
    };
    const x = randomNormal(B, [33, dIn], 15);
    const pre = add(matmul(x, params.wEnc), params.bEnc).data;

    test("folding a ReLU or BatchTopK SAE; a TopK SAE refuses", () => {
      checkFold(new Sae(params, relu, META), x);
      const bt = new Sae(params, batchTopK(6, 1.5), META);
      checkFold(bt, x);
      assert.equal(foldDecoderNorms(bt).spec.activation.kind, "jumprelu");
      assert.throws(() => foldDecoderNorms(new Sae(params, topK(4), META)), /TopK/);
    });

    test("ReLU keeps exactly the positive pre-activations", () => {
      const acts = new Sae(params, relu, META).encode(x).toDense().data;
      for (let i = 0; i < pre.length; i++) assert.equal(acts[i], Math.max(pre[i], 0));
    });

    test("TopK: each token's k largest pre-activations, after relu", () => {
      for (const k of [1, 7, 90]) {
        const acts = new Sae(params, topK(k), META).encode(x, { maxPreFloats: 5 * width });
        for (let r = 0; r < acts.rows; r++) {
          const row = Array.from(pre.subarray(r * width, (r + 1) * width));
          const order = row.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
          const want = order
            .slice(0, k)
            .filter(([v]) => v > 0)
            .map(([, i]) => i)
            .sort((a, b) => a - b);
          const got = acts.row(r);
          assert.deepEqual(Array.from(got.indices), want, `k ${k} row ${r}`);
          for (const [j, c] of got.indices.entries()) assert.equal(got.values[j], row[c]);
        }
      }
    });

    test("BatchTopK: k x batch largest over the batch; the inference threshold reproduces it", () => {
      const k = 5;
      const act = batchTopK(k, 0);
      const sel = act.selectBatch(add(matmul(x, params.wEnc), params.bEnc));
      const rows = x.shape[0];
      assert.equal(sel.offsets[rows], k * rows, "k x batch entries (enough positive pre-activations here)");
      const kept = new Set<number>();
      for (let r = 0; r < rows; r++) {
        for (let j = sel.offsets[r]; j < sel.offsets[r + 1]; j++) kept.add(r * width + sel.indices[j]);
      }
      let minKept = Number.POSITIVE_INFINITY;
      let maxDropped = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < pre.length; i++) {
        if (kept.has(i)) minKept = Math.min(minKept, pre[i]);
        else maxDropped = Math.max(maxDropped, pre[i]);
      }
      assert.ok(minKept > maxDropped, "every kept pre-activation exceeds every dropped one");
      assert.ok(
        new Set(Array.from({ length: rows }, (_, r) => sel.offsets[r + 1] - sel.offsets[r])).size > 1,
        "per-token counts vary",
      );
      const threshold = (minKept + maxDropped) / 2;
      const inference = new Sae(params, batchTopK(k, threshold), META).encode(x).toSparse();
      assert.deepEqual(inference.offsets, sel.offsets);
      assert.deepEqual(inference.indices, sel.indices);
      assert.deepEqual(inference.values, sel.values);
    });

    test("CLT layers load lazily; decodeLayer matches decode", () => {
      let reads = 0;
      const clt = loadDictionary(CLT, B) as CrossLayerTranscoder;
      const counting = new CrossLayerTranscoder(
        {
          layers: 7,
          dIn: 48,
          dOut: 48,
          width: 64,
          skip: false,
          dtype: "f32",
          activation: { kind: "jumprelu" },
          load: (i) => {
            reads++;
            return clt.layer(i);
          },
        },
        META,
      );
      const e = expected("clt", B);
      const xs = e.x;
      const n = xs.shape[1];
      const sources = [];
      for (let i = 0; i < 3; i++) {
        const xi = xs.toFloat32Array().subarray(i * n * 48, (i + 1) * n * 48);
        sources.push(counting.encodeLayer(i, fromStorage(B, "f32", [n, 48], xi)));
      }
      assert.equal(reads, 3, "only layers 0..2 read");
      const y2 = counting.decodeLayer(2, sources);
      const full = e.recon.toFloat32Array().subarray(2 * n * 48, 3 * n * 48);
      assertCloseToScale(y2.data, full, 1e-5, "layer 2 output from layers 0..2");
    });
  });
}
