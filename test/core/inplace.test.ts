// In-place ops on every backend: the same values as the out-of-place ops, written into the first
// operand's own storage; refused under a tape and for shapes they cannot write in place.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { availableBackends } from "../../src/backends/index.js";
import { TensorError } from "../../src/core/errors.js";
import * as ops from "../../src/core/ops/index.js";
import { Tape, withTape } from "../../src/core/tape.js";
import { fromStorage, type Tensor } from "../../src/core/tensor.js";
import { randn } from "./helpers.js";

/** A fresh op output holding x's values (the caller owns it, as in-place ops require). */
const own = (x: Tensor<"f32">) => ops.affine(x, 1, 0);

function assertSame(actual: Tensor<"f32">, expected: Tensor<"f32">, what: string): void {
  assert.deepEqual([...actual.shape], [...expected.shape], `${what}: shape`);
  for (let i = 0; i < expected.size; i++) {
    if (!Object.is(actual.data[i], expected.data[i]))
      assert.fail(`${what}[${i}]: ${actual.data[i]} != ${expected.data[i]}`);
  }
}

for (const B of availableBackends()) {
  describe(`in-place ops on the ${B.name} backend`, () => {
    test("equal the out-of-place ops, in the first operand's storage", () => {
      const a = randn(B, [3, 4, 5], 1);
      const b = randn(B, [3, 4, 5], 2);
      const row = randn(B, [1, 4, 1], 3);
      const w = ops.cast(randn(B, [5], 12), "bf16");
      // rope turns pairs of the last axis (of even length 4) by tables [positions, 2].
      const a4 = randn(B, [3, 5, 4], 13);
      const { cos, sin } = ops.ropeTables(fromStorage(B, "i32", [5], Int32Array.of(0, 3, 1, 7, 2)), 4, 100);
      const tables3 = ops.ropeTables(fromStorage(B, "i32", [3], Int32Array.of(5, 0, 9)), 4, 100);
      const [cos3, sin3] = [tables3.cos, tables3.sin];
      const cases: [string, (x: Tensor<"f32">) => Tensor<"f32">, Tensor<"f32">, Tensor<"f32">?][] = [
        ["addInPlace", (x) => ops.addInPlace(x, b), ops.add(a, b)],
        ["addInPlace broadcast", (x) => ops.addInPlace(x, row), ops.add(a, row)],
        ["addInPlace number", (x) => ops.addInPlace(x, 0.5), ops.add(a, 0.5)],
        ["mulInPlace", (x) => ops.mulInPlace(x, b), ops.mul(a, b)],
        ["mulInPlace itself", (x) => ops.mulInPlace(x, x), ops.mul(a, a)],
        ["affineInPlace", (x) => ops.affineInPlace(x, 0.3, -2), ops.affine(a, 0.3, -2)],
        ["geluTanhInPlace", (x) => ops.geluTanhInPlace(x), ops.geluTanh(a)],
        ["softmaxInPlace", (x) => ops.softmaxInPlace(x), ops.softmax(a)],
        [
          "rmsnormInPlace",
          (x) => ops.rmsnormInPlace(x, w, { eps: 1e-3, weightOffset: 1 }),
          ops.rmsnorm(a, w, { eps: 1e-3, weightOffset: 1 }),
        ],
        ["rmsnormInPlace, no weight", (x) => ops.rmsnormInPlace(x, null), ops.rmsnorm(a, null)],
        ["ropeInPlace", (x) => ops.ropeInPlace(x, cos, sin), ops.rope(a4, cos, sin), a4],
        [
          "ropeInPlace inverse",
          (x) => ops.ropeInPlace(x, cos, sin, { inverse: true }),
          ops.rope(a4, cos, sin, { inverse: true }),
          a4,
        ],
        [
          "ropeInPlace, heads after positions",
          (x) => ops.ropeInPlace(x, cos3, sin3, { seqAxis: -3 }),
          ops.rope(a4, cos3, sin3, { seqAxis: -3 }),
          a4,
        ],
      ];
      for (const [name, f, expected, input = a] of cases) {
        const x = own(input);
        const storage = x.data;
        const y = f(x);
        assert.equal(y.data, storage, `${name}: writes its operand's storage`);
        assertSame(y, expected, name);
      }
    });

    test("fillOutsideBands keeps each row's band [lo, hi] and fills the rest", () => {
      const x = randn(B, [2, 3, 6], 4);
      const lo = Int32Array.of(0, 2, 4);
      const hi = Int32Array.of(3, 2, 1); // the last band is empty
      const y = ops.fillOutsideBands(own(x), lo, hi, -9);
      for (let o = 0; o < 2; o++) {
        for (let r = 0; r < 3; r++) {
          for (let j = 0; j < 6; j++) {
            const i = (o * 3 + r) * 6 + j;
            const inside = j >= lo[r] && j <= hi[r];
            assert.equal(y.data[i], inside ? x.data[i] : -9, `[${o}, ${r}, ${j}]`);
          }
        }
      }
      // Bands past either end are clamped.
      const z = ops.fillOutsideBands(own(x), Int32Array.of(-5, 4, 0), Int32Array.of(99, 99, -1), 0);
      assert.equal(z.data[0], x.data[0]);
      assert.equal(z.data[5], x.data[5]);
      assert.equal(z.data[6], 0);
      assert.equal(z.data[10], x.data[10]);
      assert.ok(z.data.subarray(12, 18).every((v) => v === 0));
      assert.throws(() => ops.fillOutsideBands(own(x), lo, Int32Array.of(1), 0), /1 bands for 3 rows/);
    });

    test("assignNarrow writes pieces where concat would put them", () => {
      const parts = [randn(B, [2, 3, 4], 5), randn(B, [2, 1, 4], 6), randn(B, [2, 2, 4], 7)];
      const whole = ops.empty(B, [2, 6, 4]);
      // In any order.
      ops.assignNarrow(whole, 1, 4, parts[2]);
      ops.assignNarrow(whole, 1, 0, parts[0]);
      ops.assignNarrow(whole, -2, 3, parts[1]);
      assertSame(whole, ops.concat(parts, 1), "assignNarrow");
      assert.throws(() => ops.assignNarrow(whole, 1, 5, parts[2]), /does not fit/);
      assert.throws(() => ops.assignNarrow(whole, 1, 0, randn(B, [2, 1, 3], 8)), /does not fit/);
    });

    test("rope with heads after positions turns every head as rope on [.., heads, seq, dim] does", () => {
      const x = randn(B, [2, 3, 4, 6], 14); // [batch, seq, heads, dim]
      const { cos, sin } = ops.ropeTables(fromStorage(B, "i32", [3], Int32Array.of(2, 0, 11)), 6, 50);
      const want = ops.permute(ops.rope(ops.permute(x, [0, 2, 1, 3]), cos, sin), [0, 2, 1, 3]);
      assertSame(ops.rope(x, cos, sin, { seqAxis: -3 }), want, "rope seqAxis -3");
      assertSame(ops.ropeInPlace(own(x), cos, sin, { seqAxis: -3 }), want, "ropeInPlace seqAxis -3");
      assert.throws(() => ops.rope(x, cos, sin), /tables must be \[4, 3\]/);
    });

    test("assignRegion writes a (permuted) block where slicing would read it back", () => {
      const dst = own(randn(B, [2, 5, 3, 4], 15));
      const before = Float32Array.from(dst.data);
      const src = randn(B, [1, 3, 2, 4], 16); // [1, heads, n, dim] -> [1, n, heads, dim]
      ops.assignRegion(dst, [1, 2, 0, 0], src, [0, 2, 1, 3]);
      assertSame(
        ops.slice(dst, [
          { start: 1, stop: 2 },
          { start: 2, stop: 4 },
        ]),
        ops.permute(src, [0, 2, 1, 3]),
        "region",
      );
      // Everything outside the region is untouched.
      for (let i = 0; i < dst.size; i++) {
        const [b, t] = [Math.floor(i / 60), Math.floor(i / 12) % 5];
        if (!(b === 1 && t >= 2 && t < 4)) assert.equal(dst.data[i], before[i], `[${i}] untouched`);
      }
      assert.throws(() => ops.assignRegion(dst, [1, 4, 0, 0], src, [0, 2, 1, 3]), /does not fit/);
      assert.throws(() => ops.assignRegion(dst, [0, 0, 0, 0], src, [0, 1, 1, 3]), /not a permutation/);
      const view = fromStorage(B, "f32", [1, 1, 3, 4], dst.data.subarray(0, 12));
      assert.throws(() => ops.assignRegion(dst, [0, 1, 0, 0], view), /overlaps/);
    });

    test("refused under a tape, for a result of another shape, and for an overlapping operand", () => {
      const a = randn(B, [2, 3], 9);
      withTape(new Tape(), () => {
        assert.throws(
          () => ops.geluTanhInPlace(own(a)),
          (e: unknown) => e instanceof TensorError,
        );
        assert.throws(() => ops.addInPlace(own(a), 1), /while a tape records/);
      });
      assert.throws(
        () => ops.addInPlace(own(randn(B, [1, 3], 10)), a),
        /would broadcast the result to \[2, 3\]/,
      );
      const x = own(randn(B, [2, 3], 11));
      const tail = fromStorage(B, "f32", [1, 3], x.data.subarray(3, 6));
      assert.throws(() => ops.addInPlace(x, tail), /overlaps the left one's storage/);
      // Another part of the same buffer is a separate operand.
      const both = new Float32Array(12);
      const left = fromStorage(B, "f32", [2, 3], both.subarray(0, 6)).data.fill(1);
      const right = fromStorage(B, "f32", [2, 3], both.subarray(6, 12));
      right.data.fill(2);
      ops.addInPlace(fromStorage(B, "f32", [2, 3], left), right);
      assert.deepEqual([...both], [3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2]);
    });
  });
}
