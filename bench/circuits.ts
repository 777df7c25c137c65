/**
 * Benchmark: attribution graphs (src/circuits) end to end (replacement model, attribution with the
 * default node budget of 7,500 features, pruning, graph JSON), time and peak RSS:
 * - tiny-gemma3 with its bundled per-layer transcoders and its CLT, 32- and 128-token prompts;
 * - a gemma-3-270m-shaped random model (bf16) with random transcoders (4,096 features per layer,
 *   ~20 active per token), 32 tokens: the memory statement of a real-sized model.
 * With --anchor, the tiny-gemma3 cases also run through circuit-tracer 0.5.0 on the CPU
 * (reference/bench_circuits.py, in reference/.venv) with the same prompt ids and dictionaries.
 *
 * Every run is its own child process (peak RSS is the child's maxRSS); rounds alternate the order
 * of the implementations.
 *
 *   npm run build && node dist/bench/circuits.js [--rounds 1] [--cases tiny-tc-32,tiny-clt-32,...]
 *     [--anchor] [--json]
 * Child mode (internal): --child CASE
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultBackend } from "../src/backends/index.js";
import { toGraph } from "../src/circuits/graph.js";
import { writeGraphFile } from "../src/circuits/graph-file.js";
import { neuronpediaGraph } from "../src/circuits/neuronpedia-graph.js";
import { traceGraph } from "../src/circuits/trace.js";
import { TranscoderSet } from "../src/circuits/transcoders.js";
import { Rng } from "../src/core/random.js";
import { loadDictionary } from "../src/dictionaries/load.js";
import { Tokenizer } from "../src/io/tokenizer.js";
import { loadGemma3 } from "../src/model/gemma3/model.js";
import { randomTranscoders } from "../test/circuits/helpers.js";
import { randomGemma3_270m } from "./forward-model.js";
import { machine, median, packageRoot, referencePython } from "./util.js";

const root = packageRoot();
const MODEL = join(root, "models", "tiny-gemma3");
const GS = join(MODEL, "gemma-scope");
const TRANSCODERS = Array.from({ length: 6 }, (_, l) =>
  join(GS, "transcoder", `layer_${l}_width_1k_l0_medium`),
);
const CLT = join(GS, "clt", "width_3k_l0_medium");
const ALL_CASES = ["tiny-tc-32", "tiny-clt-32", "tiny-tc-128", "tiny-clt-128", "r270m-tc-32"];

/** A prompt of exactly n tokens (BOS + text tokens) from a fixed English passage. */
function promptIds(tok: Tokenizer, n: number): number[] {
  const passage =
    "The old man walked slowly to the river, and sat down on a stone by the water. He had come there every morning for many years, since the day his wife had died, to watch the boats go by and to remember. The children of the village knew him well, and they would sometimes bring him bread, or sit beside him and ask for the stories he told of the sea, of storms and far harbours, of the ships he had sailed on when he was young and strong. ";
  const ids = tok.encode(passage.repeat(4), { addBos: true });
  if (ids.length < n) throw new Error(`bench: the passage has only ${ids.length} tokens`);
  return ids.slice(0, n);
}

interface RunResult {
  readonly impl: string;
  readonly case: string;
  readonly seconds: number;
  readonly peak_rss_bytes: number;
  readonly active_features: number;
  readonly visited_features: number;
  readonly kept_nodes: number;
  readonly kept_edges: number;
}

