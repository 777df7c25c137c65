/**
 * Float32 matmul throughput (GFLOP/s) of the native backend beside numpy, in one run. numpy runs in
 * a child process (bench/matmul_numpy.py --serve) with the same thread count. At each shape the two
 * alternate in short bursts of back-to-back calls (>= 50 ms; the burst's median is one sample), so
 * machine load hits both alike and the ratio is taken per pair of bursts. Between bursts the bench
 * pauses 150 ms: OpenBLAS worker threads spin for ~0.1 s after each call (THREAD_TIMEOUT 2^28 TSC
 * cycles), and without the pause one side's spinning threads would compete with the other's run.
 * Also the reference backend at one small shape for scale, and the native backend with a bf16
 * right operand (widened panel by panel) against f32 at the same shape, alternating the same way.
 *
 * Usage: node dist/bench/matmul.bench.js [--json] [--pairs=7] [--threads=N]
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
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
const pairs = numberFlag("pairs", 7);
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

/** A closure running `backend.matmul` once at `shape` and returning its seconds (after one warm-up). */
function matmulRunner(backend: Backend, shape: Shape, bDtype: MatmulArgs["bDtype"] = "f32"): () => number {
  const [m, k, n] = shape;
  const a = randomFloats(m * k, 1);
  const bf = randomFloats(k * n, 2);
  let b: Float32Array | Uint16Array = bf;
  if (bDtype !== "f32") {
    b = new Uint16Array(k * n);
    native.floatToHalf(bf, bDtype, b);
  }
  const out = new Float32Array(m * n);
  const run = () => {
    const t0 = performance.now();
    backend.matmul(a, b, out, args(shape, bDtype));
    return (performance.now() - t0) / 1000;
  };
  run();
  return run;
}

/** numpy in a child process, driven one command at a time. */
class Numpy {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterableIterator<string>;

