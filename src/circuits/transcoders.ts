/**
 * The MLP replacement of an attribution graph: one transcoder (or skip-transcoder) per layer, or one
 * cross-layer transcoder, each reading `blocks.L.mlp_in` and writing `blocks.L.mlp_out` (a CLT
 * feature of source layer l writes to every layer t >= l). This module checks that a dictionary set
 * forms such a replacement for a model and gives uniform access to its parameters as float32:
 * encoding at a layer, encoder columns and biases, decoder rows per target layer, decoder biases and
 * skip matrices. Follows circuit-tracer's TranscoderSet / CrossLayerTranscoder (0.5.0) and the
 * Gemma Scope 2 parameter layout (shared/reference/gemma-scope-2-format.md).
 */
import { CircuitError } from "../core/errors.js";
import { narrow } from "../core/ops/shape.js";
import type { Tensor } from "../core/tensor.js";
import type { FeatureActs } from "../dictionaries/feature-acts.js";
import { dictionarySites } from "../dictionaries/sites.js";
import type { Dictionary, DictionarySpec, LayerwiseDictionary } from "../dictionaries/types.js";
import { isLayerwise } from "../dictionaries/types.js";
import type { Gemma3Config } from "../model/gemma3/config.js";

interface LayerTensors {
  readonly wEnc: Tensor;
  readonly bEnc: Float32Array;
  /** [width, d_out] (per-layer) or [width, layers, d_out] (CLT source layer). */
  readonly wDec: Tensor;
  readonly bDec: Float32Array;
  readonly skip: Tensor | null;
}

export class TranscoderSet {
  readonly kind: "transcoders" | "clt";
  readonly layers: number;
  readonly dIn: number;
  readonly dOut: number;
  /** Features per (source) layer. */
  readonly widths: readonly number[];
  /** Whether any layer adds x @ A (skip connection). */
  readonly hasSkip: boolean;
  /** Where each layer's dictionary came from (one entry for a CLT). */
  readonly sources: readonly string[];
  private readonly dicts: readonly Dictionary[];
  private readonly tensors: LayerTensors[];
  private readonly encCache = new Map<number, Float32Array>();

  private constructor(kind: "transcoders" | "clt", dicts: readonly Dictionary[], config: Gemma3Config) {
    this.kind = kind;
    this.dicts = dicts;
    this.layers = config.layers;
    this.dIn = dicts[0].spec.dIn;
    this.dOut = dicts[0].spec.dOut;
    this.sources = dicts.map((d) => d.spec.source);
    this.tensors = [];
    for (let l = 0; l < this.layers; l++) {
      const dict = kind === "clt" ? dicts[0] : dicts[l];
      const file = dict.gemmaScope2Form().files.find((f) => f.layer === (kind === "clt" ? l : null));
      if (file === undefined) throw new CircuitError(`no parameters for layer ${l}`, dict.spec.source);
      const t = file.tensors();
      const need = (name: string): Tensor => {
        const x = t[name];
        if (x === undefined)
          throw new CircuitError(`missing tensor ${name} for layer ${l}`, dict.spec.source);
        return x;
      };
      this.tensors.push({
        wEnc: need("w_enc"),
        bEnc: need("b_enc").toFloat32Array(),
        wDec: need("w_dec"),
        bDec: need("b_dec").toFloat32Array(),
        skip: t.affine_skip_connection ?? null,
      });
    }
    this.widths = this.tensors.map((t) => t.wEnc.shape[1]);
    this.hasSkip = this.tensors.some((t) => t.skip !== null);
  }

