/**
 * `glassbox steer --model M --dict D (--feature I [--layer L] (--strength A | --clamp V | --ablate)
 * | --steer SPEC ...) [--times-max --stats run.sqlite] [--positions all|generated|1,2,5]
 * [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--chat] [--json] PROMPT`:
 * generates twice with the same seed, without and with feature steering (src/features/steering.ts,
 * docs/steering.md), and prints the two continuations side by side.
 *
 * `--steer SPEC` (repeatable, and combinable with `--feature`) steers several features at once:
 * `F:A` adds strength A to feature F, `F=V` clamps it to V, `F=0` ablates it; a cross-layer
 * transcoder's feature is written `L<layer>/F` (as `glassbox features` prints it). With
 * `--times-max` every strength and clamp value is a multiple of the feature's max activation in the
 * `--stats` database. `--json` prints
 * `{"dictionary", "steering": [...], "positions", "sampling", "prompt_ids", "prompt_tokens",
 * "baseline": {"generated_ids", "generated_tokens", "text", "finish_reason"}, "steered": {...}}`.
 */
import type { Command } from "commander";
import { DictionaryError, UsageError } from "../../core/errors.js";
import { loadDictionary } from "../../dictionaries/load.js";
import { dictionarySites } from "../../dictionaries/sites.js";
import { FeatureDatabase } from "../../features/db.js";
import {
  featureProblem,
  maxActivation,
  type SteerPositions,
  type SteerSpec,
  scaleToMaxActivation,
  statisticsSpace,
  steeringInterventions,
} from "../../features/steering.js";
import type { Tokenizer } from "../../io/tokenizer.js";
import { type GenerateOptions, type GenerateResult, generate } from "../../model/gemma3/generate.js";
import {
  addModelOptions,
  decodeKnown,
  type InputFlags,
  intFlag,
  jsonLine,
  loadModel,
  numberFlag,
  prepareInput,
  tokenString,
} from "../model-input.js";
import { addGs1Options, type Gs1Flags, gs1Options } from "./dict.js";
import { stopTokenIds } from "./generate.js";

interface SteerFlags extends InputFlags, Gs1Flags {
  dict: string;
  feature?: string;
  layer?: string;
  strength?: string;
  clamp?: string;
  ablate?: boolean;
  steer?: string[];
  timesMax?: boolean;
  stats?: string;
  positions: string;
  maxTokens: string;
  temperature: string;
  topK?: string;
  topP?: string;
  seed: string;
}

/** One generation of the report. */
export interface SteerGeneration {
  readonly generated_ids: number[];
  readonly generated_tokens: (string | null)[];
  /** The generated text without special tokens (null without a tokenizer). */
  readonly text: string | null;
  readonly finish_reason: "stop" | "length";
}

/** One steered feature as it was applied. */
export interface SteerEntry {
  readonly feature: number;
  /** Source layer (cross-layer transcoders only). */
  readonly layer?: number;
  readonly mode: "add" | "clamp" | "ablate";
  /** add: the norm of the added vector; clamp: the value (absolute, after --times-max). */
  readonly strength?: number;
  readonly value?: number;
  /** The number given, with --times-max (a multiple of max_activation). */
  readonly multiple?: number;
  /** The feature's max activation in the --stats database. */
  readonly max_activation?: number;
}

export interface SteerReport {
  readonly dictionary: {
    readonly path: string;
    readonly architecture: string;
    readonly width: number;
    readonly reads: readonly string[];
    readonly writes: readonly string[];
  };
  readonly steering: readonly SteerEntry[];
  /** "all", a list of sequence indices, or {"from": prompt length} for --positions generated. */
  readonly positions: SteerPositions;
  readonly sampling: {
    readonly temperature: number;
    readonly seed: number;
    readonly max_tokens: number;
    readonly top_k?: number;
    readonly top_p?: number;
  };
  readonly prompt_ids: number[];
  readonly prompt_tokens: (string | null)[];
  readonly baseline: SteerGeneration;
  readonly steered: SteerGeneration;
}

const collect = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];

