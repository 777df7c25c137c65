/**
 * Writing safetensors files atomically.
 *
 * Layout as the Hugging Face writer (safetensors/src/tensor.rs `prepare`): 8-byte little-endian
 * header length, compact JSON header (`__metadata__` first) padded with spaces to a multiple of
 * 8 bytes, then the tensors back to back. Unlike the reference, which orders by dtype alignment then
 * name, tensors are ordered by name alone (UTF-8 byte order); readers accept any order.
 *
 * Atomicity: data goes to a temporary file in the target's directory, which is fsynced and then
 * renamed over the target (and the directory fsynced). On any error the temporary file is removed
 * and an existing target is untouched.
 *
 * `SafetensorsWriter` streams: the header is written from the tensors' dtypes and shapes, then each
 * tensor's bytes are written at its precomputed offset, in any order, so no more than one tensor
 * need be in memory. Multi-byte elements are written as the machine holds them (little-endian on
 * every platform Node supports for this project).
 */

import { writeSync } from "node:fs";
import { type FileHandle, open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { SafetensorsError } from "../core/errors.js";
import { fsyncDirSync, replaceFileSync, tempPathFor } from "./atomic-file.js";
import { ioMessage } from "./positioned-read.js";
import { isSafetensorsDType, SAFETENSORS_DTYPE_BYTES, type SafetensorsDType } from "./safetensors-dtype.js";
import { MAX_HEADER_BYTES, METADATA_KEY } from "./safetensors-header.js";

/** Dtype and shape of a tensor to be written. */
export interface TensorSpec {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
}

/** A tensor to write: its bytes, or a typed array (any ArrayBufferView) holding its elements. */
export type TensorToWrite = TensorSpec &
  ({ readonly bytes: Uint8Array } | { readonly data: ArrayBufferView });

export type NamedTensors<T> = Readonly<Record<string, T>> | ReadonlyMap<string, T>;

const WRITE_CHUNK = 1 << 30;

interface Layout {
  /** 8-byte length, JSON and padding. */
  readonly head: Uint8Array;
  /** Absolute file offset and byte length of each tensor. */
  readonly slots: ReadonlyMap<string, { readonly at: number; readonly byteLength: number }>;
  /** Tensor names in file order. */
  readonly order: readonly string[];
}

function entriesOf<T>(tensors: NamedTensors<T>): [string, T][] {
  return tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
}

function bytesOf(t: TensorToWrite): Uint8Array {
  if ("bytes" in t) return t.bytes;
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

const LONE_SURROGATE = /\p{Cs}/u;

/** Validates specs and metadata and computes the header and offsets. */
function planLayout(
  path: string,
  specs: readonly [string, TensorSpec][],
  metadata: Readonly<Record<string, string>>,
): Layout {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`cannot write: ${msg}`, path);
  };
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") fail(`metadata value for ${JSON.stringify(k)} is not a string`);
    if (LONE_SURROGATE.test(k) || LONE_SURROGATE.test(v))
      fail(`metadata ${JSON.stringify(k)} is not valid Unicode`);
    Object.defineProperty(meta, k, { value: v, enumerable: true });
  }
  const sorted = [...specs].sort((a, b) => compareUtf8(a[0], b[0]));
  const slots = new Map<string, { at: number; byteLength: number }>();
  const header: Record<string, unknown> = {};
  if (Object.keys(meta).length > 0) header[METADATA_KEY] = meta;
  let offset = 0;
  for (const [name, spec] of sorted) {
    const where = `tensor ${JSON.stringify(name)}`;
    if (name === METADATA_KEY) fail(`${METADATA_KEY} is reserved and cannot name a tensor`);
    if (LONE_SURROGATE.test(name)) fail(`${where}: name is not valid Unicode`);
    if (slots.has(name)) fail(`${where}: given twice`);
    if (!isSafetensorsDType(spec.dtype)) fail(`${where}: unknown dtype ${JSON.stringify(spec.dtype)}`);
    let n = BigInt(SAFETENSORS_DTYPE_BYTES[spec.dtype]);
    for (const d of spec.shape) {
      if (!Number.isSafeInteger(d) || d < 0) fail(`${where}: shape entry ${d} is not a non-negative integer`);
      n *= BigInt(d);
    }
    if (n > BigInt(Number.MAX_SAFE_INTEGER - offset)) fail(`${where}: too large`);
    const byteLength = Number(n);
    Object.defineProperty(header, name, {
      value: { dtype: spec.dtype, shape: [...spec.shape], data_offsets: [offset, offset + byteLength] },
      enumerable: true,
    });
    slots.set(name, { at: offset, byteLength });
    offset += byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded > MAX_HEADER_BYTES)
    fail(`header would be ${padded} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
  const head = new Uint8Array(8 + padded).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  const start = head.byteLength;
  const absolute = new Map([...slots].map(([k, s]) => [k, { at: start + s.at, byteLength: s.byteLength }]));
  return { head, slots: absolute, order: sorted.map(([name]) => name) };
}

function checkBytes(path: string, name: string, bytes: Uint8Array, expected: number): void {
  if (bytes.byteLength !== expected) {
    throw new SafetensorsError(
      `cannot write: tensor ${JSON.stringify(name)} has ${bytes.byteLength} bytes but its dtype and shape need ${expected}`,
      path,
    );
  }
}

function wrapIo(path: string, e: unknown): SafetensorsError {
  return e instanceof SafetensorsError ? e : new SafetensorsError(`cannot write: ${ioMessage(e)}`, path);
}

/** Streams tensors into a new safetensors file; nothing appears at `path` until `finish()`. */
export class SafetensorsWriter {
  private readonly pending: Set<string>;
  private done = false;

  private constructor(
    readonly path: string,
    private readonly tempPath: string,
    private readonly fh: FileHandle,
    private readonly layout: Layout,
  ) {
    this.pending = new Set(layout.order);
  }

  /** Creates the temporary file and writes the header for the given tensors. */
  static async create(
    path: string,
    specs: NamedTensors<TensorSpec>,
    metadata: Readonly<Record<string, string>> = {},
  ): Promise<SafetensorsWriter> {
    return SafetensorsWriter.startWith(path, planLayout(path, entriesOf(specs), metadata));
  }

  private static async startWith(path: string, layout: Layout): Promise<SafetensorsWriter> {
    const tempPath = tempPathFor(path);
    let fh: FileHandle;
    try {
      fh = await open(tempPath, "wx");
    } catch (e) {
      throw wrapIo(path, e);
    }
    const w = new SafetensorsWriter(path, tempPath, fh, layout);
    try {
      await w.writeAt(layout.head, 0);
    } catch (e) {
      await w.abort();
      throw wrapIo(path, e);
    }
    return w;
  }

  /** Names still to be written. */
  get remaining(): string[] {
    return this.layout.order.filter((n) => this.pending.has(n));
  }

  /** Writes one tensor's bytes (exactly its dtype size times its element count). */
  async write(name: string, data: Uint8Array | ArrayBufferView): Promise<void> {
    if (this.done) throw new SafetensorsError("cannot write: writer already finished or aborted", this.path);
    const slot = this.layout.slots.get(name);
    if (slot === undefined)
      throw new SafetensorsError(`cannot write: no tensor ${JSON.stringify(name)} was declared`, this.path);
    if (!this.pending.has(name))
      throw new SafetensorsError(`cannot write: tensor ${JSON.stringify(name)} written twice`, this.path);
    const bytes =
      data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    checkBytes(this.path, name, bytes, slot.byteLength);
    try {
      await this.writeAt(bytes, slot.at);
    } catch (e) {
      throw wrapIo(this.path, e);
    }
    this.pending.delete(name);
  }

  /** Checks every tensor was written, then syncs and renames the file into place. */
  async finish(): Promise<void> {
    if (this.done) throw new SafetensorsError("cannot write: writer already finished or aborted", this.path);
    if (this.pending.size > 0) {
      const missing = this.remaining;
      await this.abort();
      throw new SafetensorsError(`cannot write: tensors never written: ${missing.join(", ")}`, this.path);
    }
    try {
      await this.fh.sync();
      await this.fh.close();
      await rename(this.tempPath, this.path);
      this.done = true;
    } catch (e) {
      await this.abort();
      throw wrapIo(this.path, e);
    }
    fsyncDirSync(dirname(this.path));
  }

  /** Discards the temporary file; the target is left as it was. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.close().catch(() => {});
    await unlink(this.tempPath).catch(() => {});
  }

  private async writeAt(bytes: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      const len = Math.min(WRITE_CHUNK, bytes.byteLength - done);
      const { bytesWritten } = await this.fh.write(bytes, done, len, position + done);
      done += bytesWritten;
    }
  }
}

/** Writes `tensors` (and string `metadata`) to `path` atomically. */
export async function writeSafetensors(
  path: string,
  tensors: NamedTensors<TensorToWrite>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  const list = entriesOf(tensors);
  const layout = planLayout(path, list, metadata);
  for (const [name, t] of list) checkBytes(path, name, bytesOf(t), layout.slots.get(name)!.byteLength);
  const w = await SafetensorsWriter.create(path, tensors, metadata);
  try {
    for (const [name, t] of list) await w.write(name, bytesOf(t));
    await w.finish();
  } catch (e) {
    await w.abort();
    throw e;
  }
}

/** Synchronous `writeSafetensors`. */
export function writeSafetensorsSync(
  path: string,
  tensors: NamedTensors<TensorToWrite>,
  metadata: Readonly<Record<string, string>> = {},
): void {
  const list = entriesOf(tensors);
  const layout = planLayout(path, list, metadata);
  for (const [name, t] of list) checkBytes(path, name, bytesOf(t), layout.slots.get(name)!.byteLength);
  try {
    replaceFileSync(path, (fd) => {
      writeAllSync(fd, layout.head, 0);
      for (const [name, t] of list) writeAllSync(fd, bytesOf(t), layout.slots.get(name)!.at);
    });
  } catch (e) {
    throw wrapIo(path, e);
  }
}

function writeAllSync(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.byteLength) {
    const len = Math.min(WRITE_CHUNK, bytes.byteLength - done);
    done += writeSync(fd, bytes, done, len, position + done);
  }
}
