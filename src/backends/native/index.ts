/**
 * The native backend: a thin typed wrapper over the Node-API addon in `native/` (OpenBLAS sgemm plus
 * threaded, vectorised C kernels), built by `scripts/build-native.mjs` into
 * `build/Release/glassbox_native.node`. Kernels read and write the callers' typed arrays in place.
 *
 * `tryLoadNative()` never throws: when the addon is missing or fails to load it returns the reason,
 * and callers fall back to the reference backend.
 */
import { constants as bufferConstants } from "node:buffer";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type {
  AxisArgs,
  Backend,
  BinaryOp,
  BroadcastArgs,
  CopyArgs,
  FloatSource,
  MatmulArgs,
  ReduceOp,
  UnaryOp,
} from "../../core/backend.js";
import type { HalfDType } from "../../core/dtype.js";
import { TensorError } from "../../core/errors.js";
import { Recycler } from "./recycler.js";
import { type SparseAddon, wrapSparse } from "./sparse.js";
import { type TrainingAddon, wrapTraining } from "./training.js";

/** Runtime facts about the loaded addon. */
export interface NativeInfo {
  /** Threads in the kernel pool (the calling thread included). */
  readonly threads: number;
  /** Threads OpenBLAS uses for sgemm. */
  readonly blasThreads: number;
  /** `openblas_get_config()`, e.g. "OpenBLAS 0.3.21 ... Cooperlake MAX_THREADS=64". */
  readonly blasConfig: string;
}

/** STREAM-style memory bandwidth in GB/s (bytes read + written, no write-allocate). */
export interface StreamResult {
  readonly copy: number;
  readonly triad: number;
}

/** The native `Backend` plus tools for benchmarks and diagnostics. */
export interface NativeBackend extends Backend {
  info(): NativeInfo;
  /** Sets the kernel pool and OpenBLAS thread counts (benchmarks; default: all online CPUs). */
  setThreads(n: number): void;
  /** Measures copy / triad bandwidth over three arrays of `floats` elements, best of `reps`. */
  stream(floats: number, reps: number): StreamResult;
}

export type NativeLoad = { readonly backend: NativeBackend } | { readonly error: string };

type DtypeCode = 0 | 1 | 2;

/** The addon's exports (native/binding.c and native/sparse.c document each argument list). */
interface Addon extends SparseAddon, TrainingAddon {
  matmul(
    a: Float32Array,
    b: FloatSource,
    out: Float32Array,
    batch: number,
    m: number,
    k: number,
    n: number,
    transA: boolean,
    transB: boolean,
    aBatchStride: number,
    bBatchStride: number,
    bDtype: DtypeCode,
    accumulate: boolean,
    aBf16: boolean,
    bBf16: boolean,
  ): void;
  matmulAsync(...args: Parameters<Addon["matmul"]>): Promise<void>;
  unary(op: number, x: Float32Array, out: Float32Array): void;
  affine(x: Float32Array, s: number, t: number, out: Float32Array): void;
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, layout: Float64Array): void;
  where(cond: Float32Array, a: Float32Array, b: Float32Array, out: Float32Array, layout: Float64Array): void;
  copy(
    src: Float32Array,
    out: Float32Array,
    layout: Float64Array,
    srcOffset: number,
    dstOffset: number,
  ): void;
  reduce(op: number, x: Float32Array, out: Float32Array, outer: number, size: number, inner: number): void;
  argReduce(
    isMin: boolean,
    x: Float32Array,
    out: Int32Array,
    outer: number,
    size: number,
    inner: number,
  ): void;
  softmax(x: Float32Array, out: Float32Array, rows: number, cols: number, log: boolean): void;
  rmsnorm(
    x: Float32Array,
    weight: Float32Array | null,
    out: Float32Array,
    rows: number,
    cols: number,
    eps: number,
    weightOffset: number,
    invRms: Float32Array | null,
  ): void;
  rope(
    x: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    out: Float32Array,
    rows: number,
    seq: number,
    dim: number,
    inverse: boolean,
    heads: number,
  ): void;
  /** Returns -1, or the position in `idx` of an out-of-range index (nothing written then). */
  gather(
    src: FloatSource,
    dtype: DtypeCode,
    idx: Int32Array,
    out: Float32Array,
    outer: number,
    size: number,
    inner: number,
    srcSize: number,
  ): number;
  scatterAdd(
    src: Float32Array,
    idx: Int32Array,
    out: Float32Array,
    outer: number,
    size: number,
    inner: number,
    outSize: number,
  ): number;
  topk(
    x: Float32Array,
    rows: number,
    cols: number,
    k: number,
    values: Float32Array,
    indices: Int32Array,
  ): void;
  halfToFloat(src: Uint16Array, dtype: DtypeCode, out: Float32Array): void;
  floatToHalf(src: Float32Array, dtype: DtypeCode, out: Uint16Array): void;
  info(): NativeInfo;
  setThreads(n: number): void;
  stream(floats: number, reps: number): StreamResult;
  fixMmapThreshold(bytes: number): boolean;
  discardPages(data: Float32Array): void;
}

