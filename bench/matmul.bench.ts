/**
 * Float32 matmul throughput (GFLOP/s) of the native backend beside numpy, in one run: the two are
 * measured in alternating rounds at each shape, numpy in a child process (bench/matmul_numpy.py)
 * with the same thread count, so machine noise hits both. Also the reference backend at one small
 * shape for scale, and the native backend with a bf16 right operand (widened panel by panel).
 *
 * Usage: node dist/bench/matmul.bench.js [--json] [--rounds=3] [--threads=N]
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { referenceBackend } from "../src/backends/reference/index.js";
import type { Backend, MatmulArgs } from "../src/core/backend.js";
import {
  machine,
  median,
  nativeOrExit,
  numberFlag,
  packageRoot,
  printTable,
  randomFloats,
  time,
  wantJson,
} from "./util.js";

type Shape = readonly [m: number, k: number, n: number];

const SHAPES: readonly Shape[] = [
  [1024, 1024, 1024],
  [128, 640, 2048],
  [4096, 640, 16384],
  [2048, 1152, 16384],
];
const REFERENCE_SHAPE: Shape = [128, 640, 256];
const BF16_SHAPE: Shape = [2048, 1152, 16384];

const native = nativeOrExit();
const rounds = numberFlag("rounds", 3);
const threads = numberFlag("threads", native.info().threads);
native.setThreads(threads);

function gflops([m, k, n]: Shape, seconds: number): number {
  return (2 * m * k * n) / seconds / 1e9;
}

function args([m, k, n]: Shape, bDtype: MatmulArgs["bDtype"] = "f32"): MatmulArgs {
  return {
    batch: 1,
    m,
    k,
    n,
    transA: false,
    transB: false,
    aBatchStride: 0,
    bBatchStride: 0,
    bDtype,
    accumulate: false,
  };
}

/** Median seconds per call of `backend.matmul` at `shape`. */
function timeBackend(
  backend: Backend,
  shape: Shape,
  bDtype: MatmulArgs["bDtype"] = "f32",
  minSeconds = 1,
): number {
  const [m, k, n] = shape;
  const a = randomFloats(m * k, 1);
  const bf = randomFloats(k * n, 2);
  let b: Float32Array | Uint16Array = bf;
  if (bDtype !== "f32") {
    b = new Uint16Array(k * n);
    native.floatToHalf(bf, bDtype, b);
  }
  const out = new Float32Array(m * n);
  return time(() => backend.matmul(a, b, out, args(shape, bDtype)), 3, minSeconds).median;
}

interface NumpyRun {
  readonly numpy: string;
  readonly blas: string;
  readonly results: readonly { readonly median: number }[];
}

const script = join(packageRoot(), "bench", "matmul_numpy.py");
const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };

/** numpy's median seconds at `shape`, or the reason it could not run. */
function timeNumpy(shape: Shape): { run: NumpyRun } | { error: string } {
  const r = spawnSync("python3", [script, shape.join(",")], { env, encoding: "utf8", maxBuffer: 1 << 20 });
  if (r.error) return { error: `python3: ${r.error.message}` };
  if (r.status !== 0) return { error: (r.stderr.trim().split("\n").pop() ?? "numpy failed").slice(0, 200) };
  return { run: JSON.parse(r.stdout) as NumpyRun };
}

interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

function spread(xs: readonly number[]): Spread {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

const nativeG = SHAPES.map(() => [] as number[]);
const numpyG = SHAPES.map(() => [] as number[]);
const ratios = SHAPES.map(() => [] as number[]);
let numpyInfo = "";
let numpyError = "";
const bf16G: number[] = [];
const f32AtBf16: number[] = [];

for (let r = 0; r < rounds; r++) {
  SHAPES.forEach((shape, i) => {
    const nat = gflops(shape, timeBackend(native, shape));
    nativeG[i].push(nat);
    if (numpyError) return;
    const np = timeNumpy(shape);
    if ("error" in np) {
      numpyError = np.error;
      return;
    }
    numpyInfo = `numpy ${np.run.numpy} (${np.run.blas})`;
    const g = gflops(shape, np.run.results[0].median);
    numpyG[i].push(g);
    ratios[i].push(nat / g);
  });
  const f32 = gflops(BF16_SHAPE, timeBackend(native, BF16_SHAPE));
  const bf16 = gflops(BF16_SHAPE, timeBackend(native, BF16_SHAPE, "bf16"));
  f32AtBf16.push(f32);
  bf16G.push(bf16);
}
const refSeconds = timeBackend(referenceBackend, REFERENCE_SHAPE, "f32", 0.5);
const nativeSmall = timeBackend(native, REFERENCE_SHAPE);

const info = native.info();
const report = {
  date: new Date().toISOString(),
  machine: machine(),
  threads,
  blas: info.blasConfig,
  numpy: numpyError ? `unavailable: ${numpyError}` : numpyInfo,
  rounds,
  shapes: SHAPES.map((shape, i) => ({
    m: shape[0],
    k: shape[1],
    n: shape[2],
    nativeGflops: spread(nativeG[i]),
    numpyGflops: numpyG[i].length ? spread(numpyG[i]) : null,
    ratio: ratios[i].length ? spread(ratios[i]) : null,
  })),
  bf16: {
    m: BF16_SHAPE[0],
    k: BF16_SHAPE[1],
    n: BF16_SHAPE[2],
    bf16Gflops: spread(bf16G),
    f32Gflops: spread(f32AtBf16),
    ratio: spread(bf16G.map((g, i) => g / f32AtBf16[i])),
  },
  reference: {
    m: REFERENCE_SHAPE[0],
    k: REFERENCE_SHAPE[1],
    n: REFERENCE_SHAPE[2],
    referenceGflops: gflops(REFERENCE_SHAPE, refSeconds),
    nativeGflops: gflops(REFERENCE_SHAPE, nativeSmall),
  },
};

if (wantJson) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const f = (s: Spread | null, digits = 1) =>
    s ? `${s.median.toFixed(digits)} [${s.min.toFixed(digits)}-${s.max.toFixed(digits)}]` : "n/a";
  console.log(`float32 matmul, ${threads} threads, ${rounds} rounds (median [min-max] of per-round medians)`);
  console.log(`native: ${info.blasConfig}`);
  console.log(`numpy:  ${report.numpy}\n`);
  printTable(
    ["M,K,N", "native GFLOP/s", "numpy GFLOP/s", "native/numpy"],
    report.shapes.map((s) => [`${s.m},${s.k},${s.n}`, f(s.nativeGflops), f(s.numpyGflops), f(s.ratio, 3)]),
  );
  const b = report.bf16;
  console.log(
    `\nbf16 right operand at ${b.m},${b.k},${b.n}: ${f(b.bf16Gflops)} GFLOP/s vs f32 ${f(b.f32Gflops)} (ratio ${f(b.ratio, 3)})`,
  );
  const ref = report.reference;
  console.log(
    `reference backend at ${ref.m},${ref.k},${ref.n}: ${ref.referenceGflops.toFixed(2)} GFLOP/s (native ${ref.nativeGflops.toFixed(1)})`,
  );
}
