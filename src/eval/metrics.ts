/**
 * Dictionary evaluation metrics as streaming accumulators, each the definition in
 * /work/shared/reference/algorithms.md ("Evaluation") and docs/evaluation.md:
 *
 * - reconstruction: MSE (per element), FVU = E||x - x_hat||^2 / (E||x||^2 - ||E x||^2) with the
 *   per-dimension mean of the evaluated tokens;
 * - firing: L0 (mean active latents per token), dead fraction (never fired), dense fraction (fired
 *   on more than 10 % of tokens), density histogram over log10(firing frequency);
 * - language-model loss: delta LM loss = CE_spliced - CE_clean, CE loss recovered =
 *   (CE_ablated - CE_spliced) / (CE_ablated - CE_clean), KL score =
 *   (KL_ablated - KL_spliced) / KL_ablated with KL(clean || other) over the vocabulary.
 *
 * Callers pass only the tokens that count (BOS, pad and template tokens already masked out). All
 * sums are float64.
 */
import { EvaluationError } from "../core/errors.js";

/** Sums for MSE and FVU over tokens of width d. */
export class ReconstructionStats {
  tokens = 0;
  private readonly sumX: Float64Array;
  private sumSq = 0;
  private sumErr = 0;

  constructor(readonly d: number) {
    if (!Number.isSafeInteger(d) || d <= 0)
      throw new EvaluationError(`width must be a positive integer, got ${d}`);
    this.sumX = new Float64Array(d);
  }

  /**
   * Adds rows of x and x_hat ([rows, d] row-major); `keep[r]` (when given) says whether row r counts.
   */
  add(x: Float32Array, xHat: Float32Array, keep?: ArrayLike<number>): void {
    const d = this.d;
    if (x.length % d !== 0 || xHat.length !== x.length)
      throw new EvaluationError(
        `x has ${x.length} values and x_hat ${xHat.length}; both must be rows of ${d}`,
      );
    const rows = x.length / d;
    if (keep !== undefined && keep.length !== rows)
      throw new EvaluationError(`mask has ${keep.length} entries for ${rows} rows`);
    for (let r = 0; r < rows; r++) {
      if (keep !== undefined && !keep[r]) continue;
      const o = r * d;
      let sq = 0;
      let err = 0;
      for (let j = 0; j < d; j++) {
        const v = x[o + j];
        const e = v - xHat[o + j];
        this.sumX[j] += v;
        sq += v * v;
        err += e * e;
      }
      this.sumSq += sq;
      this.sumErr += err;
      this.tokens++;
    }
  }

  /** Mean squared error per element: sum ||x - x_hat||^2 / (tokens * d). */
  get mse(): number {
    return this.sumErr / (this.tokens * this.d);
  }

  /** E||x - x_hat||^2 (per token). */
  get meanSquaredErrorNorm(): number {
    return this.sumErr / this.tokens;
  }

  /** E||x||^2 - ||E x||^2: the total variance of x around its per-dimension mean. */
  get variance(): number {
    const n = this.tokens;
    let meanSq = 0;
    for (let j = 0; j < this.d; j++) meanSq += (this.sumX[j] / n) ** 2;
    return this.sumSq / n - meanSq;
  }

  /** Fraction of variance unexplained. */
  get fvu(): number {
    return this.meanSquaredErrorNorm / this.variance;
  }
}

/** A histogram of log10(firing frequency) over latents that fired at least once. */
export interface DensityHistogram {
  /** Bin edges in log10(frequency), ascending; bin i is [edges[i], edges[i+1]) (the last includes 0). */
  readonly edges: number[];
  readonly counts: number[];
  /** Latents that never fired (not in any bin). */
  readonly dead: number;
}

export interface HistogramOptions {
  /** Lowest edge (default -8); rarer latents are counted in the first bin. */
  readonly min?: number;
  /** Bin width in decades (default 0.5). */
  readonly step?: number;
}

/** Per-latent firing counts over tokens. */
export class FiringStats {
  tokens = 0;
  /** Active latents summed over tokens. */
  active = 0;
  readonly counts: Float64Array;

  constructor(readonly width: number) {
    if (!Number.isSafeInteger(width) || width <= 0)
      throw new EvaluationError(`width must be a positive integer, got ${width}`);
    this.counts = new Float64Array(width);
  }

  /** Adds one token whose active latents are `indices` (each at most once). */
  addToken(indices: ArrayLike<number>): void {
    for (let i = 0; i < indices.length; i++) this.counts[indices[i]]++;
    this.active += indices.length;
    this.tokens++;
  }

