#!/usr/bin/env node
/**
 * Builds the bundled dictionaries of a tiny Gemma 3 model in one resumable command:
 *
 *   node scripts/bundle-dictionaries.mjs MODEL_DIR [options]      (or scripts/bundle-dictionaries.sh)
 *
 * 1. harvest  resid_post, mlp_in and mlp_out at every layer from the corpus train split (or chat
 *             conversations with --chat) into a bf16 activation store  (WORK/store)
 * 2. train    every dictionary in one run over the store (WORK/run; glassbox train resumes itself):
 *             JumpReLU residual SAEs at every layer at two L0 targets, a transcoder and a
 *             skip-transcoder at every layer, one cross-layer transcoder over all layers and a
 *             Matryoshka BatchTopK residual SAE at the middle layer
 * 3. export   copies each exported Gemma Scope 2 folder into MODEL_DIR/gemma-scope/, matrices
 *             converted to bf16 (vectors stay f32) to keep the repository small
 * 4. eval     glassbox eval --json for each on held-out text (WORK/eval/<id>.json, skipped when present)
 * 5. report   MODEL_DIR/gemma-scope/eval.json and the tables in docs/bundled-dictionaries.md
 *
 * Every stage skips work already done, so re-running the command after an interruption continues.
 * `--stages a,b` runs only some stages. Options: see `usage` below.
 */
import * as childProcess from "node:child_process";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const usage = `usage: node scripts/bundle-dictionaries.mjs MODEL_DIR [options]
  --work DIR          scratch folder for the store, the run and the eval results
                      (default: scratch/bundle/<model name>)
  --tokens N          tokens to harvest (default 200000)
  --epochs N          passes over the store (default 2)
  --data FILE         training text (default data/corpus/train.jsonl)
  --eval-data FILE    held-out text (default data/corpus/validation.jsonl)
  --chat              --data and --eval-data are chat JSONL ({"messages": [...]} per line)
  --init-from DIR     start every dictionary from the one with the same id under DIR (e.g.
                      models/tiny-gemma3/gemma-scope for the chat model, as Gemma Scope 2 does)
  --eval-tokens N     tokens per evaluation (default 8192)
  --stages LIST       harvest,train,export,eval,report (default: all, in order)
  --dist DIR          the compiled glassbox to use (default: <repo>/dist, from npm run build)`;

function parseArgs(argv) {
  const o = {
    model: null,
    work: null,
    tokens: 200_000,
    epochs: 2,
    data: join(ROOT, "data/corpus/train.jsonl"),
    evalData: join(ROOT, "data/corpus/validation.jsonl"),
    chat: false,
    initFrom: null,
    evalTokens: 8192,
    stages: ["harvest", "train", "export", "eval", "report"],
    dist: join(ROOT, "dist"),
  };
  const args = [...argv];
  while (args.length > 0) {
    const a = args.shift();
    const val = () => {
      const v = args.shift();
      if (v === undefined) fail(`${a} needs a value\n${usage}`);
      return v;
    };
    if (a === "--help" || a === "-h") {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    } else if (a === "--work") o.work = resolve(val());
    else if (a === "--tokens") o.tokens = posInt(val(), a);
    else if (a === "--epochs") o.epochs = posInt(val(), a);
    else if (a === "--data") o.data = resolve(val());
    else if (a === "--eval-data") o.evalData = resolve(val());
    else if (a === "--chat") o.chat = true;
    else if (a === "--init-from") o.initFrom = resolve(val());
    else if (a === "--eval-tokens") o.evalTokens = posInt(val(), a);
    else if (a === "--stages")
      o.stages = val()
        .split(",")
        .map((s) => s.trim());
    else if (a === "--dist") o.dist = resolve(val());
    else if (a.startsWith("-")) fail(`unknown option ${a}\n${usage}`);
    else if (o.model === null) o.model = resolve(a);
    else fail(`one MODEL_DIR only\n${usage}`);
  }
  if (o.model === null) fail(usage);
  return o;
}

function fail(msg) {
  process.stderr.write(`bundle-dictionaries: ${msg}\n`);
  process.exit(1);
}

