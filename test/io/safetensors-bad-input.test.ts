/**
 * Malformed safetensors files, generated: every one must fail to open with a SafetensorsError that
 * names the file (never another exception, a hang or a large allocation), and the CLI must turn a
 * sample of them into one line on stderr and exit code 1.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { fixture, readMalformed, runCli, tempDir } from "./helpers.js";

const dir = tempDir("glassbox-bad-st-");

interface Case {
  readonly label: string;
  readonly bytes: Uint8Array;
  /** What the message must say, for targeted cases. */
  readonly expect?: RegExp;
}

function withLength(n: bigint, rest: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + rest.byteLength);
  new DataView(out.buffer).setBigUint64(0, n, true);
  out.set(rest, 8);
  return out;
}

/** A file whose header is `header` (text or bytes) followed by `data`. */
function file(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = typeof header === "string" ? Buffer.from(header, "utf8") : header;
  const rest = new Uint8Array(h.byteLength + data.byteLength);
  rest.set(h);
  rest.set(data, h.byteLength);
  return withLength(BigInt(h.byteLength), rest);
}

/** A header with one tensor entry built from raw JSON fragments. */
function one(dtype: string, shape: string, offsets: string, dataBytes: number): Uint8Array {
  return file(
    `{"t":{"dtype":${dtype},"shape":${shape},"data_offsets":${offsets}}}`,
    new Uint8Array(dataBytes),
  );
}

const f32x2 = (name: string, b: number) =>
  `"${name}":{"dtype":"F32","shape":[2],"data_offsets":[${b},${b + 8}]}`;

