/**
 * `glassbox train`: trains sparse dictionaries (SAEs, transcoders, skip-transcoders, cross-layer
 * transcoders; JumpReLU, TopK or BatchTopK; optionally Matryoshka) on an activation store or
 * straight from the model, several per pass (sites x widths x L0 targets), into a run folder:
 * `checkpoint.safetensors` (resumed automatically when present), `metrics.jsonl`,
 * `training-config.json`, and at the end one Gemma Scope 2 folder per dictionary. A progress bar
 * shows on a TTY; `--json` prints one object instead of the summary.
 */
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import {
  fingerprintFile,
  formatFromName,
  readDocuments,
  tokenizeDocuments,
} from "../../activations/documents.js";
import { gemma3Harvester, ModelBatchSource, modelIdentity } from "../../activations/harvest.js";
import { maskingRules } from "../../activations/sequences.js";
import { StoreBatchSource } from "../../activations/source.js";
import { ActivationStore } from "../../activations/store.js";
import { defaultBackend } from "../../backends/index.js";
import type { Backend } from "../../core/backend.js";
import { GlassboxError, TrainingError, UsageError } from "../../core/errors.js";
import { saveGemmaScope2 } from "../../dictionaries/formats/gemma-scope-2.js";
import { ChatTemplate } from "../../io/chat.js";
import { type JsonValue, parseStrictJson, toPlainJson } from "../../io/strict-json.js";
import { Tokenizer } from "../../io/tokenizer.js";
import { type Gemma3Config, loadGemma3Config } from "../../model/gemma3/config.js";
import { loadGemma3 } from "../../model/gemma3/model.js";
import { parseSite, type Site, sites as siteFactory } from "../../model/gemma3/sites.js";
import { parseTrainingConfig, type TrainingConfig } from "../../training/config.js";
import { exportDictionary } from "../../training/export.js";
import { targetL0 } from "../../training/rules/index.js";
import type { BatchSource } from "../../training/source.js";
import { type MetricsLine, Trainer, type TrainResult } from "../../training/trainer.js";
import { positiveInt } from "./harvest.js";

export interface TrainFlags {
  model: string;
  out: string;
  store?: string;
  data?: string;
  tokenizer?: string;
  chat?: boolean;
  textField: string;
  context: string;
  forwardBatch: string;
  config?: string;
  kind: string;
  sites?: string;
  layers?: string;
  arch?: string;
  widths?: string;
  l0?: string;
  matryoshka?: string;
  steps?: string;
  tokens?: string;
  batchSize?: string;
  lr?: string;
  lrWarmup?: string;
  lrDecay?: string;
  sparsityWarmup?: string;
  sparsityCoefficient?: string;
  checkpointEvery?: string;
  scaleTokens?: string;
  deadWindow?: string;
  seed: string;
  epochs: string;
  shuffleBuffer: string;
  json?: boolean;
}

const KINDS = ["sae", "transcoder", "skip-transcoder", "clt"] as const;

/** Options (commander's camel-case names) that a `--config` file replaces. */
const CONFIG_FILE_FLAGS = [
  "kind",
  "sites",
  "layers",
  "arch",
  "widths",
  "l0",
  "matryoshka",
  "batchSize",
  "lr",
  "lrWarmup",
  "lrDecay",
  "sparsityWarmup",
  "sparsityCoefficient",
  "checkpointEvery",
  "scaleTokens",
  "deadWindow",
] as const;

