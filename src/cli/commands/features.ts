/**
 * `glassbox features --model DIR --dict DIR [--top K] "prompt"`: runs the model on the prompt with
 * the dictionary spliced in (error kept, so the model's own computation is unchanged) and prints
 * each token's most active features. For a cross-layer transcoder the features of every layer
 * compete, each labelled with its layer. `--json` prints
 * `{"dictionary": {...}, "tokens": [{"position", "id", "token", "l0", "top": [{"feature", "activation", "layer"?}]}]}`
 * with `l0` the number of active features at that token (summed over layers for a CLT).
 */
import type { Command } from "commander";
import { UsageError } from "../../core/errors.js";
import type { FeatureActs } from "../../dictionaries/feature-acts.js";
import { loadDictionary } from "../../dictionaries/load.js";
import { splice } from "../../dictionaries/splice.js";
import {
  addModelOptions,
  type InputFlags,
  intFlag,
  jsonLine,
  loadModel,
  prepareInput,
  tokenString,
} from "../model-input.js";
import { addGs1Options, type Gs1Flags, gs1Options } from "./dict.js";
import { registerFeatureDatabaseCommands } from "./features-db.js";

interface FeaturesFlags extends InputFlags, Gs1Flags {
  dict: string;
  top: string;
}

export interface TokenFeature {
  readonly feature: number;
  readonly activation: number;
  /** The source layer, for a cross-layer transcoder. */
  readonly layer?: number;
}

export interface TokenFeatures {
  readonly position: number;
  readonly id: number;
  readonly token: string | null;
  readonly l0: number;
  readonly top: readonly TokenFeature[];
}

export interface FeaturesReport {
  readonly dictionary: {
    readonly path: string;
    readonly architecture: string;
    readonly width: number;
    readonly reads: readonly string[];
  };
  readonly tokens: readonly TokenFeatures[];
}

export function registerFeatures(program: Command): void {
  // positional options: `features build --model M` gives --model to `build`, not to `features`
  const cmd = program
    .command("features")
    .enablePositionalOptions()
    .description(
      "a prompt's most active dictionary features per token; `features build|show|search` for dataset-wide feature statistics",
    );
  addGs1Options(addModelOptions(cmd.argument("[text]", "prompt text"), { modelRequired: false }))
    .option("--dict <dir>", "dictionary folder (Gemma Scope 2, Gemma Scope 1 or SAELens)")
    .option("--top <k>", "features per token", "5")
    .action((text: string | undefined, flags: Partial<FeaturesFlags>) => {
      if (flags.model === undefined)
        throw new UsageError("required option --model <dir> not given", "--model");
      if (flags.dict === undefined) throw new UsageError("required option --dict <dir> not given", "--dict");
      const report = featuresReport(
        { ...flags, model: flags.model, dict: flags.dict, top: flags.top ?? "5" },
        text,
      );
      process.stdout.write(flags.json ? jsonLine(report) : featuresTable(report));
    });
  registerFeatureDatabaseCommands(cmd);
}

export function featuresReport(flags: FeaturesFlags, text: string | undefined): FeaturesReport {
  const k = intFlag(flags.top, "--top", 1);
  const input = prepareInput(flags, text);
  const model = loadModel(input);
  const dict = loadDictionary(flags.dict, model.backend, gs1Options(flags));
  const s = splice(dict, model.config, { keepError: true });
  model.forward([input.ids], { interventions: s.interventions, logits: "none" });
  const perLayer = s.acts();
  if (perLayer.some((a) => a === null))
    throw new UsageError("the forward pass did not reach every dictionary site");
  const acts = perLayer as FeatureActs[];
  const layered = acts.length > 1;
  const tokens: TokenFeatures[] = input.ids.map((id, position) => {
    const candidates: TokenFeature[] = [];
    let l0 = 0;
    acts.forEach((a, layer) => {
      const row = a.row(position);
      l0 += row.indices.length;
      for (let j = 0; j < row.indices.length; j++) {
        const f: TokenFeature = { feature: row.indices[j], activation: row.values[j] };
        candidates.push(layered ? { ...f, layer } : f);
      }
    });
    candidates.sort(
      (a, b) => b.activation - a.activation || (a.layer ?? 0) - (b.layer ?? 0) || a.feature - b.feature,
    );
    return { position, id, token: tokenString(input.tokenizer, id), l0, top: candidates.slice(0, k) };
  });
  return {
    dictionary: {
      path: flags.dict,
      architecture: dict.spec.architecture,
      width: dict.spec.width,
      reads: s.sites.read.map((site) => site.name),
    },
    tokens,
  };
}

function featuresTable(r: FeaturesReport): string {
  const d = r.dictionary;
  const reads = d.reads.length > 2 ? `${d.reads[0]} .. ${d.reads[d.reads.length - 1]}` : d.reads.join(", ");
  const head = `${d.path}: ${d.architecture}, ${d.width} features, reads ${reads}`;
  const rows = r.tokens.map((t) => [
    String(t.position),
    t.token === null ? String(t.id) : JSON.stringify(t.token),
    String(t.l0),
    t.top
      .map((f) => `${f.layer === undefined ? "" : `L${f.layer}/`}${f.feature}=${f.activation.toFixed(3)}`)
      .join("  "),
  ]);
  const all = [["pos", "token", "L0", "top features (index=activation)"], ...rows];
  const widths = [0, 1, 2].map((c) => Math.max(...all.map((row) => row[c].length)));
  const lines = all.map((row) =>
    [row[0].padStart(widths[0]), row[1].padEnd(widths[1]), row[2].padStart(widths[2]), row[3]]
      .join("  ")
      .trimEnd(),
  );
  return `${head}\n${lines.join("\n")}\n`;
}