function cases(): Case[] {
  const out: Case[] = [];
  const add = (label: string, bytes: Uint8Array, expect?: RegExp) =>
    out.push({ label, bytes, ...(expect ? { expect } : {}) });

  // Truncation at every cut point of a valid file written by Hugging Face's writer.
  const valid = readFileSync(fixture("safetensors", "hf-mixed.safetensors"));
  for (let cut = 0; cut < valid.byteLength; cut++) add(`truncated at ${cut}`, valid.subarray(0, cut));
  // Its header text cut at every point, with the length prefix matching the cut.
  const n = Number(valid.readBigUInt64LE(0));
  const headerText = valid.subarray(8, 8 + n);
  for (let cut = 0; cut < n; cut++) {
    // Cutting only the trailing padding leaves a valid header (with the data missing).
    add(`header cut at ${cut}`, file(headerText.subarray(0, cut)));
  }
  // ... and the same file with junk appended.
  add("one trailing byte", Buffer.concat([valid, Buffer.of(0)]), /1 trailing bytes after the last tensor/);

  // Sizes and header lengths.
  add("empty file", new Uint8Array(0), /file is 0 bytes, too short/);
  add("7 bytes", new Uint8Array(7), /file is 7 bytes/);
  add("header length 0", withLength(0n, new Uint8Array(0)), /header is empty/);
  add(
    "header length 2^63",
    withLength(2n ** 63n, Buffer.from("{}")),
    /header length 9223372036854775808 exceeds the 100000000-byte limit/,
  );
  add(
    "header length 2^64-1",
    withLength(2n ** 64n - 1n, Buffer.from("{}")),
    /exceeds the 100000000-byte limit/,
  );
  add("header length 100000001", withLength(100_000_001n, Buffer.from("{}")), /exceeds/);
  add(
    "header length 99999999 past EOF",
    withLength(99_999_999n, Buffer.from("{}")),
    /header length 99999999 runs past the end of the file \(10 bytes\)/,
  );
  add("header length one past EOF", withLength(3n, Buffer.from("{}")), /runs past the end of the file/);
  add(
    "header length swallows data",
    withLength(16n, Buffer.from('{"t":1}\0\0\0\0\0\0\0\0\0')),
    /header is not valid JSON/,
  );
  add("header length too short", withLength(4n, Buffer.from('{"a":{}}')), /header is not valid JSON/);

  // Encoding and JSON syntax.
  add("not JSON", file("hello"), /does not start with '\{'/);
  add("leading space", file(" {}"), /does not start with/);
  add("UTF-8 BOM", file(Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d])), /does not start with/);
  add("array", file("[]"), /does not start with/);
  add("string", file('"x"'), /does not start with/);
  add("number", file("1"), /does not start with/);
  add("null", file("null"), /does not start with/);
  add("unclosed object", file("{"), /header is not valid JSON: unexpected end of JSON/);
  add("missing value", file('{"a":}'), /not valid JSON/);
  add("trailing comma", file('{"a":null,}'), /not valid JSON/);
  add("single quotes", file("{'a':1}"), /not valid JSON/);
  add("garbage after object", file("{} x"), /unexpected text after the JSON value/);
  add("two objects", file("{}{}"), /unexpected text after/);
  add("NUL padding", file("{}\0\0\0\0\0\0"), /unexpected text after/);
  add("unterminated string", file('{"abc'), /unterminated string/);
  add("raw newline in string", file('{"a\nb":1}'), /control character in string/);
  add("bad escape", file('{"a\\x":1}'), /invalid escape/);
  add("escaped lone surrogate", file('{"\\ud800":1}'), /lone surrogate/);
  add("NaN literal", file('{"a":NaN}'), /not valid JSON/);
  add("leading zero", file('{"t":{"dtype":"U8","shape":[01],"data_offsets":[0,1]}}'), /not valid JSON/);
  add(
    "deep nesting",
    file(`{"a":${"[".repeat(100_000)}${"]".repeat(100_000)}}`),
    /nesting deeper than 64 levels/,
  );
  add("invalid UTF-8 0xff", file(Buffer.from([0x7b, 0xff, 0x7d])), /header is not valid UTF-8/);
  add(
    "overlong UTF-8",
    file(Buffer.from([0x7b, 0x22, 0xc0, 0x80, 0x22, 0x3a, 0x31, 0x7d])),
    /not valid UTF-8/,
  );
  add(
    "UTF-8 surrogate",
    file(Buffer.from([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d])),
    /not valid UTF-8/,
  );
  add(
    "truncated UTF-8",
    file(Buffer.from([0x7b, 0x22, 0xe2, 0x82, 0x22, 0x3a, 0x31, 0x7d])),
    /not valid UTF-8/,
  );

  // Duplicate keys.
  add(
    "duplicate tensor",
    file(`{${f32x2("a", 0)},${f32x2("a", 8)}}`, new Uint8Array(16)),
    /duplicate key "a"/,
  );
  add(
    "duplicate __metadata__",
    file('{"__metadata__":{},"__metadata__":{}}'),
    /duplicate key "__metadata__"/,
  );
  add("duplicate metadata key", file('{"__metadata__":{"k":"1","k":"2"}}'), /duplicate key "k"/);
  add(
    "duplicate field",
    file('{"t":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}', new Uint8Array(1)),
    /duplicate key "dtype"/,
  );

  // Metadata types.
  for (const [what, v] of [
    ["string", '"x"'],
    ["array", "[]"],
    ["number", "3"],
    ["true", "true"],
  ]) {
    add(`__metadata__ ${what}`, file(`{"__metadata__":${v}}`), /__metadata__ must be an object/);
  }
  for (const [what, v] of [
    ["number", "1"],
    ["null", "null"],
    ["object", "{}"],
    ["array", '["a"]'],
    ["bool", "false"],
  ]) {
    add(
      `metadata value ${what}`,
      file(`{"__metadata__":{"k":${v}}}`),
      /__metadata__ value for "k" must be a string/,
    );
  }

  // Entries.
  for (const [what, v] of [
    ["string", '"x"'],
    ["array", "[]"],
    ["null", "null"],
    ["number", "7"],
  ]) {
    add(`entry ${what}`, file(`{"t":${v}}`), /tensor "t": entry must be an object/);
  }
  add(
    "missing dtype",
    file('{"t":{"shape":[1],"data_offsets":[0,1]}}', new Uint8Array(1)),
    /missing "dtype"/,
  );
  add(
    "missing shape",
    file('{"t":{"dtype":"U8","data_offsets":[0,1]}}', new Uint8Array(1)),
    /missing "shape"/,
  );
  add(
    "missing offsets",
    file('{"t":{"dtype":"U8","shape":[1]}}', new Uint8Array(1)),
    /missing "data_offsets"/,
  );
  add(
    "unknown field",
    file('{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}', new Uint8Array(1)),
    /unknown field "x"/,
  );
  add(
    "old 'offsets' spelling",
    file('{"t":{"dtype":"U8","shape":[1],"offsets":[0,1]}}', new Uint8Array(1)),
    /unknown field "offsets"/,
  );

  for (const d of ['"F128"', '"f32"', '"float32"', '""', '"F8_E8M0"', '"C64"', '"F4"', '" F32"']) {
    add(`dtype ${d}`, one(d, "[1]", "[0,4]", 4), /unknown or unsupported dtype/);
  }
  for (const d of ["1", "null", '["F32"]', "{}"])
    add(`dtype ${d}`, one(d, "[1]", "[0,4]", 4), /dtype must be a string/);

  for (const s of ['"1"', "null", "{}", "3"])
    add(`shape ${s}`, one('"U8"', s, "[0,1]", 1), /shape must be an array/);
  for (const s of [
    "[-1]",
    "[2.5]",
    "[2.0]",
    "[1e2]",
    "[1E0]",
    '["2"]',
    "[null]",
    "[[1]]",
    "[true]",
    "[-0.0]",
  ]) {
    add(`shape ${s}`, one('"U8"', s, "[0,1]", 1), /shape entries must be non-negative integers/);
  }
  for (const s of ["[18446744073709551616]", "[9007199254740992]", `[${"9".repeat(400)}]`]) {
    add(`shape ${s.slice(0, 24)}`, one('"U8"', s, "[0,1]", 1), /shape entry \d+ is too large/);
  }
  add("shape 1e400", one('"U8"', "[1e400]", "[0,1]", 1), /non-negative integers/);
  // Products that overflow 64 bits must still be compared exactly.
  add(
    "shape product 2^100",
    one('"U8"', "[1125899906842624,1125899906842624]", "[0,1]", 1),
    /needs 1267650600228229401496703205376 bytes but data_offsets \[0, 1\] span 1/,
  );
  add(
    "shape product wraps to 0 mod 2^64",
    one('"F32"', "[4294967296,1073741824]", "[0,0]", 0),
    /needs 18446744073709551616 bytes/,
  );
  add(
    "shape product times dtype wraps",
    one('"F64"', "[2305843009213693952]", "[0,0]", 0),
    /too large|needs/,
  );

  for (const o of ['"0,4"', "null", "{}", "[0]", "[0,4,8]", "[]"]) {
    add(`offsets ${o}`, one('"F32"', "[1]", o, 4), /data_offsets must be an array \[begin, end\]/);
  }
  for (const o of ["[-4,0]", "[0,4.0]", "[0,-4]", '["0",4]', "[0,null]", "[0,4e0]"]) {
    add(`offsets ${o}`, one('"F32"', "[1]", o, 4), /data_offsets must be non-negative integers/);
  }
  add("offsets end before begin", one('"F32"', "[0]", "[4,0]", 4), /end before they begin/);
  add(
    "offsets past data",
    one('"F32"', "[1]", "[4,8]", 4),
    /run past the end of the data section \(4 bytes\)/,
  );
  add(
    "offsets 2^70",
    one('"F32"', "[1]", "[1180591620717411303424,1180591620717411303428]", 4),
    /run past the end/,
  );
  add(
    "shape/bytes mismatch",
    one('"F32"', "[2,3]", "[0,20]", 20),
    /F32 shape \[2, 3\] needs 24 bytes but data_offsets \[0, 20\] span 20/,
  );
  add("BF16 counted as 4 bytes", one('"BF16"', "[2]", "[0,8]", 8), /needs 4 bytes/);
  add("scalar with no bytes", one('"F32"', "[]", "[0,0]", 0), /needs 4 bytes/);

  // Layout of the data section.
  add(
    "overlap",
    file(`{${f32x2("a", 0)},${f32x2("b", 4)}}`, new Uint8Array(12)),
    /tensor "b": data_offsets \[4, 12\] overlap tensor "a" ending at 8/,
  );
  add("same range twice", file(`{${f32x2("a", 0)},${f32x2("b", 0)}}`, new Uint8Array(8)), /overlap/);
  add(
    "gap between",
    file(`{${f32x2("a", 0)},${f32x2("b", 12)}}`, new Uint8Array(20)),
    /tensor "b": gap of 4 unindexed bytes/,
  );
  add("gap at start", file(`{${f32x2("a", 4)}}`, new Uint8Array(12)), /gap of 4 unindexed bytes/);
  add(
    "trailing junk",
    file(`{${f32x2("a", 0)}}`, new Uint8Array(9)),
    /1 trailing bytes after the last tensor/,
  );
  add("data but no tensors", file("{}", new Uint8Array(4)), /4 trailing bytes/);
  add("data but only metadata", file('{"__metadata__":{"a":"b"}}', new Uint8Array(1)), /1 trailing bytes/);
  add(
    "empty tensor inside another",
    file(`{${f32x2("a", 0)},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}`, new Uint8Array(8)),
    /tensor "a": data_offsets \[0, 8\] overlap tensor "z"|overlap/,
  );
  return out;
}

