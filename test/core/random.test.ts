// The seeded generator: xoshiro128** against an independent BigInt implementation, determinism,
// state round trips, and the sampling distributions.
import assert from "node:assert/strict";
import { test } from "node:test";
import { referenceBackend } from "../../src/backends/reference/index.js";
import { detLog, Rng, randomInt, randomNormal, randomUniform } from "../../src/core/random.js";

/** xoshiro128** written from the paper's definition with BigInt words. */
function* xoshiroBig(state: readonly number[]): Generator<number> {
  const M = 0xffffffffn;
  const s = state.map((w) => BigInt(w));
  const rotl = (x: bigint, k: bigint) => ((x << k) | (x >> (32n - k))) & M;
  for (;;) {
    const result = (rotl((s[1] * 5n) & M, 7n) * 9n) & M;
    const t = (s[1] << 9n) & M;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11n);
    yield Number(result);
  }
}

test("xoshiro128** matches an independent implementation", () => {
  for (const state of [
    [1, 2, 3, 4],
    [0xdeadbeef, 0x12345678, 0xffffffff, 0x80000000],
  ]) {
    const r = Rng.fromState([state[0], state[1], state[2], state[3], null]);
    const ref = xoshiroBig(state);
    for (let i = 0; i < 1000; i++) assert.equal(r.nextU32(), ref.next().value, `output ${i}`);
  }
  // First output for state (1, 2, 3, 4) by hand: rotl(2 * 5, 7) * 9 = 1280 * 9.
  assert.equal(Rng.fromState([1, 2, 3, 4, null]).nextU32(), 11520);
});

test("same seed, same bytes; different seeds differ", () => {
  const a = randomNormal(referenceBackend, [1000], 42);
  const b = randomNormal(referenceBackend, [1000], 42);
  const c = randomNormal(referenceBackend, [1000], 43);
  assert.deepEqual(new Uint8Array(a.data.buffer), new Uint8Array(b.data.buffer));
  assert.notDeepEqual(new Uint8Array(a.data.buffer), new Uint8Array(c.data.buffer));
  const big = new Rng(2 ** 40 + 5);
  const big2 = new Rng(5);
  assert.notEqual(big.nextU32(), big2.nextU32(), "high seed bits matter");
  assert.throws(() => new Rng(-1));
  assert.throws(() => new Rng(1.5));
});

test("state round trip continues the stream, including the cached normal", () => {
  const r = new Rng(7);
  r.normal();
  const copy = Rng.fromState(JSON.parse(JSON.stringify(r.getState())));
  for (let i = 0; i < 10; i++) assert.equal(copy.normal(), r.normal());
  for (let i = 0; i < 10; i++) assert.equal(copy.nextU32(), r.nextU32());
  const s1 = r.split();
  const s2 = Rng.fromState(copy.getState()).split();
  assert.equal(s1.nextU32(), s2.nextU32());
  assert.throws(() => Rng.fromState(JSON.parse("[1, 2, 3]")));
  assert.throws(() => Rng.fromState([1, 2, 3, -4, null]));
});

test("distributions: uniform, normal, integers, permutations", () => {
  const n = 200000;
  const u = randomUniform(referenceBackend, [n], 1, { low: -2, high: 3 }).data;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let mean = 0;
  for (const v of u) {
    min = Math.min(min, v);
    max = Math.max(max, v);
    mean += v / n;
  }
  assert.ok(min >= -2 && max < 3, `${min} ${max}`);
  assert.ok(Math.abs(mean - 0.5) < 0.03, `uniform mean ${mean}`);
  const z = randomNormal(referenceBackend, [n], 2, { mean: 1, std: 2 }).data;
  let m1 = 0;
  let m2 = 0;
  let m4 = 0;
  for (const v of z) m1 += v / n;
  for (const v of z) {
    m2 += (v - m1) ** 2 / n;
    m4 += (v - m1) ** 4 / n;
  }
  assert.ok(Math.abs(m1 - 1) < 0.02, `normal mean ${m1}`);
  assert.ok(Math.abs(m2 - 4) < 0.06, `normal variance ${m2}`);
  assert.ok(Math.abs(m4 / m2 ** 2 - 3) < 0.1, `normal kurtosis ${m4 / m2 ** 2}`);
  const ints = randomInt(referenceBackend, [60000], 3, -3, 3);
  assert.equal(ints.dtype, "i32");
  const counts = new Map<number, number>();
  for (const v of ints.data) counts.set(v, (counts.get(v) ?? 0) + 1);
  assert.deepEqual(
    [...counts.keys()].sort((a, b) => a - b),
    [-3, -2, -1, 0, 1, 2],
  );
  for (const c of counts.values()) assert.ok(Math.abs(c - 10000) < 400, `count ${c}`);
  const p = new Rng(4).permutation(1000);
  assert.deepEqual(
    [...p].sort((a, b) => a - b),
    Array.from({ length: 1000 }, (_, i) => i),
  );
  assert.notDeepEqual(
    [...p],
    Array.from({ length: 1000 }, (_, i) => i),
  );
});

test("detLog agrees with Math.log", () => {
  const r = new Rng(5);
  for (let i = 0; i < 2000; i++) {
    const x = 2 ** (r.uniform53() * 200 - 100) * (1 + r.uniform53());
    const want = Math.log(x);
    assert.ok(Math.abs(detLog(x) - want) <= 4e-16 * Math.max(1, Math.abs(want)), `log(${x})`);
  }
  for (const x of [5e-324, 1e-310, 1, Math.SQRT2, 2, Number.MAX_VALUE]) {
    assert.ok(Math.abs(detLog(x) - Math.log(x)) <= 1e-15 * Math.max(1, Math.abs(Math.log(x))), `log(${x})`);
  }
  assert.throws(() => detLog(0));
  assert.throws(() => detLog(-1));
});
