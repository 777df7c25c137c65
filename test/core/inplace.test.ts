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
      const cases: [string, (x: Tensor<"f32">) => Tensor<"f32">, Tensor<"f32">][] = [
        ["addInPlace", (x) => ops.addInPlace(x, b), ops.add(a, b)],
        ["addInPlace broadcast", (x) => ops.addInPlace(x, row), ops.add(a, row)],
        ["addInPlace number", (x) => ops.addInPlace(x, 0.5), ops.add(a, 0.5)],
        ["mulInPlace", (x) => ops.mulInPlace(x, b), ops.mul(a, b)],
        ["mulInPlace itself", (x) => ops.mulInPlace(x, x), ops.mul(a, a)],
        ["affineInPlace", (x) => ops.affineInPlace(x, 0.3, -2), ops.affine(a, 0.3, -2)],
        ["geluTanhInPlace", (x) => ops.geluTanhInPlace(x), ops.geluTanh(a)],
        ["softmaxInPlace", (x) => ops.softmaxInPlace(x), ops.softmax(a)],
      ];
      for (const [name, f, expected] of cases) {
        const x = own(a);
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