function flagName(camel: string): string {
  return `--${camel.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

export function registerTrain(program: Command): void {
  program
    .command("train")
    .description("train sparse dictionaries on an activation store or a model stream (resumes automatically)")
    .requiredOption("--model <dir>", "Gemma 3 checkpoint directory (sites, hook points, model identity)")
    .requiredOption("--out <dir>", "run folder: checkpoint, metrics.jsonl and the exported dictionaries")
    .option("--store <dir>", "activation store to train on (read shuffled)")
    .option(
      "--data <file>",
      "or stream activations from the model over this dataset (text, JSONL or chat JSONL)",
    )
    .option("--tokenizer <dir>", "directory with tokenizer.json when streaming (default: --model)")
    .option("--chat", "the --data file is chat JSONL rendered with the model's template")
    .option("--text-field <name>", "JSONL field holding the text", "text")
    .option("--context <n>", "tokens per sequence when streaming", "256")
    .option("--forward-batch <n>", "sequences per forward pass when streaming", "8")
    .option("--config <file>", "JSON training config (replaces the dictionary flags below)")
    .option("--kind <kind>", `what to train: ${KINDS.join(", ")}`, "sae")
    .option("--sites <list>", "SAE sites, comma-separated (e.g. blocks.3.resid_post)")
    .option("--layers <list>", "transcoder layers (default for a CLT: every layer)")
    .option("--arch <rule>", "jumprelu, topk or batchtopk (default: jumprelu; batchtopk for a CLT)")
    .option("--widths <list>", "latents, comma-separated: one dictionary per width", "1024")
    .option("--l0 <list>", "L0 targets (JumpReLU) or k (TopK, BatchTopK), comma-separated", "32")
    .option(
      "--matryoshka <list>",
      "Matryoshka group sizes as fractions of the width, e.g. 1/16,1/16,1/8,1/4,1/2",
    )
    .option("--steps <n>", "optimiser steps (default with --store: one pass over the store)")
    .option("--tokens <n>", "training tokens (instead of --steps)")
    .option("--batch-size <n>", "tokens per step (default 4096)")
    .option("--lr <x>", "peak learning rate (default 7e-5)")
    .option("--lr-warmup <steps>", "cosine warm-up steps from 0.1 x lr (default 1000)")
    .option("--lr-decay <steps>", "linear decay to zero over the last steps (default 0)")
    .option("--sparsity-warmup <steps>", "linear warm-up of the sparsity coefficient (default 50000)")
    .option("--sparsity-coefficient <x>", "JumpReLU quadratic L0 penalty coefficient (default 0.1)")
    .option("--checkpoint-every <n>", "steps between checkpoints (default 1000)")
    .option("--scale-tokens <n>", "tokens read first to estimate the input scales (default 65536)")
    .option("--dead-window <tokens>", "tokens without firing before a latent counts as dead (default 10M)")
    .option("--seed <n>", "seed of the initialisation and the shuffle", "0")
    .option("--epochs <n>", "passes over the store", "1")
    .option("--shuffle-buffer <tokens>", "mixing buffer of the shuffled store reader", "65536")
    .option("--json", "print one JSON object")
    .action(async (flags: TrainFlags, cmd: Command) => {
      if (flags.config !== undefined) {
        const given = CONFIG_FILE_FLAGS.filter((n) => cmd.getOptionValueSource(n) === "cli");
        if (given.length > 0)
          throw new UsageError(
            `${given.map(flagName).join(", ")} cannot be combined with a config file, which sets ${given.length > 1 ? "them" : "it"}: edit ${flags.config} instead`,
            "--config",
          );
      }
      const r = await runTrain(flags);
      process.stdout.write(flags.json ? `${JSON.stringify(r)}\n` : summary(r));
    });
}

export interface TrainReport {
  readonly out: string;
  readonly resumed: boolean;
  readonly resumed_at_step: number;
  readonly steps: number;
  readonly tokens: number;
  readonly data_exhausted: boolean;
  readonly seconds: number;
  readonly tokens_per_second: number | null;
  readonly backend: string;
  readonly dictionaries: readonly {
    readonly id: string;
    readonly path: string;
    readonly loss: number | null;
    readonly mse: number | null;
    readonly fvu: number | null;
    readonly l0: number | null;
    readonly dead_fraction: number | null;
  }[];
}

function summary(r: TrainReport): string {
  const lines = [
    `run       ${r.out}${r.resumed ? ` (resumed at step ${r.resumed_at_step})` : ""}`,
    `trained   ${r.steps} steps, ${r.tokens} tokens in ${r.seconds.toFixed(1)} s${r.tokens_per_second === null ? "" : ` (${Math.round(r.tokens_per_second)} tokens/s, ${r.backend})`}${r.data_exhausted ? "; the data ran out" : ""}`,
  ];
  const fmt = (v: number | null, d: number) => (v === null ? "-" : v.toFixed(d));
  for (const d of r.dictionaries) {
    lines.push(
      `${d.id}: L0 ${fmt(d.l0, 1)}, FVU ${fmt(d.fvu, 3)}, dead ${fmt(d.dead_fraction, 3)} -> ${d.path}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

function list(value: string | undefined, flag: string): string[] {
  const items = (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (items.length === 0) throw new UsageError("needs at least one value", flag);
  return items;
}

function positiveNumber(value: string, flag: string): number {
  const v = Number(value);
  if (value.trim() === "" || !Number.isFinite(v) || v <= 0)
    throw new UsageError(`must be a positive number, got ${JSON.stringify(value)}`, flag);
  return v;
}

function nonNegativeInt(value: string, flag: string): number {
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value)))
    throw new UsageError(`must be an integer >= 0, got ${JSON.stringify(value)}`, flag);
  return Number(value);
}

