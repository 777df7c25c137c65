/**
 * One dictionary being trained: a sparse coder with L >= 1 encoder layers, covering SAEs (L = 1,
 * output site = input site), transcoders and skip-transcoders (Dunefsky et al. 2024; Paulo,
 * Shabalin & Belrose 2025) and cross-layer transcoders (Ameisen et al. 2025, "Circuit Tracing"),
 * with optional Matryoshka groups (Bussmann et al. 2025) and any activation rule from `rules/`.
 *
 * In training units (inputs and targets multiplied by their site's fixed scale, see trainer.ts):
 *   pre_l   = x_l W_enc_l + b_enc_l                 (x_l - b_dec first with a pre-encoder bias)
 *   f_l     = rule(pre_l)                            sparse codes [batch, width]
 *   y_hat_o = b_dec_o (+ x_o W_skip_o) + sum_{l <= o} f_l W_dec_l[:, block o - l]
 *   loss    = sum_m w_m sum_o mean_t ||y_o - y_hat_o^(m)||^2 + rule sparsity + AuxK
 * where y_hat^(m) decodes only the latents of Matryoshka groups 0..m (one group: the plain loss).
 * W_dec_l is [width, (L - l) d_out]: a feature's decoders to every later layer, concatenated, so its
 * decoder norm is the norm of the concatenation. Rows are kept at unit norm: the component of each
 * row's gradient parallel to the row is projected out before the Adam step and rows are
 * renormalised after it (Gemma Scope 2 recipe).
 *
 * The step is written by hand around the sparse codes: the decoder forward and backward and the
 * encoder weight gradient touch only the selected entries (`sparse.ts`); the encoder forward is one
 * dense matmul. `test/training/coder.test.ts` checks every gradient against `grad` on the dense
 * formulation.
 */
import type { Backend } from "../core/backend.js";
import { TrainingError } from "../core/errors.js";
import { Rng } from "../core/random.js";
import type { JsonValue } from "../io/strict-json.js";
import {
  Adam,
  type AdamOptions,
  learningRate,
  type Param,
  type ParamSet,
  type Schedule,
  sparsityWarmup,
} from "./optim.js";
import type { ActivationRule, Auxiliary, RuleContext, Selection } from "./rules/rule.js";
import {
  accumulateOuter,
  type Buffer,
  type Csr,
  CsrBuffers,
  entryGradients,
  f32Buffer,
  i32Buffer,
  splitColumns,
  TransposeBuffers,
} from "./sparse.js";

/** The shape of a coder: which sites it reads and writes and how wide it is. */
export interface CoderShape {
  /** Site key read by each encoder layer. */
  readonly inputs: readonly string[];
  /** Site key each output layer reconstructs (an SAE: the same as `inputs`). */
  readonly outputs: readonly string[];
  readonly dIn: number;
  readonly dOut: number;
  readonly width: number;
  /** Matryoshka group sizes, summing to width (default: one group). */
  readonly groups?: readonly number[];
  /** Loss weight of each group's prefix (default: 1 each). */
  readonly groupWeights?: readonly number[];
  /** A learned dense skip map x W_skip per layer (skip-transcoders), initialised to zero. */
  readonly skip?: boolean;
  /** Subtract b_dec from the input before encoding (SAEs only). */
  readonly preEncoderBias?: boolean;
}

export interface CoderOptions {
  readonly shape: CoderShape;
  /** One rule per encoder layer. */
  readonly makeRule: (width: number) => ActivationRule;
  readonly schedule: Schedule;
  readonly adam: AdamOptions;
  /** Tokens without firing after which a latent counts as dead. */
  readonly deadWindow: number;
  readonly seed: number;
  /** Scratch shared by coders that train one after another (the dense pre-activations). */
  readonly workspace?: Workspace;
}

/** Scratch memory several coders can share: they run one at a time. */
export class Workspace {
  /** Dense pre-activations [batch, width], the largest buffer of a step. */
  readonly pre = f32Buffer();
}