  constructor(threadCount: number) {
    const script = join(packageRoot(), "bench", "matmul_numpy.py");
    const env = {
      ...process.env,
      OPENBLAS_NUM_THREADS: String(threadCount),
      OMP_NUM_THREADS: String(threadCount),
    };
    this.child = spawn("python3", [script, "--serve"], { env });
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  private async ask(command: string): Promise<string> {
    this.child.stdin.write(`${command}\n`);
    const next = await this.lines.next();
    if (next.done) throw new Error("numpy child exited (is numpy installed?)");
    return next.value;
  }

  /** Sets up the shape; returns "numpy <version> (<blas>)". */
  async shape([m, k, n]: Shape): Promise<string> {
    const reply = await this.ask(`shape ${m} ${k} ${n}`);
    const [ok, version, blas] = reply.split(" ");
    if (ok !== "ok") throw new Error(`numpy: ${reply}`);
    return `numpy ${version} (${blas})`;
  }

  /** Seconds of each of `count` back-to-back calls. */
  async run(count: number): Promise<number[]> {
    return (await this.ask(`run ${count}`)).split(" ").map(Number);
  }

  close(): void {
    this.child.stdin.end();
  }
}

interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

function spread(xs: readonly number[]): Spread {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

const PAUSE_MS = 150;
const pause = () => new Promise((resolve) => setTimeout(resolve, PAUSE_MS));

/** Calls per burst: enough for >= 50 ms, at most 50. */
function burstFor(firstSeconds: number): number {
  return Math.max(1, Math.min(50, Math.ceil(0.05 / Math.max(firstSeconds, 1e-6))));
}

/** Median seconds of `count` back-to-back calls. */
function burst(run: () => number, count: number): number {
  return median(Array.from({ length: count }, run));
}

let numpy: Numpy | undefined = new Numpy(threads);
let numpyInfo = "";
let numpyError = "";
const rows: { shape: Shape; burst: number; native: number[]; numpy: number[]; ratio: number[] }[] = [];

for (const shape of SHAPES) {
  const runNative = matmulRunner(native, shape);
  const row = { shape, burst: 1, native: [] as number[], numpy: [] as number[], ratio: [] as number[] };
  rows.push(row);
  if (numpy) {
    try {
      numpyInfo = await numpy.shape(shape);
    } catch (e) {
      numpyError = e instanceof Error ? e.message : String(e);
      numpy.close();
      numpy = undefined;
    }
  }
  const count = burstFor(runNative());
  row.burst = count;
  for (let i = 0; i < pairs; i++) {
    await pause();
    const tn = burst(runNative, count);
    row.native.push(gflops(shape, tn));
    if (!numpy) continue;
    await pause();
    const tp = median(await numpy.run(count));
    row.numpy.push(gflops(shape, tp));
    row.ratio.push(tp / tn);
  }
}
numpy?.close();

const runF32 = matmulRunner(native, BF16_SHAPE);
const runBf16 = matmulRunner(native, BF16_SHAPE, "bf16");
const f32G: number[] = [];
const bf16G: number[] = [];
for (let i = 0; i < pairs; i++) {
  await pause();
  f32G.push(gflops(BF16_SHAPE, runF32()));
  await pause();
  bf16G.push(gflops(BF16_SHAPE, runBf16()));
}
const refRun = matmulRunner(referenceBackend, REFERENCE_SHAPE);
const refSeconds = time(() => refRun(), 3, 0.5).median;
const smallRun = matmulRunner(native, REFERENCE_SHAPE);
const smallSeconds = time(() => smallRun(), 10, 0.5).median;

const info = native.info();
const report = {
  date: new Date().toISOString(),
  machine: machine(),
  loadAverage: process.platform === "linux" ? (await import("node:os")).loadavg() : null,
  threads,
  blas: info.blasConfig,
  numpy: numpyError ? `unavailable: ${numpyError}` : numpyInfo,
  pairs,
  shapes: rows.map(({ shape, burst: callsPerBurst, native: n, numpy: p, ratio }) => ({
    m: shape[0],
    k: shape[1],
    n: shape[2],
    callsPerBurst,
    nativeGflops: spread(n),
    numpyGflops: p.length ? spread(p) : null,
    ratio: ratio.length ? spread(ratio) : null,
  })),
  bf16: {
    m: BF16_SHAPE[0],
    k: BF16_SHAPE[1],
    n: BF16_SHAPE[2],
    bf16Gflops: spread(bf16G),
    f32Gflops: spread(f32G),
    ratio: spread(bf16G.map((g, i) => g / f32G[i])),
  },
  reference: {
    m: REFERENCE_SHAPE[0],
    k: REFERENCE_SHAPE[1],
    n: REFERENCE_SHAPE[2],
    referenceGflops: gflops(REFERENCE_SHAPE, refSeconds),
    nativeGflops: gflops(REFERENCE_SHAPE, smallSeconds),
  },
};

if (wantJson) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const f = (s: Spread | null, digits = 1) =>
    s ? `${s.median.toFixed(digits)} [${s.min.toFixed(digits)}-${s.max.toFixed(digits)}]` : "n/a";
  console.log(
    `float32 matmul, ${threads} threads, ${pairs} alternating bursts of native and numpy calls (median [min-max] of burst medians)`,
  );
  console.log(`native: ${info.blasConfig}`);
  console.log(`numpy:  ${report.numpy}`);
  if (report.loadAverage)
    console.log(`load average at the end: ${report.loadAverage.map((l) => l.toFixed(2)).join(" ")}`);
  console.log("");
  printTable(
    ["M,K,N", "calls/burst", "native GFLOP/s", "numpy GFLOP/s", "native/numpy"],
    report.shapes.map((s) => [
      `${s.m},${s.k},${s.n}`,
      String(s.callsPerBurst),
      f(s.nativeGflops),
      f(s.numpyGflops),
      f(s.ratio, 3),
    ]),
  );
  const b = report.bf16;
  console.log(
    `\nbf16 right operand at ${b.m},${b.k},${b.n}: ${f(b.bf16Gflops)} GFLOP/s vs f32 ${f(b.f32Gflops)} (bf16/f32 ${f(b.ratio, 3)})`,
  );
  const ref = report.reference;
  console.log(
    `reference backend at ${ref.m},${ref.k},${ref.n}: ${ref.referenceGflops.toFixed(2)} GFLOP/s (native ${ref.nativeGflops.toFixed(1)})`,
  );
}
