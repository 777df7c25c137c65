/**
 * A minimal, validating zip reader for npz archives (PKWARE APPNOTE.TXT 6.3: end of central
 * directory, ZIP64 end of central directory and its locator, central directory headers with the
 * ZIP64 extended-information extra field, local file headers).
 *
 * Opening reads only the end records and the central directory; an entry's bytes are read on
 * demand with positioned reads. Supported: stored (method 0) and deflated (method 8) entries on a
 * single disk, unencrypted. Every size and offset is bounds-checked against the file before use;
 * a deflated entry's declared size is checked against the most deflate can expand (1032:1) before
 * inflating, inflating stops at that size, and the CRC-32 of every entry read is verified.
 * Everything wrong is a SafetensorsError naming the archive (the io domain's error class).
 */

import { closeSync, fstatSync, openSync } from "node:fs";
import { inflateRawSync } from "node:zlib";
import { SafetensorsError } from "../core/errors.js";
import { crc32 } from "./crc32.js";
import { ioMessage, readFullySync } from "./positioned-read.js";

export interface ZipEntry {
  readonly name: string;
  /** 0 stored, 8 deflated. */
  readonly method: 0 | 8;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
}

const EOCD_SIG = 0x06054b50;
const EOCD64_LOCATOR_SIG = 0x07064b50;
const EOCD64_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
/** Deflate's best ratio is about 1032:1; anything claiming more is corrupt (or a bomb). */
const MAX_DEFLATE_RATIO = 1032;

export class ZipReader {
  private fd: number;
  private readonly byName: Map<string, ZipEntry>;

  private constructor(
    readonly path: string,
    fd: number,
    readonly entries: readonly ZipEntry[],
    /** Offset of the central directory: entry data must end before it. */
    private readonly cdStart: number,
  ) {
    this.fd = fd;
    this.byName = new Map(entries.map((e) => [e.name, e]));
  }