/** What one training step measured. */
export interface StepMetrics {
  /** Total loss (reconstruction over all prefixes + sparsity + auxiliary). */
  readonly loss: number;
  /** Mean squared error of the full reconstruction per token (summed over outputs). */
  readonly mse: number;
  /** mse / total variance of the targets in the batch. */
  readonly fvu: number;
  /** Active latents per token, averaged over encoder layers. */
  readonly l0: number;
  readonly sparsityLoss: number;
  readonly auxLoss: number;
  /** Fraction of latents (all layers) dead at the end of the step. */
  readonly deadFraction: number;
  readonly lr: number;
  readonly sparsityScale: number;
}

interface Layer {
  readonly encT: Param; // [width, dIn]
  readonly bEnc: Param; // [width]
  readonly dec: Param; // [width, (L - l) dOut]
  readonly bDec: Param; // [dOut] (output layer l)
  readonly skip: Param | null; // [dIn, dOut]
  readonly rule: ActivationRule;
  /** Tokens since each latent last fired. */
  readonly since: Float64Array;
}

interface Block {
  csr: CsrBuffers;
  position: Buffer<Int32Array>;
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new TrainingError(message);
}

export class SparseCoder {
  readonly shape: Required<CoderShape>;
  readonly layers: readonly Layer[];
  readonly params: ParamSet;
  readonly adam: Adam;
  /** Optimiser steps taken. */
  step = 0;
  private readonly grads: ParamSet;
  private readonly groupOf: Int32Array;
  private readonly bounds: number[];
  private readonly backend: Backend;

  // Workspace, reused across steps.
  private readonly xin: Buffer<Float32Array>[];
  private readonly y: Buffer<Float32Array>[];
  private readonly pre: Buffer<Float32Array>;
  /** AuxK selections of the current training step, per layer (made while pre is at hand). */
  private auxiliaries: (Auxiliary | null)[] = [];
  private readonly recon: Buffer<Float32Array>[]; // per output layer: running y_hat
  private readonly errs: Buffer<Float32Array>[][]; // [group][output]: weighted 2 e / B, then suffix sums
  private readonly decoded = f32Buffer();
  private readonly concat = f32Buffer();
  private readonly centred = f32Buffer();
  private readonly gF: Buffer<Float32Array>[];
  private readonly gPre: Buffer<Float32Array>[];
  private readonly gBlock = f32Buffer();
  private readonly permuted = f32Buffer();
  private readonly blocks: Block[][]; // [layer][group]
  private readonly tb = new TransposeBuffers();
  private readonly deadList = i32Buffer();
  private readonly auxDiff = f32Buffer();

