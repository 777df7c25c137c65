/**
 * The local replacement model of a prompt (Anthropic, "Circuit Tracing", 2025; circuit-tracer 0.5.0):
 * one real forward pass, then everything that makes the model non-linear is frozen at its value on
 * the prompt: the attention patterns, and the denominators of every RMSNorm (input, post-attention,
 * pre-feedforward, final). The MLPs are replaced by a transcoder set whose active features are
 * nodes, with an error node per (layer, position) holding the true MLP output minus the
 * reconstruction. In this model the map from any node's write to any downstream read is linear, and
 * the model reproduces the real forward exactly (the errors make up the difference).
 *
 * Sources write into the residual stream: a token's embedding at resid_pre of layer 0; a feature
 * (source layer l) a_f * d_{f,t} at mlp_out of each target layer t; an error node e_{l,p} at
 * mlp_out of layer l; b_dec_t at every position (a bias, not a node). A skip-transcoder's x @ A is
 * linear in the residual stream once the pre-feedforward norm is frozen, so it is part of the
 * linear map rather than a node.
 *
 * Features at position 0 (BOS) are not nodes by default (`bosFeatures: false`), as in
 * circuit-tracer: their writes join that position's error node, so totals stay exact.
 */
import type { Backend } from "../core/backend.js";
import { CircuitError } from "../core/errors.js";
import { matmul } from "../core/ops/linalg.js";
import { makeF32 } from "../core/ops/util.js";
import type { Tensor } from "../core/tensor.js";
import type { Gemma3Model } from "../model/gemma3/model.js";
import { type Site, sites } from "../model/gemma3/sites.js";
import type { TranscoderSet } from "./transcoders.js";

/** Active features of the prompt, struct of arrays, ordered by (layer, position, feature). */
export interface ActiveFeatures {
  readonly count: number;
  readonly layer: Int32Array;
  readonly position: Int32Array;
  readonly feature: Int32Array;
  readonly activation: Float32Array;
  /** Pre-activation (encoder input dot plus b_enc), what an edge into the feature explains. */
  readonly preactivation: Float32Array;
}

export interface ReplacementOptions {
  /** Keep features at position 0 as nodes (default false: their writes join the error node). */
  readonly bosFeatures?: boolean;
}

/** rinv[p] = 1 / sqrt(mean(x[p]^2) + eps), as the RMSNorm kernels compute it. */
function rmsInverse(x: Float32Array, rows: number, d: number, eps: number): Float32Array {
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < d; j++) {
      const v = x[r * d + j];
      s += v * v;
    }
    out[r] = Math.fround(1 / Math.sqrt(s / d + eps));
  }
  return out;
}

/** 1 + w (Gemma's norm weight offset) as f32. */
function offsetWeight(w: Tensor): Float32Array {
  const a = w.toFloat32Array();
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = 1 + a[i];
  return out;
}

/** A frozen norm: y[p] = x[p] * rinv[p] * g (g = 1 + w). */
export interface FrozenNorm {
  readonly rinv: Float32Array;
  readonly g: Float32Array;
}

export interface FrozenLayer {
  readonly input: FrozenNorm;
  readonly postAttention: FrozenNorm;
  readonly preFeedforward: FrozenNorm;
  /** Attention probabilities [1, heads, T, T]. */
  readonly pattern: Tensor<"f32">;
  /** True mlp_out minus the reconstruction from the feature nodes, b_dec and skip [T * d_model]. */
  readonly error: Float32Array;
  /** resid_pre [T * d_model] on the prompt (what attention reads). */
  readonly residPre: Float32Array;
  /** mlp_in [T * d_model] on the prompt. */
  readonly mlpIn: Float32Array;
}

export class LocalReplacement {
  readonly model: Gemma3Model;
  readonly transcoders: TranscoderSet;
  readonly ids: readonly number[];
  /** Prompt length T. */
  readonly length: number;
  readonly layers: readonly FrozenLayer[];
  readonly final: FrozenNorm;
  /** Token embeddings (resid_pre of layer 0) [T * d_model]. */
  readonly embedding: Float32Array;
  /** The real model's logits at the last position [vocab]. */
  readonly lastLogits: Float32Array;
  readonly features: ActiveFeatures;
  readonly bosFeatures: boolean;

  private constructor(
    model: Gemma3Model,
    transcoders: TranscoderSet,
    ids: readonly number[],
    parts: {
      layers: FrozenLayer[];
      final: FrozenNorm;
      embedding: Float32Array;
      lastLogits: Float32Array;
      features: ActiveFeatures;
      bosFeatures: boolean;
    },
  ) {
    this.model = model;
    this.transcoders = transcoders;
    this.ids = ids;
    this.length = ids.length;
    this.layers = parts.layers;
    this.final = parts.final;
    this.embedding = parts.embedding;
    this.lastLogits = parts.lastLogits;
    this.features = parts.features;
    this.bosFeatures = parts.bosFeatures;
  }

  get backend(): Backend {
    return this.model.backend;
  }

