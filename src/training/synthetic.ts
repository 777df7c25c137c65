/**
 * Synthetic activations from a known ("planted") sparse dictionary, to test that trainers recover
 * the features they were given (the toy-model check of Sharkey et al. 2022 and Bricken et al. 2023).
 *
 * Features fire independently, feature i with probability p_i following a Zipf-like spread
 * (p_i ∝ (i + 1)^-zipf, scaled so that sum p_i = the mean L0, then capped), with magnitudes
 * uniform in [0.5, 1.5]. Each layer l reads `x_l = sum_i f_i v_i` (unit v_i). Outputs:
 * - "sae": the source serves only x;
 * - "transcoder": y = sum_i f_i u_i (+ x A with a planted dense skip map A; with `signed` inputs
 *   carry +-f_i v_i, which leaves the feature part no linear component);
 * - cross-layer ("layers" > 1): features of layer l write y_l' = sum f_i u_i^(l->l') for every l' >= l,
 *   each feature's concatenated output directions having unit norm.
 * Token t of the stream is generated from its own seeded generator, so a cursor (a token count) is
 * all a checkpoint needs and any batch size sees the same token sequence.
 */
import { TrainingError } from "../core/errors.js";
import { Rng } from "../core/random.js";
import { type ActivationBatch, type BatchSource, positionOf, type SourceCursor } from "./source.js";

export interface PlantedOptions {
  /** Input (and output) width. */
  readonly d: number;
  /** Planted features per layer. */
  readonly features: number;
  /** Expected active features per token per layer. */
  readonly meanL0: number;
  /** Layers (1 for SAEs and transcoders). */
  readonly layers?: number;
  /** "sae": inputs only; "transcoder": inputs and outputs. */
  readonly kind: "sae" | "transcoder";
  /** Frequency spread exponent (default 0.6). */
  readonly zipf?: number;
  /** Cap on any feature's firing probability (default 0.5). */
  readonly maxFrequency?: number;
  /** Norm of the planted dense skip map A relative to an orthogonal map (0 = none, the default). */
  readonly skip?: number;
  /**
   * Inputs carry each active feature with a random sign (+-f v_i) while outputs get +f u_i: an even
   * map of x with no linear part, so a skip connection can only learn the planted A.
   */
  readonly signed?: boolean;
  /** Gaussian noise std per coordinate (default 0). */
  readonly noise?: number;
  readonly seed: number;
}

/** The planted ground truth. */
export interface PlantedDictionary {
  /** Per layer: [features, d] unit input directions. */
  readonly inputs: readonly Float32Array[];
  /** Per source layer l: [features, (layers - l) * d] output directions (unit rows); empty for "sae". */
  readonly outputs: readonly Float32Array[];
  /** Per layer: [d, d] skip map (y += x A), or null. */
  readonly skip: readonly (Float32Array | null)[];
  /** [features] firing probability. */
  readonly frequencies: Float64Array;
}

function unitRows(rng: Rng, rows: number, d: number): Float32Array {
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let n = 0;
    const row = new Float64Array(d);
    for (let c = 0; c < d; c++) {
      row[c] = rng.normal();
      n += row[c] * row[c];
    }
    const s = 1 / Math.sqrt(n);
    for (let c = 0; c < d; c++) out[r * d + c] = row[c] * s;
  }
  return out;
}

export function plantDictionary(o: PlantedOptions): PlantedDictionary {
  const layers = o.layers ?? 1;
  if (!(o.d > 0 && o.features > 0 && o.meanL0 > 0 && layers >= 1))
    throw new TrainingError("planted dictionary: d, features, meanL0 and layers must be positive");
  if (o.kind === "sae" && layers !== 1) throw new TrainingError("planted SAE data has one layer");
  const rng = new Rng(o.seed);
  const zipf = o.zipf ?? 0.6;
  const raw = Array.from({ length: o.features }, (_, i) => (i + 1) ** -zipf);
  const total = raw.reduce((a, b) => a + b, 0);
  const cap = o.maxFrequency ?? 0.5;
  const frequencies = Float64Array.from(raw, (v) => Math.min(cap, (v / total) * o.meanL0));
  const inputs: Float32Array[] = [];
  const outputs: Float32Array[] = [];
  const skip: (Float32Array | null)[] = [];
  for (let l = 0; l < layers; l++) {
    inputs.push(unitRows(rng, o.features, o.d));
    if (o.kind === "transcoder") outputs.push(unitRows(rng, o.features, (layers - l) * o.d));
    const s = o.skip ?? 0;
    if (s > 0) {
      const a = new Float32Array(o.d * o.d);
      for (let i = 0; i < a.length; i++) a[i] = (rng.normal() * s) / Math.sqrt(o.d);
      skip.push(a);
    } else skip.push(null);
  }
  return { inputs, outputs, skip, frequencies };
}