  constructor(
    backend: Backend,
    readonly options: CoderOptions,
  ) {
    this.backend = backend;
    const s = options.shape;
    const L = s.inputs.length;
    check(L >= 1 && s.outputs.length === L, "a coder needs as many output sites as input sites (>= 1)");
    check(Number.isInteger(s.width) && s.width >= 1, `width must be a positive integer, got ${s.width}`);
    check(Number.isInteger(s.dIn) && s.dIn >= 1 && Number.isInteger(s.dOut) && s.dOut >= 1, "bad d_in/d_out");
    const groups = s.groups ?? [s.width];
    check(
      groups.every((g) => Number.isInteger(g) && g >= 1) && groups.reduce((a, b) => a + b, 0) === s.width,
      `Matryoshka group sizes ${JSON.stringify(groups)} must be positive integers summing to the width ${s.width}`,
    );
    const weights = s.groupWeights ?? groups.map(() => 1);
    check(
      weights.length === groups.length && weights.every((w) => w >= 0 && Number.isFinite(w)),
      "one non-negative weight per Matryoshka group",
    );
    const isSae = L === 1 && s.inputs[0] === s.outputs[0];
    check(
      !(s.preEncoderBias ?? false) || (isSae && !(s.skip ?? false)),
      "a pre-encoder bias is for SAEs only",
    );
    check(!isSae || s.dIn === s.dOut, "an SAE reads and writes the same width");
    check(!isSae || !(s.skip ?? false), "a skip connection needs distinct input and output sites");
    this.shape = {
      ...s,
      groups,
      groupWeights: weights,
      skip: s.skip ?? false,
      preEncoderBias: s.preEncoderBias ?? false,
    };
    this.bounds = [0];
    for (const g of groups) this.bounds.push(this.bounds[this.bounds.length - 1] + g);
    this.groupOf = new Int32Array(s.width);
    for (let g = 0; g < groups.length; g++) this.groupOf.fill(g, this.bounds[g], this.bounds[g + 1]);

    const rng = new Rng(options.seed);
    const params: Record<string, Param> = {};
    const grads: Record<string, Param> = {};
    const layers: Layer[] = [];
    const M = s.width;
    for (let l = 0; l < L; l++) {
      const D = (L - l) * s.dOut;
      const dec = { shape: [M, D], data: heUniformUnitRows(rng, M, D) };
      const encT = { shape: [M, s.dIn], data: new Float32Array(M * s.dIn) };
      // W_enc = W_dec^T where the widths agree; for cross-layer rows, the block writing to layer l.
      if (s.dIn === D) encT.data.set(dec.data);
      else if (s.dIn === s.dOut) {
        for (let i = 0; i < M; i++) encT.data.set(dec.data.subarray(i * D, i * D + s.dOut), i * s.dIn);
        normaliseRows(encT.data, M, s.dIn);
      } else encT.data.set(heUniformUnitRows(rng, M, s.dIn));
      const layer: Layer = {
        encT,
        bEnc: { shape: [M], data: new Float32Array(M) },
        dec,
        bDec: { shape: [s.dOut], data: new Float32Array(s.dOut) },
        skip: this.shape.skip ? { shape: [s.dIn, s.dOut], data: new Float32Array(s.dIn * s.dOut) } : null,
        rule: options.makeRule(M),
        since: new Float64Array(M),
      };
      layers.push(layer);
      const own: Record<string, Param | null> = {
        w_enc_t: layer.encT,
        b_enc: layer.bEnc,
        w_dec: layer.dec,
        b_dec: layer.bDec,
        w_skip: layer.skip,
      };
      for (const [k, p] of Object.entries(layer.rule.params)) own[k] = p;
      for (const [k, p] of Object.entries(own)) {
        if (p === null) continue;
        params[`layer${l}.${k}`] = p;
        grads[`layer${l}.${k}`] = { shape: p.shape, data: new Float32Array(p.data.length) };
      }
    }
    this.layers = layers;
    this.params = params;
    this.grads = grads;
    this.adam = new Adam(options.adam, params);

    this.xin = layers.map(() => f32Buffer());
    this.y = layers.map(() => f32Buffer());
    this.pre = (options.workspace ?? new Workspace()).pre;
    this.recon = layers.map(() => f32Buffer());
    this.errs = groups.map(() => layers.map(() => f32Buffer()));
    this.gF = layers.map(() => f32Buffer());
    this.gPre = layers.map(() => f32Buffer());
    this.blocks = layers.map(() => groups.map(() => ({ csr: new CsrBuffers(), position: i32Buffer() })));
  }

  /** Site keys this coder needs in every batch. */
  get sites(): string[] {
    return [...new Set([...this.shape.inputs, ...this.shape.outputs])];
  }

  /**
   * One optimiser step on a batch of raw activations (site key -> [tokens, d]), each site scaled by
   * `scales` first. Returns the step's metrics.
   */
  train(
    batch: ReadonlyMap<string, Float32Array>,
    tokens: number,
    scales: ReadonlyMap<string, number>,
  ): StepMetrics {
    const { schedule } = this.options;
    const lr = learningRate(schedule, this.step);
    const { metrics, selections } = this.computeGradients(batch, tokens, scales);
    this.constrainGradients();
    this.adam.step(this.backend, this.params, this.grads, lr);
    this.afterStep();
    this.step++;
    this.trackDead(selections, tokens);
    return { ...metrics, lr, deadFraction: this.deadFraction() };
  }

