/**
 * `FeaturePage`: everything a feature statistics database holds about one dictionary feature, as
 * one plain record (what `glassbox features show --json` prints, what the dashboard and the
 * Neuronpedia export are made from). Definitions follow SAEDashboard / sae_vis (top activating
 * contexts, examples per activation interval, activation histogram, logit effects) as described in
 * shared/reference/algorithms.md ("Features and steering").
 */

/** One context window around a token of a corpus sequence. */
export interface ContextExample {
  /** Corpus sequence index (order in which the build read them). */
  readonly sequence: number;
  /** Position in that sequence of the token the example is about (its max, for a top context). */
  readonly position: number;
  /** The feature's activation at `position`. */
  readonly activation: number;
  /** Position in the sequence of the window's first token. */
  readonly start: number;
  /** Token ids of the window [window]. */
  readonly ids: readonly number[];
  /** Token strings of the window (the tokenizer's pieces, decoded as text), [window]. */
  readonly tokens: readonly string[];
  /**
   * The feature's activation at every token of the window [window] (0 where it did not fire, and at
   * tokens the statistics leave out: BOS, padding, chat-template tokens), rounded to bfloat16 as
   * stored (`activation` is exact).
   */
  readonly acts: readonly number[];
  /** Index of `position` within the window. */
  readonly focus: number;
}

/** One activation interval (SAEDashboard's "quantile" group) with examples drawn uniformly from it. */
export interface IntervalGroup {
  /** Lower and upper edge of the interval (lo < activation <= hi; the first group starts at 0). */
  readonly lo: number;
  readonly hi: number;
  /** Firings (token activations) that fall in it. */
  readonly count: number;
  /** count / all firings of the feature. */
  readonly fraction: number;
  /** Up to `examplesPerGroup` examples, a uniform sample without replacement of its firings. */
  readonly examples: readonly ContextExample[];
}

/** Log-spaced activation histogram: counts[i] firings with edges[i] < activation <= edges[i + 1]. */
export interface ActivationHistogram {
  /** [bins + 1] ascending bin edges (only the populated range is listed). */
  readonly edges: readonly number[];
  /** [bins] */
  readonly counts: readonly number[];
}

export interface LogitEffect {
  readonly id: number;
  readonly token: string;
  /** (W_U (g * d))[id]: the direct effect on this token's logit of a unit of the feature. */
  readonly value: number;
}

export interface NeighbourFeature {
  readonly feature: number;
  /** Cosine of the two decoder directions (concatenated over target layers for a CLT). */
  readonly cosine: number;
}

/** Which dictionary (and which CLT source layer) a feature belongs to, as recorded in the database. */
export interface FeatureSpaceInfo {
  /** Index of the feature space in the database (one per dictionary, one per layer of a CLT). */
  readonly space: number;
  /** The dictionary's folder as given to the build. */
  readonly dictionary: string;
  readonly architecture: string;
  /** Source layer of a cross-layer transcoder's feature; null for single-site dictionaries. */
  readonly layer: number | null;
  /** The site the features are read at (e.g. `blocks.3.resid_post`). */
  readonly site: string;
  readonly width: number;
}

export interface FeaturePage {
  readonly space: FeatureSpaceInfo;
  readonly feature: number;
  /** Tokens the statistics counted (the same for every feature of a run). */
  readonly tokens: number;
  /** Tokens on which the feature fired (activation > 0). */
  readonly firings: number;
  /** firings / tokens. */
  readonly density: number;
  /** Mean activation over its firings (0 when it never fired). */
  readonly meanActivation: number;
  readonly maxActivation: number;
  /** Top activating contexts, highest first: one per corpus sequence, windowed around its max. */
  readonly topContexts: readonly ContextExample[];
  /** Ten intervals from 0 to the max (lowest first), each with sampled examples. */
  readonly intervals: readonly IntervalGroup[];
  readonly histogram: ActivationHistogram;
  /** Top and bottom tokens of W_U (g * d), or null where the decoder does not write to the residual stream. */
  readonly logits: { readonly top: readonly LogitEffect[]; readonly bottom: readonly LogitEffect[] } | null;
  /** Nearest features of the same space by decoder cosine, highest first. */
  readonly neighbours: readonly NeighbourFeature[];
}
