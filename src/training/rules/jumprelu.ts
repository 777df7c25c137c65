/**
 * JumpReLU (Rajamanoharan et al. 2024, "Jumping Ahead") with the Gemma Scope 2 objective.
 *
 * f = z H(z - theta), theta a per-latent parameter (not its log; clamped positive). Gradients:
 * df/dz = H(z - theta); straight-through estimates with the rectangle kernel of bandwidth eps,
 *   df/dtheta = -(theta / eps) K((z - theta) / eps),   dH/dtheta = -(1 / eps) K((z - theta) / eps),
 * K(u) = 1 for |u| < 1/2. Sparsity loss, with l0_t = sum_i H(z_ti - theta_i) the L0 of token t:
 *   lambda * mean_t (2 / L0*) (l0_t - L0*)^2   (quadratic pull towards the target L0*, per token as
 *                                               SAELens' Gemma Scope 2 "quadratic" mode)
 * + mu * sum_i max(0, p_i - tau)               (p_i = fraction of tokens latent i fires on; tau = 0.1)
 * both scaled by the sparsity warm-up. Only the entries with z > theta - eps/2 take part, so the
 * selection is sparse; band entries at z <= 0 (possible only while theta < eps/2) are left out.
 */
import type { Backend } from "../../core/backend.js";
import { TrainingError } from "../../core/errors.js";
import { fromStorage } from "../../core/tensor.js";
import { jumpRelu } from "../../dictionaries/activations/jumprelu.js";
import type { Activation } from "../../dictionaries/types.js";
import type { JsonValue } from "../../io/strict-json.js";
import type { Param, ParamSet } from "../optim.js";
import { CsrBuffers, f32Buffer, selectAbove } from "../sparse.js";
import type { ActivationRule, Auxiliary, RuleContext, Selection } from "./rule.js";

export interface JumpReluSpec {
  readonly kind: "jumprelu";
  /** Target mean L0 per token. */
  readonly targetL0: number;
  /** lambda: coefficient of the quadratic L0 penalty. */
  readonly sparsityCoefficient: number;
  /** mu: coefficient of the high-frequency penalty (0 disables it). */
  readonly frequencyCoefficient: number;
  /** tau: firing fraction above which a latent is penalised. */
  readonly frequencyThreshold: number;
  /** eps: rectangle-kernel bandwidth (Gemma Scope 2: 0.001). */
  readonly bandwidth: number;
  /** Initial threshold (Gemma Scope 2: 0.001). */
  readonly initialThreshold: number;
}

export const JUMPRELU_DEFAULTS: Omit<JumpReluSpec, "targetL0"> = {
  kind: "jumprelu",
  sparsityCoefficient: 1,
  frequencyCoefficient: 1,
  frequencyThreshold: 0.1,
  bandwidth: 0.001,
  initialThreshold: 0.001,
};

/** Thresholds never go below this (they are parameterised directly and must stay positive). */
const MIN_THRESHOLD = 1e-6;

export class JumpReluRule implements ActivationRule {
  readonly params: ParamSet;
  private readonly theta: Param;
  private readonly band = f32Buffer();
  private readonly csr = new CsrBuffers();
  private readonly pre = f32Buffer();
  private readonly fires: Float64Array;
  private readonly bandCount: Float64Array;
  private last: Selection | null = null;

  constructor(
    readonly spec: JumpReluSpec,
    readonly width: number,
  ) {
    if (!(spec.targetL0 > 0 && spec.targetL0 <= width))
      throw new TrainingError(`target L0 ${spec.targetL0} must be in (0, width ${width}]`);
    if (!(spec.bandwidth > 0)) throw new TrainingError(`bandwidth must be positive`);
    if (!(spec.initialThreshold > 0)) throw new TrainingError(`initial threshold must be positive`);
    this.theta = { shape: [width], data: new Float32Array(width).fill(spec.initialThreshold) };
    this.params = { threshold: this.theta };
    this.fires = new Float64Array(width);
    this.bandCount = new Float64Array(width);
  }

  select(pre: Float32Array, ctx: RuleContext, training: boolean): Selection {
    const M = this.width;
    const theta = this.theta.data;
    if (!training) {
      const codes = selectAbove(ctx.backend, pre, ctx.rows, M, theta, this.csr);
      return { codes, active: codes.nnz };
    }
    const lower = this.band.get(M);
    const half = this.spec.bandwidth / 2;
    for (let i = 0; i < M; i++) lower[i] = theta[i] - half;
    const codes = selectAbove(ctx.backend, pre, ctx.rows, M, lower, this.csr);
    const z = this.pre.get(codes.nnz);
    z.set(codes.values.subarray(0, codes.nnz));
    let active = 0;
    const { indices, values } = codes;
    for (let j = 0; j < codes.nnz; j++) {
      if (values[j] > theta[indices[j]]) active++;
      else values[j] = 0;
    }
    this.last = { codes, active };
    return this.last;
  }

  backward(gF: Float32Array, gPre: Float32Array, grads: ParamSet, ctx: RuleContext): number {
    const sel = this.last;
    if (sel === null) throw new TrainingError("JumpReLU backward before a training selection");
    const { codes } = sel;
    const { indices, offsets, nnz } = codes;
    const z = this.pre.get(nnz);
    const theta = this.theta.data;
    const gTheta = grads.threshold.data;
    const { bandwidth: eps, targetL0, frequencyThreshold: tau } = this.spec;
    const B = ctx.rows;
    const fires = this.fires.fill(0);
    const bandCount = this.bandCount.fill(0);
    const half = eps / 2;
    const lambda = this.spec.sparsityCoefficient * ctx.sparsityScale;
    const mu = this.spec.frequencyCoefficient * ctx.sparsityScale;
    const stepGrad = -1 / (eps * B);
    let loss = 0;
    for (let r = 0; r < B; r++) {
      let l0 = 0;
      for (let j = offsets[r]; j < offsets[r + 1]; j++) if (z[j] > theta[indices[j]]) l0++;
      loss += (lambda * (2 / targetL0) * (l0 - targetL0) ** 2) / B;
      // Each band entry's step moves this token's L0: d/dtheta = dLoss/dl0_t * -(1/eps) / B.
      const dl0 = lambda * (4 / targetL0) * (l0 - targetL0) * stepGrad;
      for (let j = offsets[r]; j < offsets[r + 1]; j++) {
        const i = indices[j];
        const th = theta[i];
        const zj = z[j];
        const active = zj > th;
        gPre[j] = active ? gF[j] : 0;
        if (active) fires[i]++;
        if (Math.abs(zj - th) < half) {
          bandCount[i]++;
          gTheta[i] += gF[j] * (-th / eps) + dl0;
        }
      }
    }
    if (mu > 0) {
      for (let i = 0; i < this.width; i++) {
        const p = fires[i] / B;
        if (p <= tau) continue;
        loss += mu * (p - tau);
        gTheta[i] += mu * stepGrad * bandCount[i];
      }
    }
    return loss;
  }

  auxiliary(): Auxiliary | null {
    return null;
  }

  afterStep(): void {
    const t = this.theta.data;
    for (let i = 0; i < t.length; i++) if (!(t[i] >= MIN_THRESHOLD)) t[i] = MIN_THRESHOLD;
  }

  jumpThresholds(): Float32Array {
    return this.theta.data.slice();
  }

  exported(backend: Backend, unit: number): Activation {
    const t = Float32Array.from(this.theta.data, (v) => v / unit);
    return jumpRelu(fromStorage(backend, "f32", [this.width], t));
  }

  state(): JsonValue {
    return null;
  }

  loadState(): void {}
}