  /**
   * Loss and gradients (into `gradients`, unconstrained) for a batch at the current step, without
   * updating anything but rule statistics (e.g. BatchTopK's running threshold).
   */
  computeGradients(
    batch: ReadonlyMap<string, Float32Array>,
    tokens: number,
    scales: ReadonlyMap<string, number>,
  ): { metrics: Omit<StepMetrics, "lr" | "deadFraction">; selections: Selection[] } {
    const sparsityScale = sparsityWarmup(this.options.schedule, this.step);
    for (const g of Object.values(this.grads)) g.data.fill(0);
    const ctx: RuleContext = { backend: this.backend, rows: tokens, sparsityScale };
    const f = this.forward(batch, tokens, scales, ctx, true);
    const out = this.backward(f, tokens, ctx);
    return { metrics: { ...out, sparsityScale }, selections: f.selections };
  }

  /** The gradients of the last `computeGradients` (same names as `params`). */
  get gradients(): ParamSet {
    return this.grads;
  }

  /** Scaled inputs/targets, encoder, selection and decoding; fills recon and error buffers. */
  private forward(
    batch: ReadonlyMap<string, Float32Array>,
    B: number,
    scales: ReadonlyMap<string, number>,
    ctx: RuleContext,
    training: boolean,
  ): { selections: Selection[]; loss: number; mse: number; variance: number } {
    const { dIn, dOut, width: M, inputs, outputs, groups, groupWeights } = this.shape;
    const L = this.layers.length;
    const G = groups.length;
    const selections: Selection[] = [];
    for (let l = 0; l < L; l++) {
      const layer = this.layers[l];
      const xin = this.xin[l].get(B * dIn);
      scaleInto(siteData(batch, inputs[l], B * dIn), scaleOf(scales, inputs[l]), xin);
      const y = this.y[l].get(B * dOut);
      scaleInto(siteData(batch, outputs[l], B * dOut), scaleOf(scales, outputs[l]), y);
      const encIn = this.shape.preEncoderBias ? this.subtractBias(xin, layer.bDec.data, B) : xin;
      const pre = this.pre.get(B * M);
      this.backend.copy(layer.bEnc.data, pre, {
        shape: [B, M],
        srcOffset: 0,
        srcStrides: [0, 1],
        dstOffset: 0,
        dstStrides: [M, 1],
      });
      this.backend.matmul(encIn, layer.encT.data, pre, {
        batch: 1,
        m: B,
        k: dIn,
        n: M,
        transA: false,
        transB: true,
        aBatchStride: 0,
        bBatchStride: 0,
        bDtype: "f32",
        accumulate: true,
      });
      selections.push(layer.rule.select(pre, ctx, training));
      // AuxK picks dead latents from the same pre-activations (dead as of the previous step).
      if (training) this.auxiliaries[l] = layer.rule.auxiliary(pre, this.deadLatents(l), ctx);
    }
    // Reconstructions: base (bias + skip), then groups added in order; after group m the buffers hold
    // y_hat^(m), and errs[m][o] = 2 w_m (y_hat^(m) - y) / B.
    for (let o = 0; o < L; o++) {
      const r = this.recon[o].get(B * dOut);
      const bDec = this.layers[o].bDec.data;
      for (let t = 0; t < B; t++) r.set(bDec, t * dOut);
      const skip = this.layers[o].skip;
      if (skip !== null) {
        this.backend.matmul(this.xin[o].get(B * dIn), skip.data, r, {
          batch: 1,
          m: B,
          k: dIn,
          n: dOut,
          transA: false,
          transB: false,
          aBatchStride: 0,
          bBatchStride: 0,
          bDtype: "f32",
          accumulate: true,
        });
      }
    }
    const split = selections.map((s, l) => this.split(s.codes, l));
    let loss = 0;
    let mse = 0;
    for (let m = 0; m < G; m++) {
      for (let l = 0; l < L; l++) {
        const D = (L - l) * dOut;
        const block = split[l][m].csr;
        if (block.nnz === 0) continue;
        const dec = this.decoded.get(B * D);
        this.backend.sparseMatmul(block.offsets, block.indices, block.values, this.layers[l].dec.data, dec, {
          rows: B,
          n: D,
          wRows: M,
          wRowStride: D,
          wDtype: "f32",
          accumulate: false,
        });
        for (let o = l; o < L; o++) {
          const r = this.recon[o].get(B * dOut);
          const off = (o - l) * dOut;
          for (let t = 0; t < B; t++) {
            const rb = t * dOut;
            const db = t * D + off;
            for (let c = 0; c < dOut; c++) r[rb + c] += dec[db + c];
          }
        }
      }
      const w = groupWeights[m];
      const k = (2 * w) / B;
      for (let o = 0; o < L; o++) {
        const r = this.recon[o].get(B * dOut);
        const y = this.y[o].get(B * dOut);
        const e = this.errs[m][o].get(B * dOut);
        let sq = 0;
        for (let i = 0; i < B * dOut; i++) {
          const d = r[i] - y[i];
          sq += d * d;
          e[i] = k * d;
        }
        loss += (w * sq) / B;
        if (m === G - 1) mse += sq / B;
      }
    }
    let variance = 0;
    for (let o = 0; o < L; o++) variance += batchVariance(this.y[o].get(B * dOut), B, dOut);
    this.lastSplit = split;
    return { selections, loss, mse, variance };
  }

