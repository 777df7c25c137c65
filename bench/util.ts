/**
 * Shared helpers for the benchmarks in bench/: timing (warm-up, then repeated runs, median), a plain
 * text table, the `--json` switch, the package root and the native backend (or a clear exit).
 * Each `*.bench.ts` file runs alone (`node dist/bench/<name>.bench.js [--json]`) or through
 * `scripts/run-bench.mjs`.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type NativeBackend, tryLoadNative } from "../src/backends/native/index.js";

export interface Timing {
  /** Median seconds per call. */
  readonly median: number;
  /** Fastest and slowest seconds per call. */
  readonly min: number;
  readonly max: number;
  readonly runs: number;
}

/**
 * Times `fn` after one warm-up call: at least `minRuns` calls and `minSeconds` in total, at most
 * `maxRuns` calls.
 */
export function time(fn: () => void, minRuns = 3, minSeconds = 1, maxRuns = 200): Timing {
  fn();
  const times: number[] = [];
  const start = performance.now();
  while (
    times.length < maxRuns &&
    (times.length < minRuns || performance.now() - start < minSeconds * 1000)
  ) {
    const t0 = performance.now();
    fn();
    times.push((performance.now() - t0) / 1000);
  }
  return summarise(times);
}

export function summarise(times: readonly number[]): Timing {
  const sorted = [...times].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], runs: sorted.length };
}

export function median(xs: readonly number[]): number {
  return summarise(xs).median;
}

/** Prints rows under a header, columns padded to their widest cell. */
export function printTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: readonly string[]) => cells.map((s, c) => s.padStart(widths[c])).join("  ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r));
}

export const wantJson = process.argv.includes("--json");

/** Numeric value of `--name=value`, or the default. */
export function numberFlag(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (arg === undefined) return fallback;
  const v = Number(arg.slice(name.length + 3));
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number, got ${arg}`);
  return v;
}

/** The package root (the folder holding binding.gyp), from bench/ or dist/bench/. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "binding.gyp"))) return dir;
    dir = dirname(dir);
  }
  throw new Error("bench: package root (binding.gyp) not found");
}

/** The native backend, or exit with the reason it is unavailable. */
export function nativeOrExit(): NativeBackend {
  const load = tryLoadNative();
  if ("error" in load) {
    console.error(`bench: ${load.error}`);
    process.exit(1);
  }
  return load.backend;
}

/** Seeded uniform floats in [-1, 1) (a small LCG: benchmarks only need non-trivial data). */
export function randomFloats(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2147483648 - 1;
  }
  return out;
}

export function machine(): string {
  return `${process.platform} ${process.arch}, node ${process.version}`;
}
