/**
 * Adam (Kingma & Ba 2015) over named float32 parameters, updated in place, and the Gemma Scope 2
 * schedules: learning rate with a cosine warm-up from `warmupFrom * lr`, then constant (optionally a
 * linear decay to zero over the last `decaySteps`), and a linear warm-up of the sparsity coefficient.
 *
 * Parameters are plain `Float32Array`s owned by the trainer (not immutable `Tensor`s): a training
 * step overwrites them, so nothing may keep a view of them across steps.
 */
import type { Backend } from "../core/backend.js";

/** A trainable array and its shape (outermost first). */
export interface Param {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export type ParamSet = Readonly<Record<string, Param>>;

export interface AdamOptions {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
}

/** Gemma Scope 2: beta = (0, 0.999), eps 1e-8. */
export const GEMMA_SCOPE_ADAM: AdamOptions = { beta1: 0, beta2: 0.999, eps: 1e-8 };

export class Adam {
  /** Steps taken. */
  t = 0;
  /** First moments (absent when beta1 = 0: the update uses the gradient itself). */
  readonly m: Map<string, Float32Array> = new Map();
  /** Second moments. */
  readonly v: Map<string, Float32Array> = new Map();

  constructor(
    readonly options: AdamOptions,
    params: ParamSet,
  ) {
    for (const [name, p] of Object.entries(params)) {
      this.v.set(name, new Float32Array(p.data.length));
      if (options.beta1 !== 0) this.m.set(name, new Float32Array(p.data.length));
    }
  }

  /** One update of every parameter with its gradient (same names) at learning rate `lr`. */
  step(backend: Backend, params: ParamSet, grads: ParamSet, lr: number): void {
    this.t++;
    const { beta1, beta2, eps } = this.options;
    const args = {
      beta1,
      beta2,
      eps,
      stepSize: lr / (1 - beta1 ** this.t),
      vScale: 1 / Math.sqrt(1 - beta2 ** this.t),
    };
    for (const [name, p] of Object.entries(params)) {
      backend.adamUpdate(p.data, grads[name].data, this.m.get(name) ?? null, this.v.get(name)!, args);
    }
  }
}

export interface Schedule {
  /** Peak learning rate. */
  readonly lr: number;
  /** Steps of cosine warm-up from `warmupFrom * lr` to `lr` (Gemma Scope 2: 1,000 from 0.1). */
  readonly lrWarmupSteps: number;
  readonly lrWarmupFrom: number;
  /** Steps of linear decay to zero at the end of training (0: none). */
  readonly lrDecaySteps: number;
  /** Steps of linear warm-up of the sparsity coefficient from 0 (Gemma Scope 2: 50,000). */
  readonly sparsityWarmupSteps: number;
  readonly totalSteps: number;
}

/** Learning rate at step `t` (0-based: the rate used for the (t+1)-th update). */
export function learningRate(s: Schedule, t: number): number {
  let lr = s.lr;
  if (t < s.lrWarmupSteps) {
    const u = t / s.lrWarmupSteps;
    lr *= s.lrWarmupFrom + ((1 - s.lrWarmupFrom) * (1 - Math.cos(Math.PI * u))) / 2;
  }
  const decayStart = s.totalSteps - s.lrDecaySteps;
  if (s.lrDecaySteps > 0 && t >= decayStart) lr *= Math.max(0, (s.totalSteps - t) / s.lrDecaySteps);
  return lr;
}

/** Sparsity coefficient multiplier in [0, 1] at step t. */
export function sparsityWarmup(s: Schedule, t: number): number {
  return s.sparsityWarmupSteps <= 0 ? 1 : Math.min(1, (t + 1) / s.sparsityWarmupSteps);
}