function posInt(v, flag) {
  if (!/^\d+$/.test(v) || Number(v) < 1) fail(`${flag} must be a positive integer, got ${v}`);
  return Number(v);
}

function log(msg) {
  const t = new Date().toISOString().slice(11, 19);
  process.stderr.write(`[${t}] ${msg}\n`);
}

/** Runs the glassbox CLI; returns stdout (parsed when --json). */
function glassbox(o, args) {
  const [cmd, ...pre] = [process.execPath, join(o.dist, "src/cli/main.js")];
  const t0 = Date.now();
  log(`$ glassbox ${args.join(" ")}`);
  const r = spawnSync(cmd, [...pre, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0) fail(`glassbox ${args[0]} failed (exit ${r.status ?? r.signal})`);
  log(`  done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return args.includes("--json") ? JSON.parse(r.stdout) : r.stdout;
}

// ---------------------------------------------------------------------------------------------
// What is trained

/** Hyperparameters, tuned on the tiny models (d_model 256, 6 layers). */
export const PLAN = {
  batchSize: 1024,
  lr: 1e-3,
  /** JumpReLU: start near the target L0 (inputs have E||x||^2 = 1, so pre-activations are ~0.06). */
  initialThreshold: 0.1,
  bandwidth: 0.005,
  sparsityCoefficient: 1,
  residWidth: 1024,
  residL0: { small: 16, big: 48 },
  transcoderWidth: 1024,
  transcoderL0: 32,
  cltWidth: 512,
  /** BatchTopK k per layer of the CLT. */
  cltK: 16,
  matryoshkaWidth: 2048,
  matryoshkaK: 32,
  matryoshkaGroups: [1 / 16, 1 / 16, 1 / 8, 1 / 4, 1 / 2],
};

function widthLabel(w) {
  return w % 1024 === 0 ? `${w / 1024}k` : String(w);
}

function jumprelu(targetL0) {
  const p = PLAN;
  return {
    kind: "jumprelu",
    targetL0,
    initialThreshold: p.initialThreshold,
    bandwidth: p.bandwidth,
    sparsityCoefficient: p.sparsityCoefficient,
  };
}

/**
 * The glassbox train JSON config for a model with `layers` layers and `steps` steps. With `initFrom`
 * (a folder of bundled dictionaries, e.g. the base model's `gemma-scope/`) every dictionary starts
 * from the one with its id there, as Gemma Scope 2 fine-tunes IT dictionaries from PT ones; their
 * thresholds are already tuned, so there is no sparsity warm-up.
 */
export function trainingConfig(layers, steps, initFrom = null) {
  const p = PLAN;
  const common = {
    lr: p.lr,
    lrWarmupSteps: Math.min(100, Math.floor(steps / 10)),
    lrDecaySteps: Math.floor(steps / 5),
    sparsityWarmupSteps: initFrom === null ? Math.floor(steps / 4) : 0,
    deadWindow: 200_000,
  };
  const d = [];
  const L = [...Array(layers).keys()];
  for (const l of L) {
    for (const [label, l0] of Object.entries(p.residL0)) {
      d.push({
        id: `resid_post/layer_${l}_width_${widthLabel(p.residWidth)}_l0_${label}`,
        inputs: [`blocks.${l}.resid_post`],
        width: p.residWidth,
        rule: jumprelu(l0),
        ...common,
      });
    }
  }
  for (const skip of [false, true]) {
    for (const l of L) {
      d.push({
        id: `transcoder/layer_${l}_width_${widthLabel(p.transcoderWidth)}_l0_medium${skip ? "_affine" : ""}`,
        inputs: [`blocks.${l}.mlp_in`],
        outputs: [`blocks.${l}.mlp_out`],
        width: p.transcoderWidth,
        skip,
        rule: jumprelu(p.transcoderL0),
        ...common,
      });
    }
  }
  d.push({
    id: `clt/width_${widthLabel(p.cltWidth * layers)}_l0_medium`,
    inputs: L.map((l) => `blocks.${l}.mlp_in`),
    outputs: L.map((l) => `blocks.${l}.mlp_out`),
    width: p.cltWidth,
    rule: { kind: "batchtopk", k: p.cltK },
    ...common,
  });
  const mid = Math.floor(layers / 2);
  const groups = p.matryoshkaGroups.map((f) => Math.round(f * p.matryoshkaWidth));
  groups[groups.length - 1] = p.matryoshkaWidth - groups.slice(0, -1).reduce((a, b) => a + b, 0);
  d.push({
    id: `resid_post/layer_${mid}_width_${widthLabel(p.matryoshkaWidth)}_l0_medium_matryoshka`,
    inputs: [`blocks.${mid}.resid_post`],
    width: p.matryoshkaWidth,
    groups,
    rule: { kind: "batchtopk", k: p.matryoshkaK },
    ...common,
  });
  const dictionaries = initFrom === null ? d : d.map((x) => ({ ...x, init: join(initFrom, x.id) }));
  return { batchSize: p.batchSize, steps, checkpointEvery: 50, logEvery: 10, dictionaries };
}

/**
 * The dictionaries split into groups trained as separate runs side by side over the same store
 * (each run is one pass: all its dictionaries see every batch). Several processes get more of a
 * shared machine than one.
 */
const GROUPS = [
  { name: "resid-small", match: (id) => id.startsWith("resid_post/") && id.endsWith("_l0_small") },
  { name: "matryoshka", match: (id) => id.includes("_matryoshka") },
  { name: "resid-big", match: (id) => id.startsWith("resid_post/") && id.endsWith("_l0_big") },
  { name: "transcoders", match: (id) => id.startsWith("transcoder/") && !id.endsWith("_affine") },
  { name: "skip-transcoders", match: (id) => id.startsWith("transcoder/") && id.endsWith("_affine") },
  { name: "clt", match: (id) => id.startsWith("clt/") },
];

// ---------------------------------------------------------------------------------------------
// Stages

function sitesOf(layers) {
  const s = [];
  for (let l = 0; l < layers; l++)
    s.push(`blocks.${l}.resid_post`, `blocks.${l}.mlp_in`, `blocks.${l}.mlp_out`);
  return s;
}

function harvest(o, layers) {
  const store = join(o.work, "store");
  const m = join(store, "manifest.json");
  if (existsSync(m)) {
    const man = JSON.parse(readFileSync(m, "utf8"));
    if (man.complete && man.tokens >= o.tokens) {
      log(`harvest: ${store} already holds ${man.tokens} tokens`);
      return;
    }
  }
  const r = glassbox(o, [
    "harvest",
    "--model",
    o.model,
    "--sites",
    sitesOf(layers).join(","),
    "--data",
    o.data,
    // Conversations are short (~50 tokens): more of them per forward pass.
    ...(o.chat ? ["--chat", "--batch", "32"] : []),
    "--out",
    store,
    "--tokens",
    String(o.tokens),
    "--dtype",
    "bf16",
    "--json",
  ]);
  writeFileSync(join(o.work, "harvest.json"), `${JSON.stringify(r, null, 2)}\n`);
  log(`harvest: ${r.tokens} tokens, ${Math.round(r.tokens_per_second)} tokens/s`);
}

function runDir(o, group) {
  return join(o.work, `run-${group}`);
}

async function train(o, layers) {
  const man = JSON.parse(readFileSync(join(o.work, "store", "manifest.json"), "utf8"));
  const steps = Math.floor((man.tokens * o.epochs) / PLAN.batchSize);
  const all = trainingConfig(layers, steps, o.initFrom);
  const jobs = [];
  for (const g of GROUPS) {
    const dir = runDir(o, g.name);
    const done = join(dir, "train-report.json");
    if (existsSync(done)) {
      log(`train ${g.name}: done (${done})`);
      continue;
    }
    mkdirSync(dir, { recursive: true });
    const cfg = { ...all, dictionaries: all.dictionaries.filter((d) => g.match(d.id)) };
    const cfgPath = join(o.work, `train-${g.name}.json`);
    writeFileSync(cfgPath, `${JSON.stringify(cfg, null, 2)}\n`);
    jobs.push(
      glassboxAsync(o, [
        "train",
        "--model",
        o.model,
        "--store",
        join(o.work, "store"),
        "--epochs",
        String(o.epochs),
        "--config",
        cfgPath,
        "--out",
        dir,
        "--seed",
        "0",
        "--json",
      ]).then((r) => {
        writeFileSync(done, `${JSON.stringify(r, null, 2)}\n`);
        log(`train ${g.name}: ${r.steps} steps, ${Math.round(r.tokens_per_second ?? 0)} tokens/s`);
      }),
    );
  }
  // Let the other runs finish (and write their reports) when one fails, e.g. killed for memory;
  // running the command again resumes the failed one from its last checkpoint.
  const failed = (await Promise.allSettled(jobs)).filter((r) => r.status === "rejected");
  if (failed.length > 0) fail(failed.map((r) => String(r.reason?.message ?? r.reason)).join("; "));
}

function glassboxAsync(o, args) {
  const { spawn } = childProcess;
  const [cmd, ...pre] = [process.execPath, join(o.dist, "src/cli/main.js")];
  const t0 = Date.now();
  log(`$ glassbox ${args.join(" ")}`);
  return new Promise((res, rej) => {
    const p = spawn(cmd, [...pre, ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.setEncoding("utf8");
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.on("error", rej);
    p.on("close", (code, sig) => {
      if (code !== 0) return rej(new Error(`glassbox ${args[0]} failed (exit ${code ?? sig})`));
      log(`  glassbox ${args[0]} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      res(args.includes("--json") ? JSON.parse(out) : out);
    });
  });
}