  /** Adds dense activations [rows, width]; a latent is active where its value is non-zero. */
  addDense(acts: Float32Array, keep?: ArrayLike<number>): void {
    const w = this.width;
    if (acts.length % w !== 0) throw new EvaluationError(`${acts.length} values are not rows of width ${w}`);
    const rows = acts.length / w;
    for (let r = 0; r < rows; r++) {
      if (keep !== undefined && !keep[r]) continue;
      let k = 0;
      for (let j = 0; j < w; j++) {
        if (acts[r * w + j] !== 0) {
          this.counts[j]++;
          k++;
        }
      }
      this.active += k;
      this.tokens++;
    }
  }

  /** Mean number of active latents per token. */
  get l0(): number {
    return this.active / this.tokens;
  }

  /** Fraction of latents that never fired. */
  get deadFraction(): number {
    let dead = 0;
    for (const c of this.counts) if (c === 0) dead++;
    return dead / this.width;
  }

  /** Fraction of latents firing on more than `threshold` of tokens (default 10 %). */
  denseFraction(threshold = 0.1): number {
    let dense = 0;
    for (const c of this.counts) if (c / this.tokens > threshold) dense++;
    return dense / this.width;
  }

  densityHistogram(options: HistogramOptions = {}): DensityHistogram {
    const min = options.min ?? -8;
    const step = options.step ?? 0.5;
    if (!(min < 0) || !(step > 0)) throw new EvaluationError("histogram needs min < 0 and step > 0");
    const bins = Math.ceil(-min / step - 1e-9);
    const edges = Array.from({ length: bins + 1 }, (_, i) => Math.min(0, min + i * step));
    const counts = new Array<number>(bins).fill(0);
    let dead = 0;
    for (const c of this.counts) {
      if (c === 0) {
        dead++;
        continue;
      }
      const lg = Math.log10(c / this.tokens);
      const b = Math.min(bins - 1, Math.max(0, Math.floor((lg - min) / step + 1e-12)));
      counts[b]++;
    }
    return { edges, counts, dead };
  }
}

/** log softmax of one row of logits (float64). */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse;
  return out;
}

/** KL(p || q) = sum_v p_v (log p_v - log q_v) from log-probabilities. */
export function klDivergence(logP: ArrayLike<number>, logQ: ArrayLike<number>): number {
  let kl = 0;
  for (let i = 0; i < logP.length; i++) {
    const p = Math.exp(logP[i]);
    if (p > 0) kl += p * (logP[i] - logQ[i]);
  }
  return kl;
}

/** Per-token losses of the clean, spliced and ablated model, summed. */
export class LossStats {
  tokens = 0;
  private ce = { clean: 0, spliced: 0, ablated: 0 };
  private kl = { spliced: 0, ablated: 0 };

  /**
   * Adds one predicted token: the three models' log-probabilities over the vocabulary at a position
   * and the id of the token that followed it.
   */
  addToken(
    clean: ArrayLike<number>,
    spliced: ArrayLike<number>,
    ablated: ArrayLike<number>,
    target: number,
  ): void {
    this.ce.clean -= clean[target];
    this.ce.spliced -= spliced[target];
    this.ce.ablated -= ablated[target];
    this.kl.spliced += klDivergence(clean, spliced);
    this.kl.ablated += klDivergence(clean, ablated);
    this.tokens++;
  }

  get ceClean(): number {
    return this.ce.clean / this.tokens;
  }

  get ceSpliced(): number {
    return this.ce.spliced / this.tokens;
  }

  get ceAblated(): number {
    return this.ce.ablated / this.tokens;
  }

  get klSpliced(): number {
    return this.kl.spliced / this.tokens;
  }

  get klAblated(): number {
    return this.kl.ablated / this.tokens;
  }

  /** CE with the reconstruction spliced in minus clean CE. */
  get deltaLmLoss(): number {
    return this.ceSpliced - this.ceClean;
  }

  /** (CE_ablated - CE_spliced) / (CE_ablated - CE_clean): 1 = as good as clean, 0 = as bad as ablation. */
  get ceLossRecovered(): number {
    return (this.ceAblated - this.ceSpliced) / (this.ceAblated - this.ceClean);
  }

  /** (KL_ablated - KL_spliced) / KL_ablated. */
  get klScore(): number {
    return (this.klAblated - this.klSpliced) / this.klAblated;
  }
}
