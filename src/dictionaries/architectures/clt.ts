/**
 * Cross-layer transcoder (Anthropic "Circuit Tracing" 2025; Gemma Scope 2 `clt/` folders,
 * shared/reference/gemma-scope-2-format.md "CLT files"). Source layer i has its own encoder, reading
 * that layer's MLP input, and a decoder w_dec_i [width, layers, d_out] of which only targets l >= i
 * are used: a feature of layer i writes to the MLP output of every later layer.
 *   acts_i = activation_i(x_i @ w_enc_i + b_enc_i)
 *   y_l    = sum_{i <= l} acts_i @ w_dec_i[:, l, :] + b_dec_l (+ x_l @ A_l)
 * Inputs are [layers, ..., d_in] (x_l the MLP input of layer l), feature acts [layers, ..., width],
 * outputs [layers, ..., d_out]. Layers' parameters are loaded on first use and kept.
 */

import type { FloatDType } from "../../core/dtype.js";
import { DictionaryError } from "../../core/errors.js";
import { add, sub } from "../../core/ops/elementwise.js";
import { matmul } from "../../core/ops/linalg.js";
import { reshape } from "../../core/ops/shape.js";
import { type CsrRows, sparseMatmul } from "../../core/ops/sparse.js";
import { formatShape, fromStorage, type Tensor } from "../../core/tensor.js";
import { FeatureActs } from "../feature-acts.js";
import { decoderScale, divideRows, scaleColumns } from "../fold.js";
import { asRows, concatRows, type DictionaryMeta, encodeRows } from "../single-layer.js";
import type {
  Activation,
  ActivationInfo,
  Dictionary,
  DictionarySpec,
  EncodeOptions,
  GemmaScope2Form,
  LayerwiseDictionary,
} from "../types.js";

/** The parameters of one source layer. */
export interface CltLayerParams {
  /** [d_in, width] */
  readonly wEnc: Tensor;
  /** [width] f32 */
  readonly bEnc: Tensor<"f32">;
  /** [width, layers, d_out]; targets below this layer are ignored. */
  readonly wDec: Tensor;
  /** [d_out] f32: the bias of this layer's output */
  readonly bDec: Tensor<"f32">;
  /** [d_in, d_out] when the CLT has skip connections */
  readonly skip: Tensor | null;
  readonly activation: Activation;
}

/** Sizes known before any layer is read (from file headers), and how to read a layer. */
export interface CltLayout {
  readonly layers: number;
  readonly dIn: number;
  readonly dOut: number;
  readonly width: number;
  readonly skip: boolean;
  readonly dtype: FloatDType;
  readonly activation: ActivationInfo;
  load(layer: number): CltLayerParams;
}

export class CrossLayerTranscoder implements LayerwiseDictionary {
  readonly spec: DictionarySpec;
  private readonly layout: CltLayout;
  private readonly meta: DictionaryMeta;
  private readonly loaded = new Map<number, CltLayerParams>();

  constructor(layout: CltLayout, meta: DictionaryMeta) {
    if (!Number.isInteger(layout.layers) || layout.layers < 1) {
      throw new DictionaryError(`a CLT needs at least one layer, got ${layout.layers}`, meta.source);
    }
    this.layout = layout;
    this.meta = meta;
    this.spec = {
      architecture: "clt",
      activation: layout.activation,
      dIn: layout.dIn,
      dOut: layout.dOut,
      width: layout.width,
      skip: layout.skip,
      hookIn: meta.hookIn,
      hookOut: meta.hookOut,
      layers: layout.layers,
      reconstructsInput: false,
      l0: meta.l0,
      modelName: meta.modelName,
      dtype: layout.dtype,
      source: meta.source,
    };
  }

  /** Source layer i's parameters (read on first use), checked against the layout. */
  layer(i: number): CltLayerParams {
    if (!Number.isInteger(i) || i < 0 || i >= this.layout.layers) {
      throw new DictionaryError(`no layer ${i} (the CLT spans ${this.layout.layers})`, this.spec.source);
    }
    let p = this.loaded.get(i);
    if (p === undefined) {
      p = this.layout.load(i);
      this.check(i, p);
      this.loaded.set(i, p);
    }
    return p;
  }