  private lastSplit: { csr: Csr; position: Int32Array | null }[][] = [];

  /** The codes split by Matryoshka group; `position` maps a block's entries back (null: the identity). */
  private split(codes: Csr, l: number): { csr: Csr; position: Int32Array | null }[] {
    if (this.shape.groups.length === 1) return [{ csr: codes, position: null }];
    return splitColumns(codes, this.bounds, this.groupOf, this.blocks[l]);
  }

  private subtractBias(xin: Float32Array, bDec: Float32Array, B: number): Float32Array {
    const d = this.shape.dIn;
    const out = this.centred.get(B * d);
    for (let t = 0; t < B; t++) for (let c = 0; c < d; c++) out[t * d + c] = xin[t * d + c] - bDec[c];
    return out;
  }

  private backward(
    f: { selections: Selection[]; loss: number; mse: number; variance: number },
    B: number,
    ctx: RuleContext,
  ): Omit<StepMetrics, "lr" | "sparsityScale" | "deadFraction"> {
    const { dIn, dOut, width: M, groups } = this.shape;
    const L = this.layers.length;
    const G = groups.length;
    // Suffix sums: errs[g][o] = sum_{m >= g} 2 w_m e_m / B, the gradient reaching group g's latents.
    const n = B * dOut;
    for (let g = G - 2; g >= 0; g--) {
      for (let o = 0; o < L; o++) {
        const e = this.errs[g][o].get(n);
        const next = this.errs[g + 1][o].get(n);
        for (let i = 0; i < n; i++) e[i] += next[i];
      }
    }
    let sparsityLoss = 0;
    let auxLoss = 0;
    let active = 0;
    for (let l = 0; l < L; l++) {
      const layer = this.layers[l];
      const D = (L - l) * dOut;
      const sel = f.selections[l];
      const nnz = sel.codes.nnz;
      active += sel.active;
      const gF = this.gF[l].get(nnz);
      const gDec = this.grads[`layer${l}.w_dec`].data;
      for (let g = 0; g < G; g++) {
        const { csr, position } = this.lastSplit[l][g];
        if (csr.nnz === 0) continue;
        const a = this.errorsFor(g, l, B);
        if (position === null) entryGradients(this.backend, csr, a, layer.dec.data, D, gF);
        else {
          const gb = this.gBlock.get(csr.nnz);
          entryGradients(this.backend, csr, a, layer.dec.data, D, gb);
          for (let j = 0; j < csr.nnz; j++) gF[position[j]] = gb[j];
        }
        accumulateOuter(this.backend, csr, csr.values, a, D, gDec, this.tb, this.permuted);
      }
      const gPre = this.gPre[l].get(nnz);
      sparsityLoss += layer.rule.backward(gF, gPre, this.ruleGrads(l), ctx);
      const xin = this.xin[l].get(B * dIn);
      const encIn = this.shape.preEncoderBias ? this.subtractBias(xin, layer.bDec.data, B) : xin;
      const gEncT = this.grads[`layer${l}.w_enc_t`].data;
      const gBEnc = this.grads[`layer${l}.b_enc`].data;
      accumulateOuter(this.backend, sel.codes, gPre, encIn, dIn, gEncT, this.tb, this.permuted);
      for (let j = 0; j < nnz; j++) gBEnc[sel.codes.indices[j]] += gPre[j];

      // AuxK: dead latents reconstruct the residual y - y_hat of this layer's outputs.
      const aux = this.auxiliaries[l];
      if (aux !== null && aux.codes.nnz > 0) {
        const codes = aux.codes;
        const eHat = this.decoded.get(B * D);
        this.backend.sparseMatmul(codes.offsets, codes.indices, codes.values, layer.dec.data, eHat, {
          rows: B,
          n: D,
          wRows: M,
          wRowStride: D,
          wDtype: "f32",
          accumulate: false,
        });
        // diff = e_hat - (y - y_hat); its gradient 2 c diff / B.
        const diff = this.auxDiff.get(B * D);
        let sq = 0;
        for (let o = l; o < L; o++) {
          const r = this.recon[o].get(B * dOut);
          const y = this.y[o].get(B * dOut);
          const off = (o - l) * dOut;
          for (let t = 0; t < B; t++) {
            for (let c = 0; c < dOut; c++) {
              const i = t * D + off + c;
              const d = eHat[i] - (y[t * dOut + c] - r[t * dOut + c]);
              sq += d * d;
              diff[i] = d;
            }
          }
        }
        auxLoss += (aux.coefficient * sq) / B;
        const k = (2 * aux.coefficient) / B;
        for (let i = 0; i < B * D; i++) diff[i] *= k;
        const gAux = this.gBlock.get(codes.nnz);
        entryGradients(this.backend, codes, diff, layer.dec.data, D, gAux);
        accumulateOuter(this.backend, codes, codes.values, diff, D, gDec, this.tb, this.permuted);
        accumulateOuter(this.backend, codes, gAux, encIn, dIn, gEncT, this.tb, this.permuted);
        for (let j = 0; j < codes.nnz; j++) gBEnc[codes.indices[j]] += gAux[j];
      }

      if (this.shape.preEncoderBias) {
        // pre = (x - b_dec) W_enc + b_enc: d/d b_dec = -(sum_t gPre_t) W_enc^T = -gBEnc @ encT.
        const gBDec = this.grads[`layer${l}.b_dec`].data;
        const enc = layer.encT.data;
        for (let i = 0; i < M; i++) {
          const gi = gBEnc[i];
          if (gi === 0) continue;
          for (let c = 0; c < dIn; c++) gBDec[c] -= gi * enc[i * dIn + c];
        }
      }
    }
    for (let o = 0; o < L; o++) {
      const e = this.errs[0][o].get(B * dOut);
      const gBDec = this.grads[`layer${o}.b_dec`].data;
      for (let t = 0; t < B; t++) for (let c = 0; c < dOut; c++) gBDec[c] += e[t * dOut + c];
      const skip = this.layers[o].skip;
      if (skip !== null) {
        this.backend.matmul(this.xin[o].get(B * dIn), e, this.grads[`layer${o}.w_skip`].data, {
          batch: 1,
          m: dIn,
          k: B,
          n: dOut,
          transA: true,
          transB: false,
          aBatchStride: 0,
          bBatchStride: 0,
          bDtype: "f32",
          accumulate: true,
        });
      }
    }
    const loss = f.loss + sparsityLoss + auxLoss;
    return {
      loss,
      mse: f.mse,
      fvu: f.variance > 0 ? f.mse / f.variance : Number.NaN,
      l0: active / (B * L),
      sparsityLoss,
      auxLoss,
    };
  }

