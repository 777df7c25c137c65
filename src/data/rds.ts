/**
 * A reader for R's serialization format, enough to pull text out of R data packages.
 *
 * Follows "R Internals", section 1.8 (Serialization Formats), and R's `src/main/serialize.c`:
 * the XDR (big-endian) binary format, versions 2 and 3, with the item kinds that data files use:
 * NULL, symbols, pairlists, character/logical/integer/double/complex/raw vectors, lists,
 * attributes (so data frames and factors), references, environments (kept opaque) and the ALTREP
 * compact sequences and wrappers that version 3 writes. Also reads `.rds` files (gzip or plain) and
 * lazy-load databases (`.rdx` index + `.rdb` blobs, see `lazyLoadDBinsertValue` and
 * `R_decompress1/2/3` in `src/main/serialize.c`). bzip2 and xz blobs are reported, not decoded:
 * the packages this project reads use zlib/gzip only, and Node has no built-in bzip2/xz codec.
 */
import { gunzipSync, inflateSync } from "node:zlib";
import { DataError } from "../core/errors.js";

/** Attributes of an R object, in the order R stored them (names, class, dim, row.names, levels, ...). */
export type RAttributes = ReadonlyMap<string, RValue>;

/** A decoded R object. Vector kinds keep R's NA as `null` (strings, logicals) or as R's NA bit pattern. */
export type RValue =
  | { readonly kind: "null" }
  | { readonly kind: "symbol"; readonly name: string }
  | {
      readonly kind: "character";
      readonly values: readonly (string | null)[];
      readonly attributes: RAttributes;
    }
  | {
      readonly kind: "logical";
      readonly values: readonly (boolean | null)[];
      readonly attributes: RAttributes;
    }
  | { readonly kind: "integer"; readonly values: Int32Array; readonly attributes: RAttributes }
  | { readonly kind: "double"; readonly values: Float64Array; readonly attributes: RAttributes }
  | { readonly kind: "complex"; readonly values: Float64Array; readonly attributes: RAttributes }
  | { readonly kind: "raw"; readonly values: Uint8Array; readonly attributes: RAttributes }
  | { readonly kind: "list"; readonly values: readonly RValue[]; readonly attributes: RAttributes }
  | {
      readonly kind: "pairlist";
      readonly entries: readonly RPairlistEntry[];
      readonly attributes: RAttributes;
    }
  /** Environments, closures, language objects, external pointers: read past, not interpreted. */
  | { readonly kind: "opaque"; readonly sexpType: number };

export interface RPairlistEntry {
  /** The entry's tag (its name), or null when untagged. */
  readonly tag: string | null;
  readonly value: RValue;
}

const NO_ATTRIBUTES: RAttributes = new Map();
const R_NA_INT = -2147483648;

// SEXP type codes (Rinternals.h) and the pseudo-types of serialize.c.
const T = {
  NIL: 0,
  SYM: 1,
  LIST: 2,
  CLO: 3,
  ENV: 4,
  PROM: 5,
  LANG: 6,
  SPECIAL: 7,
  BUILTIN: 8,
  CHAR: 9,
  LGL: 10,
  INT: 13,
  REAL: 14,
  CPLX: 15,
  STR: 16,
  DOT: 17,
  VEC: 19,
  EXPR: 20,
  BCODE: 21,
  EXTPTR: 22,
  WEAKREF: 23,
  RAW: 24,
  S4: 25,
  ALTREP: 238,
  ATTRLIST: 239,
  ATTRLANG: 240,
  BASEENV: 241,
  EMPTYENV: 242,
  BCREPREF: 243,
  BCREPDEF: 244,
  GENERICREF: 245,
  CLASSREF: 246,
  PERSIST: 247,
  PACKAGE: 248,
  NAMESPACE: 249,
  BASENAMESPACE: 250,
  MISSINGARG: 251,
  UNBOUNDVALUE: 252,
  GLOBALENV: 253,
  NILVALUE: 254,
  REF: 255,
} as const;

const HAS_ATTR = 1 << 9;
const HAS_TAG = 1 << 10;
const LATIN1_MASK = 1 << 2;
const BYTES_MASK = 1 << 1;

class XdrReader {
  private pos = 0;
  private readonly view: DataView;
  readonly refs: RValue[] = [];

