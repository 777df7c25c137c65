/**
 * Gemma Scope 1 (Gemma 2) dictionaries: `layer_{L}/width_{W}/average_l0_{N}/params.npz` holding
 * W_enc [d_in, width], W_dec [width, d_out], b_enc, b_dec, threshold (JumpReLU, float32). The files
 * carry no config, so what they read and write is not recorded: by default an SAE with unknown hook
 * points; `Gemma1Options` says otherwise (e.g. the transcoder releases).
 */
import { existsSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import type { Backend } from "../../core/backend.js";
import { DictionaryError, GlassboxError } from "../../core/errors.js";
import { NpzFile } from "../../io/npz.js";
import type { RawTensor } from "../../io/safetensors-dtype.js";
import { jumpRelu } from "../activations/jumprelu.js";
import { architectureByName } from "../registry.js";
import type { Dictionary } from "../types.js";
import {
  type DictionaryInfo,
  expectParamShape,
  type ParamSource,
  paramShape,
  readMatrix,
  readVector,
  requireParams,
} from "./common.js";

export const NPZ = "params.npz";

export interface GemmaScope1Options {
  /** "sae" (default) or "transcoder". */
  readonly architecture?: string;
  readonly hookIn?: string | null;
  readonly hookOut?: string | null;
}

function npzPath(path: string): string {
  return path.endsWith(".npz") ? path : join(path, NPZ);
}

export function isGemmaScope1(path: string): boolean {
  const p = npzPath(path);
  return existsSync(p) && statSync(p).isFile();
}

function openNpz(file: string): ParamSource & { close(): void } {
  let f: NpzFile;
  try {
    f = NpzFile.open(file);
  } catch (e) {
    throw new DictionaryError(e instanceof Error ? e.message : String(e));
  }
  const cache = new Map<string, RawTensor>();
  const raw = (n: string): RawTensor => {
    let r = cache.get(n);
    if (r === undefined) {
      try {
        r = f.readRawSync(n);
      } catch (e) {
        if (e instanceof GlassboxError) throw new DictionaryError(e.message);
        throw e;
      }
      cache.set(n, r);
    }
    return r;
  };
  return {
    path: file,
    has: (n) => f.has(n),
    header: (n) => raw(n),
    readRawSync: raw,
    close: () => f.close(),
  };
}

function sizes(src: ParamSource): { dIn: number; dOut: number; width: number } {
  requireParams(src, ["W_enc", "W_dec", "b_enc", "b_dec", "threshold"]);
  const [dIn, width] = paramShape(src, "W_enc", 2);
  const [, dOut] = paramShape(src, "W_dec", 2);
  expectParamShape(src, "W_dec", [width, dOut]);
  expectParamShape(src, "b_enc", [width]);
  expectParamShape(src, "b_dec", [dOut]);
  expectParamShape(src, "threshold", [width]);
  return { dIn, dOut, width };
}

export function loadGemmaScope1(
  path: string,
  backend: Backend,
  options: GemmaScope1Options = {},
): Dictionary {
  const file = npzPath(path);
  const entry = architectureByName(options.architecture ?? "sae");
  if (entry.create === null)
    throw new DictionaryError(`Gemma Scope 1 files hold single-site dictionaries, not a ${entry.name}`, file);
  const create = entry.create;
  const src = openNpz(file);
  try {
    sizes(src);
    return create(
      {
        wEnc: readMatrix(src, "W_enc", backend),
        bEnc: readVector(src, "b_enc", backend),
        wDec: readMatrix(src, "W_dec", backend),
        bDec: readVector(src, "b_dec", backend),
      },
      jumpRelu(readVector(src, "threshold", backend)),
      {
        hookIn: options.hookIn ?? null,
        hookOut: options.hookOut ?? null,
        l0: averageL0(file),
        modelName: null,
        source: file,
      },
    );
  } finally {
    src.close();
  }
}

/** The `average_l0_{N}` folder label, the only L0 figure Gemma Scope 1 records. */
function averageL0(file: string): number | null {
  const m = /^average_l0_([0-9]+)$/.exec(basename(join(file, "..")));
  return m ? Number(m[1]) : null;
}

export function inspectGemmaScope1(path: string, options: GemmaScope1Options = {}): DictionaryInfo {
  const file = npzPath(path);
  const src = openNpz(file);
  try {
    const s = sizes(src);
    return {
      path: file,
      format: "gemma-scope-1",
      architecture: options.architecture ?? "sae",
      activation: "jumprelu",
      ...s,
      layers: null,
      skip: false,
      hookIn: options.hookIn ?? null,
      hookOut: options.hookOut ?? null,
      l0: averageL0(file),
      dtype: src.header("W_enc").dtype,
      files: [file],
      bytes: statSync(file).size,
    };
  } finally {
    src.close();
  }
}