/** Files that look odd but are valid; a generator that only made broken files would prove nothing. */
function validControls(): [string, Uint8Array, string[]][] {
  return [
    [
      "offsets out of name order",
      file(`{${f32x2("b", 8)},${f32x2("a", 0)}}`, new Uint8Array(16)),
      ["a", "b"],
    ],
    [
      "JSON whitespace padding",
      file(`{ "a" : {"dtype":"U8","shape":[ 1 ],"data_offsets":[0,1]} }\n\t\r  `, new Uint8Array(1)),
      ["a"],
    ],
    ["null metadata", file('{"__metadata__":null}'), []],
    [
      "zero-size tensors sharing offsets",
      file(
        `{"e":{"dtype":"I64","shape":[3,0],"data_offsets":[8,8]},${f32x2("a", 0)},"f":{"dtype":"U8","shape":[0],"data_offsets":[8,8]}}`,
        new Uint8Array(8),
      ),
      ["a", "e", "f"],
    ],
    [
      "empty tensor at offset 0 then data",
      file(`{"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},${f32x2("a", 0)}}`, new Uint8Array(8)),
      ["z", "a"],
    ],
    ["shape entry -0", one('"U8"', "[-0]", "[0,0]", 0), ["t"]],
    [
      "escaped name",
      file('{"\\u00e9\\n":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', new Uint8Array(1)),
      ["é\n"],
    ],
  ];
}