/** "1/16,1/16,1/8,1/4,1/2" (fractions or decimals) as integer group sizes summing to `width`. */
function matryoshkaGroups(spec: string, width: number): number[] {
  const fractions = list(spec, "--matryoshka").map((s) => {
    const m = /^(\d+)\s*\/\s*(\d+)$/.exec(s);
    const v = m ? Number(m[1]) / Number(m[2]) : Number(s);
    if (!(v > 0 && v <= 1))
      throw new UsageError(`group fraction ${JSON.stringify(s)} must be in (0, 1]`, "--matryoshka");
    return v;
  });
  const total = fractions.reduce((a, b) => a + b, 0);
  if (Math.abs(total - 1) > 1e-9) throw new UsageError(`fractions sum to ${total}, not 1`, "--matryoshka");
  const sizes = fractions.map((f) => Math.round(f * width));
  sizes[sizes.length - 1] = width - sizes.slice(0, -1).reduce((a, b) => a + b, 0);
  if (sizes.some((s) => s < 1))
    throw new UsageError(`width ${width} is too small for ${fractions.length} groups`, "--matryoshka");
  return sizes;
}

function widthLabel(w: number): string {
  return w % 1024 === 0 ? `${w / 1024}k` : String(w);
}

function siteOf(name: string, config: Gemma3Config): Site {
  try {
    return parseSite(name, config);
  } catch (e) {
    if (e instanceof GlassboxError) throw new TrainingError(e.message);
    throw e;
  }
}

