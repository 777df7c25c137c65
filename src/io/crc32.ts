/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the checksum zip archives store per entry.
 * Uses `zlib.crc32` where Node has it (20.15+, 22.2+); otherwise the table-driven definition below.
 */

import * as zlib from "node:zlib";

let table: Uint32Array | undefined;

function makeTable(): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

/** The portable definition; `crc32` is this, or zlib's implementation of the same function. */
export function crc32Portable(data: Uint8Array, previous = 0): number {
  table ??= makeTable();
  let c = ~previous >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const native: ((data: Uint8Array, value?: number) => number) | undefined =
  typeof zlib.crc32 === "function" ? zlib.crc32 : undefined;

/** CRC-32 of `data`, continuing from `previous` (the CRC of the bytes before it). */
export function crc32(data: Uint8Array, previous = 0): number {
  return native === undefined ? crc32Portable(data, previous) : native(data, previous) >>> 0;
}
