import assert from "node:assert/strict";
import { test } from "node:test";
import {
  FiringStats,
  klDivergence,
  LossStats,
  logSoftmax,
  ReconstructionStats,
} from "../../src/eval/metrics.js";

const close = (a: number, b: number, tol = 1e-12): void => {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);
};

test("FVU and MSE on a hand-computed case; masked rows do not count", () => {
  // Rows (1,0) (3,0) (1,2) (3,2): mean (2,1), E||x||^2 = 7, ||E x||^2 = 5, variance 2.
  // x_hat = x + (0.5, 0): ||x - x_hat||^2 = 0.25 per token, so FVU = 0.125 and MSE = 0.125 per element.
  const x = Float32Array.from([1, 0, 3, 0, 1, 2, 100, -7, 3, 2]);
  const xHat = x.map((v, i) => (i % 2 === 0 ? v + 0.5 : v));
  xHat[6] = 0;
  const s = new ReconstructionStats(2);
  s.add(x, xHat, [1, 1, 1, 0, 1]);
  assert.equal(s.tokens, 4);
  close(s.variance, 2);
  close(s.meanSquaredErrorNorm, 0.25);
  close(s.fvu, 0.125);
  close(s.mse, 0.125);
});

test("FVU is 1 for the per-dimension mean and 0 for a perfect reconstruction; accumulation order is irrelevant", () => {
  const rows = 7;
  const d = 3;
  const x = Float32Array.from({ length: rows * d }, (_, i) => Math.sin(i * 1.7) * 4 + (i % d));
  const mean = new Float64Array(d);
  for (let i = 0; i < x.length; i++) mean[i % d] += x[i] / rows;
  const s = new ReconstructionStats(d);
  s.add(
    x,
    x.map((_, i) => mean[i % d]),
  );
  close(s.fvu, 1, 1e-6);
  const perfect = new ReconstructionStats(d);
  perfect.add(x, x);
  assert.equal(perfect.fvu, 0);
  const split = new ReconstructionStats(d);
  const xHat = x.map((v) => v * 0.9);
  split.add(x.subarray(0, 9), xHat.subarray(0, 9));
  split.add(x.subarray(9), xHat.subarray(9));
  const whole = new ReconstructionStats(d);
  whole.add(x, xHat);
  close(split.fvu, whole.fvu);
  close(split.mse, whole.mse);
  assert.throws(() => whole.add(x, xHat.subarray(1)), /both must be rows of 3/);
});

test("L0, dead and dense fractions count firings per token; dense means strictly more than 10 %", () => {
  const s = new FiringStats(5);
  // 20 tokens: latent 0 fires on 2 (10 %, not dense), latent 1 on 3 (15 %, dense), latent 2 on all 20,
  // latent 3 never, latent 4 on 1.
  for (let t = 0; t < 20; t++) {
    const active: number[] = [];
    if (t < 2) active.push(0);
    if (t >= 10 && t < 13) active.push(1);
    active.push(2);
    if (t === 19) active.push(4);
    s.addToken(active);
  }
  assert.equal(s.tokens, 20);
  close(s.l0, (2 + 3 + 20 + 1) / 20);
  close(s.deadFraction, 1 / 5);
  close(s.denseFraction(), 2 / 5);
  close(s.denseFraction(0.5), 1 / 5);
  const h = s.densityHistogram({ min: -2, step: 0.5 });
  assert.deepEqual(h.edges, [-2, -1.5, -1, -0.5, 0]);
  // log10 densities: 0.1 -> -1, 0.15 -> -0.82, 1 -> 0 (last bin), 0.05 -> -1.30.
  assert.deepEqual(h.counts, [0, 1, 2, 1]);
  assert.equal(h.dead, 1);
});

test("dense activations count non-zero entries as firing; masked rows are skipped", () => {
  const s = new FiringStats(3);
  s.addDense(Float32Array.from([0, 2, 0, 1, -1, 0, 9, 9, 9]), [1, 1, 0]);
  assert.equal(s.tokens, 2);
  close(s.l0, 1.5);
  assert.deepEqual(Array.from(s.counts), [1, 2, 0]);
  const rare = new FiringStats(1);
  rare.addToken([0]);
  for (let i = 0; i < 999; i++) rare.addToken([]);
  assert.deepEqual(rare.densityHistogram({ min: -2, step: 1 }).counts, [1, 0], "rarer than min: first bin");
});

test("CE, KL, delta LM loss, CE loss recovered and KL score on a two-token vocabulary", () => {
  // clean p = (1/2, 1/2); spliced p = (3/4, 1/4); ablated p = (1/8, 7/8); target token 0.
  const clean = logSoftmax([0, 0]);
  const spliced = logSoftmax([Math.log(3), 0]);
  const ablated = logSoftmax([0, Math.log(7)]);
  close(Math.exp(spliced[0]), 0.75);
  close(klDivergence(clean, spliced), 0.5 * Math.log(0.5 / 0.75) + 0.5 * Math.log(0.5 / 0.25));
  const s = new LossStats();
  s.addToken(clean, spliced, ablated, 0);
  const ce = { clean: Math.log(2), spliced: -Math.log(0.75), ablated: Math.log(8) };
  close(s.deltaLmLoss, ce.spliced - ce.clean);
  close(s.ceLossRecovered, (ce.ablated - ce.spliced) / (ce.ablated - ce.clean));
  const kl = {
    spliced: 0.5 * Math.log(0.5 / 0.75) + 0.5 * Math.log(0.5 / 0.25),
    ablated: 0.5 * Math.log(0.5 / 0.125) + 0.5 * Math.log(0.5 / 0.875),
  };
  close(s.klScore, (kl.ablated - kl.spliced) / kl.ablated);
  // Averages over tokens: a second token where splicing is perfect.
  s.addToken(clean, clean, ablated, 1);
  close(s.ceSpliced, (ce.spliced + Math.log(2)) / 2);
  close(s.ceAblated, (ce.ablated - Math.log(0.875)) / 2);
  close(s.klSpliced, kl.spliced / 2);
});

test("a perfect splice recovers everything and an ablation-equal splice nothing", () => {
  const clean = logSoftmax([1, 2, 3]);
  const ablated = logSoftmax([3, 0, -1]);
  const perfect = new LossStats();
  perfect.addToken(clean, clean, ablated, 2);
  assert.equal(perfect.deltaLmLoss, 0);
  close(perfect.ceLossRecovered, 1);
  close(perfect.klScore, 1);
  const useless = new LossStats();
  useless.addToken(clean, ablated, ablated, 2);
  close(useless.ceLossRecovered, 0);
  close(useless.klScore, 0);
  close(logSoftmax([1000, 1000])[0], Math.log(0.5));
});