async function child(name: string): Promise<void> {
  const backend = defaultBackend();
  const [, kind, len] = name.split("-");
  const n = Number(len);
  let model: ReturnType<typeof loadGemma3>;
  let set: TranscoderSet;
  let ids: number[];
  if (name.startsWith("tiny")) {
    model = loadGemma3(MODEL, backend);
    const dicts =
      kind === "clt" ? [loadDictionary(CLT, backend)] : TRANSCODERS.map((p) => loadDictionary(p, backend));
    set = TranscoderSet.from(dicts, model.config);
    ids = promptIds(Tokenizer.fromDir(MODEL), n);
  } else {
    const dir = await randomGemma3_270m(join(tmpdir(), "glassbox-bench-models"), "bf16");
    model = loadGemma3(dir, backend);
    set = TranscoderSet.from(
      randomTranscoders(model.config, backend, "transcoders", 4096, 3, 2.6),
      model.config,
    );
    const rng = new Rng(11);
    ids = [2, ...Array.from({ length: n - 1 }, () => 1000 + rng.int(200_000))];
  }
  const t0 = performance.now();
  const r = traceGraph(model, set, ids, {});
  const np = neuronpediaGraph(toGraph(r.attribution), r.pruned, {
    slug: name,
    scan: name,
    prompt: "",
    promptTokens: ids.map(String),
    tokenText: String,
    generation: { maxLogits: 10, logitProbability: 0.95, batchSize: 256, maxFeatureNodes: 7500 },
  });
  const dir = mkdtempSync(join(tmpdir(), "glassbox-bench-graph-"));
  try {
    writeGraphFile(join(dir, "g.json"), np);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const seconds = (performance.now() - t0) / 1000;
  const out: RunResult = {
    impl: "glassbox",
    case: name,
    seconds,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    active_features: r.replacement.features.count,
    visited_features: r.attribution.visited.length,
    kept_nodes: r.pruned.nodes.length,
    kept_edges: r.pruned.edges.source.length,
  };
  console.log(JSON.stringify(out));
}

function runGlassbox(name: string): RunResult {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--child", name], {
    cwd: root,
    encoding: "utf8",
    maxBuffer: 1 << 26,
  });
  if (r.status !== 0) throw new Error(`bench child ${name} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "") as RunResult;
}

function runAnchor(name: string): RunResult {
  const [, kind, len] = name.split("-");
  const ids = promptIds(Tokenizer.fromDir(MODEL), Number(len));
  const r = spawnSync(
    referencePython(),
    [
      join(root, "reference", "bench_circuits.py"),
      "--model",
      MODEL,
      ...(kind === "clt" ? ["--clt", CLT] : TRANSCODERS.flatMap((t) => ["--transcoder", t])),
      "--ids",
      ids.join(","),
      "--case",
      name,
    ],
    { cwd: root, encoding: "utf8", maxBuffer: 1 << 26, env: { ...process.env, OMP_NUM_THREADS: "2" } },
  );
  if (r.status !== 0) throw new Error(`reference/bench_circuits.py failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "") as RunResult;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const get = (name: string, def: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
  };
  const childCase = get("child", "");
  if (childCase !== "") return child(childCase);
  const rounds = Number(get("rounds", "1"));
  const cases = get("cases", ALL_CASES.join(",")).split(",");
  for (const c of cases)
    if (!ALL_CASES.includes(c)) throw new Error(`bench: unknown case ${c} (${ALL_CASES.join(", ")})`);
  const anchor = argv.includes("--anchor");
  const json = argv.includes("--json");
  const runs: RunResult[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const c of cases) {
      const order: (() => RunResult)[] = [() => runGlassbox(c)];
      if (anchor && c.startsWith("tiny")) order.push(() => runAnchor(c));
      if (round % 2 === 1) order.reverse();
      for (const f of order) {
        const r = f();
        runs.push(r);
        if (!json)
          console.error(
            `  ${r.case} ${r.impl}: ${r.seconds.toFixed(2)} s, peak RSS ${(r.peak_rss_bytes / 2 ** 20).toFixed(0)} MiB, ${r.visited_features}/${r.active_features} features, ${r.kept_nodes} nodes kept`,
          );
      }
    }
  }
  const summary = cases.map((c) => {
    const of = (impl: string) => runs.filter((r) => r.case === c && r.impl === impl);
    const g = of("glassbox");
    const a = of("circuit-tracer");
    const med = (xs: RunResult[]) => (xs.length === 0 ? null : median(xs.map((r) => r.seconds)));
    const rss = (xs: RunResult[]) =>
      xs.length === 0 ? null : Math.max(...xs.map((r) => r.peak_rss_bytes)) / 2 ** 20;
    const gs = med(g);
    const as = med(a);
    return {
      case: c,
      glassbox_seconds: gs,
      glassbox_peak_rss_mib: rss(g),
      circuit_tracer_seconds: as,
      circuit_tracer_peak_rss_mib: rss(a),
      speedup: gs !== null && as !== null ? as / gs : null,
      rss_ratio: rss(g) !== null && rss(a) !== null ? (rss(g) as number) / (rss(a) as number) : null,
    };
  });
  const report = { machine: machine(), date: new Date().toISOString().slice(0, 10), rounds, summary, runs };
  if (json) console.log(JSON.stringify(report));
  else console.table(summary);
}

await main();
