/**
 * Lazy reading of one safetensors file (Hugging Face format; validation rules in
 * `safetensors-header.ts`).
 *
 * Opening reads only the 8-byte length and the JSON header, validating everything at once. Each
 * tensor is then read on demand with positioned reads into a fresh buffer of exactly its size
 * (which is therefore aligned for its typed array), synchronously or as a promise. The file stays
 * open until `close()`, so reads see the file that was validated even if the path is replaced.
 */

import { closeSync, fstatSync, openSync } from "node:fs";
import type { Backend } from "../core/backend.js";
import { SafetensorsError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import { ioMessage, readFully, readFullySync } from "./positioned-read.js";
import { type RawTensor, type TypedTensor, typedArrayOf } from "./safetensors-dtype.js";
import {
  checkHeaderLength,
  parseHeader,
  type SafetensorsHeader,
  type TensorEntry,
} from "./safetensors-header.js";
import type { JsonValue } from "./strict-json.js";
import { rawToTensor } from "./to-tensor.js";

/** What the CLI and loaders see of a tensor before reading it. */
export interface TensorInfo extends TensorEntry {
  /** The file holding the tensor. */
  readonly file: string;
}

/**
 * A set of named tensors read lazily: one file or a sharded checkpoint. Names and infos may open
 * headers (small synchronous reads); `readRaw*`/`readTyped*` read one tensor's bytes.
 */
export interface TensorCollection {
  /** The path the collection was opened from. */
  readonly path: string;
  /** File `__metadata__` (string to string), or the `metadata` of a sharded index. */
  readonly metadata: Readonly<Record<string, JsonValue>>;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  readRawSync(name: string): RawTensor;
  readRaw(name: string): Promise<RawTensor>;
  readTypedSync(name: string): TypedTensor;
  readTyped(name: string): Promise<TypedTensor>;
  /** Reads a tensor as a core Tensor (conversions in `to-tensor.ts`). */
  readTensorSync(name: string, backend: Backend): Tensor;
  readTensor(name: string, backend: Backend): Promise<Tensor>;
  close(): void;
}

export class SafetensorsFile implements TensorCollection {
  readonly metadata: Readonly<Record<string, string>>;
  /** Header length N from the first 8 bytes. */
  readonly headerLength: number;
  readonly fileSize: number;
  private readonly byName: Map<string, TensorEntry>;
  private readonly ordered: readonly TensorEntry[];
  private fd: number;
  private closing = false;
  private inFlight = 0;

  private constructor(
    readonly path: string,
    fd: number,
    fileSize: number,
    header: SafetensorsHeader,
  ) {
    this.fd = fd;
    this.fileSize = fileSize;
    this.headerLength = header.headerLength;
    this.metadata = header.metadata;
    this.ordered = header.entries;
    this.byName = new Map(header.entries.map((e) => [e.name, e]));
  }

  /** Opens and validates `path`, reading only its header. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw new SafetensorsError(`cannot open: ${ioMessage(e)}`, path);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new SafetensorsError("not a regular file", path);
      const size = st.size;
      const prefix = new Uint8Array(8);
      if (size >= 8) readFullySync(fd, prefix, 0, path);
      const n = checkHeaderLength(prefix, size, path);
      const headerBytes = new Uint8Array(n);
      readFullySync(fd, headerBytes, 8, path);
      return new SafetensorsFile(path, fd, size, parseHeader(headerBytes, size, path));
    } catch (e) {
      closeSync(fd);
      if (e instanceof SafetensorsError) throw e;
      throw new SafetensorsError(`cannot read: ${ioMessage(e)}`, path);
    }
  }

  /** Byte offset of the data section in the file (8 + header length). */
  get dataStart(): number {
    return 8 + this.headerLength;
  }

  /** Tensor names in file order. */
  names(): string[] {
    return this.ordered.map((e) => e.name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    return { ...this.entry(name), file: this.path };
  }

  readRawSync(name: string): RawTensor {
    const e = this.entry(name);
    const bytes = new Uint8Array(e.byteLength);
    this.checkOpen();
    readFullySync(this.fd, bytes, this.dataStart + e.dataOffsets[0], this.path);
    return { dtype: e.dtype, shape: e.shape, bytes };
  }

  async readRaw(name: string): Promise<RawTensor> {
    const e = this.entry(name);
    const bytes = new Uint8Array(e.byteLength);
    this.checkOpen();
    this.inFlight++;
    try {
      await readFully(this.fd, bytes, this.dataStart + e.dataOffsets[0], this.path);
    } finally {
      this.inFlight--;
      if (this.closing && this.inFlight === 0) this.release();
    }
    return { dtype: e.dtype, shape: e.shape, bytes };
  }

  readTypedSync(name: string): TypedTensor {
    return toTyped(this.readRawSync(name));
  }

  async readTyped(name: string): Promise<TypedTensor> {
    return toTyped(await this.readRaw(name));
  }

  readTensorSync(name: string, backend: Backend): Tensor {
    return rawToTensor(this.readRawSync(name), backend, this.path, name);
  }

  async readTensor(name: string, backend: Backend): Promise<Tensor> {
    return rawToTensor(await this.readRaw(name), backend, this.path, name);
  }

  /** Closes the file; reads still in flight finish first. Further reads throw. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.inFlight === 0) this.release();
  }

  private release(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private checkOpen(): void {
    if (this.closing) throw new SafetensorsError("file is closed", this.path);
  }

  private entry(name: string): TensorEntry {
    const e = this.byName.get(name);
    if (e === undefined) throw new SafetensorsError(`no tensor named ${JSON.stringify(name)}`, this.path);
    return e;
  }
}

export function toTyped(raw: RawTensor): TypedTensor {
  // One generic call per dtype keeps `data` paired with its `dtype` without a cast.
  const { shape, bytes } = raw;
  switch (raw.dtype) {
    case "F64":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "F32":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "F16":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "BF16":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "I64":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "I32":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "I16":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "I8":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "U64":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "U32":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "U16":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "U8":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "BOOL":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "F8_E4M3":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
    case "F8_E5M2":
      return { dtype: raw.dtype, shape, data: typedArrayOf(raw.dtype, bytes) };
  }
}
