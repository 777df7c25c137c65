/**
 * A training run as data: the run's settings and one entry per dictionary, as written in a JSON
 * config file (or built from `glassbox train` flags). `parseTrainingConfig` fills the defaults
 * (the Gemma Scope 2 recipe where it gives one) and rejects anything malformed with a
 * `TrainingError` naming the field; `checkAgainstSource` checks the sites and widths against the
 * data. The parsed config is stored in checkpoints so a run only resumes with the same settings.
 */
import { TrainingError } from "../core/errors.js";
import type { JsonValue } from "../io/strict-json.js";
import { type AdamOptions, GEMMA_SCOPE_ADAM } from "./optim.js";
import type { RuleSpec } from "./rules/index.js";
import { JUMPRELU_DEFAULTS } from "./rules/jumprelu.js";

export interface DictionaryConfig {
  /** Name of the dictionary: its export folder (may contain "/") and its key in checkpoints and logs. */
  readonly id: string;
  /** Site read by each encoder layer (one for SAEs and transcoders, one per layer for a CLT). */
  readonly inputs: readonly string[];
  /** Site reconstructed by each output layer (an SAE: its input site). */
  readonly outputs: readonly string[];
  /** Latents (per layer for a CLT). */
  readonly width: number;
  readonly rule: RuleSpec;
  /** Matryoshka group sizes summing to the width (omitted: plain loss). */
  readonly groups: readonly number[] | null;
  readonly groupWeights: readonly number[] | null;
  /** Skip-transcoder: learn an affine skip map x W_skip (zero-initialised). */
  readonly skip: boolean;
  /** SAE only: subtract b_dec before encoding (folded into b_enc at export). */
  readonly preEncoderBias: boolean;
  readonly lr: number;
  readonly lrWarmupSteps: number;
  readonly lrWarmupFrom: number;
  readonly lrDecaySteps: number;
  readonly sparsityWarmupSteps: number;
  readonly adam: AdamOptions;
  /** Tokens without firing after which a latent counts as dead (AuxK and the dead fraction). */
  readonly deadWindow: number;
  /** Initialisation seed. */
  readonly seed: number;
  /**
   * Start from this dictionary's weights (a folder `loadDictionary` reads, relative to the working
   * directory) instead of a random initialisation, as Gemma Scope 2 fine-tunes its chat-model
   * dictionaries from the base-model ones (see init.ts). Null: random.
   */
  readonly init: string | null;
}

export interface TrainingConfig {
  /** Tokens per optimiser step (every dictionary sees the same batch). */
  readonly batchSize: number;
  /** Optimiser steps. */
  readonly steps: number;
  /** Steps between checkpoints (0: only at the end). */
  readonly checkpointEvery: number;
  /** Steps between metrics lines. */
  readonly logEvery: number;
  /** Tokens read before training to estimate each site's scale (E||x||^2 = 1 after scaling). */
  readonly scaleTokens: number;
  readonly seed: number;
  readonly dictionaries: readonly DictionaryConfig[];
}

/** Run defaults; dictionary defaults are in `parseDictionary`. */
export const RUN_DEFAULTS = {
  batchSize: 4096,
  checkpointEvery: 1000,
  logEvery: 10,
  scaleTokens: 65536,
  seed: 0,
} as const;

type Obj = { readonly [key: string]: JsonValue };

class Fields {
  private readonly used = new Set<string>();
  constructor(
    private readonly obj: Obj,
    private readonly where: string,
  ) {}

  private fail(key: string, want: string): never {
    throw new TrainingError(`${this.where}.${key} must be ${want}, got ${JSON.stringify(this.obj[key])}`);
  }