  private check(i: number, p: CltLayerParams): void {
    const { dIn, dOut, width, layers } = this.layout;
    const want: [string, Tensor | null, number[]][] = [
      ["w_enc", p.wEnc, [dIn, width]],
      ["b_enc", p.bEnc, [width]],
      ["w_dec", p.wDec, [width, layers, dOut]],
      ["b_dec", p.bDec, [dOut]],
      ["affine_skip_connection", p.skip, [dIn, dOut]],
    ];
    for (const [name, t, shape] of want) {
      if (t === null) {
        if (this.layout.skip) throw new DictionaryError(`layer ${i}: ${name} is missing`, this.spec.source);
        continue;
      }
      if (t.rank !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
        throw new DictionaryError(
          `layer ${i}: ${name} must be ${formatShape(shape)}, got ${formatShape(t.shape)}`,
          this.spec.source,
        );
      }
    }
    if (p.activation.width !== null && p.activation.width !== width) {
      throw new DictionaryError(`layer ${i}: threshold must be [${width}]`, this.spec.source);
    }
  }

  private splitLayers(
    x: Tensor,
    d: number,
    what: string,
  ): { rows: Tensor<"f32">; lead: number[]; n: number } {
    const { rows, lead } = asRows(x, d, what, this.spec.source);
    if (lead.length < 1 || lead[0] !== this.layout.layers) {
      throw new DictionaryError(
        `${what} must be [${this.layout.layers} layers, ..., ${d}], got ${formatShape(x.shape)}`,
        this.spec.source,
      );
    }
    return { rows, lead, n: rows.shape[0] / this.layout.layers };
  }

  /** Feature activations of source layer i for its MLP input x_i [..., d_in]. */
  encodeLayer(i: number, x: Tensor, options: EncodeOptions = {}): FeatureActs {
    const p = this.layer(i);
    const { rows, lead } = asRows(x, this.spec.dIn, `layer ${i} input`, this.spec.source);
    const acts = FeatureActs.sparse(
      x.backend,
      lead,
      encodeRows(rows, p.wEnc, p.bEnc, p.activation, options.maxPreFloats),
    );
    return options.dense ? FeatureActs.dense(acts.toDense()) : acts;
  }

  encode(x: Tensor, options: EncodeOptions = {}): FeatureActs {
    const { rows, lead, n } = this.splitLayers(x, this.spec.dIn, "input");
    const parts: CsrRows[] = [];
    for (let i = 0; i < this.layout.layers; i++) {
      const p = this.layer(i);
      const xi = fromStorage(
        x.backend,
        "f32",
        [n, this.spec.dIn],
        rows.data.subarray(i * n * this.spec.dIn, (i + 1) * n * this.spec.dIn),
      );
      parts.push(encodeRows(xi, p.wEnc, p.bEnc, p.activation, options.maxPreFloats));
    }
    const acts = FeatureActs.sparse(x.backend, lead, concatRows(parts, this.spec.width));
    return options.dense ? FeatureActs.dense(acts.toDense()) : acts;
  }

  /**
   * The output at target layer l [tokens, d_out] from the feature acts of source layers 0..l
   * (`sources[i]`, each [tokens, width]) and, with skip connections, layer l's input x_l.
   */
  decodeLayer(l: number, sources: readonly FeatureActs[], input?: Tensor): Tensor<"f32"> {
    const { dOut, width } = this.spec;
    if (sources.length < l + 1)
      throw new DictionaryError(`layer ${l} output needs the acts of layers 0..${l}`, this.spec.source);
    let out: Tensor<"f32"> | null = null;
    const bias = this.layer(l).bDec;
    for (let i = 0; i <= l; i++) {
      const a = sources[i];
      if (a.width !== width)
        throw new DictionaryError(`layer ${i} acts have width ${a.width}, not ${width}`, this.spec.source);
      const w = this.layer(i).wDec;
      const columns = { start: l * dOut, count: dOut };
      const prev: Tensor<"f32"> = out ?? bias;
      if (a.isSparse) {
        out = sparseMatmul(a.toSparse(), w, { columns, add: prev });
      } else {
        const wl = fromStorage(w.backend, "f32", [width, dOut], columnBlock(w, l, dOut));
        out = add(matmul(reshape(a.toDense(), [a.rows, width]), wl), prev);
      }
    }
    let y = out as Tensor<"f32">;
    const skip = this.layer(l).skip;
    if (skip) {
      if (input === undefined)
        throw new DictionaryError("a CLT with skip connections decodes with its input", this.spec.source);
      const { rows } = asRows(input, this.spec.dIn, `layer ${l} input`, this.spec.source);
      y = add(y, matmul(rows, skip));
    }
    return y;
  }

