/**
 * Benchmark: Gemma 3 forward and generation throughput, glassbox against PyTorch + transformers.
 *
 * A random-weight checkpoint with gemma-3-270m's exact config (bench/forward-model.ts) is written
 * once per dtype under .cache/bench/, and both implementations load that same directory. Each
 * implementation runs in its own child process (so peak RSS is its own), `--rounds` times,
 * alternating glassbox and PyTorch so machine load hits both alike; the best time per point is
 * reported (the machine is shared), with the medians below it. PyTorch runs reference/bench_forward.py
 * with the same token ids and thread count when reference/.venv exists. On bf16 checkpoints each
 * glassbox mode is set beside the PyTorch run that computes the same arithmetic: `bf16MatmulInputs`
 * (matmul inputs rounded to bf16) beside PyTorch in bf16, the default (f32 activations, exact
 * products) beside PyTorch with the weights upcast to f32. A trained models/tiny-gemma3 is measured
 * too when present. `--logits last` unembeds only the last position on both sides (what generation
 * and next-token scoring need), so that peak RSS is that of the model rather than of 1 MiB of f32
 * logits per token. The glassbox child disposes each result once read (`Tensor.dispose`), as PyTorch
 * frees a dropped tensor at once, and sets V8's heap as the glassbox command does for its model
 * commands (`limitYoungGeneration`, `optimizeHeapForSize`); `--plain-node` does neither.
 *
 * Each point runs after one warm-up call at least `--reps` times and until `--min-seconds` were spent
 * on it (both sides), so small models are timed in a steady state, not on their first calls.
 *
 *   npm run build && node dist/bench/forward.js [--rounds 2] [--reps 2] [--min-seconds 1] [--dtypes f32,bf16]
 *     [--points 128x1,128x8,1024x1] [--gen-prompt 16] [--gen-new 32] [--threads 2] [--logits all|last] [--configs 270m,1b] [--no-torch] [--json]
 *     [--plain-node]
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { availableBackends, limitYoungGeneration, optimizeHeapForSize } from "../src/backends/index.js";
import type { Tensor } from "../src/core/tensor.js";
import { loadGemma3Config } from "../src/model/gemma3/config.js";
import { generate } from "../src/model/gemma3/generate.js";
import { loadGemma3 } from "../src/model/gemma3/model.js";
import { type CheckpointShape, randomGemma3, randomGemma3_270m } from "./forward-model.js";
import { median, packageRoot, referencePython, spawnJson } from "./util.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const compiled = import.meta.url.endsWith(".js");
const repoRoot = packageRoot();
const PYTHON = referencePython();

interface Args {
  rounds: number;
  reps: number;
  /** Each point repeats at least `reps` times and until this many seconds were spent on it. */
  minSeconds: number;
  dtypes: ("f32" | "bf16")[];
  points: string;
  genPrompt: number;
  genNew: number;
  threads: number;
  torch: boolean;
  json: boolean;
  child: string | null;
  modelDir: string | null;
  /** Child mode: run with `bf16MatmulInputs`. */
  bf16Inputs: boolean;
  /** Neither dispose results nor limit V8's young generation (what plain library use gives). */
  plainNode: boolean;
  /** Unembed every position ("all") or only the last one. */
  logits: "all" | "last";
  /** Random-weight checkpoints to measure: "270m" and/or "1b" (the committed gemma-3-1b config). */
  configs: string[];
}

function parseArgs(argv: readonly string[]): Args {
  const get = (name: string, fallback: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
  };
  return {
    rounds: Number(get("rounds", "2")),
    reps: Number(get("reps", "2")),
    minSeconds: Number(get("min-seconds", "1")),
    dtypes: get("dtypes", "f32,bf16").split(",") as ("f32" | "bf16")[],
    points: get("points", "128x1,128x8,1024x1"),
    genPrompt: Number(get("gen-prompt", "16")),
    genNew: Number(get("gen-new", "32")),
    threads: Number(get("threads", "2")),
    torch: !argv.includes("--no-torch"),
    json: argv.includes("--json"),
    child: argv.includes("--child") ? get("child", "") : null,
    modelDir: argv.includes("--model-dir") ? get("model-dir", "") : null,
    bf16Inputs: argv.includes("--bf16-inputs"),
    plainNode: argv.includes("--plain-node"),
    logits: get("logits", "all") === "last" ? "last" : "all",
    configs: get("configs", "270m").split(","),
  };
}