test("valid control files open", () => {
  for (const [label, bytes, names] of validControls()) {
    const p = join(dir, "control.safetensors");
    writeFileSync(p, bytes);
    const f = SafetensorsFile.open(p);
    assert.deepEqual(f.names(), names, label);
    f.close();
  }
});

test("every malformed file throws a SafetensorsError naming the file", { timeout: 120_000 }, (t) => {
  const all = cases();
  t.diagnostic(`${all.length} malformed safetensors files`);
  assert.ok(all.length >= 200, `only ${all.length} cases`);
  const { failures, peak } = readMalformed(dir, "safetensors", all, (p) => SafetensorsFile.open(p).close());
  assert.ok(peak < 64 * 2 ** 20, `memory grew by ${peak} bytes while opening malformed files`);
  assert.deepEqual(failures, []);
});

test("the CLI prints one line on stderr, nothing on stdout, and exits 1", { timeout: 120_000 }, () => {
  const all = cases();
  const sample = [
    "empty file",
    "header length 2^63",
    "duplicate tensor",
    "shape [2.5]",
    "overlap",
    "invalid UTF-8 0xff",
    `truncated at ${Math.floor(readFileSync(fixture("safetensors", "hf-mixed.safetensors")).byteLength / 2)}`,
  ];
  for (const label of sample) {
    const c = all.find((x) => x.label === label);
    assert.ok(c, label);
    const p = join(dir, `cli-${sample.indexOf(label)}.safetensors`);
    writeFileSync(p, c.bytes);
    for (const args of [
      ["safetensors", "info", p],
      ["safetensors", "info", p, "--json"],
    ]) {
      const r = runCli(args);
      assert.equal(r.status, 1, `${label}: ${r.stderr}`);
      assert.equal(r.stdout, "", label);
      assert.match(
        r.stderr,
        new RegExp(`^glassbox: ${p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: [^\n]+\n$`),
        label,
      );
      assert.doesNotMatch(r.stderr, /\n\s+at /, label);
    }
  }
});
