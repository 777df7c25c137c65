/**
 * The activation rule of a dictionary being trained: how pre-activations become sparse codes, the
 * gradient back through that choice, and the rule's own sparsity objective. One file per rule
 * (`jumprelu.ts`, `topk.ts`, `batchtopk.ts`); the sparse coder (`../coder.ts`) never branches on
 * which rule it holds.
 */
import type { Backend } from "../../core/backend.js";
import type { Activation } from "../../dictionaries/types.js";
import type { JsonValue } from "../../io/strict-json.js";
import type { ParamSet } from "../optim.js";
import type { Csr } from "../sparse.js";

export interface RuleContext {
  readonly backend: Backend;
  /** Tokens in the batch. */
  readonly rows: number;
  /** Sparsity-coefficient warm-up multiplier in [0, 1] for this step. */
  readonly sparsityScale: number;
}

/** A rule's choice for one batch. */
export interface Selection {
  /**
   * CSR [rows, width] of every entry that takes part in the step. Values are the activations f;
   * entries kept only for a straight-through estimator have value 0.
   */
  readonly codes: Csr;
  /** Entries with f > 0. */
  readonly active: number;
}

/** Dead latents to revive with the auxiliary loss (AuxK), and its weight. */
export interface Auxiliary {
  /** CSR [rows, width] of the selected pre-activations of dead latents. */
  readonly codes: Csr;
  /** Coefficient of ||e_hat - e||^2 (already including the dead-count scale). */
  readonly coefficient: number;
}

export interface ActivationRule {
  /** Trainable parameters the rule adds (e.g. JumpReLU's threshold), updated by the optimiser. */
  readonly params: ParamSet;
  /**
   * Chooses the codes for pre-activations `pre` [rows, width]. `training` false gives the inference
   * rule (the one a Gemma Scope 2 export reproduces).
   */
  select(pre: Float32Array, ctx: RuleContext, training: boolean): Selection;
  /**
   * Given dL/df for each entry of the last training selection (`gF`), writes dL/dpre for each entry
   * into `gPre`, adds the gradients of `params` into `grads` (same names) and returns the sparsity
   * loss (included in the step's loss).
   */
  backward(gF: Float32Array, gPre: Float32Array, grads: ParamSet, ctx: RuleContext): number;
  /** The AuxK selection over `dead` latents (ids), or null when the rule has no auxiliary loss. */
  auxiliary(pre: Float32Array, dead: Int32Array, ctx: RuleContext): Auxiliary | null;
  /** Applies constraints after an optimiser step (e.g. keeps thresholds positive). */
  afterStep(): void;
  /**
   * Per-latent JumpReLU thresholds (training units) that reproduce the inference rule exactly, or
   * null when no threshold can (TopK keeps a fixed count per token).
   */
  jumpThresholds(): Float32Array | null;
  /**
   * The inference rule as a dictionaries `Activation` for pre-activations divided by `unit` (export
   * folds the input scale into the weights, which divides every pre-activation by one number).
   */
  exported(backend: Backend, unit: number): Activation;
  /** Non-parameter state for checkpoints (e.g. a running threshold). */
  state(): JsonValue;
  loadState(state: JsonValue): void;
}

/** Largest float32 strictly below a positive float32 `v` (so that `x > below(v)` means `x >= v`). */
export function float32Below(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer);
  if (v > 0) u[0] -= 1;
  else if (v === 0) return -Number.MIN_VALUE;
  else u[0] += 1;
  return f[0];
}