export function registerSteer(program: Command): void {
  addGs1Options(
    addModelOptions(
      program
        .command("steer")
        .description(
          "generate with and without steering dictionary features (add, clamp, ablate), side by side",
        )
        .argument("[prompt]", "prompt text"),
    ),
  )
    .requiredOption("--dict <dir>", "dictionary folder (SAE, transcoder, skip-transcoder or CLT)")
    .option("--feature <i>", "the feature to steer (index in the dictionary; in its source layer for a CLT)")
    .option("--layer <l>", "a cross-layer transcoder feature's source layer")
    .option("--strength <a>", "add a * the feature's unit decoder direction")
    .option("--clamp <v>", "clamp the feature to v (error term kept)")
    .option("--ablate", "clamp the feature to 0")
    .option(
      "--steer <spec>",
      "another feature: F:A adds A, F=V clamps to V, F=0 ablates; L<l>/F for a CLT (repeatable)",
      collect,
    )
    .option(
      "--times-max",
      "strengths and clamp values are multiples of each feature's max activation (needs --stats)",
    )
    .option("--stats <file>", "feature statistics database of `features build` (for --times-max)")
    .option(
      "--positions <p>",
      "all, generated (positions >= prompt length), or sequence indices 1,2,5",
      "all",
    )
    .option("--max-tokens <n>", "most tokens to generate", "32")
    .option("--temperature <t>", "sampling temperature; 0 = greedy", "0")
    .option("--top-k <k>", "sample only among the k most likely tokens")
    .option("--top-p <p>", "sample only among the most likely tokens reaching probability p")
    .option("--seed <s>", "sampling seed (the same for both generations)", "0")
    .action((prompt: string | undefined, flags: SteerFlags) => {
      const report = steerReport(flags, prompt);
      process.stdout.write(flags.json ? jsonLine(report) : steerText(report, process.stdout.columns));
    });
}

/** A spec as given, before the dictionary is known: which flag it came from, for errors. */
interface GivenSpec {
  readonly flag: string;
  readonly feature: number;
  readonly layer: number | null;
  readonly mode: "add" | "clamp" | "ablate";
  /** Strength or clamp value as given (0 for ablate). */
  readonly amount: number;
}

function finiteNumber(value: string, flag: string, what: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`${what} must be a number, got ${JSON.stringify(value)}`, flag);
  }
  return n;
}

const STEER_SYNTAX =
  "F:A (add A), F=V (clamp to V), F=0 (ablate), with L<layer>/F for a cross-layer transcoder";

function parseSteer(spec: string): GivenSpec {
  const m = /^\s*(?:[Ll](\d+)\/)?(\d+)\s*(?::(.*)|=(.*))$/.exec(spec);
  if (m === null)
    throw new UsageError(`${JSON.stringify(spec)} is not a steering spec: write ${STEER_SYNTAX}`, "--steer");
  const feature = Number(m[2]);
  const layer = m[1] === undefined ? null : Number(m[1]);
  if (m[3] !== undefined) {
    return {
      flag: "--steer",
      feature,
      layer,
      mode: "add",
      amount: finiteNumber(m[3], "--steer", "a strength"),
    };
  }
  const value = finiteNumber(m[4], "--steer", "a clamp value");
  return { flag: "--steer", feature, layer, mode: value === 0 ? "ablate" : "clamp", amount: value };
}

function givenSpecs(flags: SteerFlags): GivenSpec[] {
  const out: GivenSpec[] = [];
  const modes = [
    flags.strength === undefined ? null : "--strength",
    flags.clamp === undefined ? null : "--clamp",
    flags.ablate ? "--ablate" : null,
  ].filter((m) => m !== null);
  if (flags.feature === undefined) {
    if (modes.length > 0) throw new UsageError(`${modes[0]} needs --feature I`, modes[0]);
    if (flags.layer !== undefined) throw new UsageError("--layer needs --feature I", "--layer");
  } else {
    const feature = intFlag(flags.feature, "--feature", 0);
    const layer = flags.layer === undefined ? null : intFlag(flags.layer, "--layer", 0);
    if (modes.length === 0)
      throw new UsageError("give one of --strength A, --clamp V or --ablate", "--feature");
    if (modes.length > 1) throw new UsageError(`give only one of ${modes.join(", ")}`, modes[1]);
    if (flags.strength !== undefined) {
      out.push({
        flag: "--feature",
        feature,
        layer,
        mode: "add",
        amount: finiteNumber(flags.strength, "--strength", "the strength"),
      });
    } else if (flags.clamp !== undefined) {
      out.push({
        flag: "--feature",
        feature,
        layer,
        mode: "clamp",
        amount: finiteNumber(flags.clamp, "--clamp", "the clamp value"),
      });
    } else {
      out.push({ flag: "--feature", feature, layer, mode: "ablate", amount: 0 });
    }
  }
  for (const s of flags.steer ?? []) out.push(parseSteer(s));
  if (out.length === 0) {
    throw new UsageError(
      "nothing to steer: give --feature I with --strength A, --clamp V or --ablate, or --steer SPEC",
      "--feature",
    );
  }
  return out;
}

