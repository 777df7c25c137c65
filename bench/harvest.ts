/**
 * Benchmark: harvesting tokens/s, glassbox against SAELens' ActivationsStore on the same model.
 *
 * Both read the same JSONL file, tokenize on the fly, run the model on `--batch` sequences of
 * `--context` tokens per forward pass, stop the forward after the harvested layer, and drop special
 * tokens; they differ in how documents become sequences (SAELens packs them, glassbox splits each
 * document on its own and pads a batch's last chunks). Measured: glassbox streaming
 * (`streamActivations`, nothing stored), glassbox into an f32 store (`harvestToStore`, shards
 * written and hashed), and SAELens `get_filtered_llm_batch()` (reference/bench_harvest.py, in
 * memory). Each run is its own child process with the same thread count; rounds alternate so that
 * machine load hits all alike; best and median tokens/s are reported.
 *
 * The model is models/tiny-gemma3 when its weights are present; otherwise a random model with its
 * configuration (6 layers, d_model 256) and tokenizer is written under .cache/bench/.
 *
 *   npm run build && node dist/bench/harvest.js [--rounds 3] [--tokens 32768] [--layer 3]
 *     [--context 256] [--batch 8] [--threads 2] [--data data/corpus/validation.jsonl] [--no-saelens] [--json]
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { formatFromName, readDocuments, tokenizeDocuments } from "../src/activations/documents.js";
import { gemma3Harvester, harvestToStore, streamActivations } from "../src/activations/harvest.js";
import { maskingRules } from "../src/activations/sequences.js";
import { defaultBackend } from "../src/backends/index.js";
import { SafetensorsWriter } from "../src/io/safetensors-write.js";
import { Tokenizer } from "../src/io/tokenizer.js";
import { loadGemma3 } from "../src/model/gemma3/model.js";
import { median, packageRoot, referencePython, spawnJson } from "./util.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const compiled = import.meta.url.endsWith(".js");
const repoRoot = packageRoot();
const PYTHON = referencePython();

interface Args {
  rounds: number;
  tokens: number;
  layer: number;
  context: number;
  batch: number;
  threads: number;
  data: string;
  model: string | null;
  saelens: boolean;
  json: boolean;
  child: "stream" | "store" | null;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string, def: string): string => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
  };
  const child = get("child", "");
  return {
    rounds: Number(get("rounds", "3")),
    tokens: Number(get("tokens", "32768")),
    layer: Number(get("layer", "3")),
    context: Number(get("context", "256")),
    batch: Number(get("batch", "8")),
    threads: Number(get("threads", "2")),
    data: get("data", join(repoRoot, "data", "corpus", "validation.jsonl")),
    model: argv.includes("--model") ? get("model", "") : null,
    saelens: !argv.includes("--no-saelens"),
    json: argv.includes("--json"),
    child: child === "stream" || child === "store" ? child : null,
  };
}

interface RunResult {
  readonly impl: string;
  readonly tokens: number;
  readonly seconds: number;
  readonly tokens_per_second: number;
  readonly load_seconds: number;
  readonly peak_rss_bytes: number;
}

/** The tiny-gemma3 architecture (reference/train_tiny_gemma3.py defaults) with random weights. */
async function randomTinyModel(tokenizerDir: string): Promise<string> {
  const dir = join(repoRoot, ".cache", "bench", "tiny-gemma3-random");
  if (existsSync(join(dir, "model.safetensors"))) return dir;
  const vocab = new Tokenizer(
    JSON.parse(readFileSync(join(tokenizerDir, "tokenizer.json"), "utf8")),
    JSON.parse(readFileSync(join(tokenizerDir, "tokenizer_config.json"), "utf8")),
  ).vocabSize;
  const [d, m, heads, kv, hd, layers] = [256, 1024, 4, 2, 48, 6];
  const config = {
    architectures: ["Gemma3ForCausalLM"],
    model_type: "gemma3_text",
    vocab_size: vocab,
    hidden_size: d,
    intermediate_size: m,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    head_dim: hd,
    query_pre_attn_scalar: 64,
    sliding_window: 64,
    layer_types: Array.from({ length: layers }, (_, i) =>
      (i + 1) % 6 === 0 ? "full_attention" : "sliding_attention",
    ),
    max_position_embeddings: 2048,
    rope_theta: 1_000_000,
    rope_local_base_freq: 10_000,
    rope_scaling: null,
    rms_norm_eps: 1e-6,
    hidden_activation: "gelu_pytorch_tanh",
    tie_word_embeddings: true,
    attention_bias: false,
    attn_logit_softcapping: null,
    final_logit_softcapping: null,
    pad_token_id: 0,
    eos_token_id: 1,
    bos_token_id: 2,
    torch_dtype: "float32",
  };
  const list: [string, number[], number][] = [["model.embed_tokens.weight", [vocab, d], d ** -0.5]];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    for (const n of [
      "input_layernorm",
      "post_attention_layernorm",
      "pre_feedforward_layernorm",
      "post_feedforward_layernorm",
    ])
      list.push([`${p}${n}.weight`, [d], 0.1]);
    list.push(
      [`${p}self_attn.q_proj.weight`, [heads * hd, d], d ** -0.5],
      [`${p}self_attn.k_proj.weight`, [kv * hd, d], d ** -0.5],
      [`${p}self_attn.v_proj.weight`, [kv * hd, d], d ** -0.5],
      [`${p}self_attn.o_proj.weight`, [d, heads * hd], (heads * hd) ** -0.5],
      [`${p}self_attn.q_norm.weight`, [hd], 0.1],
      [`${p}self_attn.k_norm.weight`, [hd], 0.1],
      [`${p}mlp.gate_proj.weight`, [m, d], d ** -0.5],
      [`${p}mlp.up_proj.weight`, [m, d], d ** -0.5],
      [`${p}mlp.down_proj.weight`, [d, m], m ** -0.5],
    );
  }
  list.push(["model.norm.weight", [d], 0.1]);
  const tmp = `${dir}.partial`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(tmp, "config.json"), JSON.stringify(config, null, 2));
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
    if (existsSync(join(tokenizerDir, f))) copyFileSync(join(tokenizerDir, f), join(tmp, f));
  const specs = Object.fromEntries(list.map(([n, shape]) => [n, { dtype: "F32" as const, shape }]));
  const w = await SafetensorsWriter.create(join(tmp, "model.safetensors"), specs, { format: "pt" });
  let seed = 1;
  for (const [name, shape, std] of list) {
    // Uniform values with standard deviation `std` from a seeded xorshift32 (as bench/forward-model.ts).
    const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const a = std * Math.sqrt(3) * 2 ** -31;
    let x = seed++ >>> 0 || 1;
    for (let i = 0; i < out.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = (x | 0) * a;
    }
    await w.write(name, new Uint8Array(out.buffer));
  }
  await w.finish();
  renameSync(tmp, dir);
  return dir;
}

