/**
 * AuxK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", appendix A.2): the top
 * k_aux pre-activations among dead latents (no firing for a window of tokens) reconstruct the
 * main reconstruction's residual e = y - y_hat (no gradient through e), without the decoder bias;
 * loss = coefficient * min(dead / k_aux, 1) * mean_t ||e_hat_t - e_t||^2 (the SAELens scaling).
 */
import type { Backend } from "../../core/backend.js";
import { TrainingError } from "../../core/errors.js";
import { CsrBuffers, f32Buffer, i32Buffer } from "../sparse.js";
import type { Auxiliary } from "./rule.js";

export interface AuxKSpec {
  /** Dead latents decoded per token (default: half the input width). */
  readonly auxK: number;
  /** Loss coefficient (1/32 in Gao et al.). */
  readonly auxCoefficient: number;
}

export class AuxK {
  private readonly gathered = f32Buffer();
  private readonly topValues = f32Buffer();
  private readonly topIndices = i32Buffer();
  private readonly csr = new CsrBuffers();

  constructor(readonly spec: AuxKSpec) {
    if (!(Number.isInteger(spec.auxK) && spec.auxK >= 0))
      throw new TrainingError(`auxK must be an integer >= 0`);
  }

  select(
    backend: Backend,
    pre: Float32Array,
    rows: number,
    width: number,
    dead: Int32Array,
  ): Auxiliary | null {
    const nDead = dead.length;
    if (nDead === 0 || this.spec.auxK === 0 || this.spec.auxCoefficient === 0) return null;
    const k = Math.min(this.spec.auxK, nDead);
    const g = this.gathered.get(rows * nDead);
    for (let t = 0; t < rows; t++) {
      const src = t * width;
      const dst = t * nDead;
      for (let j = 0; j < nDead; j++) g[dst + j] = pre[src + dead[j]];
    }
    const values = this.topValues.get(rows * k);
    const idx = this.topIndices.get(rows * k);
    backend.topk(g, rows, nDead, k, values, idx);
    const offsets = this.csr.offsets.get(rows + 1);
    const indices = this.csr.indices.get(rows * k);
    const vals = this.csr.values.get(rows * k);
    let n = 0;
    offsets[0] = 0;
    for (let t = 0; t < rows; t++) {
      for (let j = t * k; j < (t + 1) * k; j++) {
        if (!(values[j] > 0)) break;
        indices[n] = dead[idx[j]];
        vals[n] = values[j];
        n++;
      }
      offsets[t + 1] = n;
    }
    return {
      codes: { rows, cols: width, offsets, indices, values: vals, nnz: n },
      coefficient: this.spec.auxCoefficient * Math.min(nDead / this.spec.auxK, 1),
    };
  }
}