/** Site keys served by a planted source: `in.L` and (transcoders) `out.L`. */
export const plantedSite = (dir: "in" | "out", layer: number): string => `${dir}.${layer}`;

export class PlantedSource implements BatchSource {
  readonly sites: ReadonlyMap<string, number>;
  readonly fingerprint: string;
  readonly truth: PlantedDictionary;
  private position = 0;
  private readonly layers: number;

  /** `limit`: tokens before the stream ends (default unlimited). */
  constructor(
    private readonly o: PlantedOptions,
    private readonly limit = Number.MAX_SAFE_INTEGER,
  ) {
    this.layers = o.layers ?? 1;
    this.truth = plantDictionary(o);
    const sites = new Map<string, number>();
    for (let l = 0; l < this.layers; l++) {
      sites.set(plantedSite("in", l), o.d);
      if (o.kind === "transcoder") sites.set(plantedSite("out", l), o.d);
    }
    this.sites = sites;
    this.fingerprint = `planted:${JSON.stringify(o)}`;
  }

  async next(tokens: number, sites: readonly string[]): Promise<ActivationBatch | null> {
    return this.nextSync(tokens, sites);
  }

  nextSync(tokens: number, sites: readonly string[]): ActivationBatch | null {
    if (this.position + tokens > this.limit) return null;
    for (const s of sites) if (!this.sites.has(s)) throw new TrainingError(`the source has no site ${s}`);
    const { d, features, kind } = this.o;
    const L = this.layers;
    const xs = Array.from({ length: L }, () => new Float32Array(tokens * d));
    const ys = kind === "transcoder" ? Array.from({ length: L }, () => new Float32Array(tokens * d)) : [];
    const { inputs, outputs, skip, frequencies } = this.truth;
    const noise = this.o.noise ?? 0;
    const signed = this.o.signed ?? false;
    for (let t = 0; t < tokens; t++) {
      const rng = new Rng((this.o.seed % 2 ** 20) * 2 ** 32 + this.position + t);
      for (let l = 0; l < L; l++) {
        const x = xs[l].subarray(t * d, (t + 1) * d);
        for (let i = 0; i < features; i++) {
          if (rng.uniform() >= frequencies[i]) continue;
          const f = 0.5 + rng.uniform();
          const fx = signed && rng.uniform() < 0.5 ? -f : f;
          const v = inputs[l].subarray(i * d, (i + 1) * d);
          for (let c = 0; c < d; c++) x[c] += fx * v[c];
          if (kind !== "transcoder") continue;
          const w = (L - l) * d;
          const u = outputs[l].subarray(i * w, (i + 1) * w);
          for (let lo = l; lo < L; lo++) {
            const y = ys[lo].subarray(t * d, (t + 1) * d);
            const off = (lo - l) * d;
            for (let c = 0; c < d; c++) y[c] += f * u[off + c];
          }
        }
        if (noise > 0) for (let c = 0; c < d; c++) x[c] += noise * rng.normal();
      }
      if (kind === "transcoder") {
        for (let l = 0; l < L; l++) {
          const a = skip[l];
          if (a === null) continue;
          const x = xs[l].subarray(t * d, (t + 1) * d);
          const y = ys[l].subarray(t * d, (t + 1) * d);
          for (let r = 0; r < d; r++) {
            const xr = x[r];
            for (let c = 0; c < d; c++) y[c] += xr * a[r * d + c];
          }
        }
      }
    }
    this.position += tokens;
    const out = new Map<string, Float32Array>();
    for (let l = 0; l < L; l++) {
      out.set(plantedSite("in", l), xs[l]);
      if (kind === "transcoder") out.set(plantedSite("out", l), ys[l]);
    }
    return { tokens, sites: out };
  }

  cursor(): SourceCursor {
    return { position: this.position };
  }

  seek(cursor: SourceCursor): void {
    this.position = positionOf(cursor);
  }
}

/**
 * For each planted row, the best cosine similarity with any learned row (both [*, d] row-major).
 * Used by the recovery tests: a feature counts as recovered when its best cosine exceeds 0.9.
 */
export function bestCosines(planted: Float32Array, learned: Float32Array, d: number): Float64Array {
  const P = planted.length / d;
  const Q = learned.length / d;
  const norms = new Float64Array(Q);
  for (let q = 0; q < Q; q++) {
    let n = 0;
    for (let c = 0; c < d; c++) n += learned[q * d + c] ** 2;
    norms[q] = Math.sqrt(n) || 1;
  }
  const best = new Float64Array(P);
  for (let p = 0; p < P; p++) {
    let pn = 0;
    for (let c = 0; c < d; c++) pn += planted[p * d + c] ** 2;
    pn = Math.sqrt(pn) || 1;
    let b = -1;
    for (let q = 0; q < Q; q++) {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += planted[p * d + c] * learned[q * d + c];
      b = Math.max(b, dot / (pn * norms[q]));
    }
    best[p] = b;
  }
  return best;
}
