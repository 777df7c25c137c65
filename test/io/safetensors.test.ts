import assert from "node:assert/strict";
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { referenceBackend } from "../../src/backends/reference/index.js";
import { SafetensorsError } from "../../src/core/errors.js";
import { f16ToF32, f32ToBf16 } from "../../src/core/half.js";
import { tensor } from "../../src/core/tensor.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import {
  type RawTensor,
  SAFETENSORS_DTYPE_BYTES,
  SAFETENSORS_DTYPES,
  type SafetensorsDType,
  typedArrayOf,
} from "../../src/io/safetensors-dtype.js";
import {
  SafetensorsWriter,
  type TensorToWrite,
  writeSafetensors,
  writeSafetensorsSync,
} from "../../src/io/safetensors-write.js";
import { rawToTensor, tensorToWrite } from "../../src/io/to-tensor.js";
import { fixture, pseudoRandomBytes, ramp, tempDir } from "./helpers.js";

const dir = tempDir();

function bytesOfFloats(
  values: readonly number[],
  Ctor: Float32ArrayConstructor | Float64ArrayConstructor,
): Uint8Array {
  const a = Ctor.from(values);
  return new Uint8Array(a.buffer);
}

describe("reading files written by Hugging Face safetensors 0.8.0", () => {
  test("every dtype, 0-d and empty tensors, metadata", async () => {
    const f = SafetensorsFile.open(fixture("safetensors", "hf-mixed.safetensors"));
    try {
      assert.deepEqual(f.metadata, { format: "np", note: "café" });
      assert.deepEqual(
        new Set(f.names()),
        new Set(["f64", "f32", "f16", "i64", "i32", "i16", "i8", "u8", "bool", "scalar", "empty"]),
      );
      const t = (name: string) => f.readTypedSync(name);

      const f64 = t("f64");
      assert.equal(f64.dtype, "F64");
      assert.deepEqual(f64.shape, [2, 3]);
      assert.deepEqual(Array.from(f64.data as Float64Array), ramp(6));

      const f32 = await f.readTyped("f32");
      assert.equal(f32.dtype, "F32");
      assert.deepEqual(f32.shape, [3, 4]);
      assert.deepEqual(Array.from(f32.data as Float32Array), ramp(12));

      const f16 = t("f16");
      assert.equal(f16.dtype, "F16");
      assert.deepEqual(Array.from(f16.data as Uint16Array, f16ToF32), ramp(5));

      const i64 = t("i64");
      assert.equal(i64.dtype, "I64");
      assert.deepEqual(i64.shape, [3, 2]);
      assert.deepEqual(
        Array.from(i64.data as BigInt64Array),
        [0n, 1n, 2n, 3n, 4n, 5n].map((i) => (i - 3n) * 3_000_000_000_000_000n),
      );
      assert.deepEqual(
        Array.from(t("i32").data as Int32Array),
        [0, 1, 2, 3].map((i) => (i - 2) * 1_000_000_000),
      );
      assert.deepEqual(
        Array.from(t("i16").data as Int16Array),
        [0, 1, 2, 3].map((i) => (i - 2) * 16_000),
      );
      assert.deepEqual(
        Array.from(t("i8").data as Int8Array),
        [0, 1, 2, 3, 4].map((i) => (i - 2) * 60),
      );
      assert.deepEqual(
        Array.from(t("u8").data as Uint8Array),
        [0, 1, 2, 3, 4, 5, 6].map((i) => i * 40),
      );
      const b = t("bool");
      assert.equal(b.dtype, "BOOL");
      assert.deepEqual(
        Array.from(b.data as Uint8Array),
        [0, 1, 2, 3, 4].map((i) => (i % 3 === 0 ? 1 : 0)),
      );

      const scalar = f.readRawSync("scalar");
      assert.deepEqual(scalar.shape, []);
      assert.deepEqual(Array.from(typedArrayOf("F32", scalar.bytes)), [2.5]);
      const empty = f.info("empty");
      assert.deepEqual(empty.shape, [0, 3]);
      assert.equal(empty.byteLength, 0);
      assert.equal(f.readRawSync("empty").bytes.byteLength, 0);
    } finally {
      f.close();
    }
  });

  test("our writer reproduces Hugging Face's bytes for a single-dtype file", async () => {
    const hf = readFileSync(fixture("safetensors", "hf-f32.safetensors"));
    const f32 = (values: number[]) => Float32Array.from(values);
    const tensors: Record<string, TensorToWrite> = {
      w_enc: { dtype: "F32", shape: [3, 4], data: f32(ramp(12)) },
      b_enc: { dtype: "F32", shape: [4], data: f32(ramp(4)) },
      w_dec: { dtype: "F32", shape: [4, 3], data: f32(ramp(12).map((x) => x * 2)) },
      b_dec: { dtype: "F32", shape: [3], data: f32(ramp(3)) },
      threshold: { dtype: "F32", shape: [4], data: f32([0.5, 0.5, 0.5, 0.5]) },
    };
    const a = join(dir, "ours-async.safetensors");
    const s = join(dir, "ours-sync.safetensors");
    await writeSafetensors(a, tensors, { format: "np" });
    writeSafetensorsSync(s, tensors, { format: "np" });
    assert.ok(readFileSync(a).equals(hf));
    assert.ok(readFileSync(s).equals(hf));
  });
});

