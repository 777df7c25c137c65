/**
 * Memory-bound kernel throughput of the native backend against the machine's measured memory
 * bandwidth, in one run: softmax, RMSNorm, GELU, same-shape add and bf16 -> f32 conversion on 8M
 * elements (32 MB per f32 array), each alternating call by call with a contiguous copy of as many
 * floats through the same thread pool, which gives the "% of copy" per pair; a STREAM-style copy /
 * triad over 3 x 128 MB arrays (in the addon) gives the absolute bandwidth. GB/s counts the bytes a
 * kernel must read and write once (STREAM convention, no write-allocate traffic). The reference
 * backend is shown on 1M elements for scale.
 *
 * Usage: node dist/bench/kernels.bench.js [--json] [--calls=15] [--threads=N]
 */

import { loadavg } from "node:os";
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
const calls = numberFlag("calls", 15);
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

function once(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

// Bandwidth baseline beside each kernel: a contiguous copy of the same number of floats through the
// same thread pool (8 bytes per element), alternating call by call with the kernel.
const copySrc = randomFloats(N, 8);
const copyDst = new Float32Array(N);
const copyArgs = { shape: [N], srcOffset: 0, srcStrides: [1], dstOffset: 0, dstStrides: [1] };
const runCopy = () => native.copy(copySrc, copyDst, copyArgs);

const stream = { copy: [] as number[], triad: [] as number[] };
for (let r = 0; r < 3; r++) {
  const s = native.stream(1 << 25, 5);
  stream.copy.push(s.copy);
  stream.triad.push(s.triad);
}
const kernelGbs = KERNELS.map(() => [] as number[]);
const copyGbs = KERNELS.map(() => [] as number[]);
const fraction = KERNELS.map(() => [] as number[]);
KERNELS.forEach((k, i) => {
  const run = k.setup(native, N);
  run();
  runCopy();
  for (let c = 0; c < calls; c++) {
    const tc = once(runCopy);
    const tk = once(run);
    kernelGbs[i].push(gbs(k, N, tk));
    copyGbs[i].push((8 * N) / tc / 1e9);
    fraction[i].push(tc / 8 / (tk / k.bytesPerElement));
  }
});
const refGbs = KERNELS.map((k) => gbs(k, REF_N, time(k.setup(referenceBackend, REF_N), 3, 0.3).median));

const spread = (xs: readonly number[]) => ({
  median: median(xs),
  min: Math.min(...xs),
  max: Math.max(...xs),
});
const report = {
  date: new Date().toISOString(),
  machine: machine(),
  loadAverage: loadavg(),
  threads,
  calls,
  elements: N,
  streamCopyGbs: spread(stream.copy),
  streamTriadGbs: spread(stream.triad),
  kernels: KERNELS.map((k, i) => ({
    name: k.name,
    bytesPerElement: k.bytesPerElement,
    nativeGbs: spread(kernelGbs[i]),
    copyGbs: spread(copyGbs[i]),
    fractionOfCopy: spread(fraction[i]),
    referenceGbs: refGbs[i],
  })),
};

if (wantJson) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const f = (s: { median: number; min: number; max: number }, digits = 1, scale = 1) =>
    `${(s.median * scale).toFixed(digits)} [${(s.min * scale).toFixed(digits)}-${(s.max * scale).toFixed(digits)}]`;
  console.log(
    `memory-bound kernels, ${N} elements, ${threads} threads, ${calls} calls each (median [min-max])`,
  );
  console.log(
    `STREAM copy ${f(report.streamCopyGbs)} GB/s, triad ${f(report.streamTriadGbs)} GB/s (3 x 128 MB arrays)`,
  );
  console.log(`load average at the end: ${report.loadAverage.map((l) => l.toFixed(2)).join(" ")}\n`);
  printTable(
    ["kernel", "bytes/elem", "native GB/s", "copy GB/s (paired)", "% of copy", "reference GB/s (1M)"],
    report.kernels.map((k) => [
      k.name,
      String(k.bytesPerElement),
      f(k.nativeGbs),
      f(k.copyGbs),
      f(k.fractionOfCopy, 0, 100),
      k.referenceGbs.toFixed(2),
    ]),
  );
}
