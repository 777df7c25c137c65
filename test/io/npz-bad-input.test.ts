/**
 * Malformed npz archives and .npy arrays, generated: opening and reading every array of each must
 * throw a SafetensorsError naming the archive, without other exceptions or large allocations.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { deflateRawSync } from "node:zlib";
import { NpzFile } from "../../src/io/npz.js";
import { fixture, pseudoRandomBytes, readMalformed, tempDir } from "./helpers.js";
import { npy, type ZipEntrySpec, zip } from "./zip-builder.js";

const dir = tempDir("glassbox-bad-npz-");

interface Case {
  readonly label: string;
  readonly bytes: Uint8Array;
  readonly expect?: RegExp;
}

const f4 = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);
const good = npy("<f4", [2, 2], f4([1, 2, 3, 4]));

function cases(): Case[] {
  const out: Case[] = [];
  const add = (label: string, bytes: Uint8Array, expect?: RegExp) =>
    out.push({ label, bytes, ...(expect ? { expect } : {}) });
  const one = (label: string, e: Partial<ZipEntrySpec>, expect: RegExp) =>
    add(label, zip([{ name: "a.npy", data: good, ...e }]), expect);
  const arr = (label: string, data: Uint8Array, expect: RegExp) =>
    add(label, zip([{ name: "a.npy", data }]), expect);

  // Truncations of a numpy-written archive: through the central directory and end record byte by
  // byte, and through the entries every 13 bytes.
  const stored = readFileSync(fixture("npz", "stored.npz"));
  for (let cut = 0; cut < stored.byteLength; cut += cut < stored.byteLength - 700 ? 13 : 1) {
    add(`stored.npz cut at ${cut}`, stored.subarray(0, cut));
  }
  add("empty file", new Uint8Array(0), /file is 0 bytes, too short for a zip archive/);
  add(
    "not a zip",
    Buffer.from("this is certainly not a zip archive at all"),
    /no end-of-central-directory record/,
  );
  add("random bytes", pseudoRandomBytes(5000, 7), /no end-of-central-directory record/);
  add(
    "comment length lies",
    zip([{ name: "a.npy", data: good }], { comment: Buffer.from("hi"), commentLength: 5 }),
    /no end-of-central-directory/,
  );
  add("multi-disk", zip([{ name: "a.npy", data: good }], { eocd: { disk: 1 } }), /multi-disk/);
  add(
    "cd offset past EOF",
    zip([{ name: "a.npy", data: good }], { eocd: { cdOffset: 1_000_000 } }),
    /central directory \[1000000, \d+\) runs past its end record/,
  );
  add(
    "cd size huge",
    zip([{ name: "a.npy", data: good }], { eocd: { cdSize: 0xfffffff0 } }),
    /runs past its end record/,
  );
  add(
    "count too large for cd",
    zip([{ name: "a.npy", data: good }], { eocd: { count: 60000 } }),
    /60000 entries cannot fit/,
  );
  add(
    "count one too many",
    zip(
      [
        { name: "a.npy", data: good },
        { name: "b.npy", data: good },
      ],
      { eocd: { count: 3, cdSize: 3 * 46 + 10 } },
    ),
    /runs past|bad signature|cannot fit/,
  );
  add(
    "cd offset shifted",
    zip([{ name: "a.npy", data: good }], { eocd: { cdOffset: 4 } }),
    /bad signature|runs past/,
  );
  add(
    "zip64 needed, no locator",
    zip([{ name: "a.npy", data: good }], { eocd: { count: 0xffff } }),
    /no ZIP64 locator/,
  );
  add(
    "zip64 record bad signature",
    zip([{ name: "a.npy", data: good }], { zip64Eocd: true, eocd64Signature: 0x12345678 }),
    /bad ZIP64 end-of-central-directory signature/,
  );
  add(
    "zip64 cd offset 2^60",
    zip([{ name: "a.npy", data: good }], { zip64Eocd: true, eocd: { cdOffset: 2 ** 52 } }),
    /runs past its end record/,
  );

  one("encrypted", { cd: { flags: 1 } }, /entry "a.npy" is encrypted/);
  one("bzip2", { cd: { method: 12 } }, /compression method 12/);
  one("lzma", { cd: { method: 14 } }, /compression method 14/);
  one("stored sizes differ", { cd: { uncompressed: good.byteLength + 1 } }, /stored but its sizes differ/);
  one("entry on another disk", { cd: { disk: 3 } }, /on another disk/);
  one("saturated without zip64 extra", { cd: { offset: 0xffffffff } }, /no ZIP64 extra field/);
  one(
    "zip64 extra too short",
    { cd: { zip64: true, extra: Buffer.from([1, 0, 8, 0, 16, 0, 0, 0, 0, 0, 0, 0]) } },
    /ZIP64 extra field too short for the compressed size/,
  );
  one(
    "extra runs past its end",
    { cd: { offset: 0xffffffff, extra: Buffer.from([1, 0, 200, 0, 1, 2]) } },
    /extra field runs past its end/,
  );
  one("offset into cd", { cd: { offset: 200 } }, /runs into the central directory/);
  one("name not UTF-8", { cd: { nameBytes: Buffer.from([0x61, 0xff]) } }, /file name is not valid UTF-8/);
  add(
    "duplicate entries",
    zip([
      { name: "a.npy", data: good },
      { name: "a.npy", data: good },
    ]),
    /duplicate entry "a.npy"/,
  );
  add(
    "a and a.npy",
    zip([
      { name: "a.npy", data: good },
      { name: "a", data: good },
    ]),
    /both NAME and NAME.npy/,
  );
  one(
    "crc mismatch (stored)",
    { cd: { crc: 0x12345678 } },
    /entry "a.npy": CRC-32 mismatch \(stored 0x12345678, computed 0x[0-9a-f]{8}\)/,
  );
  one("crc mismatch (deflated)", { method: 8, cd: { crc: 1 } }, /CRC-32 mismatch/);
  const flipped = Uint8Array.from(good);
  flipped[flipped.length - 1] ^= 1;
  one("data byte flipped", { payload: flipped }, /CRC-32 mismatch/);
  one("corrupt deflate", { method: 8, payload: pseudoRandomBytes(80, 3) }, /corrupt deflate data|inflates/);
  one(
    "deflate truncated",
    { method: 8, payload: deflateRawSync(good).subarray(0, 20) },
    /corrupt deflate data|inflates to/,
  );
  one(
    "deflate longer than declared",
    { method: 8, cd: { uncompressed: good.byteLength - 10 } },
    /inflates past its declared/,
  );
  one(
    "deflate shorter than declared",
    { method: 8, cd: { uncompressed: good.byteLength + 10 } },
    /inflates to \d+ bytes, not the declared/,
  );
  one("deflate bomb claim", { method: 8, cd: { uncompressed: 0xfffffff0 } }, /more than deflate can produce/);
  one("local signature", { local: { signature: 0x11111111 } }, /bad local header signature/);
  one("local method differs", { local: { method: 8 } }, /compression method differs/);
  one(
    "local name differs",
    { local: { nameBytes: Buffer.from("b.npy") } },
    /local header names a different file/,
  );

  // .npy contents.
  arr(
    "bad magic",
    Buffer.from("\x93NUMPZ\x01\x00\x10\x00{}              ", "latin1"),
    /not a .npy array \(bad magic\)/,
  );
  arr("too short", Buffer.from([0x93, 0x4e]), /bad magic/);
  const v4 = Uint8Array.from(good);
  v4[6] = 4;
  arr("version 4", v4, /unsupported .npy format version 4.0/);
  const longHeader = Uint8Array.from(good);
  longHeader[8] = 0xff;
  longHeader[9] = 0xff;
  arr("header past end", longHeader, /.npy header length 65535 runs past/);
  const bad = (label: string, dict: string, expect: RegExp, data = f4([1, 2, 3, 4])) =>
    arr(label, npy("", [], data, { dict }), expect);
  bad("not a dict", "[1, 2]", /.npy header is not a dict/);
  bad("unterminated", "{'descr': '<f4", /not a valid dict literal: unterminated string/);
  bad("garbage", "{'descr': <f4}", /not a valid dict literal/);
  bad("missing descr", "{'fortran_order': False, 'shape': (4,)}", /no 'descr'/);
  bad(
    "structured",
    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,)}",
    /structured dtypes are not supported/,
  );
  bad("extra key", "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", /unexpected key 'x'/);
  bad(
    "duplicate key",
    "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}",
    /duplicate key 'descr'/,
  );
  bad(
    "fortran not bool",
    "{'descr': '<f4', 'fortran_order': 'no', 'shape': (4,)}",
    /'fortran_order' must be True or False/,
  );
  bad("shape not tuple", "{'descr': '<f4', 'fortran_order': False, 'shape': 4}", /'shape' must be a tuple/);
  bad(
    "negative dim",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,)}",
    /shape entry -4 is not a valid dimension/,
  );
  bad(
    "huge dim",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
    /not a valid dimension/,
  );
  bad("string dim", "{'descr': '<f4', 'fortran_order': False, 'shape': ('4',)}", /not a valid dimension/);
  for (const d of ["<c8", "<U3", "|O", "|V8", "<f16", "<M8", "=f4", "|f4", "f4", "<b2"]) {
    bad(
      `descr ${d}`,
      `{'descr': '${d}', 'fortran_order': False, 'shape': (4,)}`,
      /unsupported numpy dtype|byte order/,
    );
  }
  bad(
    "too few bytes",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (5,)}",
    /shape \(5\) of F32 needs 20 data bytes, found 16/,
  );
  bad(
    "too many bytes",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
    /needs 12 data bytes, found 16/,
  );
  bad(
    "product overflow",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
    /needs 147573952589676412928 data bytes/,
  );
  bad(
    "scalar without data",
    "{'descr': '<f4', 'fortran_order': False, 'shape': ()}",
    /needs 4 data bytes, found 0/,
    new Uint8Array(0),
  );
  bad(
    "deep nesting",
    `{'descr': '<f4', 'fortran_order': False, 'shape': ${"(".repeat(50)}${")".repeat(50)}}`,
    /nested too deeply/,
  );
  return out;
}

test("every malformed npz throws a SafetensorsError naming the archive", { timeout: 120_000 }, (t) => {
  const all = cases();
  t.diagnostic(`${all.length} malformed npz archives`);
  assert.ok(all.length >= 100, `only ${all.length} cases`);
  const { failures, peak } = readMalformed(dir, "npz", all, (p) => {
    const f = NpzFile.open(p);
    try {
      for (const n of f.names()) f.readRawSync(n);
    } finally {
      f.close();
    }
  });
  assert.ok(peak < 64 * 2 ** 20, `memory grew by ${peak} bytes while reading malformed archives`);
  assert.deepEqual(failures, []);
});

test("the builder's unbroken archive reads (so the failures above come from the breakage)", () => {
  const p = join(dir, "good.npz");
  writeFileSync(
    p,
    zip([
      { name: "a.npy", data: good },
      { name: "b.npy", data: good, method: 8 },
    ]),
  );
  const f = NpzFile.open(p);
  assert.deepEqual(Array.from(f.readTypedSync("a").data as Float32Array), [1, 2, 3, 4]);
  assert.deepEqual(Array.from(f.readTypedSync("b").data as Float32Array), [1, 2, 3, 4]);
  f.close();
});
