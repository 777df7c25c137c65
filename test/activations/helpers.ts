/** Shared helpers for the activation-store tests: synthetic stores whose rows say where they came from. */

import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TokenDocument } from "../../src/activations/documents.js";
import type { HarvestModel, HarvestOptions } from "../../src/activations/harvest.js";
import type { StoreDType } from "../../src/activations/manifest.js";
import { maskingRules } from "../../src/activations/sequences.js";
import type { ShardData, StoreIdentity } from "../../src/activations/store.js";
import { StoreWriter } from "../../src/activations/store.js";
import { Rng } from "../../src/core/random.js";

export const HASH_A = createHash("sha256").update("model A").digest("hex");
export const HASH_B = createHash("sha256").update("model B").digest("hex");

export function identity(over: Partial<StoreIdentity> = {}): StoreIdentity {
  return {
    model: { id: "model-a", hash: HASH_A },
    sites: [
      { name: "blocks.0.resid_post", d: 3 },
      { name: "blocks.1.mlp_out", d: 2 },
    ],
    dtype: "f32",
    dataset: { source: "synthetic", context: 16 },
    ...over,
  };
}

/**
 * A shard of `n` rows numbered from `first`: site 0 row g = [g, g/7, -g], site 1 row g = [g % 5, 0.5],
 * token id g, position g % 16, document floor(g / 10). Row g is therefore identifiable from any site.
 */
export function syntheticShard(first: number, n: number, sites = identity().sites): ShardData {
  const acts = new Map<string, Float32Array>();
  for (const [si, s] of sites.entries()) {
    const a = new Float32Array(n * s.d);
    for (let r = 0; r < n; r++) {
      const g = first + r;
      for (let j = 0; j < s.d; j++) a[r * s.d + j] = si === 0 ? [g, g / 7, -g][j % 3] : [g % 5, 0.5][j % 2];
    }
    acts.set(s.name, a);
  }
  const ids = Int32Array.from({ length: n }, (_, r) => first + r);
  return {
    acts,
    tokenIds: ids,
    positions: ids.map((g) => g % 16),
    docIds: ids.map((g) => Math.floor(g / 10)),
  };
}

/** Writes a store of shards with the given sizes; returns the total token count. */
export async function writeSyntheticStore(
  dir: string,
  sizes: readonly number[],
  id: StoreIdentity = identity(),
): Promise<number> {
  const w = StoreWriter.open(dir, id);
  let first = 0;
  try {
    for (const [i, n] of sizes.entries()) {
      await w.append(syntheticShard(first, n, id.sites), { sequences: i + 1, skip: 0 });
      first += n;
    }
    w.finish({ sequences: sizes.length, skip: 0 });
  } finally {
    w.close();
  }
  return first;
}

/** Synthetic tokenized documents: seeded lengths 1..60, ids in [3, 200), a few BOS (2) and pad (0) inside. */
export function syntheticDocuments(count: number, seed = 1): TokenDocument[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => {
    const n = 1 + rng.int(60);
    const ids = new Int32Array(n);
    ids[0] = 2;
    for (let i = 1; i < n; i++) {
      const r = rng.int(50);
      ids[i] = r === 0 ? 0 : r === 1 ? 2 : 3 + rng.int(197);
    }
    return { ids, keep: null };
  });
}

/**
 * A stand-in model whose activation at (row, position) depends on the token, its position and every
 * earlier token of its row (like a causal model) but not on padding or other rows. `delayMs` slows
 * each forward call.
 */
export function fakeModel(sites = identity().sites, delayMs = 0): HarvestModel {
  return {
    identity: { id: "fake", hash: HASH_A },
    sites,
    run(ids, batch, seq, mask) {
      if (delayMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, delayMs);
      const out = new Map<string, Float32Array>();
      for (const [si, s] of sites.entries()) {
        const a = new Float32Array(batch * seq * s.d);
        for (let b = 0; b < batch; b++) {
          let prefix = 0;
          for (let p = 0; p < seq; p++) {
            const id = ids[b * seq + p];
            prefix += id * (p + 1);
            if (mask[b * seq + p] === 0) continue;
            for (let j = 0; j < s.d; j++)
              a[(b * seq + p) * s.d + j] = si * 1000 + j + id * 0.5 + p * 0.25 + (prefix % 997);
          }
        }
        out.set(s.name, a);
      }
      return out;
    },
  };
}

export interface SyntheticHarvest {
  readonly docs: number;
  readonly seed?: number;
  readonly delayMs?: number;
  readonly tokens?: number;
  readonly batch?: number;
  readonly shardTokens?: number;
  readonly dtype?: StoreDType;
  readonly context?: number;
}

/** Harvest options over `syntheticDocuments` and `fakeModel`. */
export function syntheticHarvest(o: SyntheticHarvest): HarvestOptions {
  const docs = syntheticDocuments(o.docs, o.seed ?? 1);
  return {
    model: fakeModel(identity().sites, o.delayMs ?? 0),
    documents: () => docs,
    context: o.context ?? 16,
    bos: 2,
    rules: maskingRules("text", { bos: 2, pad: 0 }),
    longDocuments: "split",
    batch: o.batch ?? 3,
    shardTokens: o.shardTokens ?? 40,
    dataset: { source: "synthetic", docs: o.docs, seed: o.seed ?? 1 },
    ...(o.tokens === undefined ? {} : { tokens: o.tokens }),
    ...(o.dtype === undefined ? {} : { dtype: o.dtype }),
  };
}

const here = fileURLToPath(new URL(".", import.meta.url));
const compiled = existsSync(join(here, "helpers.js"));

/** Starts `harvest-child` harvesting `o` into `dir`, optionally under a file-size limit (KiB). */
export function spawnHarvest(dir: string, o: SyntheticHarvest, fileLimitKiB?: number): ChildProcess {
  const script = compiled
    ? [join(here, "harvest-child.js")]
    : ["--import", "tsx", join(here, "harvest-child.ts")];
  const args = [...script, dir, JSON.stringify(o)];
  if (fileLimitKiB === undefined) return spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  const quoted = [process.execPath, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  return spawn("bash", ["-c", `ulimit -f ${fileLimitKiB}; exec ${quoted}`], {
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Collects a child's exit code and output. */
export function finished(
  child: ChildProcess,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((res) => child.on("close", (code, signal) => res({ code, signal, stdout, stderr })));
}
