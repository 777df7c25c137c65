/** Shared helpers for the io tests: temp dirs, fixture paths, and running the CLI. */

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";

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
