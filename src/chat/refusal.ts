/**
 * The refusal direction of a chat model (Arditi et al. 2024, "Refusal in language models is
 * mediated by a single direction"; shared/reference/algorithms.md, "Chat-model analyses"):
 * - candidates: the difference of mean residual streams (resid_pre of every layer) between harmful
 *   and harmless prompts, at each post-instruction template position (the tokens after the user's
 *   message: `<end_of_turn>\n<start_of_turn>model\n` for Gemma 3);
 * - refusal score: the log-odds of the refusal tokens (the first tokens of the model's refusals) at
 *   the last position;
 * - selection: the candidate whose directional ablation lowers the harmful refusal score most, among
 *   those in the first 80 % of layers, whose ablation moves harmless next-token distributions by
 *   KL <= 0.1, and whose addition makes harmless prompts refuse (steering score > 0);
 * - interventions: directional ablation x <- x - r^ r^T x at every residual-stream site (after the
 *   embedding, every attention output and every MLP output), and activation addition x <- x + r at
 *   one layer.
 */
import { ChatError } from "../core/errors.js";
import { fromStorage } from "../core/tensor.js";
import type { ChatMessage, ChatTemplate } from "../io/chat.js";
import type { Tokenizer } from "../io/tokenizer.js";
import type { Gemma3Config } from "../model/gemma3/config.js";
import { addVector, type Intervention, projectOut } from "../model/gemma3/interventions.js";
import type { Gemma3Model } from "../model/gemma3/model.js";
import { sites } from "../model/gemma3/sites.js";

/** A prompt rendered with the chat template, generation prompt included. */
export interface ChatPromptIds {
  readonly ids: readonly number[];
  /** Tokens after the user's message (the post-instruction template tokens). */
  readonly post: number;
}

export function chatPromptIds(
  template: ChatTemplate,
  tokenizer: Tokenizer,
  text: string,
  system?: string,
): ChatPromptIds {
  const messages: ChatMessage[] = system === undefined ? [] : [{ role: "system", content: system }];
  messages.push({ role: "user", content: text });
  const enc = template.encode(tokenizer, messages, { addGenerationPrompt: true });
  let last = -1;
  enc.role.forEach((r, i) => {
    if (r === "user") last = i;
  });
  if (last < 0) throw new ChatError(`the prompt ${JSON.stringify(text)} has no content tokens`);
  return { ids: enc.ids, post: enc.ids.length - 1 - last };
}

/** The first token of each refusal opening (e.g. "I can't help with that." -> "I"). */
export function refusalTokens(tokenizer: Tokenizer, openings: readonly string[]): number[] {
  const out = new Set<number>();
  for (const o of openings) {
    const ids = tokenizer.encode(o, { addBos: false });
    if (ids.length === 0) throw new ChatError(`refusal opening ${JSON.stringify(o)} has no tokens`);
    out.add(ids[0]);
  }
  return [...out];
}

/** log p(refusal) - log(1 - p(refusal)), p(refusal) = the summed probability of `tokens` in `logits`. */
export function refusalScore(logits: Float32Array, tokens: readonly number[]): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of logits) m = Math.max(m, v);
  let z = 0;
  for (const v of logits) z += Math.exp(v - m);
  let p = 0;
  for (const t of tokens) p += Math.exp(logits[t] - m) / z;
  const eps = 1e-12;
  return Math.log(p + eps) - Math.log(1 - p + eps);
}

export interface MeanDifference {
  /** Post-instruction positions used, counted from the end: index i is position T - positions + i. */
  readonly positions: number;
  /** directions[l][i]: mean(harmful) - mean(harmless) of resid_pre of layer l at post position i [D]. */
  readonly directions: readonly (readonly Float32Array[])[];
}

/** Mean resid_pre of every layer at the last `positions` tokens of each prompt [L][positions][D]. */
export function meanResiduals(
  model: Gemma3Model,
  prompts: readonly ChatPromptIds[],
  positions: number,
): Float32Array[][] {
  const c = model.config;
  const D = c.dModel;
  const sum = Array.from({ length: c.layers }, () =>
    Array.from({ length: positions }, () => new Float64Array(D)),
  );
  const capture = Array.from({ length: c.layers }, (_, l) => sites.residPre(l));
  for (const p of prompts) {
    const acts = model.forward([p.ids], { capture, logits: "none" }).activations;
    const T = p.ids.length;
    for (let l = 0; l < c.layers; l++) {
      const x = acts.get(capture[l]).toFloat32Array();
      for (let i = 0; i < positions; i++) {
        const row = (T - positions + i) * D;
        for (let j = 0; j < D; j++) sum[l][i][j] += x[row + j];
      }
    }
  }
  return sum.map((perPos) => perPos.map((s) => Float32Array.from(s, (v) => v / prompts.length)));
}