  constructor(
    private readonly bytes: Uint8Array,
    private readonly subject: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(message: string): never {
    throw new DataError(`R serialization: ${message} (at byte ${this.pos})`, this.subject);
  }

  need(n: number): void {
    if (this.pos + n > this.bytes.length) this.fail(`truncated: need ${n} more bytes`);
  }

  int(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos, false);
    this.pos += 4;
    return v;
  }

  double(): number {
    this.need(8);
    const v = this.view.getFloat64(this.pos, false);
    this.pos += 8;
    return v;
  }

  take(n: number): Uint8Array {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Steps back over the int just read. */
  unread4(): void {
    this.pos -= 4;
  }

  length(): number {
    const n = this.int();
    if (n !== -1) {
      if (n < 0) this.fail(`negative length ${n}`);
      return n;
    }
    const hi = this.int();
    const lo = this.int() >>> 0;
    const len = hi * 2 ** 32 + lo;
    if (len > this.bytes.length) this.fail(`long vector length ${len} exceeds the data`);
    return len;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: false });
const latin1 = new TextDecoder("latin1");

function readCharsxpBody(r: XdrReader, levels: number): string | null {
  const n = r.int();
  if (n === -1) return null;
  if (n < 0) r.fail(`bad string length ${n}`);
  const raw = r.take(n);
  return levels & (LATIN1_MASK | BYTES_MASK) ? latin1.decode(raw) : utf8.decode(raw);
}

function attributesFrom(v: RValue): RAttributes {
  if (v.kind === "null") return NO_ATTRIBUTES;
  if (v.kind !== "pairlist") return NO_ATTRIBUTES;
  const m = new Map<string, RValue>();
  for (const e of v.entries) if (e.tag !== null) m.set(e.tag, e.value);
  return m;
}

function symbolName(v: RValue): string | null {
  if (v.kind === "symbol") return v.name;
  if (v.kind === "character" && v.values.length === 1) return v.values[0] ?? null;
  return null;
}

function readItem(r: XdrReader): RValue {
  const flags = r.int();
  const type = flags & 0xff;
  const levels = flags >> 12;
  const hasAttr = (flags & HAS_ATTR) !== 0;
  const hasTag = (flags & HAS_TAG) !== 0;

  switch (type) {
    case T.NILVALUE:
      return { kind: "null" };
    case T.EMPTYENV:
    case T.BASEENV:
    case T.GLOBALENV:
    case T.UNBOUNDVALUE:
    case T.MISSINGARG:
    case T.BASENAMESPACE:
      return { kind: "opaque", sexpType: type };
    case T.REF: {
      let index = flags >> 8;
      if (index === 0) index = r.int();
      const v = r.refs[index - 1];
      if (v === undefined) r.fail(`reference ${index} to an object not yet read`);
      return v;
    }
    case T.PERSIST: {
      readItem(r); // the persistent name strings; the object itself is outside this stream
      const v: RValue = { kind: "opaque", sexpType: type };
      r.refs.push(v);
      return v;
    }
    case T.SYM: {
      const name = readItem(r);
      const v: RValue = { kind: "symbol", name: name.kind === "character" ? (name.values[0] ?? "") : "" };
      r.refs.push(v);
      return v;
    }
    case T.PACKAGE:
    case T.NAMESPACE: {
      // A STRSXP of name/version info follows, written as a full item after a zero int.
      r.int();
      const n = r.int();
      for (let i = 0; i < n; i++) readItem(r);
      const v: RValue = { kind: "opaque", sexpType: type };
      r.refs.push(v);
      return v;
    }
    case T.ENV: {
      const v: RValue = { kind: "opaque", sexpType: type };
      r.refs.push(v);
      r.int(); // locked
      readItem(r); // enclosure
      readItem(r); // frame
      readItem(r); // hash table
      readItem(r); // attributes
      return v;
    }
    case T.LIST:
    case T.LANG:
    case T.CLO:
    case T.PROM:
    case T.DOT:
    case T.ATTRLIST:
    case T.ATTRLANG:
      return readPairlist(r, type, hasAttr, hasTag);
    case T.CHAR: {
      const s = readCharsxpBody(r, levels);
      return { kind: "character", values: [s], attributes: NO_ATTRIBUTES };
    }
    case T.SPECIAL:
    case T.BUILTIN: {
      const n = r.int();
      r.take(n);
      return { kind: "opaque", sexpType: type };
    }
    case T.EXTPTR: {
      const v: RValue = { kind: "opaque", sexpType: type };
      r.refs.push(v);
      readItem(r); // protected value
      readItem(r); // tag
      if (hasAttr) readItem(r);
      return v;
    }
    case T.WEAKREF: {
      const v: RValue = { kind: "opaque", sexpType: type };
      r.refs.push(v);
      if (hasAttr) readItem(r);
      return v;
    }
    case T.S4: {
      if (hasAttr) readItem(r);
      return { kind: "opaque", sexpType: type };
    }
    case T.ALTREP:
      return readAltrep(r);
    case T.BCODE:
    case T.BCREPDEF:
    case T.BCREPREF:
    case T.CLASSREF:
    case T.GENERICREF:
      return r.fail(`unsupported item type ${type} (byte code or class reference)`);
    default:
      return readVector(r, type, hasAttr);
  }
}

function readPairlist(r: XdrReader, type: number, hasAttr: boolean, hasTag: boolean): RValue {
  // Iterative over the CDR chain so long pairlists do not recurse once per cell.
  const entries: RPairlistEntry[] = [];
  let attributes: RAttributes = NO_ATTRIBUTES;
  let first = true;
  for (;;) {
    const attr = hasAttr ? readItem(r) : null;
    if (first && attr) attributes = attributesFrom(attr);
    const tag = hasTag ? symbolName(readItem(r)) : null;
    const value = readItem(r);
    entries.push({ tag, value });
    first = false;
    const next = r.int();
    const nextType = next & 0xff;
    if (nextType === T.NILVALUE) break;
    if (nextType !== type) {
      // A differently-typed tail: rare, read it as its own item and append its entries.
      r.unread4();
      const rest = readItem(r);
      if (rest.kind === "pairlist") entries.push(...rest.entries);
      break;
    }
    hasAttr = (next & HAS_ATTR) !== 0;
    hasTag = (next & HAS_TAG) !== 0;
  }
  if (type === T.LIST || type === T.ATTRLIST || type === T.DOT)
    return { kind: "pairlist", entries, attributes };
  return { kind: "opaque", sexpType: type };
}

function readVector(r: XdrReader, type: number, hasAttr: boolean): RValue {
  let v: RValue;
  switch (type) {
    case T.NIL:
      return { kind: "null" };
    case T.LGL: {
      const n = r.length();
      const values: (boolean | null)[] = new Array(n);
      for (let i = 0; i < n; i++) {
        const x = r.int();
        values[i] = x === R_NA_INT ? null : x !== 0;
      }
      v = { kind: "logical", values, attributes: NO_ATTRIBUTES };
      break;
    }
    case T.INT: {
      const n = r.length();
      const values = new Int32Array(n);
      for (let i = 0; i < n; i++) values[i] = r.int();
      v = { kind: "integer", values, attributes: NO_ATTRIBUTES };
      break;
    }
    case T.REAL: {
      const n = r.length();
      const values = new Float64Array(n);
      for (let i = 0; i < n; i++) values[i] = r.double();
      v = { kind: "double", values, attributes: NO_ATTRIBUTES };
      break;
    }
    case T.CPLX: {
      const n = r.length();
      const values = new Float64Array(2 * n);
      for (let i = 0; i < 2 * n; i++) values[i] = r.double();
      v = { kind: "complex", values, attributes: NO_ATTRIBUTES };
      break;
    }
    case T.RAW: {
      const n = r.length();
      v = { kind: "raw", values: r.take(n).slice(), attributes: NO_ATTRIBUTES };
      break;
    }
    case T.STR: {
      const n = r.length();
      const values: (string | null)[] = new Array(n);
      for (let i = 0; i < n; i++) {
        const flags = r.int();
        if ((flags & 0xff) !== T.CHAR) r.fail(`string vector element of type ${flags & 0xff}`);
        values[i] = readCharsxpBody(r, flags >> 12);
      }
      v = { kind: "character", values, attributes: NO_ATTRIBUTES };
      break;
    }
    case T.VEC:
    case T.EXPR: {
      const n = r.length();
      const values: RValue[] = new Array(n);
      for (let i = 0; i < n; i++) values[i] = readItem(r);
      v = { kind: "list", values, attributes: NO_ATTRIBUTES };
      break;
    }
    default:
      return r.fail(`unsupported item type ${type}`);
  }
  return hasAttr ? withAttributes(v, attributesFrom(readItem(r))) : v;
}

function withAttributes(v: RValue, attributes: RAttributes): RValue {
  if (v.kind === "null" || v.kind === "symbol" || v.kind === "opaque") return v;
  return { ...v, attributes };
}

function readAltrep(r: XdrReader): RValue {
  const info = readItem(r);
  const state = readItem(r);
  const attr = readItem(r);
  const cls = info.kind === "pairlist" ? info.entries[0]?.value : undefined;
  const name = cls?.kind === "symbol" ? cls.name : "?";
  let v: RValue;
  if (name === "compact_intseq" || name === "compact_realseq") {
    if (state.kind !== "double" || state.values.length < 3) return r.fail(`bad ${name} state`);
    const n = state.values[0]!;
    const start = state.values[1]!;
    const step = state.values[2]!;
    const values = name === "compact_intseq" ? new Int32Array(n) : new Float64Array(n);
    for (let i = 0; i < n; i++) values[i] = start + i * step;
    v =
      values instanceof Int32Array
        ? { kind: "integer", values, attributes: NO_ATTRIBUTES }
        : { kind: "double", values, attributes: NO_ATTRIBUTES };
  } else if (name.startsWith("wrap_")) {
    const inner = state.kind === "list" ? state.values[0] : undefined;
    if (!inner) return r.fail(`bad ${name} state`);
    v = inner;
  } else if (name === "deferred_string") {
    const arg = state.kind === "pairlist" ? state.entries[0]?.value : undefined;
    if (arg?.kind === "integer") {
      const values = Array.from(arg.values, (x) => (x === R_NA_INT ? null : String(x)));
      v = { kind: "character", values, attributes: NO_ATTRIBUTES };
    } else if (arg?.kind === "double") {
      v = { kind: "character", values: Array.from(arg.values, (x) => String(x)), attributes: NO_ATTRIBUTES };
    } else return r.fail("bad deferred_string state");
  } else {
    return r.fail(`unsupported ALTREP class ${name}`);
  }
  const attributes = attributesFrom(attr);
  return attributes.size > 0 ? withAttributes(v, attributes) : v;
}

/** Decodes one serialized object (`X\n` XDR format, version 2 or 3). */
export function unserialize(bytes: Uint8Array, subject = "<R data>"): RValue {
  if (bytes.length < 2) throw new DataError("R serialization: empty input", subject);
  const magic = String.fromCharCode(bytes[0]!, bytes[1]!);
  if (magic !== "X\n") {
    const what =
      magic === "A\n" ? "ASCII" : magic === "B\n" ? "native binary" : `unknown (${JSON.stringify(magic)})`;
    throw new DataError(`R serialization: ${what} format is not supported, only XDR`, subject);
  }
  const r = new XdrReader(bytes.subarray(2), subject);
  const version = r.int();
  if (version !== 2 && version !== 3) r.fail(`unsupported format version ${version}`);
  r.int(); // R version that wrote it
  r.int(); // minimal R version to read it
  if (version === 3) r.take(r.int()); // native encoding name
  return readItem(r);
}

/**
 * Reads an `.rda` / `.RData` file (what `save()` writes): `RDX2\n` or `RDX3\n`, then one
 * serialized pairlist of name = value, the whole gzip-compressed or plain.
 */
export function readRData(bytes: Uint8Array, subject = "<RData>"): Map<string, RValue> {
  const raw = decompressWhole(bytes, subject);
  const magic = String.fromCharCode(...raw.subarray(0, 5));
  if (magic !== "RDX2\n" && magic !== "RDX3\n")
    throw new DataError(`not an R save file (magic ${JSON.stringify(magic)})`, subject);
  const v = unserialize(raw.subarray(5), subject);
  return new Map(namedEntries(v));
}

/** Reads an `.rds` file's bytes: gzip-compressed or plain XDR. */
export function readRds(bytes: Uint8Array, subject = "<rds>"): RValue {
  return unserialize(decompressWhole(bytes, subject), subject);
}

function decompressWhole(bytes: Uint8Array, subject: string): Uint8Array {
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      return gunzipSync(bytes);
    } catch (e) {
      throw new DataError(`gzip: ${(e as Error).message}`, subject);
    }
  }
  if (bytes[0] === 0x42 && bytes[1] === 0x5a && bytes[2] === 0x68)
    throw new DataError("bzip2-compressed R data is not supported", subject);
  if (bytes[0] === 0xfd && bytes[1] === 0x37 && bytes[2] === 0x7a)
    throw new DataError("xz-compressed R data is not supported", subject);
  return bytes;
}