// Codes follow the enums in native/gb.h.
const UNARY: Readonly<Record<UnaryOp, number>> = {
  neg: 0,
  exp: 1,
  log: 2,
  sqrt: 3,
  rsqrt: 4,
  abs: 5,
  sign: 6,
  square: 7,
  reciprocal: 8,
  tanh: 9,
  sigmoid: 10,
  relu: 11,
  gelu_tanh: 12,
  gelu_tanh_grad: 13,
  step: 14,
};
const BINARY: Readonly<Record<BinaryOp, number>> = {
  add: 0,
  sub: 1,
  mul: 2,
  div: 3,
  max: 4,
  min: 5,
  pow: 6,
  eq: 7,
  ne: 8,
  lt: 9,
  le: 10,
  gt: 11,
  ge: 12,
};
const REDUCE: Readonly<Record<ReduceOp, number>> = { sum: 0, max: 1, min: 2 };
const DTYPE: Readonly<Record<"f32" | HalfDType, DtypeCode>> = { f32: 0, bf16: 1, f16: 2 };

const ADDON_PATH = join("build", "Release", "glassbox_native.node");

/** The package root: the nearest folder above this module holding binding.gyp. */
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, "binding.gyp"))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return undefined;
}

// One reusable buffer for packing strided layouts ([ndim, shape, strides...]); kernels are synchronous.
let layoutScratch = new Float64Array(1 + 32 * 4);

function packLayout(shape: readonly number[], strides: readonly (readonly number[])[]): Float64Array {
  const nd = shape.length;
  const need = 1 + nd * (1 + strides.length);
  if (layoutScratch.length < need) layoutScratch = new Float64Array(need);
  const buf = layoutScratch;
  buf[0] = nd;
  for (let d = 0; d < nd; d++) buf[1 + d] = shape[d];
  for (let o = 0; o < strides.length; o++) {
    const s = strides[o];
    for (let d = 0; d < nd; d++) buf[1 + nd * (1 + o) + d] = s[d];
  }
  return buf;
}

function indexError(idx: Int32Array, bad: number, size: number): TensorError {
  return new TensorError(`index ${idx[bad]} out of range [0, ${size})`);
}

function matmulArgs(a: Float32Array, b: FloatSource, out: Float32Array, g: MatmulArgs) {
  return [
    a,
    b,
    out,
    g.batch,
    g.m,
    g.k,
    g.n,
    g.transA,
    g.transB,
    g.aBatchStride,
    g.bBatchStride,
    DTYPE[g.bDtype],
    g.accumulate,
    g.aBf16 ?? false,
    g.bBf16 ?? false,
  ] as const;
}

/**
 * Uninitialised output storage: `Buffer.allocUnsafeSlow` skips the zero fill and lets the allocator
 * reuse freed memory without touching it first. With GLASSBOX_POISON_OUTPUTS=1 (set by the test
 * runner) outputs are filled with NaN instead, so an op that reads its output before writing all of
 * it fails its tests deterministically.
 */
const POISON = process.env.GLASSBOX_POISON_OUTPUTS === "1";
const SMALL_OUTPUT = 256;
const MAX_LENGTH = bufferConstants.MAX_LENGTH;

// Outputs of SMALL_OUTPUT elements and up are recycled, a decoding step's few-KiB arrays too: left
// to the collector, they pile up in malloc's heap between collections (measured: 8-10 MiB more peak
// RSS over a generation, no speed difference). Under GLASSBOX_POISON_OUTPUTS every size is, so that
// tests on small models exercise reuse.
// glibc's mmap threshold is fixed at MMAP_BYTES: larger blocks (the pool's big buffers) are unmapped
// when freed rather than kept in the heap.
const MMAP_BYTES = 1 << 18;
/** Set once the addon loads: returns a given-up buffer's pages at once, not when it is collected. */
let discardPages: ((data: Float32Array) => void) | undefined;
const recycler = new Recycler({
  minLength: POISON ? 1 : SMALL_OUTPUT,
  maxBytes: 128 * 2 ** 20,
  maxSlack: 2,
  onDrop: (buffer) => discardPages?.(new Float32Array(buffer)),
});

function allocOutput(size: number, exact = false): Float32Array {
  const reused = recycler.take(size, exact);
  if (reused !== undefined) return POISON ? reused.fill(Number.NaN) : reused;
  // Buffers stop at buffer.constants.MAX_LENGTH (4 GiB in Node 20); typed arrays go further.
  const out =
    size < SMALL_OUTPUT || size * 4 > MAX_LENGTH
      ? new Float32Array(size)
      : new Float32Array(Buffer.allocUnsafeSlow(size * 4).buffer, 0, size);
  return recycler.issue(POISON ? out.fill(Number.NaN) : out);
}

