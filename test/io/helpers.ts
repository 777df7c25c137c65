/** Shared helpers for the io tests: temp dirs, fixture paths, and running the CLI. */

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { SafetensorsError } from "../../src/core/errors.js";

const here = fileURLToPath(new URL(".", import.meta.url));
/** Whether this file runs compiled (dist/test/io) or from source through tsx (test/io). */
const compiled = existsSync(join(here, "helpers.js"));
const repoRoot = compiled ? join(here, "..", "..", "..") : join(here, "..", "..");

/** A fresh temp directory, removed when the test file finishes. */
export function tempDir(prefix = "glassbox-io-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Path of a committed fixture under test/fixtures. */
export function fixture(...parts: string[]): string {
  return join(repoRoot, "test", "fixtures", ...parts);
}

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the glassbox CLI (the built one when compiled, the source through tsx otherwise). */
export function runCli(args: readonly string[]): CliResult {
  const argv = compiled
    ? [join(repoRoot, "dist", "src", "cli", "main.js"), ...args]
    : ["--import", "tsx", join(repoRoot, "src", "cli", "main.ts"), ...args];
  const r = spawnSync(process.execPath, argv, { encoding: "utf8", cwd: repoRoot, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function pseudoRandomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s & 0xff;
  }
  return out;
}

/** The f64 ramp the fixture scripts use: i * 0.25 - 1.5. */
export function ramp(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i * 0.25 - 1.5);
}

/** A malformed file: what is broken, its bytes, and optionally what the error message must say. */
export interface MalformedCase {
  readonly label: string;
  readonly bytes: Uint8Array;
  readonly expect?: RegExp;
}

/**
 * Writes each case to `dir` (as bad-<i>.<ext>) and reads it with `read`, which must throw a
 * SafetensorsError naming the file (and matching `expect`). Returns one line per case that did not,
 * and the peak growth of heap and array-buffer memory over the whole loop.
 */
export function readMalformed(
  dir: string,
  ext: string,
  all: readonly MalformedCase[],
  read: (path: string) => void,
): { readonly failures: string[]; readonly peak: number } {
  globalThis.gc?.();
  const base = process.memoryUsage();
  let peak = 0;
  const failures: string[] = [];
  all.forEach((c, i) => {
    const p = join(dir, `bad-${i}.${ext}`);
    writeFileSync(p, c.bytes);
    try {
      read(p);
      failures.push(`${c.label}: read without error`);
    } catch (e) {
      if (!(e instanceof SafetensorsError)) failures.push(`${c.label}: threw ${String(e)}`);
      else if (e.subject !== p || !e.message.startsWith(`${p}: `))
        failures.push(`${c.label}: message does not name the file: ${e.message}`);
      else if (c.expect && !c.expect.test(e.message))
        failures.push(`${c.label}: message ${JSON.stringify(e.message)} does not match ${c.expect}`);
    }
    const m = process.memoryUsage();
    peak = Math.max(peak, m.arrayBuffers - base.arrayBuffers, m.heapUsed - base.heapUsed);
  });
  return { failures, peak };
}
