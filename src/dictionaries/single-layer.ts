/**
 * What SAEs, transcoders and skip-transcoders share: one encoder reading one site and one decoder
 * writing one site (Gemma Scope 2 formula, shared/reference/gemma-scope-2-format.md):
 *   pre = x @ w_enc + b_enc;  f = activation(pre);  recon = f @ w_dec + b_dec
 * Each architecture module subclasses this and declares its own properties (what the error is
 * measured against, the skip connection). Encoding runs in row blocks so that the dense
 * pre-activations never exceed a fixed budget however wide the dictionary; decoding from sparse
 * activations touches only the active decoder rows.
 */
import { DictionaryError } from "../core/errors.js";
import { add, sub } from "../core/ops/elementwise.js";
import { matmul } from "../core/ops/linalg.js";
import { reshape } from "../core/ops/shape.js";
import type { CsrRows } from "../core/ops/sparse.js";
import { sparseMatmul } from "../core/ops/sparse.js";
import { formatShape, fromStorage, type Tensor } from "../core/tensor.js";
import { FeatureActs } from "./feature-acts.js";
import { decoderScale, divideRows, scaleColumns } from "./fold.js";
import type { Activation, Dictionary, DictionarySpec, EncodeOptions, GemmaScope2Form } from "./types.js";

/** Dense pre-activation floats held at once while encoding, by default (64 MB). */
export const PRE_BUDGET = 1 << 24;

export interface SingleLayerParams {
  /** [d_in, width] */
  readonly wEnc: Tensor;
  /** [width] f32 */
  readonly bEnc: Tensor<"f32">;
  /** [width, d_out] */
  readonly wDec: Tensor;
  /** [d_out] f32 */
  readonly bDec: Tensor<"f32">;
  /** [d_in, d_out], the affine skip connection (skip-transcoders only). */
  readonly skip?: Tensor | null;
}

/** Facts about a dictionary that its tensors do not hold. */
export interface DictionaryMeta {
  readonly hookIn: string | null;
  readonly hookOut: string | null;
  readonly l0: number | null;
  readonly modelName: string | null;
  readonly source: string;
}

/** What an architecture module declares about itself. */
export interface SingleLayerDeclaration {
  readonly architecture: string;
  readonly reconstructsInput: boolean;
  readonly skip: boolean;
}

function expectShape(source: string, name: string, t: Tensor, shape: readonly number[]): void {
  if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new DictionaryError(`${name} must be ${formatShape(shape)}, got ${formatShape(t.shape)}`, source);
  }
}

/** Rows [start, start + count) of a 2-d tensor, sharing its storage. */
export function rowBlock(x: Tensor<"f32">, start: number, count: number): Tensor<"f32"> {
  const cols = x.shape[1];
  return fromStorage(x.backend, "f32", [count, cols], x.data.subarray(start * cols, (start + count) * cols));
}

/** Concatenates CSR blocks of consecutive rows. */
export function concatRows(parts: readonly CsrRows[], cols: number): CsrRows {
  if (parts.length === 1) return parts[0];
  let rows = 0;
  let nnz = 0;
  for (const p of parts) {
    rows += p.rows;
    nnz += p.offsets[p.rows];
  }
  const offsets = new Int32Array(rows + 1);
  const indices = new Int32Array(nnz);
  const values = new Float32Array(nnz);
  let r0 = 0;
  let j0 = 0;
  for (const p of parts) {
    for (let r = 1; r <= p.rows; r++) offsets[r0 + r] = j0 + p.offsets[r];
    indices.set(p.indices, j0);
    values.set(p.values, j0);
    r0 += p.rows;
    j0 += p.offsets[p.rows];
  }
  return { rows, cols, offsets, indices, values };
}

/** x [..., d] as f32 rows [rows, d] plus its leading dims; a DictionaryError when d is wrong. */
export function asRows(
  x: Tensor,
  d: number,
  what: string,
  source: string,
): { rows: Tensor<"f32">; lead: number[] } {
  if (x.dtype !== "f32") throw new DictionaryError(`${what} must be f32, got ${x.dtype}`, source);
  if (x.rank < 1 || x.shape[x.rank - 1] !== d) {
    throw new DictionaryError(`${what} must be [..., ${d}], got ${formatShape(x.shape)}`, source);
  }
  const lead = x.shape.slice(0, -1);
  return { rows: reshape(x as Tensor<"f32">, [-1, d]), lead };
}

/** Token rows per block when encoding by feature blocks. */
const ROW_BLOCK = 4096;

/**
 * Columns [start, start + count) of w [d_in, width] as a contiguous tensor of w's dtype, written
 * into `scratch` (reused block after block: the tensor is only read by the matmul that follows).
 */