function wrap(addon: Addon): NativeBackend {
  discardPages = (data) => addon.discardPages(data);
  return {
    name: "native",
    allocOutput,
    recycle: (data) => recycler.keep(data),
    discard: (data) => recycler.discard(data),
    trimRecycled: () => recycler.trim(),
    limitRecycled: (length) => recycler.dropUnfit(length),
    matmul: (a, b, out, args) => addon.matmul(...matmulArgs(a, b, out, args)),
    matmulAsync: async (a, b, out, args) => addon.matmulAsync(...matmulArgs(a, b, out, args)),
    unary: (op, x, out) => addon.unary(UNARY[op], x, out),
    binary: (op, a, b, out, args: BroadcastArgs) =>
      addon.binary(BINARY[op], a, b, out, packLayout(args.shape, [args.aStrides, args.bStrides])),
    where: (cond, a, b, out, args) =>
      addon.where(cond, a, b, out, packLayout(args.shape, [args.cStrides, args.aStrides, args.bStrides])),
    affine: (x, s, t, out) => addon.affine(x, s, t, out),
    reduce: (op, x, out, ax: AxisArgs) => addon.reduce(REDUCE[op], x, out, ax.outer, ax.size, ax.inner),
    argReduce: (op, x, out, ax) => addon.argReduce(op === "argmin", x, out, ax.outer, ax.size, ax.inner),
    softmax: (x, out, rows, cols) => addon.softmax(x, out, rows, cols, false),
    logSoftmax: (x, out, rows, cols) => addon.softmax(x, out, rows, cols, true),
    rmsnorm: (x, weight, out, rows, cols, eps, weightOffset, invRms) =>
      addon.rmsnorm(x, weight, out, rows, cols, eps, weightOffset, invRms),
    rope: (x, cos, sin, out, rows, seq, dim, inverse, heads) =>
      addon.rope(x, cos, sin, out, rows, seq, dim, inverse, heads),
    gather: (src, srcDtype, idx, out, ax, srcSize) => {
      const bad = addon.gather(src, DTYPE[srcDtype], idx, out, ax.outer, ax.size, ax.inner, srcSize);
      if (bad >= 0) throw indexError(idx, bad, srcSize);
    },
    scatterAdd: (src, idx, out, ax, outSize) => {
      const bad = addon.scatterAdd(src, idx, out, ax.outer, ax.size, ax.inner, outSize);
      if (bad >= 0) throw indexError(idx, bad, outSize);
    },
    topk: (x, rows, cols, k, values, indices) => addon.topk(x, rows, cols, k, values, indices),
    copy: (src, out, args: CopyArgs) =>
      addon.copy(
        src,
        out,
        packLayout(args.shape, [args.srcStrides, args.dstStrides]),
        args.srcOffset,
        args.dstOffset,
      ),
    halfToFloat: (src, dtype, out) => addon.halfToFloat(src, DTYPE[dtype], out),
    floatToHalf: (src, dtype, out) => addon.floatToHalf(src, DTYPE[dtype], out),
    info: () => addon.info(),
    setThreads: (n) => addon.setThreads(n),
    stream: (floats, reps) => addon.stream(floats, reps),
    ...wrapSparse(addon),
    ...wrapTraining(addon),
  };
}

let cached: NativeLoad | undefined;

/** Loads the addon once; returns the backend, or why it is unavailable. Never throws. */
export function tryLoadNative(): NativeLoad {
  if (cached) return cached;
  cached = load();
  return cached;
}

function load(): NativeLoad {
  try {
    const root = packageRoot();
    if (root === undefined) return { error: "native addon: package root (binding.gyp) not found" };
    const file = join(root, ADDON_PATH);
    if (!existsSync(file))
      return { error: `native addon not built (${ADDON_PATH} missing; run npm run build:native)` };
    const addon = createRequire(import.meta.url)(file) as Addon;
    if (typeof addon.matmul !== "function") return { error: `native addon ${file} has no matmul export` };
    if (typeof addon.sparseMatmul !== "function")
      return { error: `native addon ${file} is out of date (no sparseMatmul; run npm run build:native)` };
    if (typeof addon.sparseDot !== "function")
      return { error: `native addon ${file} is out of date (no sparseDot; run npm run build:native)` };
    if (typeof addon.discardPages !== "function")
      return { error: `native addon ${file} is out of date (no discardPages; run npm run build:native)` };
    // Blocks the recycler handles (and larger) are mmapped and unmapped when freed, instead of
    // staying resident in the heap once glibc's dynamic threshold has risen past them.
    if (process.env.GLASSBOX_MALLOC_DEFAULTS !== "1") addon.fixMmapThreshold(MMAP_BYTES);
    return { backend: wrap(addon) };
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    return { error: `native addon failed to load: ${msg}` };
  }
}