  /** The rule parameters' gradients of layer l, under the rule's own names. */
  private ruleGrads(l: number): ParamSet {
    const out: Record<string, Param> = {};
    for (const k of Object.keys(this.layers[l].rule.params)) out[k] = this.grads[`layer${l}.${k}`];
    return out;
  }

  /** errs[g][o] for o >= l, concatenated per token into [B, (L - l) dOut] (a view when L = 1). */
  private errorsFor(g: number, l: number, B: number): Float32Array {
    const L = this.layers.length;
    const dOut = this.shape.dOut;
    if (L - l === 1) return this.errs[g][l].get(B * dOut);
    const D = (L - l) * dOut;
    const out = this.concat.get(B * D);
    for (let o = l; o < L; o++) {
      const e = this.errs[g][o].get(B * dOut);
      const off = (o - l) * dOut;
      for (let t = 0; t < B; t++) out.set(e.subarray(t * dOut, (t + 1) * dOut), t * D + off);
    }
    return out;
  }

  /** Projects out each decoder row's gradient component parallel to the (unit) row. */
  private constrainGradients(): void {
    this.layers.forEach((layer, l) => {
      const [M, D] = layer.dec.shape;
      this.backend.projectOutRows(layer.dec.data, this.grads[`layer${l}.w_dec`].data, M, D);
    });
  }