/** Decompresses one lazy-load blob: 4-byte big-endian output length, then (for schemes 2/3) a type byte. */
function decompressBlob(blob: Uint8Array, scheme: number, subject: string): Uint8Array {
  if (blob.length < 4) throw new DataError("lazy-load blob shorter than its header", subject);
  const outLen = new DataView(blob.buffer, blob.byteOffset, 4).getUint32(0, false);
  let body = blob.subarray(4);
  let type = "Z";
  if (scheme !== 1) {
    type = String.fromCharCode(body[0] ?? 0);
    body = body.subarray(1);
  }
  let out: Uint8Array;
  if (type === "Z") {
    try {
      out = inflateSync(body);
    } catch (e) {
      throw new DataError(`zlib: ${(e as Error).message}`, subject);
    }
  } else if (type === "0") out = body;
  else
    throw new DataError(
      `lazy-load blob compressed with ${type === "2" ? "bzip2" : type === "X" ? "xz" : `type ${type}`}: not supported`,
      subject,
    );
  if (out.length !== outLen)
    throw new DataError(`lazy-load blob inflated to ${out.length} bytes, header says ${outLen}`, subject);
  return out;
}

/** Names and values of an R list or pairlist: `names` attribute for lists, tags for pairlists. */
export function namedEntries(v: RValue): [string, RValue][] {
  if (v.kind === "pairlist") return v.entries.map((e) => [e.tag ?? "", e.value]);
  if (v.kind !== "list") return [];
  const names = v.attributes.get("names");
  return v.values.map((x, i) => [names?.kind === "character" ? (names.values[i] ?? "") : "", x]);
}