/**
 * Every exported dictionary of the runs: [id, folder]. The export and eval stages take the runs
 * that have finished (`partial`) so they can start while a slower run still trains; the report
 * needs all of them.
 */
function exportedDictionaries(o, partial = false) {
  const out = [];
  for (const g of GROUPS) {
    const report = join(runDir(o, g.name), "train-report.json");
    if (!existsSync(report)) {
      if (partial) {
        log(`train ${g.name} has not finished: its dictionaries are left for later`);
        continue;
      }
      fail(`train ${g.name} has not finished (${report} is missing)`);
    }
    for (const d of JSON.parse(readFileSync(report, "utf8")).dictionaries) out.push([d.id, d.path]);
  }
  return out;
}

function bf16Bits(f32) {
  const u32 = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < u32.length; i++) {
    const x = u32[i];
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) out[i] = (x >>> 16) | 0x40;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Copies a Gemma Scope 2 folder, writing its matrices (rank >= 2) as bf16. */
async function copyAsBf16(o, src, dst, modelName) {
  const gb = await import(join(o.dist, "src/index.js"));
  mkdirSync(dst, { recursive: true });
  for (const name of readdirSync(src)) {
    if (!name.endsWith(".safetensors")) continue;
    const f = gb.openSafetensors(join(src, name));
    const tensors = {};
    try {
      for (const t of f.names()) {
        const info = f.info(t);
        if (info.dtype !== "F32") throw new Error(`${src}/${name}: ${t} is ${info.dtype}, expected F32`);
        const data = Float32Array.from(f.readTypedSync(t).data);
        tensors[t] =
          info.shape.length >= 2
            ? { dtype: "BF16", shape: info.shape, data: bf16Bits(data) }
            : { dtype: "F32", shape: info.shape, data };
      }
    } finally {
      f.close();
    }
    gb.writeSafetensorsSync(join(dst, name), tensors);
  }
  const cfg = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  cfg.model_name = modelName;
  writeFileSync(join(dst, "config.json"), `${JSON.stringify(cfg, null, 2)}\n`);
}