/**
 * Token ids shared with reference/bench_forward.py: <bos> then ids >= 3, so that no special token
 * appears (transformers' generate() would treat the pad id 0 as padding and mask it).
 */
function idsFor(batch: number, seq: number, vocab: number): number[][] {
  return Array.from({ length: batch }, (_, r) =>
    Array.from({ length: seq }, (_, i) => (i === 0 ? 2 : 3 + ((i * 7919 + r * 104729) % (vocab - 3)))),
  );
}

interface PointResult {
  seq: number;
  batch: number;
  seconds: number[];
  logit0: number;
}

interface RunResult {
  impl: string;
  dtype: string;
  load_seconds: number;
  rss_loaded: number;
  rss_peak: number;
  forward: PointResult[];
  generate: { prompt: number; new_tokens: number; seconds: number[]; tokens: number[] } | null;
}

/**
 * This process's peak RSS: VmHWM from /proc/self/status where there is one. `maxRSS` (getrusage)
 * also counts the RSS the process had before exec, i.e. the parent's at fork time.
 */
function peakRss(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (m !== null) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

/** Child mode: load the checkpoint on the native backend, time every point, print JSON. */
function runGlassbox(args: Args, dir: string): RunResult {
  // As the glassbox command does for generate, logits and activations.
  if (!args.plainNode) {
    limitYoungGeneration();
    optimizeHeapForSize();
  }
  const done = (t: Tensor) => {
    if (!args.plainNode) t.dispose();
  };
  const backend = availableBackends().find((b) => b.name === "native") ?? availableBackends()[0];
  const t0 = performance.now();
  const model = loadGemma3(dir, backend);
  const loadSeconds = (performance.now() - t0) / 1000;
  const rssLoaded = peakRss();
  const vocab = model.config.vocab;
  const bf16MatmulInputs = args.bf16Inputs;
  const logits = args.logits;
  const forward: PointResult[] = [];
  for (const point of args.points.split(",")) {
    const [seq, batch] = point.split("x").map(Number);
    const ids = idsFor(batch, seq, vocab);
    done(model.forward(ids, { bf16MatmulInputs, logits }).logits);
    const seconds: number[] = [];
    let logit0 = 0;
    for (let r = 0, spent = 0; r < args.reps || spent < args.minSeconds; r++) {
      const t = performance.now();
      const out = model.forward(ids, { bf16MatmulInputs, logits });
      spent += (performance.now() - t) / 1000;
      seconds.push((performance.now() - t) / 1000);
      logit0 = out.logits.data[0];
      done(out.logits);
    }
    forward.push({ seq, batch, seconds, logit0 });
  }
  let gen: RunResult["generate"] = null;
  if (args.genNew > 0) {
    const prompt = idsFor(1, args.genPrompt, vocab)[0];
    generate(model, prompt, { maxNewTokens: 2, stopTokens: [], bf16MatmulInputs });
    const seconds: number[] = [];
    let tokens: number[] = [];
    for (let r = 0, spent = 0; r < args.reps || spent < args.minSeconds; r++) {
      const t = performance.now();
      tokens = generate(model, prompt, { maxNewTokens: args.genNew, stopTokens: [], bf16MatmulInputs })
        .tokens[0];
      seconds.push((performance.now() - t) / 1000);
      spent += (performance.now() - t) / 1000;
    }
    gen = { prompt: args.genPrompt, new_tokens: args.genNew, seconds, tokens };
  }
  return {
    impl: `glassbox-${backend.name}${bf16MatmulInputs ? " bf16MatmulInputs" : ""}`,
    dtype: model.dtype,
    load_seconds: loadSeconds,
    rss_loaded: rssLoaded,
    rss_peak: peakRss(),
    forward,
    generate: gen,
  };
}

function childArgs(args: Args, dtype: string): string[] {
  return [
    "--points",
    args.points,
    "--reps",
    String(args.reps),
    "--min-seconds",
    String(args.minSeconds),
    "--gen-prompt",
    String(args.genPrompt),
    "--gen-new",
    String(args.genNew),
    "--dtype",
    dtype,
    "--logits",
    args.logits,
  ];
}

const min = (xs: number[]) => Math.min(...xs);
const mib = (b: number) => (b / 2 ** 20).toFixed(0);

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.child !== null) {
    process.stdout.write(`${JSON.stringify(runGlassbox(args, args.modelDir ?? ""))}\n`);
    return;
  }
  const torch = args.torch && existsSync(PYTHON);
  const env = {
    ...process.env,
    OPENBLAS_NUM_THREADS: String(args.threads),
    OMP_NUM_THREADS: String(args.threads),
    GLASSBOX_THREADS: String(args.threads),
  };
  const models: { name: string; dir: string; dtype: string }[] = [];
  const cacheRoot = join(repoRoot, ".cache", "bench");
  for (const cfg of args.configs) {
    for (const dtype of args.dtypes) {
      if (cfg === "270m") {
        models.push({ name: "gemma-3-270m (random)", dir: await randomGemma3_270m(cacheRoot, dtype), dtype });
      } else if (cfg === "1b") {
        const config = JSON.parse(
          readFileSync(join(repoRoot, "test", "fixtures", "configs", "gemma-3-1b-pt.json"), "utf8"),
        ) as CheckpointShape;
        models.push({
          name: "gemma-3-1b (random)",
          dir: await randomGemma3(cacheRoot, "gemma-3-1b", config, dtype),
          dtype,
        });
      } else {
        throw new Error(`--configs: unknown config ${cfg} (270m or 1b)`);
      }
    }
  }
  const tiny = join(repoRoot, "models", "tiny-gemma3");
  if (existsSync(join(tiny, "config.json")) && existsSync(join(tiny, "model.safetensors"))) {
    const dtype = savedDtype(tiny);
    models.push({ name: "tiny-gemma3", dir: tiny, dtype });
  }
  const script = compiled ? join(here, "forward.js") : join(here, "forward.ts");
  const nodeArgs = compiled ? [script] : ["--import", "tsx", script];
  const report: Record<string, unknown>[] = [];
  for (const m of models) {
    const runs: Record<string, RunResult[]> = { glassbox: [] };
    if (m.dtype === "bf16") runs["glassbox, bf16 inputs"] = [];
    if (torch) runs.PyTorch = [];
    if (torch && m.dtype === "bf16") runs["PyTorch, f32 compute"] = [];
    const child = [
      ...nodeArgs,
      "--child",
      "ts",
      "--model-dir",
      m.dir,
      ...childArgs(args, m.dtype),
      ...(args.plainNode ? ["--plain-node"] : []),
    ];
    const python = [
      join(repoRoot, "reference", "bench_forward.py"),
      "--model-dir",
      m.dir,
      "--threads",
      String(args.threads),
      ...childArgs(args, m.dtype),
    ];
    for (let round = 0; round < args.rounds; round++) {
      runs.glassbox.push(spawnJson<RunResult>(process.execPath, child, env));
      runs["glassbox, bf16 inputs"]?.push(
        spawnJson<RunResult>(process.execPath, [...child, "--bf16-inputs"], env),
      );
      runs.PyTorch?.push(spawnJson<RunResult>(PYTHON, python, env));
      runs["PyTorch, f32 compute"]?.push(spawnJson<RunResult>(PYTHON, [...python, "--compute", "f32"], env));
    }
    const checkpointBytes = statSync(join(m.dir, "model.safetensors")).size;
    report.push({ model: m.name, dtype: m.dtype, checkpointBytes, runs });
    if (!args.json) printModel(`${m.name}, logits ${args.logits}`, m.dtype, checkpointBytes, runs);
  }
  if (args.json)
    process.stdout.write(
      `${JSON.stringify({ date: new Date().toISOString(), threads: args.threads, report }, null, 1)}\n`,
    );
}

