/**
 * Native dictionary-training kernels (native/training.c documents each argument list): the addon's
 * exports and the `Backend` methods wrapping them.
 */
import type { Backend } from "../../core/backend.js";
import { TensorError } from "../../core/errors.js";

export interface TrainingAddon {
  /** Returns -1, or the position in `indices` of an out-of-range index (nothing written then). */
  sparseDot(
    offsets: Int32Array,
    indices: Int32Array,
    a: Float32Array,
    w: Float32Array,
    out: Float32Array,
    rows: number,
    n: number,
    wRows: number,
    wRowStride: number,
  ): number;
  kthLargest(x: Float32Array, n: number, k: number): number;
  adamUpdate(
    w: Float32Array,
    g: Float32Array,
    m: Float32Array | null,
    v: Float32Array,
    beta1: number,
    beta2: number,
    eps: number,
    stepSize: number,
    vScale: number,
  ): void;
  projectOutRows(w: Float32Array, g: Float32Array, rows: number, cols: number): void;
  normalizeRows(w: Float32Array, rows: number, cols: number): void;
}

export type TrainingKernels = Pick<
  Backend,
  "sparseDot" | "kthLargest" | "adamUpdate" | "projectOutRows" | "normalizeRows"
>;

export function wrapTraining(addon: TrainingAddon): TrainingKernels {
  return {
    sparseDot: (offsets, indices, a, w, out, g) => {
      const bad = addon.sparseDot(offsets, indices, a, w, out, g.rows, g.n, g.wRows, g.wRowStride);
      if (bad >= 0) throw new TensorError(`index ${indices[bad]} out of range [0, ${g.wRows})`);
    },
    kthLargest: (x, n, k) => {
      if (!(Number.isInteger(k) && k >= 1))
        throw new TensorError(`kthLargest: k must be an integer >= 1, got ${k}`);
      return addon.kthLargest(x, n, k);
    },
    adamUpdate: (w, g, m, v, a) =>
      addon.adamUpdate(w, g, m, v, a.beta1, a.beta2, a.eps, a.stepSize, a.vScale),
    projectOutRows: (w, g, rows, cols) => addon.projectOutRows(w, g, rows, cols),
    normalizeRows: (w, rows, cols) => addon.normalizeRows(w, rows, cols),
  };
}
