/**
 * A feature page as Neuronpedia feature JSON: the per-feature record of the batch files that
 * SAEDashboard's `NeuronpediaRunner` writes for upload (`NeuronpediaDashboardFeature` /
 * `NeuronpediaDashboardActivation` in sae_dashboard/neuronpedia/neuronpedia_dashboard.py, 0.8.0),
 * and the batch wrapper (`NeuronpediaDashboardBatch`: model_id, layer, sae_set, features).
 *
 * Filled from the page:
 * - pos_str / pos_values, neg_str / neg_values: the logit effects (top promoted / suppressed);
 *   empty where the decoder does not write to the residual stream;
 * - frac_nonzero: density; n_prompts_total: tokens counted (glassbox counts tokens, not prompts);
 * - freq_hist_data_bar_values / _heights: the activation histogram, one bar per populated bin at its
 *   geometric centre (glassbox's bins are log-spaced; SAEDashboard's are linear);
 * - activations: the top contexts with bin_min -1, bin_max = the feature's max, bin_contains -1
 *   (SAEDashboard's convention for "TOP ACTIVATIONS"), then each interval's sampled examples with
 *   bin_min / bin_max = its edges and bin_contains = its fraction of the firings;
 *   qualifying_token_index is the example's token within the window;
 * - correlated_features_indices / _l1: the nearest features by decoder cosine.
 * Neuron alignment, correlated neurons, the logit histogram and DFA are not computed (empty lists).
 */
import type { ContextExample, FeaturePage } from "./page.js";

export interface NeuronpediaActivation {
  readonly bin_min: number;
  readonly bin_max: number;
  readonly bin_contains: number;
  readonly tokens: readonly string[];
  readonly values: readonly number[];
  readonly qualifying_token_index: number;
}

export interface NeuronpediaFeature {
  readonly feature_index: number;
  readonly neuron_alignment_indices: readonly number[];
  readonly neuron_alignment_values: readonly number[];
  readonly neuron_alignment_l1: readonly number[];
  readonly correlated_neurons_indices: readonly number[];
  readonly correlated_neurons_l1: readonly number[];
  readonly correlated_neurons_pearson: readonly number[];
  readonly correlated_features_indices: readonly number[];
  readonly correlated_features_l1: readonly number[];
  readonly correlated_features_pearson: readonly number[];
  readonly neg_str: readonly string[];
  readonly neg_values: readonly number[];
  readonly pos_str: readonly string[];
  readonly pos_values: readonly number[];
  readonly frac_nonzero: number;
  readonly freq_hist_data_bar_values: readonly number[];
  readonly freq_hist_data_bar_heights: readonly number[];
  readonly logits_hist_data_bar_heights: readonly number[];
  readonly logits_hist_data_bar_values: readonly number[];
  readonly n_prompts_total: number;
  readonly n_tokens_in_prompt: number;
  readonly dataset: string;
  readonly activations: readonly NeuronpediaActivation[];
  readonly decoder_weights_dist: readonly number[];
  readonly vector: readonly number[];
}

export interface NeuronpediaBatch {
  readonly model_id: string;
  readonly layer: number;
  readonly sae_set: string;
  readonly features: readonly NeuronpediaFeature[];
}

export interface NeuronpediaOptions {
  /** Recorded as `dataset` (default ""). */
  readonly dataset?: string;
  /** Tokens per example window in the build (`n_tokens_in_prompt`; default: the longest window). */
  readonly tokensPerPrompt?: number;
}

/** Rounded as SAEDashboard rounds (3 decimals), so files stay small and diff cleanly. */
const round = (v: number): number => Math.round(v * 1000) / 1000;

function activation(
  e: ContextExample,
  binMin: number,
  binMax: number,
  binContains: number,
): NeuronpediaActivation {
  return {
    bin_min: round(binMin),
    bin_max: round(binMax),
    bin_contains: round(binContains),
    tokens: [...e.tokens],
    values: e.acts.map(round),
    qualifying_token_index: e.focus,
  };
}

export function neuronpediaFeature(page: FeaturePage, options: NeuronpediaOptions = {}): NeuronpediaFeature {
  const activations: NeuronpediaActivation[] = [
    ...page.topContexts.map((e) => activation(e, -1, page.maxActivation, -1)),
    ...page.intervals.flatMap((g) => g.examples.map((e) => activation(e, g.lo, g.hi, g.fraction))),
  ];
  const h = page.histogram;
  const windows = [...page.topContexts, ...page.intervals.flatMap((g) => g.examples)].map(
    (e) => e.ids.length,
  );
  return {
    feature_index: page.feature,
    neuron_alignment_indices: [],
    neuron_alignment_values: [],
    neuron_alignment_l1: [],
    correlated_neurons_indices: [],
    correlated_neurons_l1: [],
    correlated_neurons_pearson: [],
    correlated_features_indices: page.neighbours.map((n) => n.feature),
    correlated_features_l1: page.neighbours.map((n) => round(n.cosine)),
    correlated_features_pearson: [],
    neg_str: page.logits?.bottom.map((e) => e.token) ?? [],
    neg_values: page.logits?.bottom.map((e) => round(e.value)) ?? [],
    pos_str: page.logits?.top.map((e) => e.token) ?? [],
    pos_values: page.logits?.top.map((e) => round(e.value)) ?? [],
    frac_nonzero: page.density,
    freq_hist_data_bar_values: h.counts.map((_, i) =>
      round(Math.sqrt(Math.max(h.edges[i], 1e-12) * h.edges[i + 1])),
    ),
    freq_hist_data_bar_heights: [...h.counts],
    logits_hist_data_bar_heights: [],
    logits_hist_data_bar_values: [],
    n_prompts_total: page.tokens,
    n_tokens_in_prompt: options.tokensPerPrompt ?? (windows.length > 0 ? Math.max(...windows) : 0),
    dataset: options.dataset ?? "",
    activations,
    decoder_weights_dist: [],
    vector: [],
  };
}

/** Neuronpedia's batch wrapper for features of one dictionary. */
export function neuronpediaBatch(
  pages: readonly FeaturePage[],
  ids: { readonly modelId: string; readonly layer: number; readonly saeSet: string },
  options: NeuronpediaOptions = {},
): NeuronpediaBatch {
  return {
    model_id: ids.modelId,
    layer: ids.layer,
    sae_set: ids.saeSet,
    features: pages.map((p) => neuronpediaFeature(p, options)),
  };
}