  /** Marks a key as handled elsewhere. */
  use(key: string): void {
    this.used.add(key);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  number(
    key: string,
    fallback?: number,
    check: (v: number) => boolean = Number.isFinite,
    want = "a number",
  ): number {
    this.used.add(key);
    const v = this.obj[key];
    if ((v === undefined || v === null) && fallback !== undefined) return fallback;
    if (typeof v !== "number" || !check(v)) this.fail(key, want);
    return v;
  }

  positive(key: string, fallback?: number): number {
    return this.number(key, fallback, (v) => Number.isFinite(v) && v > 0, "a positive number");
  }

  nonNegative(key: string, fallback?: number): number {
    return this.number(key, fallback, (v) => Number.isFinite(v) && v >= 0, "a number >= 0");
  }

  integer(key: string, fallback?: number, min = 0): number {
    return this.number(key, fallback, (v) => Number.isSafeInteger(v) && v >= min, `an integer >= ${min}`);
  }

  boolean(key: string, fallback: boolean): boolean {
    this.used.add(key);
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") this.fail(key, "true or false");
    return v;
  }

  string(key: string, fallback?: string): string {
    this.used.add(key);
    const v = this.obj[key];
    if ((v === undefined || v === null) && fallback !== undefined) return fallback;
    if (typeof v !== "string" || v === "") this.fail(key, "a non-empty string");
    return v;
  }

  strings(key: string): string[] {
    this.used.add(key);
    const v = this.obj[key];
    if (typeof v === "string" && v !== "") return [v];
    if (!Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === "string" && s !== ""))
      this.fail(key, "a site name or a non-empty list of them");
    return v as string[];
  }

  numbers(key: string): number[] | null {
    this.used.add(key);
    const v = this.obj[key];
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "number" && Number.isFinite(x)))
      this.fail(key, "a non-empty list of numbers");
    return v as number[];
  }

  object(key: string): Fields {
    this.used.add(key);
    const v = this.obj[key];
    if (v === undefined || v === null) return new Fields({}, `${this.where}.${key}`);
    if (typeof v !== "object" || Array.isArray(v)) this.fail(key, "an object");
    return new Fields(v, `${this.where}.${key}`);
  }

  /** Rejects keys no parser asked for (typos must not pass silently). */
  done(): void {
    for (const k of Object.keys(this.obj)) {
      if (!this.used.has(k)) throw new TrainingError(`${this.where}: unknown setting "${k}"`);
    }
  }
}

function parseRule(f: Fields, dIn: number | null): RuleSpec {
  const kind = f.string("kind");
  if (kind === "jumprelu") {
    const spec: RuleSpec = {
      kind,
      targetL0: f.positive("targetL0"),
      sparsityCoefficient: f.nonNegative("sparsityCoefficient", 0.1),
      frequencyCoefficient: f.nonNegative("frequencyCoefficient", JUMPRELU_DEFAULTS.frequencyCoefficient),
      frequencyThreshold: f.positive("frequencyThreshold", JUMPRELU_DEFAULTS.frequencyThreshold),
      bandwidth: f.positive("bandwidth", JUMPRELU_DEFAULTS.bandwidth),
      initialThreshold: f.positive("initialThreshold", JUMPRELU_DEFAULTS.initialThreshold),
    };
    f.done();
    return spec;
  }
  if (kind === "topk" || kind === "batchtopk") {
    const k = kind === "topk" ? f.integer("k", undefined, 1) : f.positive("k");
    const auxK = f.integer("auxK", dIn === null ? 256 : Math.max(1, Math.floor(dIn / 2)));
    const auxCoefficient = f.nonNegative("auxCoefficient", 1 / 32);
    const spec: RuleSpec =
      kind === "topk"
        ? { kind, k, auxK, auxCoefficient }
        : { kind, k, auxK, auxCoefficient, thresholdRate: f.positive("thresholdRate", 0.01) };
    f.done();
    return spec;
  }
  throw new TrainingError(`unknown rule kind "${kind}" (expected jumprelu, topk or batchtopk)`);
}

function parseDictionary(
  f: Fields,
  index: number,
  siteWidth: (s: string) => number | null,
): DictionaryConfig {
  const inputs = f.strings("inputs");
  const outputs = f.has("outputs") ? f.strings("outputs") : inputs;
  const adam = f.object("adam");
  const config: DictionaryConfig = {
    id: f.string("id", `dict${index}`),
    inputs,
    outputs,
    width: f.integer("width", undefined, 1),
    rule: parseRule(f.object("rule"), siteWidth(inputs[0])),
    groups: f.numbers("groups"),
    groupWeights: f.numbers("groupWeights"),
    skip: f.boolean("skip", false),
    preEncoderBias: f.boolean("preEncoderBias", false),
    lr: f.positive("lr", 7e-5),
    lrWarmupSteps: f.integer("lrWarmupSteps", 1000),
    lrWarmupFrom: f.number("lrWarmupFrom", 0.1, (v) => v >= 0 && v <= 1, "in [0, 1]"),
    lrDecaySteps: f.integer("lrDecaySteps", 0),
    sparsityWarmupSteps: f.integer("sparsityWarmupSteps", 50_000),
    adam: {
      beta1: adam.number("beta1", GEMMA_SCOPE_ADAM.beta1, (v) => v >= 0 && v < 1, "in [0, 1)"),
      beta2: adam.number("beta2", GEMMA_SCOPE_ADAM.beta2, (v) => v >= 0 && v < 1, "in [0, 1)"),
      eps: adam.positive("eps", GEMMA_SCOPE_ADAM.eps),
    },
    deadWindow: f.integer("deadWindow", 10_000_000, 1),
    seed: f.integer("seed", index),
    init: f.has("init") ? f.string("init") : null,
  };
  adam.done();
  f.done();
  const segments = config.id.split("/");
  if (segments.some((s) => !/^[A-Za-z0-9._-]+$/.test(s) || s === "." || s === ".."))
    throw new TrainingError(
      `dictionary id "${config.id}" must be a relative folder path (letters, digits, . _ - and /)`,
    );
  return config;
}