function parsePositions(value: string): "all" | "generated" | number[] {
  const v = value.trim();
  if (v === "all" || v === "generated") return v;
  const parts = v.split(/[\s,]+/).filter((p) => p !== "");
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p) || !Number.isSafeInteger(Number(p)))) {
    throw new UsageError(
      `must be all, generated, or comma-separated sequence indices, got ${JSON.stringify(value)}`,
      "--positions",
    );
  }
  return [...new Set(parts.map(Number))].sort((a, b) => a - b);
}

function sampling(
  flags: SteerFlags,
): GenerateOptions & SteerReport["sampling"] & { readonly max_tokens: number } {
  const temperature = numberFlag(flags.temperature, "--temperature", 0, 1e6);
  const maxNewTokens = intFlag(flags.maxTokens, "--max-tokens", 1);
  const seed = intFlag(flags.seed, "--seed", 0);
  const topK = flags.topK === undefined ? undefined : intFlag(flags.topK, "--top-k", 1);
  const topP = flags.topP === undefined ? undefined : numberFlag(flags.topP, "--top-p", Number.MIN_VALUE, 1);
  if (temperature === 0 && (topK !== undefined || topP !== undefined)) {
    throw new UsageError("--top-k and --top-p apply to sampling: also give --temperature > 0");
  }
  return {
    maxNewTokens,
    max_tokens: maxNewTokens,
    temperature,
    seed,
    ...(topK === undefined ? {} : { topK, top_k: topK }),
    ...(topP === undefined ? {} : { topP, top_p: topP }),
  };
}

function generation(tok: Tokenizer | null, r: GenerateResult): SteerGeneration {
  const ids = r.tokens[0];
  return {
    generated_ids: ids,
    generated_tokens: ids.map((id) => tokenString(tok, id)),
    text: tok === null ? null : decodeKnown(tok, ids, true),
    finish_reason: r.finish[0],
  };
}

/** Checks the flags, loads model and dictionary, and runs both generations. */
export function steerReport(flags: SteerFlags, prompt: string | undefined): SteerReport {
  const given = givenSpecs(flags);
  if (flags.timesMax && flags.stats === undefined) {
    throw new UsageError(
      "strengths become multiples of each feature's max activation in a statistics database: also give --stats run.sqlite",
      "--times-max",
    );
  }
  const where = parsePositions(flags.positions);
  const sample = sampling(flags);
  const input = prepareInput(flags, prompt);
  const model = loadModel(input);
  const dict = loadDictionary(flags.dict, model.backend, gs1Options(flags));
  let sites: ReturnType<typeof dictionarySites>;
  try {
    sites = dictionarySites(dict.spec, model.config);
  } catch (e) {
    if (e instanceof DictionaryError)
      throw new UsageError(`the dictionary does not fit the model: ${e.message}`, "--dict");
    throw e;
  }
  for (const g of given) {
    const p = featureProblem(dict.spec, g.feature, g.layer);
    if (p === null) continue;
    const flag = g.flag === "--feature" ? (p.argument === "layer" ? "--layer" : "--feature") : "--steer";
    const hint =
      p.argument === "layer" && g.layer === null
        ? g.flag === "--feature"
          ? ": give --layer L"
          : `: write L<layer>/${g.feature}`
        : "";
    throw new UsageError(`${p.message}${hint}`, flag);
  }
  let specs: SteerSpec[] = given.map((g): SteerSpec => {
    const base = { feature: g.feature, ...(g.layer === null ? {} : { layer: g.layer }) };
    if (g.mode === "add") return { ...base, mode: "add", strength: g.amount };
    if (g.mode === "clamp") return { ...base, mode: "clamp", value: g.amount };
    return { ...base, mode: "ablate" };
  });
  let maxActs: number[] | null = null;
  if (flags.stats !== undefined) {
    const db = FeatureDatabase.open(flags.stats, { readonly: true });
    try {
      if (flags.timesMax) {
        const scaled = scaleToMaxActivation(dict, model.config, flags.dict, db, specs);
        specs = scaled.specs;
        maxActs = scaled.maxActivations;
      } else {
        maxActs = specs.map((s) =>
          maxActivation(db, statisticsSpace(db, flags.dict, dict.spec, s.layer ?? null), s.feature),
        );
      }
    } finally {
      db.close();
    }
  }
  const positions: SteerPositions = where === "generated" ? { from: input.ids.length } : where;
  const interventions = steeringInterventions(dict, model.config, specs, { positions });
  const tok = input.tokenizer;
  const options: GenerateOptions = {
    ...sample,
    stopTokens: stopTokenIds(model.stopTokenIds, tok, flags.chat === true),
  };
  const baseline = generate(model, input.ids, options);
  const steered = generate(model, input.ids, { ...options, interventions });
  const steering = specs.map((s, i): SteerEntry => {
    const g = given[i];
    return {
      feature: s.feature,
      ...(s.layer === undefined ? {} : { layer: s.layer }),
      mode: s.mode,
      ...(s.mode === "add" ? { strength: s.strength } : {}),
      ...(s.mode === "clamp" ? { value: s.value } : {}),
      ...(flags.timesMax && s.mode !== "ablate" ? { multiple: g.amount } : {}),
      ...(maxActs === null ? {} : { max_activation: maxActs[i] }),
    };
  });
  return {
    dictionary: {
      path: flags.dict,
      architecture: dict.spec.architecture,
      width: dict.spec.width,
      reads: sites.read.map((s) => s.name),
      writes: sites.write.map((s) => s.name),
    },
    steering,
    positions,
    sampling: {
      temperature: sample.temperature,
      seed: sample.seed,
      max_tokens: sample.max_tokens,
      ...(sample.top_k === undefined ? {} : { top_k: sample.top_k }),
      ...(sample.top_p === undefined ? {} : { top_p: sample.top_p }),
    },
    prompt_ids: input.ids,
    prompt_tokens: input.ids.map((id) => tokenString(tok, id)),
    baseline: generation(tok, baseline),
    steered: generation(tok, steered),
  };
}

