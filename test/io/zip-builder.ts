/**
 * Test-only writers for .npy arrays and zip archives, with knobs to break them. They let the tests
 * make archives numpy never would (ZIP64 records, wrong CRCs, lying sizes) without Python.
 */

import { deflateRawSync } from "node:zlib";
import { crc32Portable } from "../../src/io/crc32.js";

export interface NpyOptions {
  readonly version?: 1 | 2 | 3;
  readonly fortran?: boolean | string;
  /** Replaces the whole dict literal. */
  readonly dict?: string;
}

/** A .npy file: header dict padded with spaces and a newline to a multiple of 64 bytes. */
export function npy(
  descr: string,
  shape: readonly number[],
  data: Uint8Array,
  opts: NpyOptions = {},
): Uint8Array {
  const version = opts.version ?? 1;
  const fortran =
    opts.fortran === undefined
      ? "False"
      : opts.fortran === true
        ? "True"
        : opts.fortran === false
          ? "False"
          : opts.fortran;
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let dict = opts.dict ?? `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shapeText}, }`;
  const pre = version === 1 ? 10 : 12;
  const enc = Buffer.from(dict, version === 3 ? "utf8" : "latin1");
  const total = Math.ceil((pre + enc.byteLength + 1) / 64) * 64;
  dict = `${dict}${" ".repeat(total - pre - enc.byteLength - 1)}\n`;
  const header = Buffer.from(dict, version === 3 ? "utf8" : "latin1");
  const out = new Uint8Array(pre + header.byteLength + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const dv = new DataView(out.buffer);
  if (version === 1) dv.setUint16(8, header.byteLength, true);
  else dv.setUint32(8, header.byteLength, true);
  out.set(header, pre);
  out.set(data, pre + header.byteLength);
  return out;
}

export interface ZipEntrySpec {
  readonly name: string;
  readonly data: Uint8Array;
  readonly method?: 0 | 8;
  /** Overrides written into the central directory. */
  readonly cd?: {
    crc?: number;
    method?: number;
    flags?: number;
    compressed?: number;
    uncompressed?: number;
    offset?: number;
    disk?: number;
    nameBytes?: Uint8Array;
    /** Write 0xFFFFFFFF for sizes and offset and put them in a ZIP64 extra field. */
    zip64?: boolean;
    extra?: Uint8Array;
  };
  /** Overrides written into the local header. */
  readonly local?: { signature?: number; method?: number; nameBytes?: Uint8Array };
  /** Replaces the stored (possibly compressed) bytes. */
  readonly payload?: Uint8Array;
}

export interface ZipOptions {
  readonly comment?: Uint8Array;
  /** Claimed comment length (default: the real one). */
  readonly commentLength?: number;
  readonly zip64Eocd?: boolean;
  readonly eocd?: { count?: number; cdSize?: number; cdOffset?: number; disk?: number };
  readonly eocd64Signature?: number;
}

export function zip(entries: readonly ZipEntrySpec[], opts: ZipOptions = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const method = e.method ?? 0;
    const payload = e.payload ?? (method === 8 ? deflateRawSync(e.data) : e.data);
    const crc = crc32Portable(e.data);
    const name = Buffer.from(e.name, "utf8");
    const localName = e.local?.nameBytes ?? name;
    const local = Buffer.alloc(30 + localName.byteLength);
    local.writeUInt32LE(e.local?.signature ?? 0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(e.local?.method ?? method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(payload.byteLength, 18);
    local.writeUInt32LE(e.data.byteLength, 22);
    local.writeUInt16LE(localName.byteLength, 26);
    local.set(localName, 30);
    parts.push(local, payload);

    const cd = e.cd ?? {};
    const cdName = cd.nameBytes ?? name;
    let extra = cd.extra ?? new Uint8Array(0);
    if (cd.zip64 && cd.extra === undefined) {
      const x = Buffer.alloc(4 + 24);
      x.writeUInt16LE(1, 0);
      x.writeUInt16LE(24, 2);
      x.writeBigUInt64LE(BigInt(cd.uncompressed ?? e.data.byteLength), 4);
      x.writeBigUInt64LE(BigInt(cd.compressed ?? payload.byteLength), 12);
      x.writeBigUInt64LE(BigInt(cd.offset ?? offset), 20);
      extra = x;
    }
    const h = Buffer.alloc(46 + cdName.byteLength + extra.byteLength);
    h.writeUInt32LE(0x02014b50, 0);
    h.writeUInt16LE(20, 4);
    h.writeUInt16LE(20, 6);
    h.writeUInt16LE(cd.flags ?? 0, 8);
    h.writeUInt16LE(cd.method ?? method, 10);
    h.writeUInt32LE(cd.crc ?? crc, 16);
    h.writeUInt32LE(cd.zip64 ? 0xffffffff : (cd.compressed ?? payload.byteLength), 20);
    h.writeUInt32LE(cd.zip64 ? 0xffffffff : (cd.uncompressed ?? e.data.byteLength), 24);
    h.writeUInt16LE(cdName.byteLength, 28);
    h.writeUInt16LE(extra.byteLength, 30);
    h.writeUInt16LE(cd.disk ?? 0, 34);
    h.writeUInt32LE(cd.zip64 ? 0xffffffff : (cd.offset ?? offset), 42);
    h.set(cdName, 46);
    h.set(extra, 46 + cdName.byteLength);
    central.push(h);
    offset += local.byteLength + payload.byteLength;
  }
  const cdOffset = offset;
  const cdSize = central.reduce((n, c) => n + c.byteLength, 0);
  const tail: Uint8Array[] = [];
  if (opts.zip64Eocd) {
    const r = Buffer.alloc(56);
    r.writeUInt32LE(opts.eocd64Signature ?? 0x06064b50, 0);
    r.writeBigUInt64LE(44n, 4);
    r.writeBigUInt64LE(BigInt(opts.eocd?.count ?? entries.length), 24);
    r.writeBigUInt64LE(BigInt(opts.eocd?.count ?? entries.length), 32);
    r.writeBigUInt64LE(BigInt(opts.eocd?.cdSize ?? cdSize), 40);
    r.writeBigUInt64LE(BigInt(opts.eocd?.cdOffset ?? cdOffset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(cdOffset + cdSize), 8);
    loc.writeUInt32LE(1, 16);
    tail.push(r, loc);
  }
  const comment = opts.comment ?? new Uint8Array(0);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(opts.eocd?.disk ?? 0, 4);
  const z64 = opts.zip64Eocd === true;
  eocd.writeUInt16LE(z64 ? 0xffff : (opts.eocd?.count ?? entries.length), 8);
  eocd.writeUInt16LE(z64 ? 0xffff : (opts.eocd?.count ?? entries.length), 10);
  eocd.writeUInt32LE(z64 ? 0xffffffff : (opts.eocd?.cdSize ?? cdSize), 12);
  eocd.writeUInt32LE(z64 ? 0xffffffff : (opts.eocd?.cdOffset ?? cdOffset), 16);
  eocd.writeUInt16LE(opts.commentLength ?? comment.byteLength, 20);
  return Buffer.concat([...parts, ...central, ...tail, eocd, comment]);
}
