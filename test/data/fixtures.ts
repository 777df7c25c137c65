/** Builders for the data tests: R serialization bytes and zText modules, written by hand from the formats. */
import { deflateSync } from "node:zlib";

/** Writes R's XDR serialization by hand, item by item, as serialize.c lays it out. */
export class XdrWriter {
  private readonly parts: Buffer[] = [];
  int(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    this.parts.push(b);
    return this;
  }
  double(v: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    this.parts.push(b);
    return this;
  }
  raw(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  /** Header: "X\n", format version 3, writer R 4.2.0, minimal reader 3.5.0, native encoding. */
  header(): this {
    return this.raw(Buffer.from("X\n")).int(3).int(0x040200).int(0x030500).int(5).raw(Buffer.from("UTF-8"));
  }
  charsxp(s: string | null): this {
    if (s === null) return this.int(9).int(-1);
    const b = Buffer.from(s, "utf8");
    return this.int(9 | ((1 << 3) << 12))
      .int(b.length)
      .raw(b); // UTF8_MASK in the levels
  }
  strsxp(values: (string | null)[], attr = false): this {
    this.int(16 | (attr ? 1 << 9 : 0)).int(values.length);
    for (const v of values) this.charsxp(v);
    return this;
  }
  symbol(name: string): this {
    return this.int(1).charsxp(name);
  }
  /** Start of one tagged pairlist cell (attributes are written as a pairlist of these). */
  cell(): this {
    return this.int(2 | (1 << 10));
  }
  nil(): this {
    return this.int(254);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Builds a zText testament: slots grouped into zlib blocks, with .bzs/.bzv indexes (little-endian). */
export function buildTestament(blocks: string[][]): { bzs: Buffer; bzv: Buffer; bzz: Buffer } {
  const bzs: Buffer[] = [];
  const bzv: Buffer[] = [];
  const bzz: Buffer[] = [];
  let offset = 0;
  blocks.forEach((slots, blockNo) => {
    const raw = Buffer.from(slots.join(""), "utf8");
    const z = deflateSync(raw);
    const b = Buffer.alloc(12);
    b.writeUInt32LE(offset, 0);
    b.writeUInt32LE(z.length, 4);
    b.writeUInt32LE(raw.length, 8);
    bzs.push(b);
    bzz.push(z);
    offset += z.length;
    let inBlock = 0;
    for (const s of slots) {
      const v = Buffer.alloc(10);
      const size = Buffer.byteLength(s, "utf8");
      v.writeUInt32LE(blockNo, 0);
      v.writeUInt32LE(inBlock, 4);
      v.writeUInt16LE(size, 8);
      bzv.push(v);
      inBlock += size;
    }
  });
  return { bzs: Buffer.concat(bzs), bzv: Buffer.concat(bzv), bzz: Buffer.concat(bzz) };
}
