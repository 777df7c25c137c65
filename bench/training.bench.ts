/**
 * Dictionary training throughput (tokens/s), glassbox beside SAELens in one run: JumpReLU (Gemma
 * Scope 2 quadratic L0 loss) and BatchTopK (AuxK) at d_in 640, width 16k, 4,096 tokens per step,
 * 2 threads. Each side runs in a fresh child process (SAELens: reference/bench_training.py), the
 * order alternating every round, so machine noise hits both alike.
 *
 * Both sides: x ~ U(-sqrt 3, sqrt 3) / sqrt(d_in) (E||x||^2 = 1, so glassbox's input scale is ~1),
 * a pool of 4 batches cycled; unit-norm decoder rows with W_enc = W_dec^T and JumpReLU thresholds
 * set so that about `l0` latents fire per token, the steady state a run at that L0 target works in.
 * A glassbox step includes everything the trainer does (input scaling, the decoder-gradient
 * projection and row renormalisation, dead-latent counters); a SAELens step is SAETrainer's
 * `_train_step` (forward, backward, gradient clipping, Adam, dead-latent counters).
 *
 * Usage: node dist/bench/training.bench.js [--json] [--rounds=1] [--threads=2] [--batch=4096]
 *   [--width=16384] [--d-in=640] [--l0=64] [--steps=5] [--warmup=2] [--only=jumprelu,batchtopk]
 * Child mode (internal): --child=ARCH
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseTrainingConfig } from "../src/training/config.js";
import { ArraySource } from "../src/training/source.js";
import { Trainer } from "../src/training/trainer.js";
import {
  machine,
  median,
  nativeOrExit,
  normalUpperQuantile,
  numberFlag,
  packageRoot,
  printTable,
  wantJson,
} from "./util.js";

const ARCHS = ["jumprelu", "batchtopk"] as const;
type Arch = (typeof ARCHS)[number];

const threads = numberFlag("threads", 2);
const batch = numberFlag("batch", 4096);
const width = numberFlag("width", 16384);
const dIn = numberFlag("d-in", 640);
const l0 = numberFlag("l0", 64);
const steps = numberFlag("steps", 5);
const warmup = numberFlag("warmup", 2);
const rounds = numberFlag("rounds", 1);

interface SideResult {
  readonly side: string;
  readonly arch: string;
  readonly tokens_per_second: number;
  readonly step_seconds: readonly number[];
  readonly l0: number;
}

async function child(arch: Arch): Promise<void> {
  const backend = nativeOrExit();
  backend.setThreads(threads);
  const pool = 4;
  const x = new Float32Array(pool * batch * dIn);
  let s = 12345;
  const a = Math.sqrt(3) / Math.sqrt(dIn);
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = ((s / 2 ** 32) * 2 - 1) * a;
  }
  const source = new ArraySource(new Map([["x", { d: dIn, values: x }]]), 1_000_000);
  const rule =
    arch === "jumprelu"
      ? { kind: arch, targetL0: l0, initialThreshold: normalUpperQuantile(l0 / width) / Math.sqrt(dIn) }
      : { kind: arch, k: l0 };
  const config = parseTrainingConfig({
    batchSize: batch,
    steps: warmup + steps,
    logEvery: 1,
    scaleTokens: batch,
    dictionaries: [{ id: arch, inputs: "x", width, rule }],
  });
  const times: number[] = [];
  let lastL0 = Number.NaN;
  let previous = performance.now();
  const trainer = await Trainer.open({
    backend,
    source,
    config,
    outDir: null,
    onLog: (line) => {
      const now = performance.now();
      if (line.step > warmup) times.push((now - previous) / 1000);
      previous = now;
      lastL0 = line.dictionaries[arch].l0;
    },
  });
  previous = performance.now();
  await trainer.run();
  const total = times.reduce((p, q) => p + q, 0);
  const out: SideResult = {
    side: "glassbox",
    arch,
    tokens_per_second: (batch * times.length) / total,
    step_seconds: times,
    l0: lastL0,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function runSide(side: "glassbox" | "saelens", arch: Arch): SideResult {
  const root = packageRoot();
  const env = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  const [cmd, args] =
    side === "glassbox"
      ? [
          process.execPath,
          [...process.execArgv, fileURLToPath(import.meta.url), `--child=${arch}`, ...process.argv.slice(2)],
        ]
      : [
          join(root, "reference", ".venv", "bin", "python"),
          [
            join(root, "reference", "bench_training.py"),
            `--arch=${arch}`,
            `--d-in=${dIn}`,
            `--width=${width}`,
            `--batch=${batch}`,
            `--l0=${l0}`,
            `--threads=${threads}`,
            `--steps=${steps}`,
            `--warmup=${warmup}`,
          ],
        ];
  const r = spawnSync(cmd, args, { env, encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.status !== 0)
    throw new Error(`${side} ${arch} failed: ${r.error?.message ?? ""}${r.stderr || r.stdout}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as SideResult;
}

async function main(): Promise<void> {
  const childArg = process.argv.find((v) => v.startsWith("--child="));
  if (childArg !== undefined) {
    await child(childArg.slice("--child=".length) as Arch);
    return;
  }
  const onlyArg = process.argv.find((v) => v.startsWith("--only="));
  const archs = onlyArg === undefined ? ARCHS : ARCHS.filter((x) => onlyArg.slice(7).split(",").includes(x));
  const results: { arch: Arch; glassbox: SideResult[]; saelens: SideResult[] }[] = [];
  for (const arch of archs) {
    const entry = { arch, glassbox: [] as SideResult[], saelens: [] as SideResult[] };
    for (let round = 0; round < rounds; round++) {
      const order: ("glassbox" | "saelens")[] =
        round % 2 === 0 ? ["glassbox", "saelens"] : ["saelens", "glassbox"];
      for (const side of order) entry[side].push(runSide(side, arch));
    }
    results.push(entry);
  }
  const rows = results.map((r) => {
    const g = median(r.glassbox.map((x) => x.tokens_per_second));
    const s = median(r.saelens.map((x) => x.tokens_per_second));
    return {
      arch: r.arch,
      glassbox: g,
      saelens: s,
      speedup: g / s,
      l0: r.glassbox[0].l0,
      l0Saelens: r.saelens[0].l0,
    };
  });
  if (wantJson) {
    process.stdout.write(
      `${JSON.stringify({ machine: machine(), threads, batch, width, d_in: dIn, l0, steps, rounds, results: rows, raw: results })}\n`,
    );
    return;
  }
  console.log(
    `training throughput, d_in ${dIn}, width ${width}, batch ${batch} tokens, ${threads} threads; ${machine()}`,
  );
  printTable(
    ["arch", "glassbox tok/s", "SAELens tok/s", "speedup", "L0 (glassbox / SAELens)"],
    rows.map((r) => [
      r.arch,
      r.glassbox.toFixed(0),
      r.saelens.toFixed(0),
      `${r.speedup.toFixed(2)}x`,
      `${r.l0.toFixed(1)} / ${r.l0Saelens.toFixed(1)}`,
    ]),
  );
}

await main();
