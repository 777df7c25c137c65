/**
 * BatchTopK (Bussmann, Leask & Nanda 2024): a training batch of B tokens keeps its k * B largest
 * positive pre-activations overall, so L0 averages k while varying per token. Inference uses one
 * global threshold, the running average of the smallest kept activation (rate 0.01, started at the
 * first batch's value), which makes the dictionary a JumpReLU with that threshold for every latent.
 * Dead latents are revived with AuxK.
 */
import type { Backend } from "../../core/backend.js";
import { TrainingError } from "../../core/errors.js";
import { full } from "../../core/tensor.js";
import { jumpRelu } from "../../dictionaries/activations/jumprelu.js";
import type { Activation } from "../../dictionaries/types.js";
import type { JsonValue } from "../../io/strict-json.js";
import type { ParamSet } from "../optim.js";
import { CsrBuffers, selectAbove } from "../sparse.js";
import { AuxK, type AuxKSpec } from "./auxk.js";
import {
  type ActivationRule,
  type Auxiliary,
  float32Below,
  type RuleContext,
  type Selection,
} from "./rule.js";

export interface BatchTopKSpec extends AuxKSpec {
  readonly kind: "batchtopk";
  /** Mean latents kept per token. */
  readonly k: number;
  /** Rate of the running threshold average. */
  readonly thresholdRate: number;
}

export class BatchTopKRule implements ActivationRule {
  readonly params: ParamSet = {};
  /** The inference threshold (training units); NaN until the first training batch. */
  threshold = Number.NaN;
  private readonly aux: AuxK;
  private readonly csr = new CsrBuffers();
  private readonly one = new Float32Array(1);

  constructor(
    readonly spec: BatchTopKSpec,
    readonly width: number,
  ) {
    if (!(spec.k > 0 && spec.k <= width))
      throw new TrainingError(`k = ${spec.k} must be in (0, width ${width}]`);
    if (!(spec.thresholdRate > 0 && spec.thresholdRate <= 1))
      throw new TrainingError(`thresholdRate must be in (0, 1]`);
    this.aux = new AuxK(spec);
  }

  select(pre: Float32Array, ctx: RuleContext, training: boolean): Selection {
    const { rows, backend } = ctx;
    if (!training) {
      this.one[0] = Number.isNaN(this.threshold) ? 0 : this.threshold;
      const codes = selectAbove(backend, pre, rows, this.width, this.one, this.csr);
      return { codes, active: codes.nnz };
    }
    const keep = Math.max(1, Math.round(this.spec.k * rows));
    const kth = backend.kthLargest(pre, rows * this.width, keep);
    this.one[0] = kth > 0 ? float32Below(kth) : 0;
    const codes = selectAbove(backend, pre, rows, this.width, this.one, this.csr);
    if (kth > 0) {
      const r = this.spec.thresholdRate;
      this.threshold = Number.isNaN(this.threshold) ? kth : (1 - r) * this.threshold + r * kth;
    }
    return { codes, active: codes.nnz };
  }

  backward(gF: Float32Array, gPre: Float32Array): number {
    gPre.set(gF);
    return 0;
  }

  auxiliary(pre: Float32Array, dead: Int32Array, ctx: RuleContext): Auxiliary | null {
    return this.aux.select(ctx.backend, pre, ctx.rows, this.width, dead);
  }

  afterStep(): void {}

  jumpThresholds(): Float32Array {
    return new Float32Array(this.width).fill(Number.isNaN(this.threshold) ? 0 : this.threshold);
  }

  /** A JumpReLU with the running threshold for every latent (how Gemma Scope 2 released its CLTs). */
  exported(backend: Backend, unit: number): Activation {
    return jumpRelu(full(backend, [this.width], (Number.isNaN(this.threshold) ? 0 : this.threshold) / unit));
  }

  state(): JsonValue {
    return { threshold: Number.isNaN(this.threshold) ? null : this.threshold };
  }

  loadState(state: JsonValue): void {
    const t =
      typeof state === "object" && state !== null && !Array.isArray(state) ? state.threshold : undefined;
    if (t === null) this.threshold = Number.NaN;
    else if (typeof t === "number") this.threshold = t;
    else throw new TrainingError(`bad BatchTopK state ${JSON.stringify(state)}`);
  }
}