  /** Runs the prompt once and freezes it. `ids` should start with BOS, as the model was trained. */
  static build(
    model: Gemma3Model,
    transcoders: TranscoderSet,
    ids: readonly number[],
    options: ReplacementOptions = {},
  ): LocalReplacement {
    const c = model.config;
    if (transcoders.layers !== c.layers || transcoders.dIn !== c.dModel || transcoders.dOut !== c.dModel)
      throw new CircuitError(
        `the transcoders (${transcoders.layers} layers, d_in ${transcoders.dIn}, d_out ${transcoders.dOut}) do not fit the model (${c.layers} layers, d_model ${c.dModel})`,
        transcoders.sources[0],
      );
    if (ids.length === 0) throw new CircuitError("the prompt is empty");
    if (ids.length > c.maxPositionEmbeddings)
      throw new CircuitError(
        `the prompt has ${ids.length} tokens; the model takes ${c.maxPositionEmbeddings}`,
      );
    const bosFeatures = options.bosFeatures ?? false;
    const T = ids.length;
    const D = c.dModel;
    const eps = c.rmsNormEps;
    const capture: Site[] = [sites.embed, sites.residPost(c.layers - 1)];
    for (let l = 0; l < c.layers; l++)
      capture.push(
        sites.residPre(l),
        sites.z(l),
        sites.pattern(l),
        sites.residMid(l),
        sites.mlpIn(l),
        sites.mlpOut(l),
      );
    const run = model.forward([ids], { capture, logits: "last" });
    const act = (s: Site) => run.activations.get(s).toFloat32Array();
    const lastLogits = run.logits.toFloat32Array();

    const layers: FrozenLayer[] = [];
    const fl: number[] = [];
    const fp: number[] = [];
    const ff: number[] = [];
    const fa: number[] = [];
    const fpre: number[] = [];
    for (let l = 0; l < c.layers; l++) {
      const w = model.weights.layers[l];
      const residPre = act(sites.residPre(l));
      const z = run.activations.get(sites.z(l));
      // o_proj output before its norm: the post-attention norm's input.
      const o = matmul(z, w.oProj, { transB: true }).toFloat32Array();
      const residMid = act(sites.residMid(l));
      const mlpIn = act(sites.mlpIn(l));
      const mlpOut = act(sites.mlpOut(l));
      const p = run.activations.get(sites.pattern(l));
      const pattern = makeF32(model.backend, [1, c.heads, T, T], p.toFloat32Array());

      // Reconstruction: features (their own layer for transcoders, every source <= l for a CLT)
      // are added below; start from mlp_out - b_dec - x @ A.
      const error = mlpOut.slice();
      const bDec = transcoders.decoderBias(l);
      for (let t = 0; t < T; t++) for (let j = 0; j < D; j++) error[t * D + j] -= bDec[j];
      const A = transcoders.skip(l);
      if (A !== null) {
        const xa = matmul(makeF32(model.backend, [T, D], mlpIn), A).toFloat32Array();
        for (let i = 0; i < error.length; i++) error[i] -= xa[i];
      }
      layers.push({
        input: { rinv: rmsInverse(residPre, T, D, eps), g: offsetWeight(w.inputNorm) },
        postAttention: { rinv: rmsInverse(o, T, D, eps), g: offsetWeight(w.postAttentionNorm) },
        preFeedforward: { rinv: rmsInverse(residMid, T, D, eps), g: offsetWeight(w.preFeedforwardNorm) },
        pattern,
        error,
        residPre,
        mlpIn,
      });

      const acts = transcoders.encode(l, makeF32(model.backend, [T, D], mlpIn)).toSparse();
      for (let t = 0; t < T; t++) {
        for (let k = acts.offsets[t]; k < acts.offsets[t + 1]; k++) {
          const f = acts.indices[k];
          const a = acts.values[k];
          if (a === 0) continue;
          fl.push(l);
          fp.push(t);
          ff.push(f);
          fa.push(a);
          const col = transcoders.encoderColumn(l, f);
          let pre = transcoders.encoderBias(l, f);
          for (let j = 0; j < D; j++) pre += col[j] * mlpIn[t * D + j];
          fpre.push(pre);
        }
      }
      transcoders.releaseEncoders();
    }
    // Subtract every feature's write from the errors of its target layers; BOS features that are
    // not nodes stay in the error.
    const keep: number[] = [];
    for (let i = 0; i < fl.length; i++) {
      if (!bosFeatures && fp[i] === 0) continue;
      keep.push(i);
      const rows = transcoders.decoderRows(fl[i], ff[i]);
      const targets = transcoders.targetLayers(fl[i]);
      for (let k = 0; k < targets.length; k++) {
        const e = layers[targets[k]].error;
        const row = rows[k];
        const base = fp[i] * D;
        for (let j = 0; j < D; j++) e[base + j] -= fa[i] * row[j];
      }
    }
    const features: ActiveFeatures = {
      count: keep.length,
      layer: Int32Array.from(keep, (i) => fl[i]),
      position: Int32Array.from(keep, (i) => fp[i]),
      feature: Int32Array.from(keep, (i) => ff[i]),
      activation: Float32Array.from(keep, (i) => fa[i]),
      preactivation: Float32Array.from(keep, (i) => fpre[i]),
    };
    const last = act(sites.residPost(c.layers - 1));
    return new LocalReplacement(model, transcoders, ids, {
      layers,
      final: { rinv: rmsInverse(last, T, D, eps), g: offsetWeight(model.weights.finalNorm) },
      embedding: act(sites.embed),
      lastLogits,
      features,
      bosFeatures,
    });
  }
}