function modelName(o) {
  return `glassbox/${basename(o.model)}`;
}

async function exportAll(o) {
  const root = join(o.model, "gemma-scope");
  const list = exportedDictionaries(o, true);
  for (const [id, path] of list) {
    const dst = join(root, id);
    const tmp = `${dst}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    await copyAsBf16(o, path, tmp, modelName(o));
    rmSync(dst, { recursive: true, force: true });
    renameSync(tmp, dst);
  }
  log(`export: ${list.length} dictionaries in ${root} (${mib(duBytes(root))} MiB)`);
}

function duBytes(dir) {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? duBytes(p) : statSync(p).size;
  }
  return n;
}

function mib(b) {
  return (b / 2 ** 20).toFixed(1);
}

async function evaluate(o, parallel = 3) {
  const root = join(o.model, "gemma-scope");
  const ids = exportedDictionaries(o, true).map(([id]) => id);
  mkdirSync(join(o.work, "eval"), { recursive: true });
  const queue = ids.filter((id) => !existsSync(evalFile(o, id)));
  log(`eval: ${ids.length - queue.length} done, ${queue.length} to go (${parallel} at a time)`);
  const worker = async () => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
      const r = await glassboxAsync(o, [
        "eval",
        "--model",
        o.model,
        "--dict",
        join(root, id),
        "--data",
        o.evalData,
        ...(o.chat ? ["--chat"] : []),
        "--tokens",
        String(o.evalTokens),
        "--json",
      ]);
      const f = evalFile(o, id);
      writeFileSync(`${f}.tmp`, `${JSON.stringify(r)}\n`);
      renameSync(`${f}.tmp`, f);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

function evalFile(o, id) {
  return join(o.work, "eval", `${id.replaceAll("/", "__")}.json`);
}

/** site, layer of a dictionary id like resid_post/layer_3_width_1k_l0_big. */
function describe(id) {
  const [site, name] = id.split("/");
  const layer = /layer_(\d+)/.exec(name);
  const kind =
    site === "clt"
      ? "clt"
      : site === "transcoder"
        ? name.endsWith("_affine")
          ? "skip-transcoder"
          : "transcoder"
        : name.includes("matryoshka")
          ? "sae (matryoshka batchtopk)"
          : "sae";
  return { site, layer: layer ? Number(layer[1]) : null, kind };
}

function report(o) {
  const root = join(o.model, "gemma-scope");
  const ids = exportedDictionaries(o).map(([id]) => id);
  const dictionaries = ids.map((id) => {
    const f = evalFile(o, id);
    if (!existsSync(f)) fail(`no evaluation of ${id} (${f}); run the eval stage`);
    const r = JSON.parse(readFileSync(f, "utf8"));
    const info = describe(id);
    return {
      id,
      ...info,
      width: r.width,
      target_l0: JSON.parse(readFileSync(join(root, id, "config.json"), "utf8")).l0 ?? null,
      l0: r.l0,
      mse: r.mse,
      fvu: r.fvu,
      dead_fraction: r.dead_fraction,
      dense_fraction: r.dense_fraction,
      ce_clean: r.ce_clean,
      ce_spliced: r.ce_spliced,
      ce_ablated: r.ce_ablated,
      delta_lm_loss: r.delta_lm_loss,
      ce_loss_recovered: r.ce_loss_recovered,
      kl_score: r.kl_score,
      per_layer: r.per_layer,
      tokens: r.tokens,
      read_site: r.read_site,
      write_site: r.write_site,
    };
  });
  const harvestFile = join(o.work, "harvest.json");
  const h = existsSync(harvestFile) ? JSON.parse(readFileSync(harvestFile, "utf8")) : null;
  const first = JSON.parse(readFileSync(evalFile(o, ids[0]), "utf8"));
  const out = {
    model: modelName(o),
    generated: new Date().toISOString(),
    training: {
      data: relative(ROOT, o.data),
      chat: o.chat,
      init_from: o.initFrom === null ? null : relative(ROOT, o.initFrom),
      store_tokens: h?.tokens ?? null,
      epochs: o.epochs,
      plan: PLAN,
    },
    evaluation: { data: first.data, tokens: first.tokens },
    dictionaries,
  };
  writeFileSync(join(root, "eval.json"), `${JSON.stringify(out, null, 2)}\n`);
  log(`report: ${join(root, "eval.json")}`);
  writeDocs();
}

const fmt = (v, d) => (v === null || v === undefined || Number.isNaN(v) ? "-" : v.toFixed(d));

/** The markdown table of one eval.json. */
export function table(evalJson) {
  const rows = [
    "| dictionary | site | layer | width | L0 (target) | FVU | CE loss recovered | delta LM loss | KL score | dead fraction |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const d of evalJson.dictionaries) {
    // A CLT's width and BatchTopK k are per layer; its L0 counts the features of all layers.
    const layers = d.per_layer?.l0?.length ?? 1;
    const width = d.kind === "clt" ? `${d.width} x ${layers} layers` : String(d.width);
    const target = d.kind === "clt" ? `${d.target_l0} x ${layers}` : (d.target_l0 ?? "-");
    rows.push(
      `| \`${d.id}\` | ${d.kind} | ${d.layer ?? "all"} | ${width} | ${fmt(d.l0, 1)} (${target}) | ${fmt(d.fvu, 3)} | ${fmt(d.ce_loss_recovered, 3)} | ${fmt(d.delta_lm_loss, 4)} | ${fmt(d.kl_score, 3)} | ${fmt(d.dead_fraction, 3)} |`,
    );
  }
  return rows.join("\n");
}