function columnBlock(w: Tensor, start: number, count: number, scratch: Float32Array | Uint16Array): Tensor {
  const [rows, width] = w.shape;
  const src = w.data;
  const out = scratch.subarray(0, rows * count);
  if (src instanceof Int32Array) throw new DictionaryError("encoder weights must be floating point");
  for (let r = 0; r < rows; r++)
    out.set(src.subarray(r * width + start, r * width + start + count), r * count);
  return out instanceof Float32Array
    ? fromStorage(w.backend, "f32", [rows, count], out)
    : fromStorage(w.backend, w.dtype === "f16" ? "f16" : "bf16", [rows, count], out);
}

/** Joins CSR blocks of the same rows over consecutive column ranges starting at `starts`. */
function concatColumns(parts: readonly CsrRows[], starts: readonly number[], cols: number): CsrRows {
  if (parts.length === 1) return parts[0];
  const rows = parts[0].rows;
  const offsets = new Int32Array(rows + 1);
  for (let r = 0; r < rows; r++) {
    let k = 0;
    for (const p of parts) k += p.offsets[r + 1] - p.offsets[r];
    offsets[r + 1] = offsets[r] + k;
  }
  const indices = new Int32Array(offsets[rows]);
  const values = new Float32Array(offsets[rows]);
  for (let r = 0; r < rows; r++) {
    let j = offsets[r];
    parts.forEach((p, b) => {
      for (let i = p.offsets[r]; i < p.offsets[r + 1]; i++) {
        indices[j] = p.indices[i] + starts[b];
        values[j++] = p.values[i];
      }
    });
  }
  return { rows, cols, offsets, indices, values };
}

/**
 * The activation's sparse selection of x @ wEnc + bEnc, never holding more than `maxPre` dense
 * pre-activations. Columnwise activations (JumpReLU, ReLU) go by blocks of features with all
 * tokens at once, so the encoder is read once per 4096 tokens and sgemm sees many rows (row blocks
 * of a wide matrix would repack it per block); TopK needs whole rows and goes by blocks of tokens.
 */
export function encodeRows(
  x: Tensor<"f32">,
  wEnc: Tensor,
  bEnc: Tensor<"f32">,
  activation: Activation,
  maxPre = PRE_BUDGET,
): CsrRows {
  const width = bEnc.size;
  const rows = x.shape[0];
  const parts: CsrRows[] = [];
  if (!activation.columnwise || rows * width <= maxPre) {
    const chunk = Math.max(1, Math.floor(maxPre / Math.max(width, 1)));
    for (let start = 0; start < rows || parts.length === 0; start += chunk) {
      const count = Math.min(chunk, rows - start);
      parts.push(activation.select(matmul(rowBlock(x, start, count), wEnc), bEnc));
    }
    return concatRows(parts, width);
  }
  const rowChunk = Math.min(rows, ROW_BLOCK);
  const cols = Math.min(width, Math.max(1, Math.floor(maxPre / rowChunk)));
  const dIn = wEnc.shape[0];
  const scratch = wEnc.dtype === "f32" ? new Float32Array(dIn * cols) : new Uint16Array(dIn * cols);
  for (let r0 = 0; r0 < rows; r0 += rowChunk) {
    const xr = rowBlock(x, r0, Math.min(rowChunk, rows - r0));
    const blocks: CsrRows[] = [];
    const starts: number[] = [];
    for (let c0 = 0; c0 < width; c0 += cols) {
      const n = Math.min(cols, width - c0);
      const bias = fromStorage(bEnc.backend, "f32", [n], bEnc.data.subarray(c0, c0 + n));
      blocks.push(activation.columns(c0, n).select(matmul(xr, columnBlock(wEnc, c0, n, scratch)), bias));
      starts.push(c0);
    }
    parts.push(concatColumns(blocks, starts, width));
  }
  return concatRows(parts, width);
}

/** acts [rows, width] @ wDec + bDec, from sparse rows or dense values. */
export function decodeRows(acts: FeatureActs, wDec: Tensor, bDec: Tensor<"f32">): Tensor<"f32"> {
  if (acts.isSparse) return sparseMatmul(acts.toSparse(), wDec, { add: bDec });
  return add(matmul(reshape(acts.toDense(), [acts.rows, acts.width]), wDec), bDec);
}

export abstract class SingleLayerDictionary implements Dictionary {
  readonly spec: DictionarySpec;
  readonly params: SingleLayerParams;
  readonly activation: Activation;
  protected readonly meta: DictionaryMeta;