  static open(path: string): ZipReader {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw new SafetensorsError(`cannot open: ${ioMessage(e)}`, path);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new SafetensorsError("not a regular file", path);
      const { entries, cdStart } = readDirectory(fd, st.size, path);
      return new ZipReader(path, fd, entries, cdStart);
    } catch (e) {
      closeSync(fd);
      if (e instanceof SafetensorsError) throw e;
      throw new SafetensorsError(`cannot read: ${ioMessage(e)}`, path);
    }
  }

  entry(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /** Reads, inflates and CRC-checks one entry; the result is a fresh buffer of exactly its size. */
  read(entry: ZipEntry): Uint8Array {
    if (this.fd < 0) throw new SafetensorsError("archive is closed", this.path);
    const fail = (msg: string): never => {
      throw new SafetensorsError(`entry ${JSON.stringify(entry.name)}: ${msg}`, this.path);
    };
    const local = new Uint8Array(30);
    if (entry.localHeaderOffset + 30 > this.cdStart) fail("local header lies outside the archive's data");
    readFullySync(this.fd, local, entry.localHeaderOffset, this.path);
    const lv = view(local);
    if (lv.getUint32(0, true) !== LOCAL_SIG) fail("bad local header signature");
    if (lv.getUint16(8, true) !== entry.method)
      fail("local header's compression method differs from the directory's");
    const nameLen = lv.getUint16(26, true);
    const extraLen = lv.getUint16(28, true);
    const dataStart = entry.localHeaderOffset + 30 + nameLen + extraLen;
    if (dataStart + entry.compressedSize > this.cdStart) fail("data runs into the central directory");
    const localName = new Uint8Array(nameLen);
    readFullySync(this.fd, localName, entry.localHeaderOffset + 30, this.path);
    if (!Buffer.from(entry.name, "utf8").equals(localName)) {
      fail("local header names a different file");
    }
    const stored = new Uint8Array(entry.compressedSize);
    readFullySync(this.fd, stored, dataStart, this.path);
    let data: Uint8Array;
    if (entry.method === 0) {
      data = stored;
    } else {
      try {
        data = inflateRawSync(stored, { maxOutputLength: Math.max(1, entry.uncompressedSize) });
      } catch (e) {
        const why =
          e instanceof RangeError
            ? `inflates past its declared ${entry.uncompressedSize} bytes`
            : `corrupt deflate data (${ioMessage(e)})`;
        return fail(why);
      }
      if (data.byteLength !== entry.uncompressedSize) {
        fail(`inflates to ${data.byteLength} bytes, not the declared ${entry.uncompressedSize}`);
      }
    }
    const crc = crc32(data);
    if (crc !== entry.crc32) {
      fail(`CRC-32 mismatch (stored 0x${hex(entry.crc32)}, computed 0x${hex(crc)})`);
    }
    return data;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function safe(v: bigint, what: string, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new SafetensorsError(`${what} ${v} is too large`, path);
  return Number(v);
}

function readDirectory(fd: number, size: number, path: string): { entries: ZipEntry[]; cdStart: number } {
  const fail = (msg: string): never => {
    throw new SafetensorsError(msg, path);
  };
  if (size < EOCD_SIZE) fail(`file is ${size} bytes, too short for a zip archive`);
  const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT);
  const tail = new Uint8Array(tailLen);
  readFullySync(fd, tail, size - tailLen, path);
  const tv = view(tail);
  // The record is the last signature whose comment ends exactly at the end of the file.
  let at = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (tv.getUint32(i, true) === EOCD_SIG && i + EOCD_SIZE + tv.getUint16(i + 20, true) === tailLen) {
      at = i;
      break;
    }
  }
  if (at < 0) fail("not a zip archive (no end-of-central-directory record)");
  const eocdOffset = size - tailLen + at;
  if (tv.getUint16(at + 4, true) !== 0 || tv.getUint16(at + 6, true) !== 0)
    fail("multi-disk zip archives are not supported");
  let count = tv.getUint16(at + 10, true);
  let cdSize = tv.getUint32(at + 12, true);
  let cdStart = tv.getUint32(at + 16, true);
  let cdLimit = eocdOffset;
  if (count === 0xffff || cdSize === 0xffffffff || cdStart === 0xffffffff) {
    if (at < 20 || tv.getUint32(at - 20, true) !== EOCD64_LOCATOR_SIG) {
      fail("end-of-central-directory record needs ZIP64 values but has no ZIP64 locator");
    }
    const rec64 = safe(tv.getBigUint64(at - 20 + 8, true), "ZIP64 record offset", path);
    if (rec64 + 56 > eocdOffset - 20) fail("ZIP64 end-of-central-directory record lies outside the file");
    const r = new Uint8Array(56);
    readFullySync(fd, r, rec64, path);
    const rv = view(r);
    if (rv.getUint32(0, true) !== EOCD64_SIG) fail("bad ZIP64 end-of-central-directory signature");
    count = safe(rv.getBigUint64(32, true), "entry count", path);
    cdSize = safe(rv.getBigUint64(40, true), "central directory size", path);
    cdStart = safe(rv.getBigUint64(48, true), "central directory offset", path);
    cdLimit = rec64;
  }
  if (cdStart + cdSize > cdLimit) {
    fail(`central directory [${cdStart}, ${cdStart + cdSize}) runs past its end record at ${cdLimit}`);
  }
  if (count * 46 > cdSize) fail(`${count} entries cannot fit in a ${cdSize}-byte central directory`);
  const cd = new Uint8Array(cdSize);
  readFullySync(fd, cd, cdStart, path);
  const cv = view(cd);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const entries: ZipEntry[] = [];
  const names = new Set<string>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    const where = `central directory entry ${i}`;
    if (p + 46 > cdSize) fail(`${where} runs past the central directory`);
    if (cv.getUint32(p, true) !== CENTRAL_SIG) fail(`${where}: bad signature`);
    const flags = cv.getUint16(p + 8, true);
    const method = cv.getUint16(p + 10, true);
    const crc = cv.getUint32(p + 16, true);
    let compressed = cv.getUint32(p + 20, true);
    let uncompressed = cv.getUint32(p + 24, true);
    const nameLen = cv.getUint16(p + 28, true);
    const extraLen = cv.getUint16(p + 30, true);
    const commentLen = cv.getUint16(p + 32, true);
    const disk = cv.getUint16(p + 34, true);
    let offset = cv.getUint32(p + 42, true);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cdSize) fail(`${where} runs past the central directory`);
    let name: string;
    try {
      name = decoder.decode(cd.subarray(p + 46, p + 46 + nameLen));
    } catch {
      return fail(`${where}: file name is not valid UTF-8`);
    }
    const entryWhere = `entry ${JSON.stringify(name)}`;
    if (flags & 1) fail(`${entryWhere} is encrypted`);
    if (method !== 0 && method !== 8) {
      return fail(`${entryWhere} uses compression method ${method} (only stored and deflate are supported)`);
    }
    // ZIP64 extended information: only the fields whose 32-bit values are saturated, in this order.
    if (
      uncompressed === 0xffffffff ||
      compressed === 0xffffffff ||
      offset === 0xffffffff ||
      disk === 0xffff
    ) {
      let q = p + 46 + nameLen;
      const extraEnd = q + extraLen;
      let found = false;
      while (q + 4 <= extraEnd) {
        const id = cv.getUint16(q, true);
        const len = cv.getUint16(q + 2, true);
        if (q + 4 + len > extraEnd) fail(`${entryWhere}: extra field runs past its end`);
        if (id === 0x0001) {
          let r = q + 4;
          const next = (what: string): number => {
            if (r + 8 > q + 4 + len) fail(`${entryWhere}: ZIP64 extra field too short for the ${what}`);
            const v = safe(cv.getBigUint64(r, true), `${entryWhere} ${what}`, path);
            r += 8;
            return v;
          };
          if (uncompressed === 0xffffffff) uncompressed = next("uncompressed size");
          if (compressed === 0xffffffff) compressed = next("compressed size");
          if (offset === 0xffffffff) offset = next("local header offset");
          found = true;
          break;
        }
        q += 4 + len;
      }
      if (!found) fail(`${entryWhere}: 32-bit fields are saturated but there is no ZIP64 extra field`);
    }
    if (disk !== 0 && disk !== 0xffff) fail(`${entryWhere} is on another disk`);
    if (offset + 30 + compressed > cdStart) {
      fail(
        `${entryWhere}: data [${offset}, ${offset + 30 + compressed}) runs into the central directory at ${cdStart}`,
      );
    }
    if (method === 0 && compressed !== uncompressed) {
      fail(`${entryWhere} is stored but its sizes differ (${compressed} vs ${uncompressed})`);
    }
    if (method === 8 && uncompressed > compressed * MAX_DEFLATE_RATIO + 64) {
      fail(
        `${entryWhere} claims ${uncompressed} bytes from ${compressed} compressed bytes, more than deflate can produce`,
      );
    }
    if (names.has(name)) fail(`duplicate entry ${JSON.stringify(name)}`);
    names.add(name);
    entries.push({
      name,
      method,
      compressedSize: compressed,
      uncompressedSize: uncompressed,
      crc32: crc,
      localHeaderOffset: offset,
    });
    p = end;
  }
  return { entries, cdStart };
}