async function runChild(args: Args, modelDir: string, mode: "stream" | "store"): Promise<RunResult> {
  const t0 = performance.now();
  const tokenizer = Tokenizer.fromDir(modelDir);
  const model = loadGemma3(modelDir, defaultBackend());
  const harvester = gemma3Harvester(model, { id: "bench", hash: "0".repeat(64) }, [
    `blocks.${args.layer}.resid_post`,
  ]);
  const format = formatFromName(args.data, false);
  const source = {
    documents: () =>
      tokenizeDocuments(readDocuments({ path: args.data, format, textField: "text" }), tokenizer, null),
    context: args.context,
    bos: tokenizer.special.bos,
    rules: maskingRules(format, tokenizer.special),
    longDocuments: "split" as const,
  };
  const loadSeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  let tokens = 0;
  if (mode === "stream") {
    for await (const b of streamActivations({
      ...source,
      model: harvester,
      backend: model.backend,
      batchTokens: 4096,
      batch: args.batch,
    })) {
      tokens += b.tokenIds.length;
      if (tokens >= args.tokens) break;
    }
  } else {
    const dir = mkdtempSync(join(tmpdir(), "glassbox-bench-harvest-"));
    try {
      const r = await harvestToStore(join(dir, "store"), {
        ...source,
        model: harvester,
        batch: args.batch,
        tokens: args.tokens,
        dataset: { file: args.data },
      });
      tokens = r.manifest.tokens;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const seconds = (performance.now() - t1) / 1000;
  return {
    impl: `glassbox-${mode}`,
    tokens,
    seconds,
    tokens_per_second: tokens / seconds,
    load_seconds: loadSeconds,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.child !== null) {
    process.stdout.write(`${JSON.stringify(await runChild(args, args.model ?? "", args.child))}\n`);
    return;
  }
  const tiny = join(repoRoot, "models", "tiny-gemma3");
  const modelDir =
    args.model ?? (existsSync(join(tiny, "model.safetensors")) ? tiny : await randomTinyModel(tiny));
  const env = {
    ...process.env,
    OPENBLAS_NUM_THREADS: String(args.threads),
    OMP_NUM_THREADS: String(args.threads),
    GLASSBOX_THREADS: String(args.threads),
  };
  const script = compiled ? join(here, "harvest.js") : join(here, "harvest.ts");
  const nodeArgs = compiled ? [script] : ["--import", "tsx", script];
  const common = [
    "--tokens",
    String(args.tokens),
    "--layer",
    String(args.layer),
    "--context",
    String(args.context),
    "--batch",
    String(args.batch),
    "--data",
    args.data,
  ];
  const saelens = args.saelens && existsSync(PYTHON);
  const runs: Record<string, RunResult[]> = { "glassbox-stream": [], "glassbox-store": [], sae_lens: [] };
  for (let round = 0; round < args.rounds; round++) {
    for (const mode of ["stream", "store"] as const)
      runs[`glassbox-${mode}`].push(
        spawnJson<RunResult>(
          process.execPath,
          [...nodeArgs, "--child", mode, "--model", modelDir, ...common],
          env,
        ),
      );
    if (saelens)
      runs.sae_lens.push(
        spawnJson<RunResult>(
          PYTHON,
          [
            join(repoRoot, "reference", "bench_harvest.py"),
            "--model-dir",
            modelDir,
            "--threads",
            String(args.threads),
            ...common,
          ],
          env,
        ),
      );
  }
  const summary = Object.entries(runs)
    .filter(([, r]) => r.length > 0)
    .map(([impl, r]) => ({
      impl,
      best: Math.max(...r.map((x) => x.tokens_per_second)),
      median: median(r.map((x) => x.tokens_per_second)),
      tokens: r[0].tokens,
      peak_rss_mib: Math.max(...r.map((x) => x.peak_rss_bytes)) / 2 ** 20,
    }));
  const ref = summary.find((s) => s.impl === "sae_lens");
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify({ date: new Date().toISOString(), model: modelDir, args, summary, runs }, null, 1)}\n`,
    );
    return;
  }
  process.stdout.write(
    `model ${modelDir}, site blocks.${args.layer}.resid_post, ${args.tokens} tokens, context ${args.context}, batch ${args.batch}, ${args.threads} threads, ${args.rounds} rounds\n`,
  );
  for (const s of summary) {
    const ratio =
      ref && s.impl !== "sae_lens"
        ? `  (${(s.best / ref.best).toFixed(2)}x SAELens best, ${(s.median / ref.median).toFixed(2)}x median)`
        : "";
    process.stdout.write(
      `${s.impl.padEnd(16)} best ${s.best.toFixed(0).padStart(7)} tokens/s  median ${s.median.toFixed(0).padStart(7)}  peak RSS ${s.peak_rss_mib.toFixed(0)} MiB${ratio}\n`,
    );
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
