/**
 * Reading `.npz` archives (numpy `savez` / `savez_compressed`: a zip of `.npy` arrays), as used by
 * Gemma Scope 1's `params.npz`. Opening reads only the zip directory (`zip.ts`); each array is
 * read, CRC-checked and decoded (`npy.ts`) on demand. Names are the entry names without `.npy`,
 * as `numpy.load(...).files` gives them. Reads are synchronous.
 */

import type { Backend } from "../core/backend.js";
import { SafetensorsError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import { decodeNpy } from "./npy.js";
import { toTyped } from "./safetensors.js";
import type { RawTensor, TypedTensor } from "./safetensors-dtype.js";
import { rawToTensor } from "./to-tensor.js";
import { type ZipEntry, ZipReader } from "./zip.js";

export class NpzFile {
  private readonly byName: Map<string, ZipEntry>;

  private constructor(private readonly zip: ZipReader) {
    this.byName = new Map(
      zip.entries.map((e) => [e.name.endsWith(".npy") ? e.name.slice(0, -4) : e.name, e]),
    );
    if (this.byName.size !== zip.entries.length) {
      zip.close();
      throw new SafetensorsError("archive has both NAME and NAME.npy entries", zip.path);
    }
  }

  static open(path: string): NpzFile {
    return new NpzFile(ZipReader.open(path));
  }

  get path(): string {
    return this.zip.path;
  }

  /** Array names in archive order. */
  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** One array as row-major little-endian bytes (Fortran-order and big-endian arrays converted). */
  readRawSync(name: string): RawTensor {
    const e = this.byName.get(name);
    if (e === undefined) throw new SafetensorsError(`no array named ${JSON.stringify(name)}`, this.path);
    return decodeNpy(this.zip.read(e), this.path, `entry ${JSON.stringify(e.name)}`);
  }

  readTypedSync(name: string): TypedTensor {
    return toTyped(this.readRawSync(name));
  }

  /** One array as a core Tensor (conversions as for safetensors, see `to-tensor.ts`). */
  readTensorSync(name: string, backend: Backend): Tensor {
    return rawToTensor(this.readRawSync(name), backend, this.path, name);
  }

  close(): void {
    this.zip.close();
  }
}

/** Reads every array of an `.npz` archive. */
export function readNpz(path: string): Map<string, TypedTensor> {
  const f = NpzFile.open(path);
  try {
    return new Map(f.names().map((n) => [n, f.readTypedSync(n)]));
  } finally {
    f.close();
  }
}