/** The dtype a checkpoint's config says it was saved in (f32 when it does not say). */
function savedDtype(dir: string): "f32" | "bf16" {
  return loadGemma3Config(dir).savedDtype === "bf16" ? "bf16" : "f32";
}

function printModel(
  name: string,
  dtype: string,
  checkpointBytes: number,
  runs: Record<string, RunResult[]>,
): void {
  const impls = Object.keys(runs);
  const torch = runs.PyTorch;
  console.log(
    `\n${name}, ${dtype} weights (checkpoint ${mib(checkpointBytes)} MiB); best run per point, tokens/s`,
  );
  // Each glassbox mode beside PyTorch computing the same arithmetic (and the default beside bf16 PyTorch).
  const pairs: [string, string][] = [];
  if (torch) {
    pairs.push(["glassbox", "PyTorch"]);
    if (runs["PyTorch, f32 compute"]) pairs.push(["glassbox", "PyTorch, f32 compute"]);
    if (runs["glassbox, bf16 inputs"]) pairs.push(["glassbox, bf16 inputs", "PyTorch"]);
  }
  const cols = [...impls, ...pairs.map(([g, p]) => `${g} / ${p}`)];
  console.log(`| point | ${cols.join(" | ")} |`);
  console.log(`|---|${cols.map(() => "---|").join("")}`);
  const rate = (rs: RunResult[], tokens: number, secs: (r: RunResult) => number[]) =>
    tokens / min(rs.flatMap(secs));
  const row = (label: string, tokens: number, secs: (r: RunResult) => number[]) => {
    const rates = Object.fromEntries(impls.map((k) => [k, rate(runs[k], tokens, secs)]));
    const ratios = pairs.map(([g, p]) => (rates[g] / rates[p]).toFixed(2));
    console.log(`| ${[label, ...impls.map((k) => rates[k].toFixed(1)), ...ratios].join(" | ")} |`);
  };
  runs.glassbox[0].forward.forEach((p, i) => {
    row(`forward seq ${p.seq} x batch ${p.batch}`, p.seq * p.batch, (r) => r.forward[i].seconds);
  });
  const gen = runs.glassbox[0].generate;
  if (gen) {
    row(
      `generate ${gen.new_tokens} tokens (prompt ${gen.prompt}, batch 1)`,
      gen.new_tokens,
      (r) => r.generate?.seconds ?? [],
    );
  }
  const rss = (rs: RunResult[]) => {
    const loaded = min(rs.map((r) => r.rss_loaded));
    const peak = min(rs.map((r) => r.rss_peak));
    const x = (b: number) => (b / checkpointBytes).toFixed(2);
    return `${mib(loaded)} (${x(loaded)}x) / ${mib(peak)} (${x(peak)}x)`;
  };
  console.log(
    `peak RSS MiB after load / at end (x checkpoint): ${impls.map((k) => `${k} ${rss(runs[k])}`).join("; ")}`,
  );
  console.log(
    `logit[0,0,0]: ${impls.map((k) => `${k} ${runs[k][0].forward[0].logit0.toFixed(5)}`).join("; ")}`,
  );
  if (gen && pairs.length > 0) {
    const tokens = (k: string) => JSON.stringify(runs[k][0].generate?.tokens);
    console.log(
      `greedy tokens equal: ${pairs.map(([g, p]) => `${g} and ${p} ${tokens(g) === tokens(p)}`).join("; ")}`,
    );
  }
  console.log(
    `median forward seconds: ${impls.map((k) => `${k} ${runs.glassbox[0].forward.map((_, i) => median(runs[k].flatMap((r) => r.forward[i].seconds)).toFixed(2)).join(", ")}`).join("; ")}`,
  );
}

await main();
