/**
 * Row iteration over an N-d index space with per-operand strides, shared by the reference backend's
 * broadcasting and copy kernels. Strides are in elements; a stride of 0 repeats (broadcasts).
 */

/**
 * Calls `row(offsets)` once per row of the last dimension, in row-major order. `offsets[i]` is the
 * element offset of the row's first element in operand `i` (starting from `starts[i]`); the body
 * walks the row itself using `strides[i][last]`.
 */
export function forEachRow(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
  starts: readonly number[],
  row: (offsets: readonly number[]) => void,
): void {
  const nd = shape.length;
  if (shape.some((s) => s === 0)) return;
  const offsets = [...starts];
  if (nd <= 1) {
    row(offsets);
    return;
  }
  const outerDims = nd - 1;
  const index = new Array<number>(outerDims).fill(0);
  let rows = 1;
  for (let d = 0; d < outerDims; d++) rows *= shape[d];
  for (let r = 0; r < rows; r++) {
    row(offsets);
    for (let d = outerDims - 1; d >= 0; d--) {
      index[d]++;
      for (let i = 0; i < offsets.length; i++) offsets[i] += strides[i][d];
      if (index[d] < shape[d]) break;
      for (let i = 0; i < offsets.length; i++) offsets[i] -= strides[i][d] * shape[d];
      index[d] = 0;
    }
  }
}

/** Length and per-operand stride of the innermost dimension (1 and 0s for a 0-d shape). */
export function lastDim(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
): [number, number[]] {
  const nd = shape.length;
  if (nd === 0) return [1, strides.map(() => 0)];
  return [shape[nd - 1], strides.map((s) => s[nd - 1])];
}
