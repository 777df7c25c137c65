/**
 * `glassbox activations --model DIR --site SITE --out FILE.safetensors "text"`: runs the model on the
 * prompt and writes one site's activation for every token (float32, the batch axis dropped, e.g.
 * [seq, d_model] for `blocks.6.resid_post`) to a safetensors file, atomically. The tensor is named
 * after the site; `__metadata__` records format, model, site, its Hugging Face module name, axes,
 * token ids, token strings and the prompt text. `--json` prints what was written.
 */
import { resolve } from "node:path";
import type { Command } from "commander";
import { UsageError } from "../../core/errors.js";
import { writeSafetensorsSync } from "../../io/safetensors-write.js";
import { parseSite, sites } from "../../model/gemma3/sites.js";
import {
  addModelOptions,
  type InputFlags,
  jsonLine,
  loadModel,
  prepareInput,
  tokenString,
} from "../model-input.js";

interface ActivationsFlags extends InputFlags {
  site: string;
  out: string;
}

export interface ActivationsReport {
  readonly out: string;
  readonly site: string;
  /** Axis names of the written tensor (the site's, without `batch`). */
  readonly axes: string[];
  readonly shape: number[];
  readonly ids: number[];
  readonly tokens: (string | null)[];
}

export const ACTIVATIONS_FORMAT = "glassbox-activations";

export function registerActivations(program: Command): void {
  addModelOptions(
    program
      .command("activations")
      .description("write one hook site's activation for every prompt token to a safetensors file")
      .argument("[text]", "prompt text"),
  )
    .requiredOption("--site <site>", "hook site, e.g. blocks.6.resid_post or model.layers.6.output")
    .requiredOption("--out <file>", "output .safetensors file (written atomically)")
    .action((text: string | undefined, flags: ActivationsFlags) => {
      const r = writeActivations(flags, text);
      process.stdout.write(
        flags.json
          ? jsonLine(r)
          : `wrote ${r.out}: ${r.site} [${r.shape.join(", ")}] (${r.axes.join(", ")}) f32 for ${r.ids.length} tokens\n`,
      );
    });
}

export function writeActivations(flags: ActivationsFlags, text: string | undefined): ActivationsReport {
  if (!flags.out.endsWith(".safetensors")) throw new UsageError("must end in .safetensors", "--out");
  const input = prepareInput(flags, text);
  const site = parseSite(flags.site, input.config);
  const model = loadModel(input);
  // The unembedding only when the site is the logits themselves.
  const logits = site.name === sites.logits.name ? "all" : "none";
  const act = model.forward([input.ids], { capture: [site], logits }).activations.get(site);
  const axes = site.axes.filter((a) => a !== "batch");
  const shape = act.shape.slice(1);
  const tokens = input.ids.map((id) => tokenString(input.tokenizer, id));
  const metadata: Record<string, string> = {
    format: ACTIVATIONS_FORMAT,
    format_version: "1",
    model: resolve(input.dir),
    site: site.name,
    hf_module: site.hfModuleName(input.config) ?? "",
    axes: JSON.stringify(axes),
    token_ids: JSON.stringify(input.ids),
    tokens: JSON.stringify(tokens),
  };
  if (input.text !== null) metadata.text = input.text;
  writeSafetensorsSync(flags.out, { [site.name]: { dtype: "F32", shape, data: act.data } }, metadata);
  return { out: flags.out, site: site.name, axes, shape, ids: input.ids, tokens };
}
