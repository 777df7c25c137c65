/**
 * TopK (Makhzani & Frey 2013; Gao et al. 2024): each token keeps its k largest positive
 * pre-activations; gradients flow to the kept entries unchanged. No sparsity loss; dead latents are
 * revived with AuxK. The rule is not a JumpReLU (its cut-off differs per token): it exports as the
 * dictionaries' TopK activation (a Gemma Scope 2 style folder with architecture "topk").
 */
import { TrainingError } from "../../core/errors.js";
import { topK } from "../../dictionaries/activations/topk.js";
import type { Activation } from "../../dictionaries/types.js";
import type { JsonValue } from "../../io/strict-json.js";
import type { ParamSet } from "../optim.js";
import { CsrBuffers, f32Buffer, i32Buffer } from "../sparse.js";
import { AuxK, type AuxKSpec } from "./auxk.js";
import type { ActivationRule, Auxiliary, RuleContext, Selection } from "./rule.js";

export interface TopKSpec extends AuxKSpec {
  readonly kind: "topk";
  /** Latents kept per token. */
  readonly k: number;
}

export class TopKRule implements ActivationRule {
  readonly params: ParamSet = {};
  private readonly aux: AuxK;
  private readonly topValues = f32Buffer();
  private readonly topIndices = i32Buffer();
  private readonly csr = new CsrBuffers();

  constructor(
    readonly spec: TopKSpec,
    readonly width: number,
  ) {
    if (!(Number.isInteger(spec.k) && spec.k >= 1 && spec.k <= width))
      throw new TrainingError(`k = ${spec.k} must be an integer in [1, width ${width}]`);
    this.aux = new AuxK(spec);
  }

  select(pre: Float32Array, ctx: RuleContext): Selection {
    const { rows } = ctx;
    const k = this.spec.k;
    const values = this.topValues.get(rows * k);
    const idx = this.topIndices.get(rows * k);
    ctx.backend.topk(pre, rows, this.width, k, values, idx);
    const offsets = this.csr.offsets.get(rows + 1);
    const indices = this.csr.indices.get(rows * k);
    const vals = this.csr.values.get(rows * k);
    let n = 0;
    offsets[0] = 0;
    for (let t = 0; t < rows; t++) {
      for (let j = t * k; j < (t + 1) * k; j++) {
        if (!(values[j] > 0)) break;
        indices[n] = idx[j];
        vals[n] = values[j];
        n++;
      }
      offsets[t + 1] = n;
    }
    return { codes: { rows, cols: this.width, offsets, indices, values: vals, nnz: n }, active: n };
  }

  backward(gF: Float32Array, gPre: Float32Array): number {
    gPre.set(gF);
    return 0;
  }

  auxiliary(pre: Float32Array, dead: Int32Array, ctx: RuleContext): Auxiliary | null {
    return this.aux.select(ctx.backend, pre, ctx.rows, this.width, dead);
  }

  afterStep(): void {}

  jumpThresholds(): null {
    return null;
  }

  /** Dividing every pre-activation by one positive number keeps each token's ranking. */
  exported(): Activation {
    return topK(this.spec.k);
  }

  state(): JsonValue {
    return null;
  }

  loadState(): void {}
}