  private afterStep(): void {
    for (const layer of this.layers) {
      this.backend.normalizeRows(layer.dec.data, layer.dec.shape[0], layer.dec.shape[1]);
      layer.rule.afterStep();
    }
  }

  private trackDead(selections: readonly Selection[], B: number): void {
    for (let l = 0; l < this.layers.length; l++) {
      const since = this.layers[l].since;
      for (let i = 0; i < since.length; i++) since[i] += B;
      const { codes } = selections[l];
      for (let j = 0; j < codes.nnz; j++) if (codes.values[j] > 0) since[codes.indices[j]] = 0;
    }
  }

  private deadLatents(l: number): Int32Array {
    const since = this.layers[l].since;
    const w = this.options.deadWindow;
    let n = 0;
    for (let i = 0; i < since.length; i++) if (since[i] >= w) n++;
    const out = this.deadList.get(n);
    n = 0;
    for (let i = 0; i < since.length; i++) if (since[i] >= w) out[n++] = i;
    return out;
  }

  /** Fraction of latents (all layers) that have not fired within the dead window. */
  deadFraction(): number {
    let dead = 0;
    let total = 0;
    for (const layer of this.layers) {
      for (const s of layer.since) if (s >= this.options.deadWindow) dead++;
      total += layer.since.length;
    }
    return dead / total;
  }

  /**
   * Inference in raw units: reconstructs every output site from raw inputs with the inference rule
   * (what an exported dictionary computes). Returns output site key -> [tokens, dOut].
   */
  reconstruct(
    batch: ReadonlyMap<string, Float32Array>,
    tokens: number,
    scales: ReadonlyMap<string, number>,
  ): Map<string, Float32Array> {
    const ctx: RuleContext = { backend: this.backend, rows: tokens, sparsityScale: 1 };
    const withTargets = new Map(batch);
    for (const o of this.shape.outputs) {
      if (!withTargets.has(o)) withTargets.set(o, new Float32Array(tokens * this.shape.dOut));
    }
    this.forward(withTargets, tokens, scales, ctx, false);
    const out = new Map<string, Float32Array>();
    this.shape.outputs.forEach((o, l) => {
      const r = this.recon[l].get(tokens * this.shape.dOut);
      out.set(o, scaledCopy(r, 1 / scaleOf(scales, o)));
    });
    return out;
  }