function num(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/\.?0+$/, "");
}

function entryText(e: SteerEntry): string {
  const name = `${e.layer === undefined ? "" : `L${e.layer}/`}${e.feature}`;
  const times = (amount: number) =>
    e.multiple === undefined ? num(amount) : `${num(e.multiple)} x max = ${num(amount)}`;
  const what =
    e.mode === "add"
      ? `add ${times(e.strength ?? 0)} (norm of the added vector)`
      : e.mode === "clamp"
        ? `clamp to ${times(e.value ?? 0)}`
        : "ablate (clamp to 0)";
  const max = e.max_activation === undefined ? "" : `  [max activation ${num(e.max_activation)}]`;
  return `  feature ${name}: ${what}${max}`;
}

/** Lines of at most `width` characters (words kept whole where they fit). */
function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  for (const para of text.split("\n")) {
    let line = "";
    for (const word of para.split(/(?<= )/)) {
      if (line.length + word.length > width && line !== "") {
        out.push(line.trimEnd());
        line = "";
      }
      let w = word;
      while (w.length > width) {
        out.push(w.slice(0, width));
        w = w.slice(width);
      }
      line += w;
    }
    out.push(line.trimEnd());
  }
  return out;
}

function generatedText(g: SteerGeneration): string {
  return g.text ?? g.generated_ids.join(" ");
}

/** The report as text: what is steered, then the two continuations in two columns. */
export function steerText(r: SteerReport, columns: number | undefined): string {
  const d = r.dictionary;
  const writes =
    d.writes.length > 2 ? `${d.writes[0]} .. ${d.writes[d.writes.length - 1]}` : d.writes.join(", ");
  const positions =
    r.positions === "all"
      ? "all positions"
      : "from" in r.positions
        ? `positions >= ${r.positions.from} (generated tokens)`
        : `positions ${r.positions.join(", ")}`;
  const s = r.sampling;
  const head = [
    `${d.path}: ${d.architecture}, ${d.width} features, writes ${writes}; steering at ${positions}`,
    ...r.steering.map(entryText),
    `seed ${s.seed}, temperature ${s.temperature}, up to ${s.max_tokens} tokens (the same for both)`,
    "",
  ];
  const total = Math.max(41, Math.min(columns ?? 100, 160));
  const w = Math.floor((total - 3) / 2);
  const left = wrap(generatedText(r.baseline), w);
  const right = wrap(generatedText(r.steered), w);
  const rows = [`${"baseline".padEnd(w)} | steered`, `${"-".repeat(w)}-+-${"-".repeat(w)}`];
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    rows.push(`${(left[i] ?? "").padEnd(w)} | ${right[i] ?? ""}`.trimEnd());
  }
  return `${[...head, ...rows].join("\n")}\n`;
}
