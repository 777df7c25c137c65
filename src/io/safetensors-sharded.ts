/**
 * Sharded safetensors checkpoints presented as one lazy collection, and `openSafetensors`, which
 * opens any safetensors path: a file, a `*.safetensors.index.json`, or a directory.
 *
 * The index format is the Hugging Face one (`model.safetensors.index.json`):
 * `{"metadata": {...}, "weight_map": {tensor name: shard file name}}`, shard names relative to the
 * index's directory. Opening an index parses it and checks every shard file exists; each shard's
 * header is read on first use, and then checked against the index: every tensor the index assigns
 * to the shard must be in it, and no tensor the index assigns to another shard may be (a duplicate).
 * Tensors in a shard that the index does not mention are ignored, as Hugging Face loaders do.
 * A directory without an index opens every `*.safetensors` in it (headers read at once, since the
 * names are needed up front); a tensor in two of them is an error, and the collection has no
 * metadata of its own.
 */

import { readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import type { Backend } from "../core/backend.js";
import { SafetensorsError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import { ioMessage } from "./positioned-read.js";
import { SafetensorsFile, type TensorCollection, type TensorInfo } from "./safetensors.js";
import type { RawTensor, TypedTensor } from "./safetensors-dtype.js";
import { MAX_HEADER_BYTES } from "./safetensors-header.js";
import {
  describeJsonType,
  type JsonNode,
  type JsonValue,
  parseStrictJson,
  StrictJsonError,
  toPlainObject,
} from "./strict-json.js";

export class ShardedSafetensors implements TensorCollection {
  readonly metadata: Readonly<Record<string, JsonValue>>;
  private readonly open = new Map<string, SafetensorsFile>();
  private closed = false;

  private constructor(
    readonly path: string,
    /** Tensor name to shard path. */
    private readonly weightMap: ReadonlyMap<string, string>,
    metadata: Readonly<Record<string, JsonValue>>,
    /** Whether shard contents are checked against an index (false for a bare directory). */
    private readonly indexed: boolean,
  ) {
    this.metadata = metadata;
  }

  /** Opens a `*.safetensors.index.json`; reads no shard header yet. */
  static fromIndex(indexPath: string): ShardedSafetensors {
    const fail = (msg: string): never => {
      throw new SafetensorsError(msg, indexPath);
    };
    let text: string;
    try {
      const size = statSync(indexPath).size;
      if (size > MAX_HEADER_BYTES) fail(`index is ${size} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
      text = new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(indexPath));
    } catch (e) {
      if (e instanceof SafetensorsError) throw e;
      if (e instanceof TypeError) return fail("index is not valid UTF-8");
      return fail(`cannot read index: ${ioMessage(e)}`);
    }
    let root: JsonNode;
    try {
      root = parseStrictJson(text);
    } catch (e) {
      if (e instanceof StrictJsonError) return fail(`index is not valid JSON: ${e.message}`);
      throw e;
    }
    if (!(root instanceof Map)) return fail(`index must be a JSON object, not ${describeJsonType(root)}`);
    const wm = root.get("weight_map");
    if (!(wm instanceof Map)) {
      return fail(
        `index needs a "weight_map" object, found ${wm === undefined ? "none" : describeJsonType(wm)}`,
      );
    }
    const meta = root.get("metadata") ?? null;
    if (meta !== null && !(meta instanceof Map)) {
      return fail(`index "metadata" must be an object, not ${describeJsonType(meta)}`);
    }
    const dir = dirname(indexPath);
    const weightMap = new Map<string, string>();
    const checked = new Set<string>();
    for (const [name, shard] of wm) {
      if (typeof shard !== "string") {
        return fail(
          `weight_map entry for ${JSON.stringify(name)} must be a file name, not ${describeJsonType(shard)}`,
        );
      }
      const shardPath = join(dir, shard);
      const rel = relative(resolve(dir), resolve(shardPath));
      if (shard === "" || isAbsolute(shard) || rel.startsWith("..") || isAbsolute(rel)) {
        return fail(
          `weight_map entry for ${JSON.stringify(name)} names ${JSON.stringify(shard)}, outside the index's directory`,
        );
      }
      if (!checked.has(shardPath)) {
        checked.add(shardPath);
        let isFile = false;
        try {
          isFile = statSync(shardPath).isFile();
        } catch {
          fail(`shard ${JSON.stringify(shard)} (for tensor ${JSON.stringify(name)}) is missing`);
        }
        if (!isFile) fail(`shard ${JSON.stringify(shard)} is not a regular file`);
      }
      weightMap.set(name, shardPath);
    }
    return new ShardedSafetensors(indexPath, weightMap, meta === null ? {} : toPlainObject(meta), true);
  }

  /** Opens the given shard files as one collection, reading every header now. */
  static fromFiles(path: string, files: readonly string[]): ShardedSafetensors {
    const weightMap = new Map<string, string>();
    const shards: SafetensorsFile[] = [];
    try {
      for (const f of files) {
        const shard = SafetensorsFile.open(f);
        shards.push(shard);
        for (const name of shard.names()) {
          const other = weightMap.get(name);
          if (other !== undefined) {
            throw new SafetensorsError(
              `tensor ${JSON.stringify(name)} is in both ${basename(other)} and ${basename(f)}`,
              path,
            );
          }
          weightMap.set(name, f);
        }
      }
    } catch (e) {
      for (const s of shards) s.close();
      throw e;
    }
    const coll = new ShardedSafetensors(path, weightMap, {}, false);
    for (const s of shards) coll.open.set(s.path, s);
    return coll;
  }

  /** Distinct shard paths, in the order first named. */
  get shardPaths(): string[] {
    return [...new Set(this.weightMap.values())];
  }

  names(): string[] {
    return [...this.weightMap.keys()];
  }

  has(name: string): boolean {
    return this.weightMap.has(name);
  }

  info(name: string): TensorInfo {
    return this.shardFor(name).info(name);
  }

  readRawSync(name: string): RawTensor {
    return this.shardFor(name).readRawSync(name);
  }

  readRaw(name: string): Promise<RawTensor> {
    return this.shardFor(name).readRaw(name);
  }

  readTypedSync(name: string): TypedTensor {
    return this.shardFor(name).readTypedSync(name);
  }

  readTyped(name: string): Promise<TypedTensor> {
    return this.shardFor(name).readTyped(name);
  }

  readTensorSync(name: string, backend: Backend): Tensor {
    return this.shardFor(name).readTensorSync(name, backend);
  }

  readTensor(name: string, backend: Backend): Promise<Tensor> {
    return this.shardFor(name).readTensor(name, backend);
  }

  close(): void {
    this.closed = true;
    for (const s of this.open.values()) s.close();
    this.open.clear();
  }

  private shardFor(name: string): SafetensorsFile {
    if (this.closed) throw new SafetensorsError("checkpoint is closed", this.path);
    const shardPath = this.weightMap.get(name);
    if (shardPath === undefined)
      throw new SafetensorsError(`no tensor named ${JSON.stringify(name)}`, this.path);
    const cached = this.open.get(shardPath);
    if (cached !== undefined) return cached;
    const shard = SafetensorsFile.open(shardPath);
    if (this.indexed) {
      try {
        this.checkShard(shard);
      } catch (e) {
        shard.close();
        throw e;
      }
    }
    this.open.set(shardPath, shard);
    return shard;
  }

  private checkShard(shard: SafetensorsFile): void {
    const shardName = basename(shard.path);
    for (const [name, p] of this.weightMap) {
      if (p === shard.path && !shard.has(name)) {
        throw new SafetensorsError(
          `tensor ${JSON.stringify(name)} is listed in the index for ${shardName} but that shard does not contain it`,
          this.path,
        );
      }
    }
    for (const name of shard.names()) {
      const p = this.weightMap.get(name);
      if (p !== undefined && p !== shard.path) {
        throw new SafetensorsError(
          `tensor ${JSON.stringify(name)} is in ${shardName} but the index assigns it to ${basename(p)} (duplicate across shards)`,
          this.path,
        );
      }
    }
  }
}

const INDEX_SUFFIX = ".safetensors.index.json";

/**
 * Opens a safetensors file, a sharded checkpoint's index (`*.json`), or a directory (its single
 * `*.safetensors.index.json` if it has one, else all its `*.safetensors` files).
 */
export function openSafetensors(path: string): TensorCollection {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw new SafetensorsError(`cannot open: ${ioMessage(e)}`, path);
  }
  if (!isDir) return path.endsWith(".json") ? ShardedSafetensors.fromIndex(path) : SafetensorsFile.open(path);
  let entries: string[];
  try {
    entries = readdirSync(path).sort();
  } catch (e) {
    throw new SafetensorsError(`cannot list directory: ${ioMessage(e)}`, path);
  }
  const indexes = entries.filter((f) => f.endsWith(INDEX_SUFFIX));
  if (indexes.length > 1) {
    throw new SafetensorsError(`directory has several index files (${indexes.join(", ")}); name one`, path);
  }
  if (indexes.length === 1) return ShardedSafetensors.fromIndex(join(path, indexes[0]));
  const files = entries.filter((f) => f.endsWith(".safetensors")).map((f) => join(path, f));
  if (files.length === 0) throw new SafetensorsError("directory has no .safetensors files or index", path);
  if (files.length === 1) return SafetensorsFile.open(files[0]);
  return ShardedSafetensors.fromFiles(path, files);
}