  /**
   * A replacement from `dicts`: a single CLT spanning every layer, or one transcoder per layer (in
   * any order). Throws `CircuitError` naming the dictionary that does not fit.
   */
  static from(dicts: readonly Dictionary[], config: Gemma3Config): TranscoderSet {
    if (dicts.length === 0) throw new CircuitError("no dictionaries: give per-layer transcoders or a CLT");
    const clts = dicts.filter((d) => isLayerwise(d));
    if (clts.length > 0) {
      if (dicts.length > 1)
        throw new CircuitError(
          "a cross-layer transcoder replaces every MLP on its own: give it alone",
          clts[0].spec.source,
        );
      const clt = clts[0] as LayerwiseDictionary;
      const s = dictionarySites(clt.spec, config);
      for (let l = 0; l < config.layers; l++) {
        if (s.read[l].kind !== "mlp_in" || s.write[l].kind !== "mlp_out")
          throw new CircuitError(
            `the CLT reads ${s.read[l].name} and writes ${s.write[l].name}; an attribution graph needs mlp_in -> mlp_out`,
            clt.spec.source,
          );
      }
      return new TranscoderSet("clt", [clt], config);
    }
    const byLayer: (Dictionary | undefined)[] = new Array(config.layers).fill(undefined);
    for (const d of dicts) {
      const s = dictionarySites(d.spec, config);
      const read = s.read[0];
      const write = s.write[0];
      if (read.kind !== "mlp_in" || write.kind !== "mlp_out" || read.layer !== write.layer)
        throw new CircuitError(
          `a ${d.spec.architecture} reading ${read.name} and writing ${write.name} is not a transcoder of an MLP (mlp_in -> mlp_out of one layer)`,
          d.spec.source,
        );
      const l = read.layer as number;
      const prev = byLayer[l];
      if (prev !== undefined)
        throw new CircuitError(`two transcoders for layer ${l} (also ${prev.spec.source})`, d.spec.source);
      byLayer[l] = d;
    }
    const missing = byLayer.flatMap((d, l) => (d === undefined ? [l] : []));
    if (missing.length > 0)
      throw new CircuitError(
        `no transcoder${missing.length > 1 ? "s" : ""} for layer${missing.length > 1 ? "s" : ""} ${missing.join(", ")}: the replacement needs one per layer (0-${config.layers - 1})`,
      );
    const list = byLayer as Dictionary[];
    for (const d of list)
      if (d.spec.dIn !== list[0].spec.dIn || d.spec.dOut !== list[0].spec.dOut)
        throw new CircuitError("transcoders of different widths in one set", d.spec.source);
    return new TranscoderSet("transcoders", list, config);
  }

  /** The spec of the dictionary replacing layer l (the CLT's for every layer). */
  spec(l: number): DictionarySpec {
    return (this.kind === "clt" ? this.dicts[0] : this.dicts[l]).spec;
  }

  /** Feature activations of (source) layer l from its mlp_in [T, d_in]. */
  encode(l: number, mlpIn: Tensor<"f32">): FeatureActs {
    if (this.kind === "clt") return (this.dicts[0] as LayerwiseDictionary).encodeLayer(l, mlpIn);
    return this.dicts[l].encode(mlpIn);
  }

  /** Encoder column of feature f at layer l [d_in] (what its pre-activation reads). */
  encoderColumn(l: number, f: number): Float32Array {
    let all = this.encCache.get(l);
    if (all === undefined) {
      // [d_in, width] as stored; kept transposed, one row per feature.
      const w = this.tensors[l].wEnc.toFloat32Array();
      const width = this.widths[l];
      all = new Float32Array(w.length);
      for (let i = 0; i < this.dIn; i++)
        for (let j = 0; j < width; j++) all[j * this.dIn + i] = w[i * width + j];
      this.encCache.set(l, all);
    }
    return all.subarray(f * this.dIn, (f + 1) * this.dIn);
  }

  /** Drops the cached encoder columns (they are built per layer on first use). */
  releaseEncoders(): void {
    this.encCache.clear();
  }

  encoderBias(l: number, f: number): number {
    return this.tensors[l].bEnc[f];
  }

  /** Target layers of a feature of source layer l: [l] for per-layer transcoders, l .. layers-1 for a CLT. */
  targetLayers(l: number): number[] {
    if (this.kind === "transcoders") return [l];
    return Array.from({ length: this.layers - l }, (_, i) => l + i);
  }

  /** Decoder rows of feature f of source layer l, one [d_out] row per target layer (targetLayers(l)). */
  decoderRows(l: number, f: number): Float32Array[] {
    const row = narrow(this.tensors[l].wDec, 0, f, 1).toFloat32Array();
    if (this.kind === "transcoders") return [row];
    return this.targetLayers(l).map((t) => row.slice(t * this.dOut, (t + 1) * this.dOut));
  }

  /** b_dec of target layer t [d_out]. */
  decoderBias(t: number): Float32Array {
    return this.tensors[t].bDec;
  }

  /** The skip matrix A of target layer t [d_in, d_out] (x_t @ A), or null. */
  skip(t: number): Tensor | null {
    return this.tensors[t].skip;
  }
}
