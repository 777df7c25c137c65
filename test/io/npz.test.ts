import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import * as zlib from "node:zlib";
import { referenceBackend } from "../../src/backends/reference/index.js";
import { SafetensorsError } from "../../src/core/errors.js";
import { f16ToF32 } from "../../src/core/half.js";
import { crc32, crc32Portable } from "../../src/io/crc32.js";
import { NpzFile, readNpz } from "../../src/io/npz.js";
import type { TypedTensor } from "../../src/io/safetensors-dtype.js";
import { fixture, pseudoRandomBytes, ramp, tempDir } from "./helpers.js";
import { npy, zip } from "./zip-builder.js";

const dir = tempDir("glassbox-npz-");
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const flat = (t: TypedTensor): (number | bigint)[] => Array.from(t.data as ArrayLike<number | bigint>);

/** The arrays `test/fixtures/npz/make_fixtures.py` saves, recomputed. */
function checkFixtureArrays(arrays: Map<string, TypedTensor>): void {
  const get = (name: string, dtype: string, shape: number[]): TypedTensor => {
    const t = arrays.get(name);
    assert.ok(t, name);
    assert.equal(t.dtype, dtype, name);
    assert.deepEqual(t.shape, shape, name);
    return t;
  };
  assert.deepEqual(flat(get("f8", "F64", [2, 3])), ramp(6));
  assert.deepEqual(flat(get("f4", "F32", [2, 3, 4])), ramp(24));
  assert.deepEqual(Array.from(get("f2", "F16", [5]).data as Uint16Array, f16ToF32), ramp(5));
  assert.deepEqual(
    flat(get("i8", "I64", [6])),
    range(6).map((i) => BigInt(i - 3) * 3_000_000_000_000_000n),
  );
  assert.deepEqual(
    flat(get("i4", "I32", [4])),
    range(4).map((i) => (i - 2) * 1_000_000_000),
  );
  assert.deepEqual(
    flat(get("i2", "I16", [4])),
    range(4).map((i) => (i - 2) * 16_000),
  );
  assert.deepEqual(
    flat(get("i1", "I8", [5])),
    range(5).map((i) => (i - 2) * 60),
  );
  assert.deepEqual(
    flat(get("u1", "U8", [7])),
    range(7).map((i) => i * 40),
  );
  assert.deepEqual(
    flat(get("u2", "U16", [3])),
    range(3).map((i) => i * 30_000),
  );
  assert.deepEqual(
    flat(get("u4", "U32", [3])),
    range(3).map((i) => i * 2_000_000_000),
  );
  assert.deepEqual(
    flat(get("b1", "BOOL", [5])),
    range(5).map((i) => (i % 3 === 0 ? 1 : 0)),
  );
  assert.deepEqual(flat(get("scalar", "F32", [])), [2.5]);
  assert.deepEqual(flat(get("empty", "F32", [0, 3])), []);
}

describe("npz archives written by numpy 2.4.6", () => {
  test("np.savez (stored entries, ZIP64 local headers)", () => {
    const arrays = readNpz(fixture("npz", "stored.npz"));
    assert.deepEqual(
      [...arrays.keys()],
      ["f8", "f4", "f2", "i8", "i4", "i2", "i1", "u1", "u2", "u4", "b1", "scalar", "empty"],
    );
    checkFixtureArrays(arrays);
  });

  test("np.savez_compressed (deflated entries)", () => {
    checkFixtureArrays(readNpz(fixture("npz", "deflated.npz")));
  });

  test("Fortran-order and big-endian arrays come out row-major little-endian", () => {
    const f = NpzFile.open(fixture("npz", "layouts.npz"));
    try {
      const fortran = f.readTypedSync("fortran");
      assert.deepEqual(fortran.shape, [2, 3, 4]);
      assert.deepEqual(flat(fortran), ramp(24));
      const be = f.readTypedSync("big_endian");
      assert.equal(be.dtype, "F32");
      assert.deepEqual(flat(be), ramp(6));
      const both = f.readTypedSync("big_fortran");
      assert.equal(both.dtype, "I64");
      assert.deepEqual(both.shape, [3, 2]);
      assert.deepEqual(
        flat(both),
        range(6).map((i) => BigInt(i - 3) * 3_000_000_000_000_000n),
      );
    } finally {
      f.close();
    }
  });

  test("core Tensor conversion, with range errors naming the archive and array", () => {
    const p = fixture("npz", "stored.npz");
    const f = NpzFile.open(p);
    try {
      const t = f.readTensorSync("f4", referenceBackend);
      assert.equal(t.dtype, "f32");
      assert.deepEqual(t.shape, [2, 3, 4]);
      assert.deepEqual(t.toFlatArray(), ramp(24));
      assert.equal(f.readTensorSync("f8", referenceBackend).dtype, "f32");
      assert.deepEqual(f.readTensorSync("u2", referenceBackend).toFlatArray(), [0, 30_000, 60_000]);
      assert.throws(
        () => f.readTensorSync("u4", referenceBackend),
        (e: unknown) =>
          e instanceof SafetensorsError &&
          e.message.startsWith(`${p}: tensor "u4": U32 value 4000000000 at index 2`),
      );
      assert.throws(
        () => f.readTensorSync("i8", referenceBackend),
        /tensor "i8": I64 value -9000000000000000 at index 0 is outside the i32 range/,
      );
      assert.throws(() => f.readRawSync("nope"), /no array named "nope"/);
    } finally {
      f.close();
    }
  });
});