/** The element of a named list or pairlist, or undefined. */
export function getNamed(v: RValue, name: string): RValue | undefined {
  return namedEntries(v).find(([n]) => n === name)?.[1];
}

/** A character vector's values, or the labels of a factor; throws for anything else. */
export function asStrings(v: RValue, subject = "<R data>"): (string | null)[] {
  if (v.kind === "character") return [...v.values];
  if (v.kind === "integer") {
    const levels = v.attributes.get("levels");
    if (levels?.kind === "character")
      return Array.from(v.values, (i) => (i === R_NA_INT ? null : (levels.values[i - 1] ?? null)));
  }
  throw new DataError(`expected a character vector or factor, found ${v.kind}`, subject);
}

/**
 * Reads every object of a lazy-load database. The `.rdx` index is a compressed serialized list
 * `(variables = named list of c(offset, length), references, compressed)`; each blob in `.rdb` is
 * a compressed serialized object.
 */
export function readLazyLoadDb(rdx: Uint8Array, rdb: Uint8Array, subject = "<rdb>"): Map<string, RValue> {
  const index = unserialize(decompressBlobOrWhole(rdx, subject), `${subject} (.rdx)`);
  const variables = getNamed(index, "variables");
  if (!variables) throw new DataError("lazy-load index has no `variables`", subject);
  const compressed = getNamed(index, "compressed");
  let scheme = 1;
  if (compressed?.kind === "logical") scheme = compressed.values[0] ? 1 : 0;
  else if (compressed?.kind === "integer" || compressed?.kind === "double")
    scheme = Number(compressed.values[0]);
  const out = new Map<string, RValue>();
  for (const [name, loc] of namedEntries(variables)) {
    if (loc.kind !== "integer" && loc.kind !== "double")
      throw new DataError(`bad index entry for ${name}`, subject);
    const offset = Number(loc.values[0]);
    const len = Number(loc.values[1]);
    if (offset + len > rdb.length) throw new DataError(`${name}: blob past end of file`, subject);
    const blob = rdb.subarray(offset, offset + len);
    const raw = scheme === 0 ? blob : decompressBlob(blob, scheme, `${subject}:${name}`);
    out.set(name, unserialize(raw, `${subject}:${name}`));
  }
  return out;
}

// The .rdx file is written by `saveRDS`-like code as gzip, or (older R) as a zlib blob with a length header.
function decompressBlobOrWhole(bytes: Uint8Array, subject: string): Uint8Array {
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) return decompressWhole(bytes, subject);
  if (bytes[4] === 0x78) return decompressBlob(bytes, 1, subject);
  return bytes;
}
