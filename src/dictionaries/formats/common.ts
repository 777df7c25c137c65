/**
 * Shared pieces of the dictionary file formats: reading parameter tensors with dtype and shape
 * checks that name the file, JSON configs, and the `DictionaryInfo` summary (what `dict info` and a
 * repository listing show, from headers only).
 */

import { readFileSync } from "node:fs";
import type { Backend } from "../../core/backend.js";
import { DictionaryError, GlassboxError } from "../../core/errors.js";
import { cast } from "../../core/ops/cast.js";
import { formatShape, type Tensor } from "../../core/tensor.js";
import type { RawTensor } from "../../io/safetensors-dtype.js";
import { rawToTensor } from "../../io/to-tensor.js";
import type { ActivationKind } from "../registry.js";

/** A dictionary on disk, described from its config and tensor headers. */
export interface DictionaryInfo {
  readonly path: string;
  /** "gemma-scope-2", "gemma-scope-1" or "saelens" */
  readonly format: string;
  /** `DictionarySpec.architecture` */
  readonly architecture: string;
  readonly activation: ActivationKind;
  readonly dIn: number;
  readonly dOut: number;
  /** Features per layer, from the tensor shapes. */
  readonly width: number;
  /** Layers of a cross-layer transcoder, else null. */
  readonly layers: number | null;
  readonly skip: boolean;
  readonly hookIn: string | null;
  readonly hookOut: string | null;
  /** The config's L0 target, if any. */
  readonly l0: number | null;
  /** Stored dtype of the encoder matrix (safetensors spelling, e.g. F32). */
  readonly dtype: string;
  readonly files: readonly string[];
  readonly bytes: number;
}

const FLOAT_DTYPES = new Set(["F32", "BF16", "F16", "F64"]);

/** Where parameter tensors come from: a safetensors file or an npz archive. */
export interface ParamSource {
  readonly path: string;
  has(name: string): boolean;
  /** Dtype and shape without reading data, where the container allows. */
  header(name: string): { readonly dtype: string; readonly shape: readonly number[] };
  readRawSync(name: string): RawTensor;
}

export function requireParams(src: ParamSource, names: readonly string[]): void {
  const missing = names.filter((n) => !src.has(n));
  if (missing.length > 0) {
    throw new DictionaryError(
      `missing tensor${missing.length > 1 ? "s" : ""} ${missing.map((n) => JSON.stringify(n)).join(", ")}`,
      src.path,
    );
  }
}

/** The header of `name`, checked to be floating point and (when given) of rank `rank`. */
export function paramShape(src: ParamSource, name: string, rank?: number): readonly number[] {
  requireParams(src, [name]);
  const h = src.header(name);
  if (!FLOAT_DTYPES.has(h.dtype)) {
    throw new DictionaryError(
      `tensor ${JSON.stringify(name)} has dtype ${h.dtype}; expected F32, BF16 or F16`,
      src.path,
    );
  }
  if (rank !== undefined && h.shape.length !== rank) {
    throw new DictionaryError(
      `tensor ${JSON.stringify(name)} must have ${rank} dims, got ${formatShape(h.shape)}`,
      src.path,
    );
  }
  return h.shape;
}

export function expectParamShape(src: ParamSource, name: string, shape: readonly number[]): void {
  const got = paramShape(src, name);
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    throw new DictionaryError(
      `tensor ${JSON.stringify(name)} must be ${formatShape(shape)}, got ${formatShape(got)}`,
      src.path,
    );
  }
}

/** Runs a read, turning io errors (which already name the file) into DictionaryErrors. */
function wrap<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof DictionaryError || !(e instanceof GlassboxError)) throw e;
    throw new DictionaryError(e.message);
  }
}

/** A matrix parameter, kept in its stored dtype (f32, bf16, f16; f64 narrowed to f32). */
export function readMatrix(src: ParamSource, name: string, backend: Backend): Tensor {
  paramShape(src, name);
  return wrap(() => rawToTensor(src.readRawSync(name), backend, src.path, name));
}

/** A vector parameter (biases, thresholds) as f32. */
export function readVector(src: ParamSource, name: string, backend: Backend): Tensor<"f32"> {
  return cast(readMatrix(src, name, backend), "f32");
}

/** A JSON object from `file`, or a DictionaryError naming it. */
export function readJsonObject(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new DictionaryError(`cannot read: ${e instanceof Error ? e.message : String(e)}`, file);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new DictionaryError(`not valid JSON: ${e instanceof Error ? e.message : String(e)}`, file);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DictionaryError("must hold a JSON object", file);
  }
  return value as Record<string, unknown>;
}

/** Typed field access on a config object; errors name the file and key. */
export class ConfigFields {
  constructor(
    readonly file: string,
    private readonly obj: Record<string, unknown>,
  ) {}

  has(key: string): boolean {
    return Object.hasOwn(this.obj, key) && this.obj[key] !== null && this.obj[key] !== undefined;
  }

  private bad(key: string, want: string): never {
    throw new DictionaryError(
      `${JSON.stringify(key)} must be ${want}, got ${JSON.stringify(this.obj[key])}`,
      this.file,
    );
  }

  string(key: string): string {
    if (!this.has(key)) throw new DictionaryError(`missing ${JSON.stringify(key)}`, this.file);
    const v = this.obj[key];
    return typeof v === "string" ? v : this.bad(key, "a string");
  }

  optionalString(key: string): string | null {
    return this.has(key) ? this.string(key) : null;
  }

  optionalNumber(key: string): number | null {
    if (!this.has(key)) return null;
    const v = this.obj[key];
    return typeof v === "number" && Number.isFinite(v) ? v : this.bad(key, "a number");
  }

  optionalBoolean(key: string): boolean | null {
    if (!this.has(key)) return null;
    const v = this.obj[key];
    return typeof v === "boolean" ? v : this.bad(key, "true or false");
  }

  positiveInteger(key: string): number {
    const v = this.optionalNumber(key);
    if (v === null) throw new DictionaryError(`missing ${JSON.stringify(key)}`, this.file);
    return Number.isInteger(v) && v > 0 ? v : this.bad(key, "a positive integer");
  }

  object(key: string): ConfigFields | null {
    if (!this.has(key)) return null;
    const v = this.obj[key];
    if (typeof v !== "object" || v === null || Array.isArray(v)) return this.bad(key, "an object");
    return new ConfigFields(this.file, v as Record<string, unknown>);
  }
}
