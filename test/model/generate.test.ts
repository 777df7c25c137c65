/**
 * Generation: greedy decoding equals an uncached argmax loop, batched prompts of different lengths
 * equal separate runs, sampling is seeded and follows softmax(logits / T) with top-k / top-p
 * truncation, stop tokens end a sequence, streaming yields the same tokens, and the context limit ends
 * generation.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { argmax } from "../../src/core/ops/reduce.js";
import { Rng } from "../../src/core/random.js";
import type { Tensor } from "../../src/core/tensor.js";
import { generate, generateStream, pickToken, type TokenEvent } from "../../src/model/gemma3/generate.js";
import { capture, scaleBy } from "../../src/model/gemma3/interventions.js";
import { Gemma3Model } from "../../src/model/gemma3/model.js";
import { sites } from "../../src/model/gemma3/sites.js";
import { randomWeights, tinyConfig, tinyModel } from "./helpers.js";

for (const backend of availableBackends()) {
  describe(`generate (${backend.name})`, () => {
    const model = tinyModel(backend);
    const prompt = [2, 5, 9, 14, 3];

    test("greedy decoding equals an uncached argmax loop", () => {
      const res = generate(model, prompt, { maxNewTokens: 8, stopTokens: [] });
      const seq = [...prompt];
      for (let i = 0; i < 8; i++) {
        const logits = model.forward([seq], { logits: "last" }).logits;
        seq.push(argmax(logits, -1).toFlatArray()[0]);
      }
      assert.deepEqual(res.sequences[0], seq);
      assert.deepEqual(res.finish, ["length"]);
    });

    test("each step's logits are reused by the next unless an intervention saw them", () => {
      const seen: Tensor<"f32">[] = [];
      const res = generate(model, prompt, {
        maxNewTokens: 6,
        stopTokens: [],
        interventions: [capture(sites.logits, (t) => seen.push(t))],
      });
      // Every step's logits, kept by the intervention, still pick that step's token.
      assert.equal(seen.length, 6);
      assert.deepEqual(
        seen.map((t) => argmax(t, -1).toFlatArray()[0]),
        res.tokens[0],
      );
      assert.equal(new Set(seen.map((t) => t.data.buffer)).size, 6);
      assert.deepEqual(res.tokens, generate(model, prompt, { maxNewTokens: 6, stopTokens: [] }).tokens);
    });

    test("a prompt fed in chunks gives the tokens of one call", () => {
      const long = [2, 5, 9, 14, 3, 8, 21, 4, 4, 17, 30, 6, 11];
      const prompts = [long, long.slice(4)];
      const whole = generate(model, prompts, { maxNewTokens: 5, stopTokens: [], prefillChunk: Infinity });
      for (const prefillChunk of [1, 3, 5, 128]) {
        const got = generate(model, prompts, { maxNewTokens: 5, stopTokens: [], prefillChunk });
        assert.deepEqual(got.tokens, whole.tokens, `prefillChunk ${prefillChunk}`);
      }
      // An intervention at a position acts the same whichever chunk holds it.
      const steer = (chunk: number) =>
        generate(model, long, {
          maxNewTokens: 4,
          stopTokens: [],
          prefillChunk: chunk,
          interventions: [scaleBy(sites.residPost(model.config.layers - 1), -3, { positions: [6, 12] })],
        }).tokens;
      assert.deepEqual(steer(4), steer(Infinity));
      assert.notDeepEqual(steer(4), generate(model, long, { maxNewTokens: 4, stopTokens: [] }).tokens);
      for (const bad of [0, 1.5, -2]) {
        assert.throws(
          () => generate(model, long, { maxNewTokens: 1, prefillChunk: bad }),
          /prefillChunk must be a positive integer or Infinity/,
        );
      }
    });

    test("a long prompt in chunks (queries in blocks of 64 against the cache) gives the tokens of one call", () => {
      const c = tinyConfig({ max_position_embeddings: 512 });
      const m = new Gemma3Model(c, randomWeights(c, backend, 9), "f32", c.eosTokenIds);
      const rng = new Rng(4);
      const prompt = [2, ...Array.from({ length: 299 }, () => 3 + Math.floor(rng.uniform() * (c.vocab - 3)))];
      const seen = (chunk: number) => {
        const logits: Float32Array[] = [];
        const res = generate(m, prompt, {
          maxNewTokens: 3,
          stopTokens: [],
          prefillChunk: chunk,
          interventions: [capture(sites.logits, (t) => logits.push(t.toFloat32Array()))],
        });
        return { tokens: res.tokens, first: logits[0] };
      };
      const whole = seen(Number.POSITIVE_INFINITY);
      const chunked = seen(128);
      assert.deepEqual(chunked.tokens, whole.tokens);
      for (let i = 0; i < whole.first.length; i++)
        assert.ok(Math.abs(chunked.first[i] - whole.first[i]) < 1e-4);
    });

    test("with bf16 inputs on a bf16 checkpoint the cache is bf16 by default, with the same tokens", () => {
      const c = tinyConfig();
      const bf = new Gemma3Model(c, randomWeights(c, backend, 5, "bf16"), "bf16", c.eosTokenIds);
      const long = [2, 5, 9, 14, 3, 8, 21, 4, 4, 17, 30, 6, 11];
      const opts = { maxNewTokens: 6, stopTokens: [], bf16MatmulInputs: true };
      const dtypes: string[] = [];
      const newCache = bf.newCache.bind(bf);
      bf.newCache = (batch, o) => {
        dtypes.push(o?.dtype ?? "f32");
        return newCache(batch, o);
      };
      const auto = generate(bf, [long, long.slice(5)], opts);
      const f32 = generate(bf, [long, long.slice(5)], { ...opts, cacheDtype: "f32" });
      generate(bf, long, { maxNewTokens: 2, stopTokens: [] });
      assert.deepEqual(dtypes, ["bf16", "f32", "f32"]);
      assert.deepEqual(auto.tokens, f32.tokens);
    });

    test("a batch of prompts of different lengths equals separate runs", () => {
      const prompts = [prompt, [7, 8], [2, 30, 31, 32, 33, 34, 35]];
      const batched = generate(model, prompts, { maxNewTokens: 6, stopTokens: [] });
      prompts.forEach((p, i) => {
        assert.deepEqual(
          batched.sequences[i],
          generate(model, p, { maxNewTokens: 6, stopTokens: [] }).sequences[0],
        );
      });
    });

    test("sampling: same seed, same tokens; top-k 1 is greedy", () => {
      const opts = { maxNewTokens: 10, stopTokens: [], temperature: 1.5 };
      const a = generate(model, prompt, { ...opts, seed: 3 });
      assert.deepEqual(generate(model, prompt, { ...opts, seed: 3 }).tokens, a.tokens);
      assert.notDeepEqual(generate(model, prompt, { ...opts, seed: 4 }).tokens, a.tokens);
      const greedy = generate(model, prompt, { maxNewTokens: 10, stopTokens: [] });
      assert.deepEqual(generate(model, prompt, { ...opts, topK: 1, seed: 5 }).tokens, greedy.tokens);
    });

    test("stop tokens end the sequence and are included", () => {
      const free = generate(model, prompt, { maxNewTokens: 8, stopTokens: [] }).tokens[0];
      const stop = free[2];
      const first = free.indexOf(stop);
      const res = generate(model, prompt, { maxNewTokens: 8, stopTokens: [stop] });
      assert.deepEqual(res.tokens[0], free.slice(0, first + 1));
      assert.deepEqual(res.finish, ["stop"]);
    });

    test("streaming and the callback see every token in order", async () => {
      const seen: TokenEvent[] = [];
      const streamed: number[] = [];
      const it = generateStream(model, prompt, {
        maxNewTokens: 6,
        stopTokens: [],
        onToken: (e) => seen.push(e),
      });
      let r = await it.next();
      while (!r.done) {
        streamed.push(r.value.token);
        r = await it.next();
      }
      const want = generate(model, prompt, { maxNewTokens: 6, stopTokens: [] }).tokens[0];
      assert.deepEqual(streamed, want);
      assert.deepEqual(r.value.tokens[0], want);
      assert.deepEqual(
        seen.map((e) => [e.step, e.token]),
        want.map((t, i) => [i, t]),
      );
    });

    test("generation ends at the context limit", () => {
      const short = tinyModel(backend, { max_position_embeddings: 9 });
      const res = generate(short, prompt, { maxNewTokens: 20, stopTokens: [] });
      assert.equal(res.sequences[0].length, 9 + 1);
      assert.deepEqual(res.finish, ["length"]);
    });
  });
}

describe("pickToken", () => {
  const logits = Float32Array.from([1.0, 2.5, 0.3, 2.0, -1.0, 1.8]);
  const probs = (t: number, keep: readonly number[]) => {
    const e = Array.from(logits, (x, i) => (keep.includes(i) ? Math.exp(x / t) : 0));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / s);
  };
  const frequencies = (opts: Parameters<typeof pickToken>[1], n: number) => {
    const rng = new Rng(11);
    const counts = new Array<number>(logits.length).fill(0);
    for (let i = 0; i < n; i++) counts[pickToken(logits, opts, rng)]++;
    return counts.map((c) => c / n);
  };
  const close = (got: number[], want: number[], what: string) => {
    for (let i = 0; i < got.length; i++) {
      assert.ok(Math.abs(got[i] - want[i]) < 0.015, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
    }
  };
  test("temperature sampling follows softmax(logits / T)", () => {
    close(frequencies({ temperature: 0.7 }, 20000), probs(0.7, [0, 1, 2, 3, 4, 5]), "T=0.7");
  });
  test("top-k keeps the k most likely", () => {
    close(frequencies({ temperature: 1, topK: 3 }, 20000), probs(1, [1, 3, 5]), "top-3");
  });
  test("top-p keeps the smallest set reaching p", () => {
    // At T = 1 the sorted probabilities are 0.378, 0.229, 0.188, ...: p = 0.55 needs the top 2 (0.607).
    const all = probs(1, [0, 1, 2, 3, 4, 5]);
    assert.ok(all[1] < 0.55 && all[1] + all[3] >= 0.55);
    close(frequencies({ temperature: 1, topP: 0.55 }, 20000), probs(1, [1, 3]), "top-p");
  });
  test("greedy picks the first maximum", () => {
    assert.equal(pickToken(Float32Array.from([0, 3, 1, 3]), {}, new Rng(0)), 1);
  });
});