/** The config's dictionaries from the flags: every site (or layer) x width x L0 target. */
function configFromFlags(
  flags: TrainFlags,
  model: Gemma3Config,
  steps: number,
  dIn: (s: string) => number | null,
) {
  const kind = KINDS.find((k) => k === flags.kind);
  if (kind === undefined) throw new UsageError(`must be one of ${KINDS.join(", ")}`, "--kind");
  const arch = flags.arch ?? (kind === "clt" ? "batchtopk" : "jumprelu");
  if (!["jumprelu", "topk", "batchtopk"].includes(arch))
    throw new UsageError("must be jumprelu, topk or batchtopk", "--arch");
  const widths = list(flags.widths, "--widths").map((w) => positiveInt(w, "--widths"));
  const l0s = list(flags.l0, "--l0").map((v) => positiveNumber(v, "--l0"));
  const layers =
    flags.layers !== undefined
      ? list(flags.layers, "--layers").map((v) => nonNegativeInt(v, "--layers"))
      : kind === "clt"
        ? Array.from({ length: model.layers }, (_, l) => l)
        : null;
  const shapes: { folder: string; inputs: string[]; outputs: string[]; skip: boolean }[] = [];
  if (kind === "sae") {
    if (flags.sites === undefined) throw new UsageError("--kind sae needs --sites", "--sites");
    for (const name of list(flags.sites, "--sites")) {
      const s = siteOf(name, model);
      shapes.push({
        folder: `${s.kind}/layer_${s.layer ?? "model"}`,
        inputs: [s.name],
        outputs: [s.name],
        skip: false,
      });
    }
  } else {
    if (layers === null) throw new UsageError(`--kind ${kind} needs --layers`, "--layers");
    for (const l of layers)
      if (l >= model.layers)
        throw new TrainingError(`layer ${l} is out of range (the model has ${model.layers})`);
    const ins = layers.map((l) => siteFactory.mlpIn(l).name);
    const outs = layers.map((l) => siteFactory.mlpOut(l).name);
    if (kind === "clt") shapes.push({ folder: "clt/", inputs: ins, outputs: outs, skip: false });
    else
      layers.forEach((l, i) => {
        shapes.push({
          folder: `transcoder/layer_${l}`,
          inputs: [ins[i]],
          outputs: [outs[i]],
          skip: kind === "skip-transcoder",
        });
      });
  }
  const dictionaries: JsonValue[] = [];
  for (const shape of shapes) {
    for (const width of widths) {
      for (const l0 of l0s) {
        const sep = shape.folder.endsWith("/") ? "" : "_";
        const suffix = `${flags.matryoshka ? "_matryoshka" : ""}${arch !== (kind === "clt" ? "batchtopk" : "jumprelu") ? `_${arch}` : ""}${shape.skip ? "_affine" : ""}`;
        const rule =
          arch === "jumprelu"
            ? {
                kind: arch,
                targetL0: l0,
                ...(flags.sparsityCoefficient === undefined
                  ? {}
                  : {
                      sparsityCoefficient: positiveNumber(
                        flags.sparsityCoefficient,
                        "--sparsity-coefficient",
                      ),
                    }),
              }
            : { kind: arch, k: arch === "topk" ? positiveInt(String(l0), "--l0") : l0 };
        dictionaries.push({
          id: `${shape.folder}${sep}width_${widthLabel(width)}_l0_${l0}${suffix}`,
          inputs: shape.inputs,
          outputs: shape.outputs,
          width,
          skip: shape.skip,
          rule,
          ...(flags.matryoshka ? { groups: matryoshkaGroups(flags.matryoshka, width) } : {}),
          ...(flags.lr === undefined ? {} : { lr: positiveNumber(flags.lr, "--lr") }),
          ...(flags.lrWarmup === undefined
            ? {}
            : { lrWarmupSteps: nonNegativeInt(flags.lrWarmup, "--lr-warmup") }),
          ...(flags.lrDecay === undefined
            ? {}
            : { lrDecaySteps: nonNegativeInt(flags.lrDecay, "--lr-decay") }),
          ...(flags.sparsityWarmup === undefined
            ? {}
            : { sparsityWarmupSteps: nonNegativeInt(flags.sparsityWarmup, "--sparsity-warmup") }),
          ...(flags.deadWindow === undefined
            ? {}
            : { deadWindow: positiveInt(flags.deadWindow, "--dead-window") }),
        });
      }
    }
  }
  return parseTrainingConfig(
    {
      steps,
      seed: nonNegativeInt(flags.seed, "--seed"),
      ...(flags.batchSize === undefined ? {} : { batchSize: positiveInt(flags.batchSize, "--batch-size") }),
      ...(flags.checkpointEvery === undefined
        ? {}
        : { checkpointEvery: nonNegativeInt(flags.checkpointEvery, "--checkpoint-every") }),
      ...(flags.scaleTokens === undefined
        ? {}
        : { scaleTokens: positiveInt(flags.scaleTokens, "--scale-tokens") }),
      dictionaries,
    },
    "flags",
    dIn,
  );
}

/** The same config with every site written as its display name. */
function canonicalSites(config: TrainingConfig, model: Gemma3Config): TrainingConfig {
  const canon = (names: readonly string[]) => names.map((n) => siteOf(n, model).name);
  return {
    ...config,
    dictionaries: config.dictionaries.map((d) => ({
      ...d,
      inputs: canon(d.inputs),
      outputs: canon(d.outputs),
    })),
  };
}

/** The `hf_hook_point` of a dictionary's sites: one module name, or a CLT's `{all}` template. */
function hookPoint(names: readonly string[], model: Gemma3Config): string {
  const hf = names.map((n) => {
    const h = siteOf(n, model).hfModuleName(model);
    if (h === null)
      throw new TrainingError(
        `site ${n} has no Hugging Face module name, which a Gemma Scope 2 export needs`,
      );
    return h;
  });
  if (hf.length === 1) return hf[0];
  const layers = names.map((n) => siteOf(n, model).layer);
  const template = hf[0].replace(`.layers.${layers[0]}.`, ".layers.{all}.");
  const ok = layers.every((l, i) => l === i && template.replace("{all}", String(l)) === hf[i]);
  if (!ok || layers.length !== model.layers)
    throw new TrainingError(
      "a cross-layer transcoder exported in Gemma Scope 2 format must span every layer, in order",
    );
  return template;
}