/**
 * Parses a config (from a JSON file or flags). `siteWidth` gives a site's width where known, for
 * defaults that depend on it (AuxK's k_aux = d_in / 2).
 */
export function parseTrainingConfig(
  json: JsonValue,
  where = "config",
  siteWidth: (site: string) => number | null = () => null,
): TrainingConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new TrainingError(`${where} must be a JSON object`);
  const f = new Fields(json, where);
  const list = json.dictionaries;
  f.use("dictionaries");
  if (!Array.isArray(list) || list.length === 0)
    throw new TrainingError(`${where}.dictionaries must be a non-empty list`);
  const dictionaries = list.map((d, i) => {
    if (typeof d !== "object" || d === null || Array.isArray(d))
      throw new TrainingError(`${where}.dictionaries[${i}] must be an object`);
    return parseDictionary(new Fields(d, `${where}.dictionaries[${i}]`), i, siteWidth);
  });
  const config: TrainingConfig = {
    batchSize: f.integer("batchSize", RUN_DEFAULTS.batchSize, 1),
    steps: f.integer("steps", undefined, 1),
    checkpointEvery: f.integer("checkpointEvery", RUN_DEFAULTS.checkpointEvery),
    logEvery: f.integer("logEvery", RUN_DEFAULTS.logEvery, 1),
    scaleTokens: f.integer("scaleTokens", RUN_DEFAULTS.scaleTokens, 1),
    seed: f.integer("seed", RUN_DEFAULTS.seed),
    dictionaries,
  };
  f.done();
  const ids = new Set<string>();
  for (const d of dictionaries) {
    if (ids.has(d.id)) throw new TrainingError(`two dictionaries are named "${d.id}"`);
    ids.add(d.id);
  }
  return config;
}

/**
 * Checks every dictionary against the data's sites (site key -> width): unknown sites, widths that
 * differ between a CLT's layers, impossible widths or L0 targets.
 */
export function checkAgainstSource(config: TrainingConfig, sites: ReadonlyMap<string, number>): void {
  const known = [...sites.keys()].join(", ");
  for (const d of config.dictionaries) {
    const where = `dictionary "${d.id}"`;
    for (const s of [...d.inputs, ...d.outputs]) {
      if (!sites.has(s)) throw new TrainingError(`${where}: unknown site "${s}" (the data has ${known})`);
    }
    if (d.inputs.length !== d.outputs.length)
      throw new TrainingError(
        `${where}: ${d.inputs.length} input sites but ${d.outputs.length} output sites`,
      );
    const dIn = new Set(d.inputs.map((s) => sites.get(s)));
    const dOut = new Set(d.outputs.map((s) => sites.get(s)));
    if (dIn.size !== 1 || dOut.size !== 1)
      throw new TrainingError(
        `${where}: all input sites must have one width, and all output sites one width`,
      );
    const maxWidth = 1 << 26;
    if (d.width > maxWidth) throw new TrainingError(`${where}: width ${d.width} is larger than ${maxWidth}`);
    const l0 = d.rule.kind === "jumprelu" ? d.rule.targetL0 : d.rule.k;
    if (l0 > d.width) throw new TrainingError(`${where}: L0 target ${l0} exceeds the width ${d.width}`);
  }
}

/** The widths a dictionary reads and writes, from the data's sites (after `checkAgainstSource`). */
export function dictionaryWidths(
  d: DictionaryConfig,
  sites: ReadonlyMap<string, number>,
): { dIn: number; dOut: number } {
  return { dIn: sites.get(d.inputs[0]) as number, dOut: sites.get(d.outputs[0]) as number };
}
