/**
 * Shared helpers for the benchmarks in bench/: timing (warm-up, then repeated runs, median), a plain
 * text table, the `--json` switch, the package root, the reference oracle's Python and child
 * processes that answer in JSON, the native backend (or a clear exit), seeded data.
 * Each `*.bench.ts` file runs alone (`node dist/bench/<name>.bench.js [--json]`) or through
 * `scripts/run-bench.mjs`.
 */
import { spawnSync } from "node:child_process";
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

/** The reference oracle's Python (`reference/.venv`, made by `reference/setup.sh`); may not exist. */
export function referencePython(): string {
  return join(packageRoot(), "reference", ".venv", "bin", "python");
}

/** Runs `cmd argv` in the package root; the last line it prints is its JSON answer. */
export function spawnJson<T>(cmd: string, argv: readonly string[], env: NodeJS.ProcessEnv): T {
  const r = spawnSync(cmd, argv, { cwd: packageRoot(), encoding: "utf8", env, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "") as T;
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

/** z with P(N(0,1) > z) = p: bisection on erfc (Numerical Recipes' `erfcc`, error < 1.2e-7). */
export function normalUpperQuantile(p: number): number {
  const erfc = (x: number): number => {
    const z = Math.abs(x);
    const t = 1 / (1 + 0.5 * z);
    const poly = [
      -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
      -0.82215223, 0.17087277,
    ];
    let s = 0;
    for (let i = poly.length - 1; i >= 1; i--) s = t * (poly[i] + s);
    const r = t * Math.exp(-z * z + poly[0] + s);
    return x >= 0 ? r : 2 - r;
  };
  let lo = -10;
  let hi = 10;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (0.5 * erfc(mid / Math.SQRT2) > p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}
