/**
 * Reads SWORD "zText" Bible modules: per testament (`ot`, `nt`) three files,
 *  - `.bzs` block index: 12-byte records, uint32 LE (offset in `.bzz`, compressed size, raw size);
 *  - `.bzv` verse index: 10-byte records, uint32 LE block number, uint32 LE offset in the raw
 *    block, uint16 LE size; one record per index slot of the versification, in canonical order
 *    (module and testament headings, then per book an intro slot and per chapter a heading slot
 *    (verse 0) followed by the verses);
 *  - `.bzz` the blocks, each a zlib stream when the module's `CompressType=ZIP`.
 * Format facts from the SWORD project's `zverse.cpp` / `zstr.cpp` (reader) and the module
 * configuration spec at crosswire.org/wiki/DevTools:conf_Files.
 */
import { inflateSync } from "node:zlib";
import { DataError } from "../core/errors.js";

export interface ZTextBlock {
  readonly offset: number;
  readonly compressedSize: number;
  readonly size: number;
}

export interface ZTextVerse {
  readonly block: number;
  readonly offset: number;
  readonly size: number;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function readBlockIndex(bzs: Uint8Array, subject: string): ZTextBlock[] {
  if (bzs.length % 12 !== 0)
    throw new DataError(`block index size ${bzs.length} is not a multiple of 12`, subject);
  const v = view(bzs);
  const out: ZTextBlock[] = [];
  for (let i = 0; i < bzs.length; i += 12)
    out.push({
      offset: v.getUint32(i, true),
      compressedSize: v.getUint32(i + 4, true),
      size: v.getUint32(i + 8, true),
    });
  return out;
}

export function readVerseIndex(bzv: Uint8Array, subject: string): ZTextVerse[] {
  if (bzv.length % 10 !== 0)
    throw new DataError(`verse index size ${bzv.length} is not a multiple of 10`, subject);
  const v = view(bzv);
  const out: ZTextVerse[] = [];
  for (let i = 0; i < bzv.length; i += 10)
    out.push({
      block: v.getUint32(i, true),
      offset: v.getUint32(i + 4, true),
      size: v.getUint16(i + 8, true),
    });
  return out;
}

/** One testament of a zText module; decompresses each block once, on first use. */
export class ZTextTestament {
  private readonly blocks: ZTextBlock[];
  readonly verses: ZTextVerse[];
  private readonly cache = new Map<number, Uint8Array>();
  private readonly decoder = new TextDecoder("utf-8");

  constructor(
    bzs: Uint8Array,
    bzv: Uint8Array,
    private readonly bzz: Uint8Array,
    private readonly subject: string,
  ) {
    this.blocks = readBlockIndex(bzs, subject);
    this.verses = readVerseIndex(bzv, subject);
  }

  private block(n: number): Uint8Array {
    const hit = this.cache.get(n);
    if (hit) return hit;
    const b = this.blocks[n];
    if (!b)
      throw new DataError(`verse index points at block ${n}, module has ${this.blocks.length}`, this.subject);
    if (b.offset + b.compressedSize > this.bzz.length)
      throw new DataError(`block ${n} runs past end of .bzz`, this.subject);
    let raw: Uint8Array;
    try {
      raw = inflateSync(this.bzz.subarray(b.offset, b.offset + b.compressedSize));
    } catch (e) {
      throw new DataError(`block ${n}: zlib: ${(e as Error).message}`, this.subject);
    }
    if (raw.length !== b.size)
      throw new DataError(`block ${n} inflated to ${raw.length} bytes, index says ${b.size}`, this.subject);
    this.cache.clear(); // blocks are read in order; keep only the current one
    this.cache.set(n, raw);
    return raw;
  }

  /** The raw markup of index slot `i` ("" for an empty slot). */
  entry(i: number): string {
    const v = this.verses[i];
    if (!v) throw new DataError(`verse slot ${i} out of range`, this.subject);
    if (v.size === 0) return "";
    const b = this.block(v.block);
    if (v.offset + v.size > b.length)
      throw new DataError(`verse slot ${i} runs past its block`, this.subject);
    return this.decoder.decode(b.subarray(v.offset, v.offset + v.size));
  }

  /** Every slot's markup, in index order. */
  *entries(): Generator<string> {
    for (let i = 0; i < this.verses.length; i++) yield this.entry(i);
  }
}

/** A SWORD module `.conf` file: `[ModuleName]` then `Key=Value` lines (keys may repeat). */
export interface SwordConf {
  readonly module: string;
  readonly values: ReadonlyMap<string, readonly string[]>;
}

export function parseSwordConf(text: string, subject: string): SwordConf {
  let module = "";
  const values = new Map<string, string[]>();
  for (const raw of text.replace(/\r\n?/g, "\n").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      module = section[1]!;
      continue;
    }
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    const list = values.get(key) ?? [];
    list.push(line.slice(eq + 1).trim());
    values.set(key, list);
  }
  if (module === "") throw new DataError("no [ModuleName] section in module .conf", subject);
  return { module, values };
}

/** The single value of a conf key, or `fallback` (the spec's default) when absent. */
export function confValue(conf: SwordConf, key: string, fallback: string): string {
  return conf.values.get(key)?.[0] ?? fallback;
}
