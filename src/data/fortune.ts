/**
 * Reads fortune(6) cookie files: entries separated by a line holding only the delimiter (`%`),
 * with a companion `.dat` index written by strfile(8). Only the `.dat` header is read, for its
 * flags (rot13-encoded sets are skipped) and delimiter; the layout is strfile.h's
 * `struct strfile`: five big-endian uint32 (version, count, longest, shortest, flags), then the
 * delimiter byte. Flag 0x4 (STR_ROTATED) marks a rot13 file.
 */
import { DataError } from "../core/errors.js";

export interface StrfileHeader {
  readonly version: number;
  readonly count: number;
  readonly rotated: boolean;
  readonly delimiter: string;
}

const STR_ROTATED = 0x4;

export function readStrfileHeader(dat: Uint8Array, subject: string): StrfileHeader {
  if (dat.length < 21) throw new DataError(`strfile index too short (${dat.length} bytes)`, subject);
  const view = new DataView(dat.buffer, dat.byteOffset, dat.byteLength);
  const version = view.getUint32(0, false);
  if (version < 1 || version > 2) throw new DataError(`unknown strfile version ${version}`, subject);
  return {
    version,
    count: view.getUint32(4, false),
    rotated: (view.getUint32(16, false) & STR_ROTATED) !== 0,
    delimiter: String.fromCharCode(dat[20]!),
  };
}

/** The entries of a cookie file, in file order, without their delimiter lines; empty ones dropped. */
export function splitFortunes(text: string, delimiter = "%"): string[] {
  const out: string[] = [];
  let current: string[] = [];
  for (const line of text.replace(/\r\n?/g, "\n").split("\n")) {
    if (line === delimiter) {
      out.push(current.join("\n"));
      current = [];
    } else current.push(line);
  }
  out.push(current.join("\n"));
  return out.filter((e) => e.trim() !== "");
}

/** Groups entries, in order, into chunks of about `targetChars` characters, separated by blank lines. */
export function chunkEntries(entries: readonly string[], targetChars: number): string[] {
  const chunks: string[] = [];
  let current: string[] = [];
  let size = 0;
  for (const e of entries) {
    current.push(e.trim());
    size += e.length + 2;
    if (size >= targetChars) {
      chunks.push(current.join("\n\n"));
      current = [];
      size = 0;
    }
  }
  if (current.length > 0) chunks.push(current.join("\n\n"));
  return chunks;
}
