/**
 * Gemma Scope 2 dictionaries exactly as published (shared/reference/gemma-scope-2-format.md):
 * a folder with `config.json` and `params.safetensors` (w_enc [d_in, width], b_enc, w_dec
 * [width, d_out], b_dec, threshold, and affine_skip_connection [d_in, d_out] in `_affine`
 * folders), or for a cross-layer transcoder `config.json` plus one `params_layer_{i}.safetensors`
 * per source layer (w_dec [width, layers, d_out]) with `{all}` in its hook points.
 * Sizes come from the tensor shapes, never from folder names or the config's `width`.
 * Saving writes the same layout, each file atomically and config.json last.
 */
import { existsSync, mkdirSync, readdirSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../../core/backend.js";
import { DictionaryError } from "../../core/errors.js";
import { writeFileAtomicSync } from "../../io/atomic-file.js";
import { SafetensorsFile } from "../../io/safetensors.js";
import { writeSafetensors } from "../../io/safetensors-write.js";
import type { JsonValue } from "../../io/strict-json.js";
import { tensorToWrite } from "../../io/to-tensor.js";
import { type CltLayerParams, CrossLayerTranscoder } from "../architectures/clt.js";
import {
  type ArchitectureEntry,
  architectureByName,
  gemmaScope2Activation,
  gemmaScope2Architecture,
} from "../registry.js";
import type { DictionaryMeta } from "../single-layer.js";
import type { ActivationInfo, Dictionary } from "../types.js";
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

export const CONFIG = "config.json";
export const PARAMS = "params.safetensors";
const LAYER_FILE = /^params_layer_(0|[1-9][0-9]*)\.safetensors$/;
const ALL = "{all}";

function layerFile(i: number): string {
  return `params_layer_${i}.safetensors`;
}

/** A config.json naming a Gemma Scope 2 type, next to params.safetensors or params_layer_0.safetensors. */
export function isGemmaScope2(dir: string): boolean {
  return (
    existsSync(join(dir, CONFIG)) && (existsSync(join(dir, PARAMS)) || existsSync(join(dir, layerFile(0))))
  );
}

function openParams(file: string): ParamSource & { close(): void } {
  let f: SafetensorsFile;
  try {
    f = SafetensorsFile.open(file);
  } catch (e) {
    throw new DictionaryError(e instanceof Error ? e.message : String(e));
  }
  return {
    path: file,
    has: (n) => f.has(n),
    header: (n) => f.info(n),
    readRawSync: (n) => f.readRawSync(n),
    close: () => f.close(),
  };
}

function withParams<T>(file: string, use: (src: ParamSource) => T): T {
  const src = openParams(file);
  try {
    return use(src);
  } finally {
    src.close();
  }
}

interface ParsedConfig {
  readonly entry: ArchitectureEntry;
  readonly activation: ReturnType<typeof gemmaScope2Activation>;
  readonly affine: boolean;
  readonly k: number | null;
  readonly meta: DictionaryMeta;
}

function parseConfig(dir: string): ParsedConfig {
  const file = join(dir, CONFIG);
  const cfg = new ConfigFields(file, readJsonObject(file));
  const affine = cfg.optionalBoolean("affine_connection") ?? false;
  const entry = gemmaScope2Architecture(cfg.string("type"), affine, file);
  const activation = gemmaScope2Activation(cfg.string("architecture"), file);
  const hookIn = cfg.string("hf_hook_point_in");
  const hookOut = cfg.string("hf_hook_point_out");
  const multi = entry.create === null;
  for (const h of [hookIn, hookOut]) {
    if (multi !== h.includes(ALL)) {
      throw new DictionaryError(
        multi
          ? `a ${entry.name}'s hook points must use ${ALL} for the layer, got ${JSON.stringify(h)}`
          : `${ALL} in ${JSON.stringify(h)} is only for cross-layer transcoders`,
        file,
      );
    }
  }
  return {
    entry,
    activation,
    affine,
    k: activation.needsK ? cfg.positiveInteger("k") : null,
    meta: {
      hookIn,
      hookOut,
      l0: cfg.optionalNumber("l0"),
      modelName: cfg.optionalString("model_name"),
      source: dir,
    },
  };
}

interface Sizes {
  readonly dIn: number;
  readonly dOut: number;
  readonly width: number;
  readonly dtype: string;
}

/** Checks one parameter file's headers; `layers` set for a CLT layer file. */
function checkHeaders(src: ParamSource, cfg: ParsedConfig, layers: number | null): Sizes {
  requireParams(src, ["w_enc", "b_enc", "w_dec", "b_dec"]);
  const [dIn, width] = paramShape(src, "w_enc", 2);
  const dec = paramShape(src, "w_dec", layers === null ? 2 : 3);
  const dOut = dec[dec.length - 1];
  expectParamShape(src, "w_dec", layers === null ? [width, dOut] : [width, layers, dOut]);
  expectParamShape(src, "b_enc", [width]);
  expectParamShape(src, "b_dec", [dOut]);
  if (cfg.activation.needsThreshold) expectParamShape(src, "threshold", [width]);
  if (cfg.affine) expectParamShape(src, "affine_skip_connection", [dIn, dOut]);
  else if (src.has("affine_skip_connection")) {
    throw new DictionaryError(
      "has affine_skip_connection but config.json says affine_connection false",
      src.path,
    );
  }
  return { dIn, dOut, width, dtype: src.header("w_enc").dtype };
}

function readActivation(src: ParamSource, cfg: ParsedConfig, backend: Backend) {
  return cfg.activation.build({
    threshold: cfg.activation.needsThreshold ? readVector(src, "threshold", backend) : null,
    k: cfg.k,
  });
}

/** The params_layer_{i} files of a CLT folder: 0 .. n-1 with none missing. */
function layerFiles(dir: string): string[] {
  const found = new Map<number, string>();
  for (const name of readdirSync(dir)) {
    const m = LAYER_FILE.exec(name);
    if (m) found.set(Number(m[1]), name);
  }
  const n = found.size;
  for (let i = 0; i < n; i++) {
    if (!found.has(i)) throw new DictionaryError(`${layerFile(i)} is missing (found ${n} layer files)`, dir);
  }
  if (n === 0) throw new DictionaryError(`no ${layerFile(0)}`, dir);
  return Array.from({ length: n }, (_, i) => join(dir, layerFile(i)));
}

function cltSizes(dir: string, cfg: ParsedConfig): { sizes: Sizes; files: string[] } {
  const files = layerFiles(dir);
  const layers = files.length;
  let sizes: Sizes | null = null;
  for (const f of files) {
    const s = withParams(f, (src) => checkHeaders(src, cfg, layers));
    if (sizes && (s.dIn !== sizes.dIn || s.dOut !== sizes.dOut || s.width !== sizes.width)) {
      throw new DictionaryError(
        `sizes d_in ${s.dIn}, width ${s.width}, d_out ${s.dOut} differ from layer 0's (${sizes.dIn}, ${sizes.width}, ${sizes.dOut})`,
        f,
      );
    }
    sizes ??= s;
  }
  return { sizes: sizes as Sizes, files };
}

function storedDtype(dtype: string): "f32" | "bf16" | "f16" {
  return dtype === "BF16" ? "bf16" : dtype === "F16" ? "f16" : "f32";
}

/** Loads a Gemma Scope 2 folder. CLT layers are read on first use; other dictionaries now. */
export function loadGemmaScope2(dir: string, backend: Backend): Dictionary {
  const cfg = parseConfig(dir);
  if (cfg.entry.create === null) {
    const { sizes, files } = cltSizes(dir, cfg);
    const load = (i: number): CltLayerParams =>
      withParams(files[i], (src) => ({
        wEnc: readMatrix(src, "w_enc", backend),
        bEnc: readVector(src, "b_enc", backend),
        wDec: readMatrix(src, "w_dec", backend),
        bDec: readVector(src, "b_dec", backend),
        skip: cfg.affine ? readMatrix(src, "affine_skip_connection", backend) : null,
        activation: readActivation(src, cfg, backend),
      }));
    return new CrossLayerTranscoder(
      {
        layers: files.length,
        dIn: sizes.dIn,
        dOut: sizes.dOut,
        width: sizes.width,
        skip: cfg.affine,
        dtype: storedDtype(sizes.dtype),
        activation: readActivationInfo(cfg),
        load,
      },
      cfg.meta,
    );
  }
  const create = cfg.entry.create;
  return withParams(join(dir, PARAMS), (src) => {
    checkHeaders(src, cfg, null);
    return create(
      {
        wEnc: readMatrix(src, "w_enc", backend),
        bEnc: readVector(src, "b_enc", backend),
        wDec: readMatrix(src, "w_dec", backend),
        bDec: readVector(src, "b_dec", backend),
        skip: cfg.affine ? readMatrix(src, "affine_skip_connection", backend) : null,
      },
      readActivation(src, cfg, backend),
      cfg.meta,
    );
  });
}

function readActivationInfo(cfg: ParsedConfig): ActivationInfo {
  const kind = cfg.activation.kind;
  if (kind === "topk") return { kind, k: cfg.k as number };
  if (kind === "batchtopk") throw new DictionaryError("no Gemma Scope 2 file stores a BatchTopK activation");
  return { kind };
}

/** Describes a Gemma Scope 2 folder from its config and tensor headers (no tensor data read). */
export function inspectGemmaScope2(dir: string): DictionaryInfo {
  const cfg = parseConfig(dir);
  let sizes: Sizes;
  let files: string[];
  let layers: number | null = null;
  if (cfg.entry.create === null) {
    ({ sizes, files } = cltSizes(dir, cfg));
    layers = files.length;
  } else {
    files = [join(dir, PARAMS)];
    sizes = withParams(files[0], (src) => checkHeaders(src, cfg, null));
  }
  return {
    path: dir,
    format: "gemma-scope-2",
    architecture: cfg.entry.name,
    activation: cfg.activation.kind,
    dIn: sizes.dIn,
    dOut: sizes.dOut,
    width: sizes.width,
    layers,
    skip: cfg.affine,
    hookIn: cfg.meta.hookIn,
    hookOut: cfg.meta.hookOut,
    l0: cfg.meta.l0,
    dtype: sizes.dtype,
    files: [join(dir, CONFIG), ...files],
    bytes: files.reduce((s, f) => s + statSync(f).size, 0),
  };
}

/**
 * Writes `dict` as a Gemma Scope 2 folder (created if needed): parameter files first, each
 * atomically, then config.json; stale layer files and a params file of another layout are removed.
 */
export async function saveGemmaScope2(dict: Dictionary, dir: string): Promise<void> {
  const spec = dict.spec;
  const entry = architectureByName(spec.architecture);
  if (spec.hookIn === null || spec.hookOut === null) {
    throw new DictionaryError(
      "the Gemma Scope 2 format needs hook points (hf_hook_point_in/out); this dictionary has none",
      dir,
    );
  }
  const form = dict.gemmaScope2Form();
  mkdirSync(dir, { recursive: true });
  const written = new Set<string>();
  for (const file of form.files) {
    const name = file.layer === null ? PARAMS : layerFile(file.layer);
    const tensors = file.tensors();
    await writeSafetensors(
      join(dir, name),
      Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, tensorToWrite(t)])),
    );
    written.add(name);
  }
  for (const name of readdirSync(dir)) {
    if ((name === PARAMS || LAYER_FILE.test(name)) && !written.has(name)) unlinkSync(join(dir, name));
  }
  // Published key order; a CLT's width counts the features of every layer, as released.
  const config: Record<string, JsonValue> = { width: spec.width * (spec.layers ?? 1) };
  if (spec.modelName !== null) config.model_name = spec.modelName;
  config.architecture = form.architecture;
  if (spec.l0 !== null) config.l0 = spec.l0;
  Object.assign(config, {
    affine_connection: spec.skip,
    hf_hook_point_in: spec.hookIn,
    hf_hook_point_out: spec.hookOut,
    type: entry.gemmaScope2.type,
    ...form.extraConfig,
  });
  writeFileAtomicSync(join(dir, CONFIG), `${JSON.stringify(config, null, 2)}\n`);
}