  decode(acts: FeatureActs, input?: Tensor): Tensor<"f32"> {
    const L = this.layout.layers;
    if (acts.shape[0] !== L || acts.width !== this.spec.width) {
      throw new DictionaryError(
        `feature acts must be [${L} layers, ..., ${this.spec.width}], got ${formatShape(acts.shape)}`,
        this.spec.source,
      );
    }
    const n = acts.rows / L;
    const tokenLead = acts.shape.slice(1, -1);
    const sources = Array.from({ length: L }, (_, i) => acts.rowRange(i * n, n, [n]));
    const inputs = input === undefined ? null : this.splitLayers(input, this.spec.dIn, "input");
    const out = new Float32Array(L * n * this.spec.dOut);
    for (let l = 0; l < L; l++) {
      const xl = inputs
        ? fromStorage(
            inputs.rows.backend,
            "f32",
            [n, this.spec.dIn],
            inputs.rows.data.subarray(l * n * this.spec.dIn, (l + 1) * n * this.spec.dIn),
          )
        : undefined;
      out.set(this.decodeLayer(l, sources, xl).data, l * n * this.spec.dOut);
    }
    return fromStorage(acts.backend, "f32", [L, ...tokenLead, this.spec.dOut], out);
  }

  reconstruct(x: Tensor): Tensor<"f32"> {
    return this.decode(this.encode(x), x);
  }

  error(x: Tensor, target?: Tensor): Tensor<"f32"> {
    if (target === undefined)
      throw new DictionaryError("a CLT's error needs the true MLP outputs (target)", this.spec.source);
    const recon = this.reconstruct(x);
    if (target.shape.length !== recon.shape.length || target.shape.some((d, i) => d !== recon.shape[i])) {
      throw new DictionaryError(
        `target must be ${formatShape(recon.shape)}, got ${formatShape(target.shape)}`,
        this.spec.source,
      );
    }
    return sub(target, recon);
  }

  foldDecoderNorms(): Dictionary {
    const { layers, dOut } = this.layout;
    const folded = new Map<number, CltLayerParams>();
    const foldLayer = (i: number): CltLayerParams => {
      let f = folded.get(i);
      if (f === undefined) {
        const p = this.layer(i);
        const scale = decoderScale(p.wDec, i * dOut, layers * dOut);
        f = {
          wEnc: scaleColumns(p.wEnc, scale),
          bEnc: scaleColumns(p.bEnc, scale),
          wDec: divideRows(p.wDec, scale),
          bDec: p.bDec,
          skip: p.skip,
          activation: p.activation.fold(scale),
        };
        folded.set(i, f);
      }
      return f;
    };
    return new CrossLayerTranscoder({ ...this.layout, dtype: "f32", load: foldLayer }, this.meta);
  }

  gemmaScope2Form(): GemmaScope2Form {
    const first = this.layer(0);
    const form = first.activation.gemmaScope2(first.bEnc.backend, this.spec.width);
    const files = Array.from({ length: this.layout.layers }, (_, i) => ({
      layer: i,
      tensors: () => {
        const p = this.layer(i);
        const { threshold } = p.activation.gemmaScope2(p.bEnc.backend, this.spec.width);
        const out: Record<string, Tensor> = { w_enc: p.wEnc, b_enc: p.bEnc, w_dec: p.wDec, b_dec: p.bDec };
        if (threshold) out.threshold = threshold;
        if (p.skip) out.affine_skip_connection = p.skip;
        return out;
      },
    }));
    return { architecture: form.architecture, extraConfig: form.config, files };
  }
}

/** w [width, layers, d_out] -> the [width, d_out] block of target layer l, as f32. */
function columnBlock(w: Tensor, l: number, dOut: number): Float32Array {
  const width = w.shape[0];
  const stride = w.size / width;
  const all = w.toFloat32Array();
  const out = new Float32Array(width * dOut);
  for (let f = 0; f < width; f++)
    out.set(all.subarray(f * stride + l * dOut, f * stride + (l + 1) * dOut), f * dOut);
  return out;
}