/** Candidate refusal directions: the difference of means at every layer and post-instruction position. */
export function meanDifference(
  model: Gemma3Model,
  harmful: readonly ChatPromptIds[],
  harmless: readonly ChatPromptIds[],
): MeanDifference {
  if (harmful.length === 0 || harmless.length === 0)
    throw new ChatError(`empty prompt set: ${harmful.length} harmful, ${harmless.length} harmless`);
  const positions = Math.min(...harmful.map((p) => p.post), ...harmless.map((p) => p.post));
  if (positions < 1) throw new ChatError("the prompts have no post-instruction tokens (no chat template?)");
  const a = meanResiduals(model, harmful, positions);
  const b = meanResiduals(model, harmless, positions);
  return {
    positions,
    directions: a.map((perPos, l) => perPos.map((v, i) => v.map((x, j) => x - b[l][i][j]))),
  };
}

/**
 * Directional ablation of `r` at every residual-stream site: after the embedding (resid_pre of
 * layer 0), after every attention output (resid_mid) and every MLP output (resid_post; the next
 * layer's resid_pre is the same tensor).
 */
export function ablationInterventions(model: Gemma3Model, r: Float32Array): Intervention[] {
  const c: Gemma3Config = model.config;
  if (r.length !== c.dModel)
    throw new ChatError(`the direction has ${r.length} entries; the model's residual stream has ${c.dModel}`);
  const d = fromStorage(model.backend, "f32", [r.length], r.slice());
  const out: Intervention[] = [projectOut(sites.residPre(0), d)];
  for (let l = 0; l < c.layers; l++)
    out.push(projectOut(sites.residMid(l), d), projectOut(sites.residPost(l), d));
  return out;
}

/** Activation addition: x <- x + scale * r at resid_pre of `layer`, every position. */
export function additionIntervention(
  model: Gemma3Model,
  layer: number,
  r: Float32Array,
  scale = 1,
): Intervention {
  if (!Number.isInteger(layer) || layer < 0 || layer >= model.config.layers)
    throw new ChatError(`layer ${layer} is out of range (0-${model.config.layers - 1})`);
  if (r.length !== model.config.dModel)
    throw new ChatError(
      `the direction has ${r.length} entries; the model's residual stream has ${model.config.dModel}`,
    );
  return addVector(sites.residPre(layer), fromStorage(model.backend, "f32", [r.length], r.slice()), {
    scale,
  });
}

/** One candidate's measurements for the selection. */
export interface CandidateScores {
  readonly layer: number;
  readonly position: number;
  /** Mean refusal score on harmful prompts with the direction ablated (lower: ablation removes refusal). */
  readonly ablation: number;
  /** Mean KL(base || ablated) of harmless last-position distributions. */
  readonly kl: number;
  /** Mean refusal score on harmless prompts with the direction added at its layer. */
  readonly steering: number;
}

export interface SelectionOptions {
  /** Candidates from layers >= cutoff * layers are discarded (default 0.8). */
  readonly depthCutoff?: number;
  /** Most KL on harmless prompts under ablation (default 0.1). */
  readonly maxKl?: number;
  /** Least steering score (default 0: adding the direction must make harmless prompts refuse). */
  readonly minSteering?: number;
}

export interface Selection {
  readonly chosen: CandidateScores | null;
  /** Why each discarded candidate was discarded. */
  readonly discarded: readonly {
    readonly candidate: CandidateScores;
    readonly reason: "depth" | "kl" | "steering";
  }[];
}

/** The filters and the choice, on measured candidates (pure: the measuring is `scoreCandidate`). */
export function chooseDirection(
  candidates: readonly CandidateScores[],
  layers: number,
  options: SelectionOptions = {},
): Selection {
  const cutoff = options.depthCutoff ?? 0.8;
  const maxKl = options.maxKl ?? 0.1;
  const minSteering = options.minSteering ?? 0;
  const discarded: { candidate: CandidateScores; reason: "depth" | "kl" | "steering" }[] = [];
  let chosen: CandidateScores | null = null;
  for (const c of candidates) {
    if (c.layer >= cutoff * layers) discarded.push({ candidate: c, reason: "depth" });
    else if (!(c.kl <= maxKl)) discarded.push({ candidate: c, reason: "kl" });
    else if (!(c.steering > minSteering)) discarded.push({ candidate: c, reason: "steering" });
    else if (chosen === null || c.ablation < chosen.ablation) chosen = c;
  }
  return { chosen, discarded };
}

