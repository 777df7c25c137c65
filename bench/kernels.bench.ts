/**
 * Memory-bound kernel throughput of the native backend against the machine's measured memory
 * bandwidth, in one run: a STREAM-style copy / triad (in the addon, same thread pool) is measured
 * each round next to softmax, RMSNorm, GELU, same-shape add and bf16 -> f32 conversion on arrays far
 * larger than the last-level cache. GB/s counts the bytes a kernel must read and write once (STREAM
 * convention, no write-allocate traffic). The reference backend is shown on 1M elements for scale.
 *
 * Usage: node dist/bench/kernels.bench.js [--json] [--rounds=3] [--threads=N]
 */

import { referenceBackend } from "../src/backends/reference/index.js";
import type { Backend } from "../src/core/backend.js";
import {
  machine,
  median,
  nativeOrExit,
  numberFlag,
  printTable,
  randomFloats,
  time,
  wantJson,
} from "./util.js";

const native = nativeOrExit();
const rounds = numberFlag("rounds", 3);
const threads = numberFlag("threads", native.info().threads);
native.setThreads(threads);

/** Elements per kernel: 8M floats = 32 MB per f32 array, past the 32 MB L3 once input + output. */
const N = 1 << 23;
const REF_N = 1 << 20;
/** Softmax / RMSNorm rows: Gemma 3's vocabulary and a typical d_model. */
const VOCAB = 262144;
const D_MODEL = 2048;

interface Kernel {
  readonly name: string;
  /** Bytes read + written per element. */
  readonly bytesPerElement: number;
  /** Returns a closure running the kernel once on `n` elements. */
  readonly setup: (backend: Backend, n: number) => () => void;
}

const KERNELS: readonly Kernel[] = [
  {
    name: `softmax (rows of ${VOCAB})`,
    bytesPerElement: 8,
    setup: (b, n) => {
      const cols = Math.min(VOCAB, n);
      const x = randomFloats(n, 1).map((v) => v * 8);
      const out = new Float32Array(n);
      return () => b.softmax(x, out, n / cols, cols);
    },
  },
  {
    name: `rmsnorm (rows of ${D_MODEL})`,
    bytesPerElement: 8,
    setup: (b, n) => {
      const x = randomFloats(n, 2);
      const w = randomFloats(D_MODEL, 3);
      const out = new Float32Array(n);
      return () => b.rmsnorm(x, w, out, n / D_MODEL, D_MODEL, 1e-6, 1, null);
    },
  },
  {
    name: "gelu_tanh",
    bytesPerElement: 8,
    setup: (b, n) => {
      const x = randomFloats(n, 4).map((v) => v * 4);
      const out = new Float32Array(n);
      return () => b.unary("gelu_tanh", x, out);
    },
  },
  {
    name: "add (same shape)",
    bytesPerElement: 12,
    setup: (b, n) => {
      const x = randomFloats(n, 5);
      const y = randomFloats(n, 6);
      const out = new Float32Array(n);
      const args = { shape: [n], aStrides: [1], bStrides: [1] };
      return () => b.binary("add", x, y, out, args);
    },
  },
  {
    name: "bf16 -> f32",
    bytesPerElement: 6,
    setup: (b, n) => {
      const h = new Uint16Array(n);
      native.floatToHalf(randomFloats(n, 7), "bf16", h);
      const out = new Float32Array(n);
      return () => b.halfToFloat(h, "bf16", out);
    },
  },
];

const gbs = (k: Kernel, n: number, seconds: number) => (k.bytesPerElement * n) / seconds / 1e9;

const copy: number[] = [];
const triad: number[] = [];
const kernelGbs = KERNELS.map(() => [] as number[]);
for (let r = 0; r < rounds; r++) {
  const s = native.stream(1 << 25, 5);
  copy.push(s.copy);
  triad.push(s.triad);
  KERNELS.forEach((k, i) => {
    const run = k.setup(native, N);
    kernelGbs[i].push(gbs(k, N, time(run, 5, 0.5).median));
  });
}
const refGbs = KERNELS.map((k) => gbs(k, REF_N, time(k.setup(referenceBackend, REF_N), 3, 0.3).median));

const spread = (xs: readonly number[]) => ({
  median: median(xs),
  min: Math.min(...xs),
  max: Math.max(...xs),
});
const copyMedian = median(copy);
const report = {
  date: new Date().toISOString(),
  machine: machine(),
  threads,
  rounds,
  elements: N,
  streamCopyGbs: spread(copy),
  streamTriadGbs: spread(triad),
  kernels: KERNELS.map((k, i) => ({
    name: k.name,
    bytesPerElement: k.bytesPerElement,
    nativeGbs: spread(kernelGbs[i]),
    fractionOfCopy: median(kernelGbs[i]) / copyMedian,
    referenceGbs: refGbs[i],
  })),
};

if (wantJson) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const f = (s: { median: number; min: number; max: number }) =>
    `${s.median.toFixed(1)} [${s.min.toFixed(1)}-${s.max.toFixed(1)}]`;
  console.log(`memory-bound kernels, ${N} elements, ${threads} threads, ${rounds} rounds (median [min-max])`);
  console.log(`STREAM copy ${f(report.streamCopyGbs)} GB/s, triad ${f(report.streamTriadGbs)} GB/s\n`);
  printTable(
    ["kernel", "bytes/elem", "native GB/s", "% of copy", "reference GB/s (1M)"],
    report.kernels.map((k) => [
      k.name,
      String(k.bytesPerElement),
      f(k.nativeGbs),
      `${(100 * k.fractionOfCopy).toFixed(0)}%`,
      k.referenceGbs.toFixed(2),
    ]),
  );
}