/** Rewrites the generated part of docs/bundled-dictionaries.md from every model's eval.json. */
function writeDocs() {
  const doc = join(ROOT, "docs", "bundled-dictionaries.md");
  const begin = "<!-- BEGIN GENERATED TABLES (scripts/bundle-dictionaries.mjs) -->";
  const end = "<!-- END GENERATED TABLES -->";
  const parts = [];
  for (const m of ["tiny-gemma3", "tiny-gemma3-it"]) {
    const f = join(ROOT, "models", m, "gemma-scope", "eval.json");
    if (!existsSync(f)) {
      parts.push(`### ${m}\n\nNot built yet: \`scripts/bundle-dictionaries.sh models/${m}\`.`);
      continue;
    }
    const e = JSON.parse(readFileSync(f, "utf8"));
    parts.push(
      `### ${m}\n\nTrained on ${e.training.store_tokens ?? "?"} tokens of \`${e.training.data}\` x ${e.training.epochs} epochs` +
        `${e.training.init_from ? `, starting from the dictionaries in \`${e.training.init_from}\`` : ""}; ` +
        `evaluated on ${e.evaluation.tokens} tokens of \`${e.evaluation.data.file ? relative(ROOT, e.evaluation.data.file) : "?"}\` ` +
        `(generated ${e.generated.slice(0, 16).replace("T", " ")} UTC).\n\n${table(e)}`,
    );
  }
  const generated = `${begin}\n\n${parts.join("\n\n")}\n\n${end}`;
  let text = existsSync(doc) ? readFileSync(doc, "utf8") : `# Bundled dictionaries\n\n${begin}\n${end}\n`;
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  text =
    a >= 0 && b > a ? text.slice(0, a) + generated + text.slice(b + end.length) : `${text}\n${generated}\n`;
  writeFileSync(doc, text);
  log(`report: ${doc}`);
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const cfgFile = join(o.model, "config.json");
  if (!existsSync(cfgFile) || !readdirSync(o.model).some((f) => f.endsWith(".safetensors")))
    fail(`${o.model} has no model weights (config.json and *.safetensors); train the model first`);
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
  const layers = cfg.num_hidden_layers ?? cfg.text_config?.num_hidden_layers;
  o.work ??= join(ROOT, "scratch", "bundle", basename(o.model));
  mkdirSync(o.work, { recursive: true });
  const t0 = Date.now();
  for (const stage of o.stages) {
    const s0 = Date.now();
    if (stage === "harvest") harvest(o, layers);
    else if (stage === "train") await train(o, layers);
    else if (stage === "export") await exportAll(o);
    else if (stage === "eval") await evaluate(o);
    else if (stage === "report") report(o);
    else fail(`unknown stage ${stage}`);
    log(`stage ${stage}: ${((Date.now() - s0) / 1000).toFixed(0)} s`);
  }
  log(`all done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => fail(e instanceof Error ? e.message : String(e)));
}
