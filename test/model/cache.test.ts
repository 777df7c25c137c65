/**
 * KV-cache decoding equals the full forward pass (one token at a time and in chunks, across the
 * sliding window), padding is invisible (left- and right-padded rows equal the same row alone),
 * and sliding-window layers hold at most `window` keys however long the sequence.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { narrow, select } from "../../src/core/ops/shape.js";
import type { Tensor } from "../../src/core/tensor.js";
import { Gemma3Model } from "../../src/model/gemma3/model.js";
import { sites } from "../../src/model/gemma3/sites.js";
import { maxAbsDiff, randomWeights, tinyConfig, tinyModel } from "./helpers.js";

/** Seeded token ids in [1, vocab). */
function tokens(n: number, seed: number, vocab = 40): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return 1 + (s % (vocab - 1));
  });
}

function maxAbs(t: Tensor): number {
  return t.toFloat32Array().reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

for (const backend of availableBackends()) {
  describe(`KV cache (${backend.name})`, () => {
    const model = tinyModel(backend);
    const window = model.config.slidingWindow;
    const ids = [tokens(13, 1), tokens(13, 2)];
    assert.ok(ids[0].length > 2 * window);
    const full = model.forward(ids).logits;
    const tol = 1e-5 * maxAbs(full);

    test("one token at a time equals the full forward", () => {
      const cache = model.newCache(2);
      for (let t = 0; t < ids[0].length; t++) {
        const step = model.forward(
          ids.map((r) => [r[t]]),
          { cache },
        ).logits;
        const want = narrow(full, 1, t, 1);
        assert.ok(maxAbsDiff(step, want) <= tol, `position ${t}: ${maxAbsDiff(step, want)}`);
      }
      assert.equal(cache.length, ids[0].length);
    });

    test("a prefill then chunks equals the full forward", () => {
      const cache = model.newCache(2);
      let at = 0;
      for (const n of [3, 5, 1, 4]) {
        const chunk = ids.map((r) => r.slice(at, at + n));
        const got = model.forward(chunk, { cache }).logits;
        assert.ok(maxAbsDiff(got, narrow(full, 1, at, n)) <= tol, `chunk at ${at}`);
        at += n;
      }
    });

    test("reserved storage is taken at the first call and never grows; decoding is unchanged", () => {
      const c = model.config;
      const cache = model.newCache(2, { reserve: ids[0].length });
      // Every layer's storage: batch * key heads * slots * head_dim, keys and values, in f32.
      const slots = (l: number) => {
        const w = c.layerTypes[l] === "sliding_attention" ? window : null;
        return w === null ? ids[0].length : Math.min(ids[0].length, Math.max(64, w + Math.ceil(w / 4)));
      };
      let want = 0;
      for (let l = 0; l < c.layers; l++) want += 2 * 2 * c.kvHeads * Math.max(64, slots(l)) * c.headDim * 4;
      let at = 0;
      for (const n of [2, 6, 1, 4]) {
        const planned = cache.bounds(n, c.kvHeads, c.headDim);
        if (at > 0) assert.equal(planned.storage, 0, `nothing to allocate at ${at}`);
        const got = model.forward(
          ids.map((r) => r.slice(at, at + n)),
          { cache },
        ).logits;
        assert.ok(maxAbsDiff(got, narrow(full, 1, at, n)) <= tol, `chunk at ${at}`);
        assert.equal(cache.bytes, want, `storage after ${at + n} tokens`);
        at += n;
      }
      assert.throws(() => model.newCache(1, { reserve: -1 }), /reserve must be a non-negative integer/);
    });

    test("logits none: no unembedding, the same activations and cache", () => {
      const site = sites.residPost(model.config.layers - 1);
      const cache = model.newCache(2);
      const head = ids.map((r) => r.slice(0, 7));
      const none = model.forward(head, {
        cache,
        logits: "none",
        capture: [site, sites.finalNorm, sites.logits],
      });
      assert.deepEqual([...none.logits.shape], [2, 0, model.config.vocab]);
      assert.equal(none.activations.has(sites.logits), false, "nothing at the logits site");
      const all = model.forward(head, { capture: [site, sites.finalNorm] });
      for (const s of [site, sites.finalNorm])
        assert.equal(maxAbsDiff(none.activations.get(s), all.activations.get(s)), 0, s.name);
      const next = model.forward(
        ids.map((r) => r.slice(7, 9)),
        { cache },
      ).logits;
      assert.ok(maxAbsDiff(next, narrow(full, 1, 7, 2)) <= tol, "decoding after a call without logits");
    });

    test("a bf16 cache: half the storage; exact where attention rounds keys anyway (bf16 inputs)", () => {
      const c = tinyConfig({ max_position_embeddings: 256 });
      const bf = new Gemma3Model(c, randomWeights(c, backend, 3, "bf16"), "bf16", c.eosTokenIds);
      const seq = [tokens(40, 41), tokens(40, 42)];
      const mode = { bf16MatmulInputs: true };
      const whole = bf.forward(seq, mode).logits;
      const run = (dtype: "f32" | "bf16", opts: { bf16MatmulInputs?: boolean }) => {
        const cache = bf.newCache(2, { dtype });
        const parts: Tensor<"f32">[] = [];
        let at = 0;
        for (const n of [9, 1, 1, 20, 1, 8]) {
          parts.push(
            bf.forward(
              seq.map((r) => r.slice(at, at + n)),
              { ...opts, cache },
            ).logits,
          );
          at += n;
        }
        return { parts, bytes: cache.bytes, dtype: cache.dtype };
      };
      const half = run("bf16", mode);
      const full = run("f32", mode);
      assert.equal(half.dtype, "bf16");
      assert.equal(half.bytes * 2, full.bytes);
      let at = 0;
      half.parts.forEach((got, i) => {
        const n = got.shape[1];
        const want = narrow(whole, 1, at, n);
        const scale = maxAbs(want);
        // The same products as the f32 cache's (keys rounded by the attention instead of the cache).
        assert.ok(maxAbsDiff(got, full.parts[i]) <= 1e-5 * scale, `bf16 vs f32 cache, chunk ${i}`);
        assert.ok(maxAbsDiff(got, want) <= 1e-5 * scale, `bf16 cache vs full forward, chunk ${i}`);
        at += n;
      });
      // Computing in f32 with a bf16 cache reads rounded keys: close to, not equal to, f32 keys.
      const rounded = run("bf16", {});
      const exact = run("f32", {});
      const d = maxAbsDiff(rounded.parts[5], exact.parts[5]);
      assert.ok(d > 0 && d <= 0.05 * maxAbs(exact.parts[5]), `f32 compute, bf16 keys: ${d}`);
      assert.throws(() => bf.newCache(1, { dtype: "f16" as "bf16" }), /cache dtype must be "f32" or "bf16"/);
    });

    test("a batch goes through attention a few sequences at a time and equals each alone", () => {
      // 150 queries x 150 keys x 4 heads of f32 scores (360 KB) per sequence: two per 1 MiB block,
      // so 5 sequences go as 2 + 2 + 1.
      const m = tinyModel(backend, { max_position_embeddings: 256 });
      const rows = Array.from({ length: 5 }, (_, r) => tokens(150, 60 + r));
      const site = sites.z(1);
      const together = m.forward(rows, { capture: [site], logits: "last" });
      rows.forEach((row, r) => {
        const alone = m.forward([row], { capture: [site], logits: "last" });
        const got = narrow(together.activations.get(site), 0, r, 1);
        const want = alone.activations.get(site);
        assert.ok(maxAbsDiff(got, want) <= 1e-5 * maxAbs(want), `z of sequence ${r}`);
        const logits = narrow(together.logits, 0, r, 1);
        assert.ok(maxAbsDiff(logits, alone.logits) <= 1e-5 * maxAbs(alone.logits), `logits of sequence ${r}`);
      });
    });

    test("bounds cover the storage a call allocates and the keys it reads", () => {
      const c = model.config;
      const cache = model.newCache(2);
      let at = 0;
      for (const n of [3, 9, 1]) {
        const planned = cache.bounds(n, c.kvHeads, c.headDim);
        const before = cache.bytes;
        model.forward(
          ids.map((r) => r.slice(at, at + n)),
          { cache },
        );
        at += n;
        // The largest single array (keys or values of one layer) is at most the planned one.
        assert.ok(cache.bytes - before <= 2 * c.layers * planned.storage * 4, `storage at ${at}`);
        assert.ok(planned.keys >= at, `keys at ${at}`);
        for (let l = 0; l < c.layers; l++) assert.ok(cache.keysHeld(l) <= planned.keys);
      }
    });

    test("blocked attention (long sequences, no pattern hook) equals the full matrix on every layer", () => {
      const long = [tokens(45, 5), tokens(45, 6), tokens(45, 7)];
      const mask = [
        Array(45).fill(1),
        [...Array(38).fill(1), ...Array(7).fill(0)],
        [...Array(5).fill(0), ...Array(40).fill(1)],
      ];
      const positionIds = [0, 1, 2].map((r) => mask[r].map((_, i) => (r === 2 ? Math.max(0, i - 5) : i)));
      // Blocks of 8 queries: full layers (causal key ranges) and sliding layers take the blocked path.
      const blocked = model.forward(long, { attentionMask: mask, positionIds, attentionBlock: 8 });
      const patterns = model.config.layerTypes.map((_, l) => sites.pattern(l));
      const fullMatrix = model.forward(long, { attentionMask: mask, positionIds, capture: patterns });
      const pattern = fullMatrix.activations.get(sites.pattern(0));
      assert.deepEqual([...pattern.shape], [3, model.config.heads, 45, 45]);
      const tolBlocked = 1e-5 * maxAbs(fullMatrix.logits);
      for (const [r, from, count] of [
        [0, 0, 45],
        [1, 0, 38],
        [2, 5, 40],
      ]) {
        const got = narrow(select(blocked.logits, 0, r), 0, from, count);
        const diff = maxAbsDiff(got, narrow(select(fullMatrix.logits, 0, r), 0, from, count));
        assert.ok(diff <= tolBlocked, `row ${r}: ${diff}`);
      }
      assert.throws(
        () => model.forward(long, { attentionBlock: 0 }),
        /attentionBlock must be a positive integer/,
      );
    });

    test("the MLP in row chunks (long inputs, no hook on its hidden activations) equals it whole", () => {
      const long = [tokens(45, 8), tokens(45, 9)];
      const last = model.config.layers - 1;
      const capture = [sites.residPost(last)];
      const chunked = model.forward(long, { capture, mlpRows: 8 });
      // A hook on the hidden activations needs them whole.
      const hidden = model.config.layerTypes.map((_, l) => sites.mlpHidden(l));
      const whole = model.forward(long, { capture: [...capture, ...hidden], mlpRows: 8 });
      assert.ok(maxAbsDiff(chunked.logits, whole.logits) <= 1e-6 * maxAbs(whole.logits));
      const resid = (r: typeof whole) => r.activations.get(sites.residPost(last));
      assert.ok(maxAbsDiff(resid(chunked), resid(whole)) <= 1e-6 * maxAbs(resid(whole)));
      assert.throws(() => model.forward(long, { mlpRows: 4 }), /mlpRows must be an integer of at least 8/);
    });

    test("sliding layers hold at most `window` keys; full layers hold all", () => {
      const cache = model.newCache(1);
      const long = tokens(40, 3);
      model.forward([long.slice(0, 10)], { cache });
      for (const t of long.slice(10)) model.forward([[t]], { cache, logits: "last" });
      model.config.layerTypes.forEach((type, l) => {
        assert.equal(cache.keysHeld(l), type === "sliding_attention" ? window : long.length, `layer ${l}`);
      });
      // Storage starts at 64 keys per layer and has not grown by 40 tokens.
      const c = model.config;
      const perKey = 2 * c.kvHeads * c.headDim * 4;
      assert.equal(cache.bytes, perKey * c.layers * 64);
    });

    test("after a long prefill, sliding layers go back to bounded storage", () => {
      const m = tinyModel(backend, { max_position_embeddings: 256 });
      const seq = tokens(160, 30);
      const whole = m.forward([seq]).logits;
      const cache = m.newCache(1);
      m.forward([seq.slice(0, 150)], { cache });
      for (let t = 150; t < 160; t++) {
        const step = m.forward([[seq[t]]], { cache, logits: "last" }).logits;
        const diff = maxAbsDiff(step, narrow(whole, 1, t, 1));
        assert.ok(diff <= 1e-5 * maxAbs(whole), `position ${t}: ${diff}`);
      }
      const c = m.config;
      const perKey = 2 * c.kvHeads * c.headDim * 4;
      const full = c.layerTypes.filter((t) => t === "full_attention").length;
      // Full layers: 150 slots, grown by half to 225 at the first step; sliding layers: at most 64
      // (the window and a quarter is less).
      assert.equal(cache.bytes, perKey * (full * 225 + (c.layers - full) * 64));
    });

    test("dispose empties the cache and hands its storage back; it then decodes as a new one", () => {
      const m = tinyModel(backend, { max_position_embeddings: 256 });
      const seq = tokens(100, 31);
      const cache = m.newCache(1);
      m.forward([seq.slice(0, 90)], { cache });
      const grown = m.forward([seq.slice(90, 99)], { cache, logits: "last" }).logits;
      const storage = cache.bytes;
      assert.ok(storage > 0);
      cache.dispose();
      assert.equal(cache.length, 0);
      assert.equal(cache.bytes, 0);
      m.forward([seq.slice(0, 90)], { cache });
      const again = m.forward([seq.slice(90, 99)], { cache, logits: "last" }).logits;
      assert.equal(maxAbsDiff(again, grown), 0);
      assert.equal(cache.bytes, storage);
    });

    // Past 64 keys the storage grows (full layers) or moves its last window down (sliding layers);
    // with one sequence and one key head attention reads it in place.
    for (const kvHeads of [1, 2]) {
      for (const rows of [1, 2]) {
        test(`long decoding (${kvHeads} key head(s), batch ${rows}) equals the full forward`, () => {
          const m = tinyModel(backend, { num_key_value_heads: kvHeads, max_position_embeddings: 256 });
          const seqs = Array.from({ length: rows }, (_, r) => tokens(160, 20 + r));
          const whole = m.forward(seqs).logits;
          const scale = 1e-5 * maxAbs(whole);
          const cache = m.newCache(rows);
          const prefill = 7;
          m.forward(
            seqs.map((s) => s.slice(0, prefill)),
            { cache },
          );
          const w = m.config.slidingWindow;
          // Layer 0 slides, layer 1 is full. A hooked pattern covers exactly the keys a step sees
          // (otherwise several sequences or key heads read the whole storage, masked).
          const patterns = [sites.pattern(0), sites.pattern(1)];
          const fullPatterns = m.forward(seqs, { capture: patterns }).activations;
          for (let t = prefill; t < 160; t++) {
            const hook = t % 37 === 0;
            const out = m.forward(
              seqs.map((s) => [s[t]]),
              { cache, logits: "last", capture: hook ? patterns : [] },
            );
            const diff = maxAbsDiff(out.logits, narrow(whole, 1, t, 1));
            if (!(diff <= scale)) assert.fail(`position ${t}: ${diff}`);
            if (!hook) continue;
            for (const [site, first] of [
              [patterns[0], Math.max(0, t - w + 1)],
              [patterns[1], 0],
            ] as const) {
              const got = out.activations.get(site);
              const want = narrow(narrow(fullPatterns.get(site), 2, t, 1), 3, first, t + 1 - first);
              assert.deepEqual([...got.shape], [...want.shape], `${site.name} at ${t}`);
              assert.ok(maxAbsDiff(got, want) <= 1e-5, `${site.name} at ${t}`);
            }
          }
          m.config.layerTypes.forEach((type, l) => {
            assert.equal(cache.keysHeld(l), type === "sliding_attention" ? w : 160, `layer ${l}`);
          });
          const perKey = 2 * rows * kvHeads * m.config.headDim * 4;
          const full = m.config.layerTypes.filter((t) => t === "full_attention").length;
          // Full layers grow 64 -> 96 -> 144 -> 216 slots; sliding layers stay at 64.
          assert.equal(cache.bytes, perKey * (full * 216 + (m.config.layers - full) * 64));
        });
      }
    }

    test("padding is invisible: padded rows equal the row alone", () => {
      const row = tokens(7, 4);
      const alone = model.forward([row]).logits;
      // Right padding: positions are sequence indices as usual; pad keys are masked.
      const right = model.forward(
        [row, [...row, 5, 5, 5]].map((r) => [...r, ...Array(10 - r.length).fill(0)]),
        {
          attentionMask: [[...Array(7).fill(1), 0, 0, 0], Array(10).fill(1)],
        },
      ).logits;
      assert.ok(maxAbsDiff(narrow(select(right, 0, 0), 0, 0, 7), select(alone, 0, 0)) <= tol);
      // Left padding, as generation does: positions cumsum(mask) - 1, and then cached decoding.
      const pad = 3;
      const left = model.forward([[...Array(pad).fill(0), ...row]], {
        attentionMask: [[...Array(pad).fill(0), ...Array(7).fill(1)]],
        positionIds: [[...Array(pad).fill(1), ...row.map((_, i) => i)]],
      }).logits;
      assert.ok(maxAbsDiff(narrow(select(left, 0, 0), 0, pad, 7), select(alone, 0, 0)) <= tol);
      const cache = model.newCache(1);
      model.forward([[...Array(pad).fill(0), ...row.slice(0, 4)]], {
        cache,
        attentionMask: [[...Array(pad).fill(0), 1, 1, 1, 1]],
        positionIds: [[...Array(pad).fill(1), 0, 1, 2, 3]],
      });
      for (let t = 4; t < 7; t++) {
        const step = model.forward([[row[t]]], { cache, positionIds: [[t]] }).logits;
        assert.ok(maxAbsDiff(step, narrow(alone, 1, t, 1)) <= tol, `decode ${t}`);
      }
    });
  });
}
