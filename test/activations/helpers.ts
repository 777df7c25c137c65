/** Shared helpers for the activation-store tests: synthetic stores whose rows say where they came from. */

import { createHash } from "node:crypto";
import type { ShardData, StoreIdentity } from "../../src/activations/store.js";
import { StoreWriter } from "../../src/activations/store.js";

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