describe("archives beyond what numpy writes", () => {
  const f4 = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);

  test("ZIP64 end records and ZIP64 central-directory fields; npy v2 and v3 headers", () => {
    const p = join(dir, "zip64.npz");
    writeFileSync(
      p,
      zip(
        [
          { name: "a.npy", data: npy("<f4", [2, 2], f4([1, 2, 3, 4])), cd: { zip64: true } },
          {
            name: "b.npy",
            data: npy("<f4", [3], f4([5, 6, 7]), { version: 2 }),
            method: 8,
            cd: { zip64: true },
          },
          { name: "c.npy", data: npy("<f4", [1], f4([8]), { version: 3 }) },
        ],
        { zip64Eocd: true },
      ),
    );
    const arrays = readNpz(p);
    assert.deepEqual(flat(arrays.get("a")!), [1, 2, 3, 4]);
    assert.deepEqual(flat(arrays.get("b")!), [5, 6, 7]);
    assert.deepEqual(flat(arrays.get("c")!), [8]);
  });

  test("an archive comment is skipped; entries without .npy keep their name", () => {
    const p = join(dir, "comment.npz");
    writeFileSync(
      p,
      zip([{ name: "w", data: npy("|u1", [2], Uint8Array.of(3, 4)) }], {
        comment: Buffer.from("PK\x05\x06 not a record"),
      }),
    );
    const f = NpzFile.open(p);
    assert.deepEqual(f.names(), ["w"]);
    assert.deepEqual(flat(f.readTypedSync("w")), [3, 4]);
    f.close();
  });

  test("Fortran order of every rank matches a direct index computation", () => {
    for (const shape of [[5], [2, 3], [3, 1, 4], [2, 3, 2, 2], [2, 0, 3]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      // Element with C index (i0..ik) has value sum(i_d * 10^d); store it at its Fortran position.
      const fortranValues = new Int32Array(n);
      const idx = new Array<number>(shape.length).fill(0);
      for (let c = 0; c < n; c++) {
        let fpos = 0;
        let stride = 1;
        let value = 0;
        for (let d = 0; d < shape.length; d++) {
          fpos += idx[d] * stride;
          stride *= shape[d];
          value += idx[d] * 10 ** d;
        }
        fortranValues[fpos] = value;
        for (let d = shape.length - 1; d >= 0; d--) {
          if (++idx[d] < shape[d]) break;
          idx[d] = 0;
        }
      }
      const p = join(dir, "fortran.npz");
      writeFileSync(
        p,
        zip([
          { name: "x.npy", data: npy("<i4", shape, new Uint8Array(fortranValues.buffer), { fortran: true }) },
        ]),
      );
      const got = flat(readNpz(p).get("x")!);
      const expected: number[] = [];
      idx.fill(0);
      for (let c = 0; c < n; c++) {
        expected.push(idx.reduce((s, v, d) => s + v * 10 ** d, 0));
        for (let d = shape.length - 1; d >= 0; d--) {
          if (++idx[d] < shape[d]) break;
          idx[d] = 0;
        }
      }
      assert.deepEqual(got, expected, `shape ${shape}`);
    }
  });
});

describe("CRC-32", () => {
  test("the portable table matches zlib and the standard check value", () => {
    assert.equal(crc32Portable(Buffer.from("123456789")), 0xcbf43926);
    assert.equal(crc32Portable(new Uint8Array(0)), 0);
    for (const n of [1, 7, 64, 1000, 65_537]) {
      const data = pseudoRandomBytes(n, n);
      const half = Math.floor(n / 2);
      assert.equal(crc32Portable(data), zlib.crc32(data) >>> 0, `n=${n}`);
      assert.equal(crc32Portable(data.subarray(half), crc32Portable(data.subarray(0, half))), crc32(data));
    }
  });
});