/** Bit patterns that a float conversion would lose: NaN payloads, -0, infinities, subnormals. */
function specialBytes(dtype: SafetensorsDType): Uint8Array {
  switch (dtype) {
    case "F32":
      return new Uint8Array(
        Uint32Array.from([0x7fc00001, 0xffa00000, 0x7f800001, 0x80000000, 0x7f800000, 0xff800000, 1]).buffer,
      );
    case "F64": {
      const b = new BigUint64Array([
        0x7ff8000000000123n,
        0xfff0000000000001n,
        0x8000000000000000n,
        0x7ff0000000000000n,
        1n,
      ]);
      return new Uint8Array(b.buffer);
    }
    case "F16":
    case "BF16":
      return new Uint8Array(Uint16Array.from([0x7e01, 0xfc01, 0x7c00, 0x8000, 0x7f81, 0xff80, 1]).buffer);
    default:
      return new Uint8Array(0);
  }
}

describe("round trip write -> read is bit-exact", () => {
  const cases: [string, RawTensor][] = [];
  let seed = 1;
  for (const dtype of SAFETENSORS_DTYPES) {
    const size = SAFETENSORS_DTYPE_BYTES[dtype];
    const special = specialBytes(dtype);
    const n = 6 + special.byteLength / size;
    const bytes = new Uint8Array(n * size);
    bytes.set(pseudoRandomBytes(6 * size, seed++));
    bytes.set(special, 6 * size);
    if (dtype === "BOOL") for (let i = 0; i < bytes.length; i++) bytes[i] &= 1;
    cases.push([`${dtype.toLowerCase()}.vector`, { dtype, shape: [n], bytes }]);
    cases.push([
      `${dtype.toLowerCase()}.scalar`,
      { dtype, shape: [], bytes: pseudoRandomBytes(size, seed++) },
    ]);
    cases.push([`${dtype.toLowerCase()}.empty`, { dtype, shape: [2, 0, 3], bytes: new Uint8Array(0) }]);
  }
  const named = new Map(cases);
  // "__proto__" must stay an ordinary key; JSON.parse makes it an own property.
  const metadata: Record<string, string> = JSON.parse(
    '{"format": "pt", "ключ": "значение 🙂", "": "empty", "__proto__": "x"}',
  );

  const check = (f: SafetensorsFile, read: (name: string) => RawTensor) => {
    assert.deepEqual({ ...f.metadata }, metadata);
    assert.deepEqual(f.names(), [...named.keys()].sort());
    for (const [name, t] of named) {
      const r = read(name);
      assert.equal(r.dtype, t.dtype, name);
      assert.deepEqual(r.shape, t.shape, name);
      assert.deepEqual(r.bytes, t.bytes, name);
    }
  };

  test("writeSafetensors + readRawSync", async () => {
    const p = join(dir, "roundtrip-async.safetensors");
    await writeSafetensors(p, named, metadata);
    const f = SafetensorsFile.open(p);
    try {
      check(f, (n) => f.readRawSync(n));
    } finally {
      f.close();
    }
  });

  test("writeSafetensorsSync + readRaw (async)", async () => {
    const p = join(dir, "roundtrip-sync.safetensors");
    writeSafetensorsSync(p, Object.fromEntries(named), metadata);
    const f = SafetensorsFile.open(p);
    try {
      const got = new Map<string, RawTensor>();
      await Promise.all([...named.keys()].map(async (n) => got.set(n, await f.readRaw(n))));
      check(f, (n) => got.get(n)!);
    } finally {
      f.close();
    }
  });

  test("typed views see the same bits", () => {
    const p = join(dir, "roundtrip-typed.safetensors");
    writeSafetensorsSync(p, named, metadata);
    const f = SafetensorsFile.open(p);
    try {
      for (const [name, t] of named) {
        const v = f.readTypedSync(name);
        assert.equal(v.dtype, t.dtype);
        const back = new Uint8Array(v.data.buffer, v.data.byteOffset, v.data.byteLength);
        assert.deepEqual(back, t.bytes, name);
        assert.equal(v.data.length, t.bytes.byteLength / SAFETENSORS_DTYPE_BYTES[t.dtype]);
      }
    } finally {
      f.close();
    }
  });
});