function logSoftmax(x: Float32Array): Float64Array {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of x) m = Math.max(m, v);
  let z = 0;
  for (const v of x) z += Math.exp(v - m);
  const lz = m + Math.log(z);
  return Float64Array.from(x, (v) => v - lz);
}

function lastLogits(
  model: Gemma3Model,
  p: ChatPromptIds,
  interventions: readonly Intervention[],
): Float32Array {
  return model.forward([p.ids], { logits: "last", interventions }).logits.toFloat32Array();
}

/**
 * Measures one candidate direction on validation prompts. `baseHarmless` (the harmless prompts'
 * last-position log-probabilities without intervention) can be given to share it across candidates.
 */
export function scoreCandidate(
  model: Gemma3Model,
  r: Float32Array,
  where: { readonly layer: number; readonly position: number },
  harmful: readonly ChatPromptIds[],
  harmless: readonly ChatPromptIds[],
  tokens: readonly number[],
  baseHarmless: readonly Float64Array[] = harmless.map((p) => logSoftmax(lastLogits(model, p, []))),
): CandidateScores {
  const ablate = ablationInterventions(model, r);
  const add = [additionIntervention(model, where.layer, r)];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const ablation = mean(harmful.map((p) => refusalScore(lastLogits(model, p, ablate), tokens)));
  const kl = mean(
    harmless.map((p, i) => {
      const base = baseHarmless[i];
      const abl = logSoftmax(lastLogits(model, p, ablate));
      let s = 0;
      for (let v = 0; v < base.length; v++) s += Math.exp(base[v]) * (base[v] - abl[v]);
      return s;
    }),
  );
  const steering = mean(harmless.map((p) => refusalScore(lastLogits(model, p, add), tokens)));
  return { layer: where.layer, position: where.position, ablation, kl, steering };
}

export interface RefusalFit {
  readonly candidates: MeanDifference;
  readonly scores: readonly CandidateScores[];
  readonly selection: Selection;
  /** The chosen direction (not normalised), or null when every candidate was discarded. */
  readonly direction: Float32Array | null;
}

/**
 * The whole fit: difference of means on the train prompts, every non-zero candidate measured on
 * the validation prompts, and the choice. Candidates that are zero (e.g. at layer 0, where the
 * template tokens' embeddings are the same for every prompt) are skipped.
 */
export function fitRefusalDirection(
  model: Gemma3Model,
  train: { readonly harmful: readonly ChatPromptIds[]; readonly harmless: readonly ChatPromptIds[] },
  validation: { readonly harmful: readonly ChatPromptIds[]; readonly harmless: readonly ChatPromptIds[] },
  tokens: readonly number[],
  options: SelectionOptions & { readonly onProgress?: (done: number, total: number) => void } = {},
): RefusalFit {
  if (validation.harmful.length === 0 || validation.harmless.length === 0)
    throw new ChatError("empty validation set");
  const candidates = meanDifference(model, train.harmful, train.harmless);
  const cutoff = options.depthCutoff ?? 0.8;
  const todo: { layer: number; position: number }[] = [];
  candidates.directions.forEach((perPos, layer) => {
    perPos.forEach((r, position) => {
      let n = 0;
      for (const v of r) n += v * v;
      // Beyond the depth cutoff a candidate is discarded anyway: not worth measuring.
      if (n > 1e-12 && layer < cutoff * model.config.layers) todo.push({ layer, position });
    });
  });
  const base = validation.harmless.map((p) => logSoftmax(lastLogits(model, p, [])));
  const scores = todo.map((w, i) => {
    const s = scoreCandidate(
      model,
      candidates.directions[w.layer][w.position],
      w,
      validation.harmful,
      validation.harmless,
      tokens,
      base,
    );
    options.onProgress?.(i + 1, todo.length);
    return s;
  });
  const selection = chooseDirection(scores, model.config.layers, options);
  const c = selection.chosen;
  return {
    candidates,
    scores,
    selection,
    direction: c === null ? null : candidates.directions[c.layer][c.position].slice(),
  };
}