/** A source whose fingerprint also covers the dataset file (streaming). */
function fingerprinted(source: BatchSource, extra: string): BatchSource {
  const fingerprint = createHash("sha256").update(`${source.fingerprint}\n${extra}`).digest("hex");
  return {
    sites: source.sites,
    fingerprint,
    next: (t, s) => source.next(t, s),
    cursor: () => source.cursor(),
    seek: (c) => source.seek(c),
  };
}

async function openSource(
  flags: TrainFlags,
  backend: Backend,
  model: Gemma3Config,
  identity: { id: string; hash: string },
  siteNames: () => string[],
): Promise<{ source: BatchSource; tokens: number | null }> {
  if ((flags.store === undefined) === (flags.data === undefined))
    throw new UsageError(
      "give exactly one of --store (an activation store) and --data (stream from the model)",
      "--store",
    );
  const seed = nonNegativeInt(flags.seed, "--seed");
  if (flags.store !== undefined) {
    const store = ActivationStore.open(flags.store);
    const m = store.manifest;
    if (m.model.hash !== identity.hash)
      throw new TrainingError(
        `the store was harvested from another model (${m.model.id}, ${m.model.hash.slice(0, 12)}), not ${identity.id} (${identity.hash.slice(0, 12)})`,
        flags.store,
      );
    const epochs = positiveInt(flags.epochs, "--epochs");
    // Only the run's sites are decoded into the mixing buffer, not every site of the store (sites
    // the store lacks are reported by the config check, which lists what the data has).
    const held = new Set(m.sites.map((s) => s.name));
    const wanted = siteNames();
    const source = new StoreBatchSource(store, {
      backend,
      ...(wanted.every((s) => held.has(s)) ? { sites: wanted } : {}),
      order: "shuffled",
      seed,
      epochs,
      bufferTokens: positiveInt(flags.shuffleBuffer, "--shuffle-buffer"),
    });
    return { source, tokens: m.tokens * epochs };
  }
  const data = flags.data as string;
  const context = positiveInt(flags.context, "--context");
  if (context < 2 || context > model.maxPositionEmbeddings)
    throw new UsageError(`must be in [2, ${model.maxPositionEmbeddings}]`, "--context");
  const format = formatFromName(data, flags.chat === true);
  const file = await fingerprintFile(data);
  const tokDir = flags.tokenizer ?? flags.model;
  const tokenizer = Tokenizer.fromDir(tokDir);
  const chat = format === "chat" ? ChatTemplate.fromDir(tokDir, tokenizer) : null;
  const loaded = loadGemma3(flags.model, backend);
  const dataFile = { path: data, format, textField: flags.textField };
  const source = new ModelBatchSource({
    model: gemma3Harvester(loaded, identity, siteNames()),
    backend,
    documents: () => tokenizeDocuments(readDocuments(dataFile), tokenizer, chat),
    context,
    bos: tokenizer.special.bos,
    rules: maskingRules(format, tokenizer.special),
    longDocuments: format === "chat" ? "truncate" : "split",
    batch: positiveInt(flags.forwardBatch, "--forward-batch"),
  });
  return { source: fingerprinted(source, `${file.sha256} ${format} ${flags.textField}`), tokens: null };
}

/** A config object with `steps` set (other values are checked by the parser). */
function withSteps(config: JsonValue, steps: number): JsonValue {
  if (typeof config !== "object" || config === null || Array.isArray(config)) return config;
  return { ...config, steps };
}

function stepsOf(config: JsonValue | null): number | null {
  if (typeof config !== "object" || config === null || Array.isArray(config)) return null;
  return typeof config.steps === "number" ? config.steps : null;
}

/** A JSON config file as plain JSON. */
function readConfigFile(path: string): JsonValue {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new TrainingError(`cannot read the config: ${e instanceof Error ? e.message : String(e)}`, path);
  }
  try {
    return toPlainJson(parseStrictJson(text));
  } catch (e) {
    throw new TrainingError(`not valid JSON: ${e instanceof Error ? e.message : String(e)}`, path);
  }
}