describe("typedArrayOf alignment", () => {
  test("aligned bytes are viewed in place; misaligned bytes are copied to an aligned buffer", () => {
    const backing = new Uint8Array(17);
    const values = Float32Array.from([1.5, -2, 3.25, Number.NaN]);
    backing.set(new Uint8Array(values.buffer), 1);
    const misaligned = backing.subarray(1, 17);
    const copied = typedArrayOf("F32", misaligned);
    assert.equal(copied.byteOffset % 4, 0);
    assert.notEqual(copied.buffer, backing.buffer);
    assert.deepEqual(new Uint8Array(copied.buffer, copied.byteOffset, 16), misaligned);

    const aligned = new Uint8Array(values.buffer);
    const view = typedArrayOf("F32", aligned);
    assert.equal(view.buffer, values.buffer);
  });

  test("a length that is not a whole number of elements is refused", () => {
    assert.throws(() => typedArrayOf("F64", new Uint8Array(12)), SafetensorsError);
  });
});

describe("lazy reads", () => {
  test("opening a 3 GiB (sparse) file reads only the header; one tensor reads only its bytes", () => {
    const p = join(dir, "sparse.safetensors");
    const big = 3 * 2 ** 30;
    const header = JSON.stringify({
      a_small: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      b_huge: { dtype: "BF16", shape: [big / 2], data_offsets: [16, 16 + big] },
      c_tail: { dtype: "I32", shape: [2], data_offsets: [16 + big, 24 + big] },
    });
    const fd = openSync(p, "w");
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.length));
    writeSync(fd, prefix, 0, 8, 0);
    writeSync(fd, Buffer.from(header), 0, header.length, 8);
    writeSync(fd, Buffer.from(Float32Array.from([1, 2, 3, 4]).buffer), 0, 16, 8 + header.length);
    ftruncateSync(fd, 8 + header.length + 24 + big);
    writeSync(fd, Buffer.from(Int32Array.from([7, -8]).buffer), 0, 8, 8 + header.length + 16 + big);
    closeSync(fd);

    globalThis.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    const f = SafetensorsFile.open(p);
    try {
      const small = f.readTypedSync("a_small");
      const tail = f.readTypedSync("c_tail");
      const grown = process.memoryUsage().arrayBuffers - before;
      assert.deepEqual(Array.from(small.data as Float32Array), [1, 2, 3, 4]);
      assert.deepEqual(Array.from(tail.data as Int32Array), [7, -8]);
      assert.equal(f.info("b_huge").byteLength, big);
      assert.ok(grown < 16 * 2 ** 20, `array buffers grew by ${grown} bytes`);
      assert.ok(performance.now() - t0 < 5000);
    } finally {
      f.close();
    }
  });

  test("a file truncated after opening gives a SafetensorsError on read, sync and async", async () => {
    const p = join(dir, "shrinks.safetensors");
    writeSafetensorsSync(p, {
      a: { dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) },
      b: { dtype: "F32", shape: [1000], data: new Float32Array(1000) },
    });
    const f = SafetensorsFile.open(p);
    try {
      truncateSync(p, readFileSync(p).byteLength - 100);
      assert.deepEqual(Array.from(f.readTypedSync("a").data as Float32Array), [1, 2]);
      assert.throws(
        () => f.readRawSync("b"),
        (e: unknown) =>
          e instanceof SafetensorsError && /unexpected end of file/.test(e.message) && e.message.includes(p),
      );
      await assert.rejects(f.readRaw("b"), SafetensorsError);
    } finally {
      f.close();
    }
  });

  test("unknown names and closed files are SafetensorsErrors; close waits for reads in flight", async () => {
    const p = join(dir, "close.safetensors");
    const data = Float32Array.from(ramp(50_000));
    writeSafetensorsSync(p, { x: { dtype: "F32", shape: [50_000], data } });
    const f = SafetensorsFile.open(p);
    assert.throws(() => f.info("nope"), /no tensor named "nope"/);
    const pending = f.readTyped("x");
    f.close();
    const got = await pending;
    assert.deepEqual(got.data, data);
    assert.throws(
      () => f.readRawSync("x"),
      (e: unknown) => e instanceof SafetensorsError && /closed/.test(e.message),
    );
    await assert.rejects(f.readRaw("x"), SafetensorsError);
  });

  test("opening a missing path or a directory is a SafetensorsError naming it", () => {
    assert.throws(
      () => SafetensorsFile.open(join(dir, "missing.safetensors")),
      /missing\.safetensors: cannot open: ENOENT/,
    );
    const d = join(dir, "a-dir.safetensors");
    mkdirSync(d);
    assert.throws(
      () => SafetensorsFile.open(d),
      (e: unknown) => e instanceof SafetensorsError && e.message.includes(d),
    );
  });
});