  /**
   * Every array a checkpoint holds (parameters, optimiser moments, dead-latent counters), by name.
   * The arrays are the live ones: write them out before the next step.
   */
  checkpointArrays(): Map<
    string,
    { readonly shape: readonly number[]; readonly data: Float32Array | Float64Array }
  > {
    const out = new Map<string, { shape: readonly number[]; data: Float32Array | Float64Array }>();
    for (const [name, p] of Object.entries(this.params)) {
      out.set(`param/${name}`, p);
      out.set(`adam_v/${name}`, { shape: p.shape, data: this.adam.v.get(name)! });
      const m = this.adam.m.get(name);
      if (m !== undefined) out.set(`adam_m/${name}`, { shape: p.shape, data: m });
    }
    this.layers.forEach((l, i) => {
      out.set(`since/layer${i}`, { shape: [l.since.length], data: l.since });
    });
    return out;
  }

  /** Restores what `checkpointArrays` listed; `read(name)` returns the stored array or undefined. */
  restoreArrays(read: (name: string) => Float32Array | Float64Array | undefined): void {
    for (const [name, a] of this.checkpointArrays()) {
      const v = read(name);
      if (v === undefined) throw new TrainingError(`the checkpoint has no ${name}`);
      if (v.length !== a.data.length || v.constructor !== a.data.constructor)
        throw new TrainingError(`checkpoint array ${name} has the wrong size or type`);
      a.data.set(v);
    }
  }

  /** Non-parameter state for checkpoints. */
  state(): JsonValue {
    return { step: this.step, adamT: this.adam.t, rules: this.layers.map((l) => l.rule.state()) };
  }

  loadState(state: JsonValue): void {
    if (typeof state !== "object" || state === null || Array.isArray(state))
      throw new TrainingError("bad coder state in checkpoint");
    const { step, adamT, rules } = state;
    if (
      typeof step !== "number" ||
      typeof adamT !== "number" ||
      !Array.isArray(rules) ||
      rules.length !== this.layers.length
    )
      throw new TrainingError("bad coder state in checkpoint");
    this.step = step;
    this.adam.t = adamT;
    this.layers.forEach((l, i) => {
      l.rule.loadState(rules[i]);
    });
  }
}

function siteData(batch: ReadonlyMap<string, Float32Array>, key: string, n: number): Float32Array {
  const v = batch.get(key);
  if (v === undefined) throw new TrainingError(`the batch has no site ${key}`);
  if (v.length !== n) throw new TrainingError(`site ${key}: ${v.length} values, expected ${n}`);
  return v;
}

function scaleOf(scales: ReadonlyMap<string, number>, key: string): number {
  const s = scales.get(key);
  if (s === undefined) throw new TrainingError(`no input scale for site ${key}`);
  return s;
}

function scaleInto(src: Float32Array, s: number, out: Float32Array): void {
  for (let i = 0; i < src.length; i++) out[i] = src[i] * s;
}

function scaledCopy(src: Float32Array, s: number): Float32Array {
  const out = new Float32Array(src.length);
  scaleInto(src, s, out);
  return out;
}

/** sum over columns of the per-column variance across rows (E||y||^2 - ||E y||^2). */
function batchVariance(y: Float32Array, B: number, d: number): number {
  const mean = new Float64Array(d);
  let sq = 0;
  for (let t = 0; t < B; t++) {
    for (let c = 0; c < d; c++) {
      const v = y[t * d + c];
      mean[c] += v;
      sq += v * v;
    }
  }
  let m2 = 0;
  for (let c = 0; c < d; c++) m2 += (mean[c] / B) ** 2;
  return sq / B - m2;
}

/** He-uniform rows (U(-sqrt(6 / cols), sqrt(6 / cols))), then scaled to unit norm. */
export function heUniformUnitRows(rng: Rng, rows: number, cols: number): Float32Array {
  const bound = Math.sqrt(6 / cols);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = (2 * rng.uniform() - 1) * bound;
  normaliseRows(out, rows, cols);
  return out;
}

/** Scales each row of w [rows, cols] to unit norm (zero rows stay zero). */
export function normaliseRows(w: Float32Array, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) {
    const b = i * cols;
    let n = 0;
    for (let c = 0; c < cols; c++) n += w[b + c] * w[b + c];
    if (n === 0) continue;
    const s = 1 / Math.sqrt(n);
    for (let c = 0; c < cols; c++) w[b + c] *= s;
  }
}
