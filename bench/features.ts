/**
 * Benchmark: `features build` throughput (tokens/s) and peak memory on tiny-gemma3 with the 12
 * bundled residual-stream SAEs at once (layers 0-5, l0 big and small), and the flatness of peak RSS
 * with corpus size (the statistics are streaming: top-k heaps and bounded samples, never all
 * activations). With --anchor, the same dictionaries and tokens go through SAEDashboard's
 * feature-data generation (reference/bench_features.py, in reference/.venv-dashboard) side by side.
 *
 * Every run is its own child process (peak RSS is the child's maxRSS); rounds alternate the order of
 * the implementations so that machine load hits both alike; best and median tokens/s are reported.
 *
 *   npm run build && node dist/bench/features.js [--rounds 2] [--tokens 65536]
 *     [--rss 1000000,4000000] [--data data/corpus/train.jsonl] [--anchor] [--json]
 * Child mode (internal): --child TOKENS
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultBackend } from "../src/backends/index.js";
import { loadDictionary } from "../src/dictionaries/load.js";
import { buildFeatureDatabase } from "../src/features/build.js";
import { Tokenizer } from "../src/io/tokenizer.js";
import { loadGemma3 } from "../src/model/gemma3/model.js";
import { machine, median, packageRoot } from "./util.js";

const root = packageRoot();
const MODEL = join(root, "models", "tiny-gemma3");
const DICTS = [0, 1, 2, 3, 4, 5].flatMap((l) =>
  ["big", "small"].map((s) => join(MODEL, "gemma-scope", "resid_post", `layer_${l}_width_1k_l0_${s}`)),
);
const DASHBOARD_PYTHON = join(root, "reference", ".venv-dashboard", "bin", "python");

interface Args {
  rounds: number;
  tokens: number;
  rss: number[];
  data: string;
  anchor: boolean;
  json: boolean;
  child: number | null;
  context: number;
  batch: number;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string, def: string): string => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
  };
  const child = get("child", "");
  const rss = get("rss", "");
  return {
    rounds: Number(get("rounds", "2")),
    tokens: Number(get("tokens", "65536")),
    rss: rss === "" ? [] : rss.split(",").map(Number),
    data: get("data", join(root, "data", "corpus", "train.jsonl")),
    anchor: argv.includes("--anchor"),
    json: argv.includes("--json"),
    child: child === "" ? null : Number(child),
    context: Number(get("context", "128")),
    batch: Number(get("batch", "8")),
  };
}

interface RunResult {
  readonly impl: string;
  readonly tokens: number;
  readonly seconds: number;
  readonly tokens_per_second: number;
  /** Time reading the corpus (forward passes and statistics), without finishing the pages. */
  readonly read_seconds: number;
  readonly peak_rss_bytes: number;
}

async function child(args: Args, tokens: number): Promise<void> {
  const backend = defaultBackend();
  const model = loadGemma3(MODEL, backend);
  const tokenizer = Tokenizer.fromDir(MODEL);
  const dictionaries = DICTS.map((path) => ({ path, dictionary: loadDictionary(path, backend) }));
  const dir = mkdtempSync(join(tmpdir(), "glassbox-bench-features-"));
  let readDone = 0;
  try {
    const t0 = performance.now();
    const s = await buildFeatureDatabase(join(dir, "run.sqlite"), {
      model,
      modelDir: MODEL,
      tokenizer,
      chatTemplate: null,
      dictionaries,
      data: { path: args.data, format: "jsonl", textField: "text" },
      maxTokens: tokens,
      context: args.context,
      batch: args.batch,
      onProgress: (p) => {
        if (p.phase === "finishing" && readDone === 0) readDone = performance.now();
      },
    });
    const seconds = (performance.now() - t0) / 1000;
    const out: RunResult = {
      impl: "glassbox",
      tokens: s.tokens,
      seconds,
      tokens_per_second: s.tokens / seconds,
      read_seconds: (readDone - t0) / 1000,
      peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    };
    console.log(JSON.stringify(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runGlassbox(args: Args, tokens: number): RunResult {
  const script = fileURLToPath(import.meta.url);
  const r = spawnSync(
    process.execPath,
    [
      script,
      "--child",
      String(tokens),
      "--data",
      args.data,
      "--context",
      String(args.context),
      "--batch",
      String(args.batch),
    ],
    { cwd: root, encoding: "utf8", maxBuffer: 1 << 26 },
  );
  if (r.status !== 0) throw new Error(`bench child failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "") as RunResult;
}

function runAnchor(args: Args, tokens: number): RunResult {
  const r = spawnSync(
    DASHBOARD_PYTHON,
    [
      join(root, "reference", "bench_features.py"),
      "--model",
      MODEL,
      "--data",
      args.data,
      "--tokens",
      String(tokens),
      "--context",
      String(args.context),
      "--batch",
      String(args.batch),
      ...DICTS.flatMap((d) => ["--dict", d]),
    ],
    { cwd: root, encoding: "utf8", maxBuffer: 1 << 26, env: { ...process.env, OMP_NUM_THREADS: "2" } },
  );
  if (r.status !== 0) throw new Error(`reference/bench_features.py failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "") as RunResult;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.child !== null) return child(args, args.child);
  if (!existsSync(join(MODEL, "model.safetensors"))) throw new Error(`bench: no model at ${MODEL}`);
  if (!existsSync(args.data))
    throw new Error(`bench: no corpus at ${args.data} (run \`glassbox data build\`)`);
  if (args.anchor && !existsSync(DASHBOARD_PYTHON))
    throw new Error(
      "bench: --anchor needs reference/.venv-dashboard (python3 -m venv reference/.venv-dashboard && reference/.venv-dashboard/bin/pip install sae-dashboard==0.8.0)",
    );
  const runs: RunResult[] = [];
  for (let round = 0; round < args.rounds; round++) {
    const order: (() => RunResult)[] = [() => runGlassbox(args, args.tokens)];
    if (args.anchor) order.push(() => runAnchor(args, args.tokens));
    if (round % 2 === 1) order.reverse();
    for (const f of order) {
      const r = f();
      runs.push(r);
      if (!args.json) console.error(`  ${r.impl}: ${r.tokens_per_second.toFixed(0)} tok/s`);
    }
  }
  const rss = args.rss.map((t) => runGlassbox(args, t));
  const summary = (impl: string) => {
    const xs = runs.filter((r) => r.impl === impl);
    if (xs.length === 0) return null;
    const tps = xs.map((r) => r.tokens_per_second);
    return {
      impl,
      runs: xs.length,
      best_tokens_per_second: Math.max(...tps),
      median_tokens_per_second: median(tps),
      median_read_tokens_per_second: median(xs.map((r) => r.tokens / r.read_seconds)),
      peak_rss_mib: Math.max(...xs.map((r) => r.peak_rss_bytes)) / 2 ** 20,
    };
  };
  const g = summary("glassbox");
  const a = args.anchor ? summary("sae-dashboard") : null;
  const report = {
    machine: machine(),
    date: new Date().toISOString().slice(0, 10),
    dictionaries: DICTS.length,
    tokens: args.tokens,
    data: args.data,
    glassbox: g,
    anchor: a,
    ratio_median: g !== null && a !== null ? g.median_tokens_per_second / a.median_tokens_per_second : null,
    rss: rss.map((r) => ({
      tokens: r.tokens,
      peak_rss_mib: r.peak_rss_bytes / 2 ** 20,
      tokens_per_second: r.tokens_per_second,
    })),
  };
  console.log(args.json ? JSON.stringify(report) : JSON.stringify(report, null, 2));
}

await main();