describe("atomic writes", () => {
  const tempsIn = (d: string) => readdirSync(d).filter((n) => n.endsWith(".tmp"));

  test("bad input is refused before anything is written", async () => {
    const d = join(dir, "refused");
    mkdirSync(d);
    const p = join(d, "out.safetensors");
    await assert.rejects(
      writeSafetensors(p, { a: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
      /out\.safetensors: cannot write: tensor "a" has 8 bytes but its dtype and shape need 12/,
    );
    assert.throws(
      () => writeSafetensorsSync(p, { a: { dtype: "F32", shape: [-1], data: new Float32Array(0) } }),
      SafetensorsError,
    );
    assert.throws(
      () => writeSafetensorsSync(p, { __metadata__: { dtype: "U8", shape: [0], bytes: new Uint8Array(0) } }),
      /reserved/,
    );
    assert.throws(
      () => writeSafetensorsSync(p, { "\ud800": { dtype: "U8", shape: [0], bytes: new Uint8Array(0) } }),
      /not valid Unicode/,
    );
    const badMeta: Record<string, string> = JSON.parse('{"k": 3}');
    await assert.rejects(writeSafetensors(p, {}, badMeta), /metadata value for "k" is not a string/);
    assert.deepEqual(readdirSync(d), []);
  });

  test("a failed rename leaves the target as it was and removes the temp file", async () => {
    const d = join(dir, "rename-fails");
    mkdirSync(d);
    const target = join(d, "target.safetensors");
    mkdirSync(target);
    writeFileSync(join(target, "keep"), "x");
    const t = { a: { dtype: "U8" as const, shape: [1], bytes: Uint8Array.of(1) } };
    await assert.rejects(
      writeSafetensors(target, t),
      (e: unknown) => e instanceof SafetensorsError && e.message.includes(target),
    );
    assert.throws(() => writeSafetensorsSync(target, t), SafetensorsError);
    assert.deepEqual(tempsIn(d), []);
    assert.deepEqual(readdirSync(target), ["keep"]);
  });

  test("the streaming writer accepts tensors in any order; abort keeps the old file", async () => {
    const d = join(dir, "stream");
    mkdirSync(d);
    const p = join(d, "s.safetensors");
    const a = Float32Array.from(ramp(10));
    const b = Int32Array.from([5, 6, 7]);
    const w = await SafetensorsWriter.create(
      p,
      { a: { dtype: "F32", shape: [2, 5] }, b: { dtype: "I32", shape: [3] } },
      { step: "1" },
    );
    assert.deepEqual(w.remaining, ["a", "b"]);
    await w.write("b", b);
    await assert.rejects(w.write("b", b), /written twice/);
    await assert.rejects(w.write("c", b), /no tensor "c" was declared/);
    await assert.rejects(w.write("a", b), /has 12 bytes but its dtype and shape need 40/);
    assert.equal(existsSync(p), false, "nothing at the target before finish()");
    await w.write("a", a);
    await w.finish();
    const old = readFileSync(p);
    const f = SafetensorsFile.open(p);
    assert.deepEqual(f.readTypedSync("a").data, a);
    assert.deepEqual(f.readTypedSync("b").data, b);
    assert.deepEqual(f.metadata, { step: "1" });
    f.close();

    const w2 = await SafetensorsWriter.create(p, { z: { dtype: "U8", shape: [1] } });
    await w2.write("z", Uint8Array.of(9));
    await w2.abort();
    assert.ok(readFileSync(p).equals(old));

    const w3 = await SafetensorsWriter.create(p, {
      z: { dtype: "U8", shape: [1] },
      y: { dtype: "U8", shape: [0] },
    });
    await w3.write("z", Uint8Array.of(9));
    await assert.rejects(w3.finish(), /tensors never written: y/);
    assert.ok(readFileSync(p).equals(old));
    assert.deepEqual(tempsIn(d), []);
  });
});

describe("core Tensor conversion", () => {
  const be = referenceBackend;

  test("16-bit floats stay 16-bit and share the bytes read; F64 narrows; integers widen", () => {
    const p = join(dir, "tensors.safetensors");
    const bf = Uint16Array.from([1, 2, 3].map(f32ToBf16));
    writeSafetensorsSync(p, {
      bf: { dtype: "BF16", shape: [3], data: bf },
      h: { dtype: "F16", shape: [1], data: Uint16Array.of(0x3c00) },
      d: { dtype: "F64", shape: [2], data: Float64Array.from([0.1, -1e300]) },
      i8: { dtype: "I8", shape: [2], data: Int8Array.from([-128, 127]) },
      ok64: { dtype: "I64", shape: [2], data: BigInt64Array.from([-(2n ** 31n), 2n ** 31n - 1n]) },
      big64: { dtype: "I64", shape: [3], data: BigInt64Array.from([0n, 1n, 2n ** 31n]) },
      b: { dtype: "BOOL", shape: [2], bytes: Uint8Array.of(1, 0) },
      f8: { dtype: "F8_E4M3", shape: [1], bytes: Uint8Array.of(1) },
    });
    const f = SafetensorsFile.open(p);
    try {
      const t = f.readTensorSync("bf", be);
      assert.equal(t.dtype, "bf16");
      assert.ok(t.data instanceof Uint16Array);
      assert.deepEqual(t.data, bf);
      assert.deepEqual(t.toFlatArray(), [1, 2, 3]);
      assert.equal(f.readTensorSync("h", be).dtype, "f16");
      const d = f.readTensorSync("d", be);
      assert.equal(d.dtype, "f32");
      assert.deepEqual(Array.from(d.data), [Math.fround(0.1), Number.NEGATIVE_INFINITY]);
      assert.deepEqual(f.readTensorSync("i8", be).toFlatArray(), [-128, 127]);
      assert.deepEqual(f.readTensorSync("ok64", be).toFlatArray(), [-(2 ** 31), 2 ** 31 - 1]);
      assert.throws(
        () => f.readTensorSync("big64", be),
        (e: unknown) =>
          e instanceof SafetensorsError &&
          /tensor "big64": I64 value 2147483648 at index 2 is outside the i32 range/.test(e.message) &&
          e.message.includes(p),
      );
      assert.deepEqual(f.readTensorSync("b", be).toFlatArray(), [1, 0]);
      assert.throws(() => f.readTensorSync("f8", be), /no glassbox tensor dtype/);
    } finally {
      f.close();
    }
  });

  test("tensorToWrite round-trips core tensors", async () => {
    const p = join(dir, "core.safetensors");
    const a = tensor(
      be,
      [
        [1, 2],
        [3, 4.5],
      ],
      { dtype: "bf16" },
    );
    const b = tensor(be, [1, -2, 3], { dtype: "i32" });
    await writeSafetensors(p, { a: tensorToWrite(a), b: tensorToWrite(b) });
    const f = SafetensorsFile.open(p);
    try {
      const a2 = await f.readTensor("a", be);
      assert.equal(a2.dtype, "bf16");
      assert.deepEqual(a2.shape, [2, 2]);
      assert.deepEqual(a2.data, a.data);
      assert.deepEqual(rawToTensor(f.readRawSync("b"), be, p, "b").toFlatArray(), [1, -2, 3]);
    } finally {
      f.close();
    }
  });
});

test("writer header ends in padding and tensors are stored in name order", () => {
  const p = join(dir, "order.safetensors");
  const bytes = (n: number) => bytesOfFloats(ramp(n), Float32Array);
  writeSafetensorsSync(p, {
    zeta: { dtype: "F32", shape: [1], bytes: bytes(1) },
    alpha: { dtype: "F32", shape: [2], bytes: bytes(2) },
    é: { dtype: "F32", shape: [3], bytes: bytes(3) },
    Z: { dtype: "F32", shape: [4], bytes: bytes(4) },
  });
  const f = SafetensorsFile.open(p);
  try {
    assert.deepEqual(f.names(), ["Z", "alpha", "zeta", "é"]);
    assert.deepEqual(f.info("Z").dataOffsets, [0, 16]);
    const raw = readFileSync(p);
    const n = Number(raw.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const text = raw.subarray(8, 8 + n).toString("utf8");
    assert.match(text, /^\{[^ ]*\} *$/);
  } finally {
    f.close();
  }
});
