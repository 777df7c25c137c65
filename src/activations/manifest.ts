/**
 * The activation store's `manifest.json`: its types, strict parsing, canonical JSON, and the
 * content hash. Layout and guarantees are described in docs/activations.md.
 *
 * The manifest is the store's only index: a shard file counts only once the manifest lists it.
 * `content_hash` covers what a reader sees (model, sites, dtype, dataset, shard hashes and token
 * counts in order), so two stores with the same hash hold the same activations in the same order.
 */
import { createHash } from "node:crypto";
import { StoreError } from "../core/errors.js";
import type { JsonValue } from "../io/strict-json.js";

export const STORE_FORMAT = "glassbox.activation-store";
export const STORE_VERSION = 1;
export const MANIFEST_FILE = "manifest.json";

/** How activations are stored; readers always return f32. */
export type StoreDType = "f32" | "bf16" | "f16";
export const STORE_DTYPES: readonly StoreDType[] = ["f32", "bf16", "f16"];

/** Tensors every shard holds besides one per site; no site may take these names. */
export const TOKEN_IDS = "token_ids";
export const POSITIONS = "positions";
export const DOC_IDS = "doc_ids";
export const RESERVED_TENSOR_NAMES: readonly string[] = [TOKEN_IDS, POSITIONS, DOC_IDS];

/** The model the activations came from. */
export interface ModelIdentity {
  /** A human-readable name, e.g. the model directory's basename or a hub id. */
  readonly id: string;
  /** SHA-256 (hex) over the model's config and weights (see `modelHash` in harvest). */
  readonly hash: string;
}

/** One hook site: its display name (`blocks.3.resid_post`) and activation width. */
export interface StoreSite {
  readonly name: string;
  readonly d: number;
}

/** One shard file, as listed in the manifest. */
export interface ShardEntry {
  /** File name inside the store, `shard_00000.safetensors`. */
  readonly file: string;
  /** Tokens (rows per site tensor). */
  readonly tokens: number;
  readonly bytes: number;
  /** SHA-256 (hex) of the whole file. */
  readonly sha256: string;
}

/** Where harvesting stopped in the dataset's deterministic sequence stream. */
export interface HarvestCursor {
  /** Sequences whose kept tokens are all stored. */
  readonly sequences: number;
  /** Kept tokens of the next sequence already stored (non-zero only after a token limit cut it). */
  readonly skip: number;
}

export interface StoreManifest {
  readonly format: typeof STORE_FORMAT;
  readonly version: typeof STORE_VERSION;
  readonly model: ModelIdentity;
  readonly sites: readonly StoreSite[];
  readonly dtype: StoreDType;
  /** Total tokens over all shards. */
  readonly tokens: number;
  readonly shards: readonly ShardEntry[];
  /**
   * What was harvested and how: source file and its hash, input format, context length, masking
   * rules. Free-form JSON written by the harvester; a resumed harvest must describe the same.
   */
  readonly dataset: { readonly [key: string]: JsonValue };
  readonly cursor: HarvestCursor;
  /** True once the harvest reached its token target or the end of the data. */
  readonly complete: boolean;
  /** SHA-256 (hex) of the canonical JSON of model, sites, dtype, dataset and shards. */
  readonly content_hash: string;
}

/** JSON with object keys sorted at every level: the same value always gives the same text. */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k] as JsonValue)}`).join(",")}}`;
}

function toJson(v: unknown): JsonValue {
  return JSON.parse(JSON.stringify(v)) as JsonValue;
}

export function contentHash(
  m: Pick<StoreManifest, "model" | "sites" | "dtype" | "dataset" | "shards">,
): string {
  const content = {
    model: toJson(m.model),
    sites: toJson(m.sites),
    dtype: m.dtype,
    dataset: toJson(m.dataset),
    shards: m.shards.map((s) => ({ tokens: s.tokens, sha256: s.sha256 })),
  };
  return createHash("sha256").update(canonicalJson(content)).digest("hex");
}

