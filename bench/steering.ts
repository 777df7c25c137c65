/**
 * Benchmark: generation tokens/s on tiny-gemma3 without steering and with feature steering
 * (src/features/steering.ts): add and clamp on the layer-5 resid_post SAE, clamp on the layer-2
 * transcoder, add and clamp on a CLT layer-2 feature (written to layers 2-5), and for reference the
 * same clamps through `splice(..., { keepError: true, editActs })`, which encodes every CLT layer
 * and decodes all active features twice.
 *
 * Each variant generates `--tokens` new tokens (greedy, stop tokens off) from the same prompt;
 * rounds run the variants in rotated order so that machine load hits all alike; best and median
 * tokens/s and the median ratio to the baseline are reported.
 *
 *   npm run build && node dist/bench/steering.js [--rounds 5] [--tokens 128] [--json]
 */
import { join } from "node:path";
import { defaultBackend } from "../src/backends/index.js";
import { fromStorage } from "../src/core/tensor.js";
import { FeatureActs } from "../src/dictionaries/feature-acts.js";
import { loadDictionary } from "../src/dictionaries/load.js";
import { splice } from "../src/dictionaries/splice.js";
import type { Dictionary } from "../src/dictionaries/types.js";
import { type SteerSpec, steeringInterventions } from "../src/features/steering.js";
import { Tokenizer } from "../src/io/tokenizer.js";
import { generate } from "../src/model/gemma3/generate.js";
import type { Intervention } from "../src/model/gemma3/interventions.js";
import { loadGemma3 } from "../src/model/gemma3/model.js";
import { machine, median, packageRoot, printTable } from "./util.js";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer`);
  return v;
}

const rounds = arg("rounds", 5);
const tokens = arg("tokens", 128);
const json = process.argv.includes("--json");

const MODEL = join(packageRoot(), "models", "tiny-gemma3");
const GS = join(MODEL, "gemma-scope");
const backend = defaultBackend();
const model = loadGemma3(MODEL, backend);
const config = model.config;
const tok = Tokenizer.fromDir(MODEL);
const prompt = tok.encode("The old man walked slowly to the river and sat down by the water.");
const sae = loadDictionary(join(GS, "resid_post", "layer_5_width_1k_l0_big"), backend);
const tc = loadDictionary(join(GS, "transcoder", "layer_2_width_1k_l0_medium"), backend);
const clt = loadDictionary(join(GS, "clt", "width_3k_l0_medium"), backend);

/** The reference clamp: splice with the error kept, the feature set to `value` in source layer `layer`. */
function spliceClamp(dict: Dictionary, feature: number, value: number, layer: number | null): Intervention[] {
  const s = splice(dict, config, {
    keepError: true,
    editActs: (acts, info) => {
      if (info.layer !== layer) return acts;
      const dense = acts.toDense().toFloat32Array();
      for (let r = 0; r < acts.rows; r++) dense[r * acts.width + feature] = value;
      return FeatureActs.dense(fromStorage(backend, "f32", acts.shape, dense));
    },
  });
  return [...s.interventions];
}

const steer = (dict: Dictionary, specs: SteerSpec[]) => steeringInterventions(dict, config, specs);
const variants: { name: string; interventions: readonly Intervention[] }[] = [
  { name: "baseline", interventions: [] },
  { name: "add, SAE L5", interventions: steer(sae, [{ feature: 714, mode: "add", strength: 40 }]) },
  { name: "clamp, SAE L5", interventions: steer(sae, [{ feature: 95, mode: "clamp", value: 20 }]) },
  {
    name: "add + clamp + ablate, SAE L5",
    interventions: steer(sae, [
      { feature: 714, mode: "add", strength: 40 },
      { feature: 95, mode: "clamp", value: 20 },
      { feature: 248, mode: "ablate" },
    ]),
  },
  { name: "clamp, transcoder L2", interventions: steer(tc, [{ feature: 10, mode: "clamp", value: 5 }]) },
  {
    name: "add, CLT L2 (4 targets)",
    interventions: steer(clt, [{ feature: 40, layer: 2, mode: "add", strength: 20 }]),
  },
  { name: "clamp, CLT L2", interventions: steer(clt, [{ feature: 40, layer: 2, mode: "clamp", value: 5 }]) },
  { name: "clamp via splice, SAE L5 (reference)", interventions: spliceClamp(sae, 95, 20, null) },
  { name: "clamp via splice, CLT L2 (reference)", interventions: spliceClamp(clt, 40, 5, 2) },
];

function run(interventions: readonly Intervention[]): number {
  const t0 = performance.now();
  const r = generate(model, prompt, { maxNewTokens: tokens, stopTokens: [], interventions });
  const s = (performance.now() - t0) / 1000;
  if (r.tokens[0].length !== tokens) throw new Error(`generated ${r.tokens[0].length} tokens, not ${tokens}`);
  return tokens / s;
}

for (const v of variants) run(v.interventions); // warm-up
const rates = variants.map(() => [] as number[]);
for (let round = 0; round < rounds; round++) {
  for (let k = 0; k < variants.length; k++) {
    const i = (k + round) % variants.length;
    rates[i].push(run(variants[i].interventions));
  }
}
const base = median(rates[0]);
const results = variants.map((v, i) => ({
  variant: v.name,
  best: Math.max(...rates[i]),
  median: median(rates[i]),
  ratio: median(rates[i]) / base,
}));

if (json) {
  console.log(
    JSON.stringify(
      {
        machine: machine(),
        backend: backend.name,
        promptTokens: prompt.length,
        newTokens: tokens,
        rounds,
        results,
      },
      null,
      2,
    ),
  );
} else {
  console.log(
    `steering: tiny-gemma3, ${prompt.length}-token prompt + ${tokens} new tokens, greedy, ${rounds} rounds; ${backend.name} backend, ${machine()}`,
  );
  printTable(
    ["variant", "best tok/s", "median tok/s", "x baseline"],
    results.map((r) => [r.variant, r.best.toFixed(0), r.median.toFixed(0), r.ratio.toFixed(3)]),
  );
}