export async function runTrain(flags: TrainFlags): Promise<TrainReport> {
  const model = loadGemma3Config(flags.model);
  const backend = defaultBackend();
  if (flags.steps !== undefined && flags.tokens !== undefined)
    throw new UsageError("give --steps or --tokens, not both", "--steps");
  const identity = await modelIdentity(flags.model);
  // Sites must be known before a model stream is set up; the config is parsed twice (the second
  // time with the data's widths, which some defaults depend on).
  const fileConfig = flags.config === undefined ? null : readConfigFile(flags.config);
  const draft = (steps: number, dIn: (s: string) => number | null) =>
    canonicalSites(
      fileConfig === null
        ? configFromFlags(flags, model, steps, dIn)
        : parseTrainingConfig(withSteps(fileConfig, steps), flags.config, dIn),
      model,
    );
  const explicitSteps = flags.steps === undefined ? null : positiveInt(flags.steps, "--steps");
  const first = draft(explicitSteps ?? 1, () => null);
  const siteNames = () => [...new Set(first.dictionaries.flatMap((d) => [...d.inputs, ...d.outputs]))];
  const { source, tokens: available } = await openSource(flags, backend, model, identity, siteNames);
  const batchSize = first.batchSize;
  let steps = explicitSteps;
  if (flags.tokens !== undefined) steps = Math.ceil(positiveInt(flags.tokens, "--tokens") / batchSize);
  const fileSteps = stepsOf(fileConfig);
  if (steps === null && fileSteps !== null) steps = fileSteps;
  if (steps === null) {
    if (available === null)
      throw new UsageError("streaming from the model needs --steps or --tokens", "--steps");
    steps = Math.floor(available / batchSize);
    if (steps < 1)
      throw new TrainingError(`the store holds ${available} tokens, less than one batch of ${batchSize}`);
  }
  const config = draft(steps, (s) => source.sites.get(s) ?? null);
  const out = resolve(flags.out);
  const bar =
    process.stderr.isTTY && !flags.json
      ? new SingleBar({
          format:
            "train [{bar}] {value}/{total} steps | {tps} tokens/s | {id}: loss {loss} L0 {l0} dead {dead}",
          stream: process.stderr,
          hideCursor: true,
        })
      : null;
  const trainer = await Trainer.open({
    backend,
    source,
    config,
    outDir: out,
    onLog: (line: MetricsLine) => {
      if (bar === null) return;
      const [id, m] = Object.entries(line.dictionaries)[0];
      bar.update(line.step, {
        tps: Math.round(line.tokensPerSecond),
        id,
        loss: m.loss.toPrecision(3),
        l0: m.l0.toFixed(1),
        dead: m.deadFraction.toFixed(3),
      });
    },
  });
  const startStep = trainer.step;
  try {
    writeFileSync(join(out, "training-config.json"), `${JSON.stringify(config, null, 2)}\n`);
  } catch (e) {
    throw new TrainingError(
      `cannot write to the run folder: ${e instanceof Error ? e.message : String(e)}`,
      out,
    );
  }
  bar?.start(config.steps, startStep, {
    tps: 0,
    id: config.dictionaries[0].id,
    loss: "-",
    l0: "-",
    dead: "-",
  });
  let result: TrainResult;
  try {
    result = await trainer.run();
  } finally {
    bar?.stop();
  }
  const dictionaries: TrainReport["dictionaries"][number][] = [];
  for (const d of config.dictionaries) {
    const coder = trainer.coders.get(d.id);
    if (coder === undefined) continue;
    const path = join(out, d.id);
    await saveGemmaScope2(
      exportDictionary(backend, coder, trainer.scales, {
        hookIn: hookPoint(d.inputs, model),
        hookOut: hookPoint(d.outputs, model),
        modelName: identity.id,
        l0: targetL0(d.rule),
      }),
      path,
    );
    const m = result.last?.dictionaries[d.id];
    dictionaries.push({
      id: d.id,
      path,
      loss: m?.loss ?? null,
      mse: m?.mse ?? null,
      fvu: m?.fvu ?? null,
      l0: m?.l0 ?? null,
      dead_fraction: m?.deadFraction ?? null,
    });
  }
  const trainedHere = (result.steps - startStep) * config.batchSize;
  return {
    out,
    resumed: trainer.resumed,
    resumed_at_step: startStep,
    steps: result.steps,
    tokens: result.tokens,
    data_exhausted: result.dataExhausted,
    seconds: result.runSeconds,
    tokens_per_second: trainedHere > 0 ? trainedHere / result.runSeconds : null,
    backend: backend.name,
    dictionaries,
  };
}