export function shardFileName(index: number): string {
  return `shard_${String(index).padStart(5, "0")}.safetensors`;
}

type Obj = { readonly [key: string]: unknown };

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Validates a parsed manifest; `path` goes into errors. */
export function parseManifest(json: unknown, path: string): StoreManifest {
  const fail = (msg: string): never => {
    throw new StoreError(`invalid manifest: ${msg}`, path);
  };
  const count = (v: unknown, what: string): number =>
    typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : fail(`${what} is not a count`);
  const str = (v: unknown, what: string): string =>
    typeof v === "string" ? v : fail(`${what} is not a string`);
  const hex = (v: unknown, what: string): string =>
    typeof v === "string" && /^[0-9a-f]{64}$/.test(v) ? v : fail(`${what} is not a SHA-256 hex digest`);
  if (!isObj(json)) return fail("not a JSON object");
  if (json.format !== STORE_FORMAT) fail(`format is ${JSON.stringify(json.format)}, not ${STORE_FORMAT}`);
  if (json.version !== STORE_VERSION)
    fail(`version ${JSON.stringify(json.version)} is not supported (this glassbox reads ${STORE_VERSION})`);
  const model = isObj(json.model) ? json.model : fail("model is not an object");
  const dtype = STORE_DTYPES.find((d) => d === json.dtype) ?? fail(`dtype ${JSON.stringify(json.dtype)}`);
  const rawSites = Array.isArray(json.sites) ? json.sites : fail("sites is not an array");
  const sites = rawSites.map((s: unknown, i): StoreSite => {
    if (!isObj(s)) return fail(`sites[${i}] is not an object`);
    const d = count(s.d, `sites[${i}].d`);
    if (d === 0) fail(`sites[${i}].d is 0`);
    return { name: str(s.name, `sites[${i}].name`), d };
  });
  if (sites.length === 0) fail("no sites");
  const names = new Set(sites.map((s) => s.name));
  if (names.size !== sites.length) fail("a site is listed twice");
  for (const r of RESERVED_TENSOR_NAMES) if (names.has(r)) fail(`${r} cannot name a site`);
  const rawShards = Array.isArray(json.shards) ? json.shards : fail("shards is not an array");
  const shards = rawShards.map((s: unknown, i): ShardEntry => {
    if (!isObj(s)) return fail(`shards[${i}] is not an object`);
    const file = str(s.file, `shards[${i}].file`);
    if (file !== shardFileName(i))
      fail(`shards[${i}].file is ${JSON.stringify(file)}, not ${shardFileName(i)}`);
    return {
      file,
      tokens: count(s.tokens, `shards[${i}].tokens`),
      bytes: count(s.bytes, `shards[${i}].bytes`),
      sha256: hex(s.sha256, `shards[${i}].sha256`),
    };
  });
  const tokens = count(json.tokens, "tokens");
  const sum = shards.reduce((a, s) => a + s.tokens, 0);
  if (sum !== tokens) fail(`tokens is ${tokens} but the shards hold ${sum}`);
  const cursor = isObj(json.cursor) ? json.cursor : fail("cursor is not an object");
  if (!isObj(json.dataset)) fail("dataset is not an object");
  if (typeof json.complete !== "boolean") fail("complete is not a boolean");
  const m: StoreManifest = {
    format: STORE_FORMAT,
    version: STORE_VERSION,
    model: { id: str(model.id, "model.id"), hash: hex(model.hash, "model.hash") },
    sites,
    dtype,
    tokens,
    shards,
    dataset: json.dataset as { readonly [key: string]: JsonValue },
    cursor: {
      sequences: count(cursor.sequences, "cursor.sequences"),
      skip: count(cursor.skip, "cursor.skip"),
    },
    complete: json.complete as boolean,
    content_hash: hex(json.content_hash, "content_hash"),
  };
  if (contentHash(m) !== m.content_hash) fail("content_hash does not match the manifest's contents");
  return m;
}
