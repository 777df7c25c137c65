/**
 * SAELens folders (`SAE.save_model`, sae-lens 6): `cfg.json` + `sae_weights.safetensors` with
 * W_enc [d_in, d_sae], W_dec [d_sae, d_out], b_enc, b_dec, `threshold` for JumpReLU architectures
 * and W_skip [d_out, d_in] for skip-transcoders (applied as x @ W_skip^T, so A = W_skip^T).
 * `architecture` picks the module through the registry; hook points come from
 * `metadata.hf_hook_name(_out)`, else the TransformerLens `hook_name(_out)`.
 * `apply_b_dec_to_input` is folded into b_enc (b_enc - b_dec @ W_enc, in float64); activation
 * normalisation and TopK's rescale-by-decoder-norm are refused.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../../core/backend.js";
import { DictionaryError } from "../../core/errors.js";
import { cast } from "../../core/ops/cast.js";
import { transpose } from "../../core/ops/shape.js";
import { fromStorage, type Tensor } from "../../core/tensor.js";
import { SafetensorsFile } from "../../io/safetensors.js";
import {
  type ActivationKind,
  type ArchitectureEntry,
  activationEntry,
  saelensArchitecture,
} from "../registry.js";
import type { DictionaryMeta } from "../single-layer.js";
import type { Dictionary } from "../types.js";
import {
  ConfigFields,
  type DictionaryInfo,
  expectParamShape,
  type ParamSource,
  paramShape,
  readJsonObject,
  readMatrix,
  readVector,
  requireParams,
} from "./common.js";

export const CFG = "cfg.json";
export const WEIGHTS = "sae_weights.safetensors";

export function isSaeLens(dir: string): boolean {
  return existsSync(join(dir, CFG)) && existsSync(join(dir, WEIGHTS));
}

interface Parsed {
  readonly entry: ArchitectureEntry;
  readonly activation: ActivationKind;
  readonly k: number | null;
  readonly foldBDec: boolean;
  readonly meta: DictionaryMeta;
}

function parse(dir: string): Parsed {
  const file = join(dir, CFG);
  const cfg = new ConfigFields(file, readJsonObject(file));
  const { entry, activation } = saelensArchitecture(cfg.string("architecture"), file);
  const norm = cfg.optionalString("normalize_activations") ?? "none";
  if (norm !== "none")
    throw new DictionaryError(`normalize_activations ${JSON.stringify(norm)} is not supported`, file);
  if (cfg.optionalBoolean("rescale_acts_by_decoder_norm") === true) {
    throw new DictionaryError(
      "rescale_acts_by_decoder_norm is not supported (fold the decoder norm first)",
      file,
    );
  }
  const md = cfg.object("metadata");
  const hookIn =
    md?.optionalString("hf_hook_name") ?? md?.optionalString("hook_name") ?? cfg.optionalString("hook_name");
  const hookOut = entry.reconstructsInput
    ? hookIn
    : (md?.optionalString("hf_hook_name_out") ?? md?.optionalString("hook_name_out") ?? null);
  return {
    entry,
    activation,
    k: activationEntry(activation, file).needsK ? cfg.positiveInteger("k") : null,
    foldBDec: cfg.optionalBoolean("apply_b_dec_to_input") ?? false,
    meta: { hookIn, hookOut, l0: null, modelName: md?.optionalString("model_name") ?? null, source: dir },
  };
}

function openWeights(dir: string): ParamSource & { close(): void } {
  let f: SafetensorsFile;
  try {
    f = SafetensorsFile.open(join(dir, WEIGHTS));
  } catch (e) {
    throw new DictionaryError(e instanceof Error ? e.message : String(e));
  }
  return {
    path: f.path,
    has: (n) => f.has(n),
    header: (n) => f.info(n),
    readRawSync: (n) => f.readRawSync(n),
    close: () => f.close(),
  };
}

function sizes(src: ParamSource, p: Parsed): { dIn: number; dOut: number; width: number } {
  requireParams(src, ["W_enc", "W_dec", "b_enc", "b_dec"]);
  const [dIn, width] = paramShape(src, "W_enc", 2);
  const [, dOut] = paramShape(src, "W_dec", 2);
  expectParamShape(src, "W_dec", [width, dOut]);
  expectParamShape(src, "b_enc", [width]);
  expectParamShape(src, "b_dec", [dOut]);
  if (activationEntry(p.activation, src.path).needsThreshold) expectParamShape(src, "threshold", [width]);
  if (p.entry.skip) expectParamShape(src, "W_skip", [dOut, dIn]);
  return { dIn, dOut, width };
}

/** b_enc - b_dec @ W_enc in float64, rounded once (SAELens subtracts b_dec from the input). */
function foldInputBias(bEnc: Tensor<"f32">, bDec: Tensor<"f32">, wEnc: Tensor): Tensor<"f32"> {
  const [dIn, width] = wEnc.shape;
  const w = wEnc.toFloat32Array();
  const acc = Float64Array.from(bEnc.data);
  for (let i = 0; i < dIn; i++) {
    const b = bDec.data[i];
    for (let j = 0; j < width; j++) acc[j] -= b * w[i * width + j];
  }
  return fromStorage(bEnc.backend, "f32", [width], Float32Array.from(acc));
}

export function loadSaeLens(dir: string, backend: Backend): Dictionary {
  const p = parse(dir);
  const create = p.entry.create;
  if (create === null) throw new DictionaryError(`SAELens folders hold single-site dictionaries`, dir);
  const src = openWeights(dir);
  try {
    sizes(src, p);
    const act = activationEntry(p.activation, src.path);
    const wEnc = readMatrix(src, "W_enc", backend);
    const bDec = readVector(src, "b_dec", backend);
    let bEnc = readVector(src, "b_enc", backend);
    if (p.foldBDec) bEnc = foldInputBias(bEnc, bDec, wEnc);
    return create(
      {
        wEnc,
        bEnc,
        wDec: readMatrix(src, "W_dec", backend),
        bDec,
        skip: p.entry.skip ? transpose(cast(readMatrix(src, "W_skip", backend), "f32")) : null,
      },
      act.build({ threshold: act.needsThreshold ? readVector(src, "threshold", backend) : null, k: p.k }),
      p.meta,
    );
  } finally {
    src.close();
  }
}

export function inspectSaeLens(dir: string): DictionaryInfo {
  const p = parse(dir);
  const src = openWeights(dir);
  try {
    const s = sizes(src, p);
    return {
      path: dir,
      format: "saelens",
      architecture: p.entry.name,
      activation: p.activation,
      ...s,
      layers: null,
      skip: p.entry.skip,
      hookIn: p.meta.hookIn,
      hookOut: p.meta.hookOut,
      l0: null,
      dtype: src.header("W_enc").dtype,
      files: [join(dir, CFG), src.path],
      bytes: statSync(src.path).size,
    };
  } finally {
    src.close();
  }
}