  constructor(
    declared: SingleLayerDeclaration,
    params: SingleLayerParams,
    activation: Activation,
    meta: DictionaryMeta,
  ) {
    const src = meta.source;
    if (params.wEnc.rank !== 2)
      throw new DictionaryError(`w_enc must be [d_in, width], got ${formatShape(params.wEnc.shape)}`, src);
    const [dIn, width] = params.wEnc.shape;
    if (params.wDec.rank !== 2)
      throw new DictionaryError(`w_dec must be [width, d_out], got ${formatShape(params.wDec.shape)}`, src);
    const dOut = params.wDec.shape[1];
    expectShape(src, "w_dec", params.wDec, [width, dOut]);
    expectShape(src, "b_enc", params.bEnc, [width]);
    expectShape(src, "b_dec", params.bDec, [dOut]);
    if (declared.skip) {
      if (!params.skip) throw new DictionaryError("affine_skip_connection is missing", src);
      expectShape(src, "affine_skip_connection", params.skip, [dIn, dOut]);
    } else if (params.skip) {
      throw new DictionaryError(`a ${declared.architecture} has no affine_skip_connection`, src);
    }
    if (declared.reconstructsInput && dIn !== dOut) {
      throw new DictionaryError(`reconstructs its input but d_in ${dIn} != d_out ${dOut}`, src);
    }
    if (activation.width !== null && activation.width !== width) {
      throw new DictionaryError(`threshold must be [${width}], got [${activation.width}]`, src);
    }
    const dtype = params.wEnc.dtype;
    if (dtype === "i32" || params.wDec.dtype === "i32")
      throw new DictionaryError("weights must be floating point", src);
    this.params = params;
    this.activation = activation;
    this.meta = meta;
    this.spec = {
      architecture: declared.architecture,
      activation: activation.info,
      dIn,
      dOut,
      width,
      skip: declared.skip,
      hookIn: meta.hookIn,
      hookOut: meta.hookOut,
      layers: null,
      reconstructsInput: declared.reconstructsInput,
      l0: meta.l0,
      modelName: meta.modelName,
      dtype,
      source: src,
    };
  }

  /** The same architecture with other parameters (used by folding). */
  protected abstract rebuild(params: SingleLayerParams, activation: Activation): SingleLayerDictionary;

  encode(x: Tensor, options: EncodeOptions = {}): FeatureActs {
    const { rows, lead } = asRows(x, this.spec.dIn, "input", this.spec.source);
    const csr = encodeRows(rows, this.params.wEnc, this.params.bEnc, this.activation, options.maxPreFloats);
    const acts = FeatureActs.sparse(x.backend, lead, csr);
    return options.dense ? FeatureActs.dense(acts.toDense()) : acts;
  }

  decode(acts: FeatureActs, _input?: Tensor): Tensor<"f32"> {
    this.checkActs(acts);
    return reshape(decodeRows(acts, this.params.wDec, this.params.bDec), [
      ...acts.shape.slice(0, -1),
      this.spec.dOut,
    ]);
  }

  reconstruct(x: Tensor): Tensor<"f32"> {
    return this.decode(this.encode(x), x);
  }

  error(x: Tensor, target?: Tensor): Tensor<"f32"> {
    const t = target ?? (this.spec.reconstructsInput ? x : undefined);
    if (t === undefined) {
      throw new DictionaryError(
        `a ${this.spec.architecture}'s error needs the true output (target)`,
        this.spec.source,
      );
    }
    const recon = this.reconstruct(x);
    if (t.shape.length !== recon.shape.length || t.shape.some((d, i) => d !== recon.shape[i])) {
      throw new DictionaryError(
        `target must be ${formatShape(recon.shape)} like the reconstruction, got ${formatShape(t.shape)}`,
        this.spec.source,
      );
    }
    return sub(t, recon);
  }

  foldDecoderNorms(): Dictionary {
    const p = this.params;
    const scale = decoderScale(p.wDec);
    return this.rebuild(
      {
        wEnc: scaleColumns(p.wEnc, scale),
        bEnc: scaleColumns(p.bEnc, scale),
        wDec: divideRows(p.wDec, scale),
        bDec: p.bDec,
        skip: p.skip ?? null,
      },
      this.activation.fold(scale),
    );
  }

  gemmaScope2Form(): GemmaScope2Form {
    const p = this.params;
    const form = this.activation.gemmaScope2(p.bEnc.backend, this.spec.width);
    const tensors = (): Record<string, Tensor> => {
      const out: Record<string, Tensor> = { w_enc: p.wEnc, b_enc: p.bEnc, w_dec: p.wDec, b_dec: p.bDec };
      if (form.threshold) out.threshold = form.threshold;
      if (p.skip) out.affine_skip_connection = p.skip;
      return out;
    };
    return { architecture: form.architecture, extraConfig: form.config, files: [{ layer: null, tensors }] };
  }

  protected checkActs(acts: FeatureActs): void {
    if (acts.width !== this.spec.width) {
      throw new DictionaryError(
        `feature acts have width ${acts.width}, the dictionary ${this.spec.width}`,
        this.spec.source,
      );
    }
  }
}
