import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { type ReaderOptions, readActivations, splitShards } from "../../src/activations/reader.js";
import { StoreBatchSource } from "../../src/activations/source.js";
import { ActivationStore } from "../../src/activations/store.js";
import { referenceBackend } from "../../src/backends/index.js";
import { StoreError } from "../../src/core/errors.js";
import { tempDir } from "../io/helpers.js";
import { syntheticShard, writeSyntheticStore } from "./helpers.js";

const root = tempDir("glassbox-reader-");
const SIZES = [13, 7, 20, 1, 9, 31];
const dir = join(root, "store");
let total = 0;
let store: ActivationStore;

test.before(async () => {
  total = await writeSyntheticStore(dir, SIZES);
  store = ActivationStore.open(dir);
});

const opts = (over: Partial<ReaderOptions> = {}): ReaderOptions => ({
  batchTokens: 8,
  backend: referenceBackend,
  ...over,
});

interface Read {
  ids: number[];
  sizes: number[];
}

async function readAll(o: ReaderOptions): Promise<Read> {
  const ids: number[] = [];
  const sizes: number[] = [];
  for await (const b of readActivations(store, o)) {
    const a = b.batch["blocks.0.resid_post"];
    const c = b.batch["blocks.1.mlp_out"];
    const n = b.tokenIds.length;
    assert.deepEqual(a.shape, [n, 3]);
    assert.deepEqual(c.shape, [n, 2]);
    const av = a.toFlatArray();
    const cv = c.toFlatArray();
    for (let r = 0; r < n; r++) {
      // Every site's row and the token id must describe the same stored row.
      const g = b.tokenIds[r];
      const want = syntheticShard(g, 1);
      assert.deepEqual(av.slice(r * 3, r * 3 + 3), Array.from(want.acts.get("blocks.0.resid_post")!));
      assert.deepEqual(cv.slice(r * 2, r * 2 + 2), Array.from(want.acts.get("blocks.1.mlp_out")!));
      assert.equal(b.docIds[r], Math.floor(g / 10));
      ids.push(g);
    }
    sizes.push(n);
  }
  return { ids, sizes };
}

const range = (n: number): number[] => [...Array(n).keys()];

test("sequential order returns the store's rows in order, in batches of n with a partial last batch", async () => {
  const r = await readAll(opts({ order: "sequential" }));
  assert.deepEqual(r.ids, range(total));
  assert.ok(total % 8 !== 0);
  assert.deepEqual(r.sizes, [...Array(Math.floor(total / 8)).fill(8), total % 8]);
  const dropped = await readAll(opts({ order: "sequential", dropLast: true }));
  assert.deepEqual(dropped.ids, range(Math.floor(total / 8) * 8));
});

test("shuffled order gives every token exactly once per epoch, in a different order each epoch", async () => {
  for (const bufferTokens of [1, 10, 32, 1000]) {
    const epochs = 3;
    const r = await readAll(opts({ bufferTokens, epochs, seed: 7 }));
    assert.equal(r.ids.length, epochs * total);
    const orders: number[][] = [];
    for (let e = 0; e < epochs; e++) {
      const ep = r.ids.slice(e * total, (e + 1) * total);
      assert.deepEqual(
        [...ep].sort((a, b) => a - b),
        range(total),
        `buffer ${bufferTokens} epoch ${e}`,
      );
      orders.push(ep);
    }
    assert.notDeepEqual(orders[0], orders[1]);
    assert.notDeepEqual(orders[1], orders[2]);
    if (bufferTokens > 1) assert.notDeepEqual(orders[0], range(total));
  }
});

test("the mixing buffer bounds how far a token moves: a window holds bufferTokens consecutive tokens of the shard order", async () => {
  const bufferTokens = 16;
  const reader = readActivations(store, opts({ bufferTokens, seed: 3 }));
  const starts: number[] = [];
  let at = 0;
  for (const s of reader.shardOrder(0)) {
    starts[s] = at;
    at += SIZES[s];
  }
  const firstOfShard = SIZES.map((_, i) => SIZES.slice(0, i).reduce((a, b) => a + b, 0));
  const streamIndex = (g: number): number => {
    let s = 0;
    while (s + 1 < firstOfShard.length && firstOfShard[s + 1] <= g) s++;
    return starts[s] + (g - firstOfShard[s]);
  };
  const r = await readAll(opts({ bufferTokens, seed: 3 }));
  r.ids.forEach((g, i) => {
    assert.equal(
      Math.floor(streamIndex(g) / bufferTokens),
      Math.floor(i / bufferTokens),
      `token ${g} at ${i}`,
    );
  });
});

test("the same seed gives the same stream; another seed another", async () => {
  const a = await readAll(opts({ seed: 11, bufferTokens: 25 }));
  const b = await readAll(opts({ seed: 11, bufferTokens: 25 }));
  const c = await readAll(opts({ seed: 12, bufferTokens: 25 }));
  assert.deepEqual(a.ids, b.ids);
  assert.notDeepEqual(a.ids, c.ids);
});

test("a reader resumed from any batch's cursor (through JSON) continues exactly where it stopped", async () => {
  for (const order of ["sequential", "shuffled"] as const) {
    const o = opts({ order, epochs: 2, seed: 5, bufferTokens: 17, batchTokens: 6 });
    const full = await readAll(o);
    const cursors: string[] = [];
    for await (const b of readActivations(store, o)) cursors.push(JSON.stringify(b.cursor));
    for (let k = 0; k < cursors.length; k++) {
      const rest = await readAll({ ...o, cursor: JSON.parse(cursors[k]) });
      const done = (k + 1) * 6;
      assert.deepEqual(rest.ids, full.ids.slice(done), `${order} after batch ${k}`);
    }
  }
});

test("a cursor is refused by a reader with other options or another store", async () => {
  const o = opts({ seed: 1 });
  let cursor: unknown;
  for await (const b of readActivations(store, o)) {
    cursor = b.cursor;
    break;
  }
  const c = cursor as ReaderOptions["cursor"] & object;
  assert.throws(
    () => readActivations(store, { ...o, seed: 2, cursor: c }),
    /different order, seed or buffer/,
  );
  assert.throws(() => readActivations(store, { ...o, shards: [0, 1], cursor: c }), /different set of shards/);
  assert.throws(
    () => readActivations(store, { ...o, cursor: { ...c, store: "0".repeat(64) } }),
    /different store/,
  );
  assert.throws(
    () => readActivations(store, { ...o, sites: ["nope"] }),
    (e: unknown) => e instanceof StoreError,
  );
  assert.throws(
    () => readActivations(store, { ...o, batchTokens: 0 }),
    /batch size must be a positive integer/,
  );
});

test("splitShards gives disjoint train/validation shard sets covering the store; readers stay inside them", async () => {
  const { train, validation } = splitShards(store, 0.34, 9);
  assert.equal(validation.length, 2);
  assert.deepEqual(
    [...train, ...validation].sort((a, b) => a - b),
    range(SIZES.length),
  );
  const firstOfShard = SIZES.map((_, i) => SIZES.slice(0, i).reduce((a, b) => a + b, 0));
  const ofShards = (shards: number[]): number[] =>
    shards.flatMap((s) => range(SIZES[s]).map((r) => firstOfShard[s] + r)).sort((a, b) => a - b);
  const v = await readAll(opts({ shards: validation }));
  assert.deepEqual(
    [...v.ids].sort((a, b) => a - b),
    ofShards(validation),
  );
  const t = await readAll(opts({ shards: train }));
  assert.deepEqual(
    [...t.ids].sort((a, b) => a - b),
    ofShards(train),
  );
  assert.deepEqual(splitShards(store, 0.34, 9), { train, validation });
  assert.deepEqual(splitShards(store, 0).validation, []);
});

test("bf16 stores are read back widened to f32 with only the sites asked for", async () => {
  const d2 = join(root, "bf16");
  await writeSyntheticStore(d2, [4, 4], {
    model: store.manifest.model,
    sites: [
      { name: "a", d: 3 },
      { name: "b", d: 2 },
    ],
    dtype: "bf16",
    dataset: { source: "synthetic" },
  });
  const s2 = ActivationStore.open(d2);
  for await (const b of readActivations(s2, opts({ sites: ["b"], order: "sequential", batchTokens: 8 }))) {
    assert.deepEqual(Object.keys(b.batch), ["b"]);
    assert.equal(b.batch.b.dtype, "f32");
    assert.deepEqual(b.batch.b.toFlatArray().slice(0, 4), [0, 0.5, 1, 0.5]);
  }
});

test("StoreBatchSource serves full batches of any size, returns null at the end, and seeks to a cursor", async () => {
  const src = new StoreBatchSource(store, { backend: referenceBackend, seed: 4, bufferTokens: 20 });
  assert.deepEqual(
    [...src.sites],
    [
      ["blocks.0.resid_post", 3],
      ["blocks.1.mlp_out", 2],
    ],
  );
  assert.equal(src.fingerprint, store.manifest.content_hash);
  const seen: number[] = [];
  const first = await src.next(10, ["blocks.0.resid_post"]);
  assert.ok(first !== null);
  assert.deepEqual([...first.sites.keys()], ["blocks.0.resid_post"]);
  const rowsOf = (b: NonNullable<typeof first>): number[] =>
    Array.from({ length: b.tokens }, (_, r) => b.sites.get("blocks.0.resid_post")![r * 3]);
  seen.push(...rowsOf(first));
  const cursor = JSON.parse(JSON.stringify(src.cursor()));
  const a = await src.next(25, ["blocks.0.resid_post", "blocks.1.mlp_out"]);
  src.seek(cursor);
  const b = await src.next(25, ["blocks.0.resid_post", "blocks.1.mlp_out"]);
  assert.ok(a !== null && b !== null);
  assert.deepEqual(b.sites, a.sites);
  seen.push(...rowsOf(b));
  for (;;) {
    const c = await src.next(7, ["blocks.0.resid_post"]);
    if (c === null) break;
    seen.push(...rowsOf(c));
  }
  assert.equal(seen.length, total - ((total - 35) % 7));
  assert.equal(new Set(seen).size, seen.length);
  await assert.rejects(src.next(1, ["nope"]), /no site nope/);
  assert.throws(() => src.seek({ tokens: 3 }), /not a store reader cursor/);
});

test("StoreBatchSource restricted to some sites reads only those, in the same order as a full source", async () => {
  const full = new StoreBatchSource(store, { backend: referenceBackend, seed: 9, bufferTokens: 16 });
  const one = new StoreBatchSource(store, {
    backend: referenceBackend,
    seed: 9,
    bufferTokens: 16,
    sites: ["blocks.1.mlp_out"],
  });
  assert.deepEqual([...one.sites], [["blocks.1.mlp_out", 2]]);
  for (;;) {
    const a = await full.next(11, ["blocks.1.mlp_out"]);
    const b = await one.next(11, ["blocks.1.mlp_out"]);
    assert.equal(a === null, b === null);
    if (a === null || b === null) break;
    assert.deepEqual(b.sites, a.sites);
  }
  await assert.rejects(
    new StoreBatchSource(store, { backend: referenceBackend, sites: ["blocks.1.mlp_out"] }).next(1, [
      "blocks.0.resid_post",
    ]),
    /no site blocks\.0\.resid_post/,
  );
  assert.throws(
    () => new StoreBatchSource(store, { backend: referenceBackend, sites: ["blocks.3.mlp_out"] }),
    /store has no site blocks\.3\.mlp_out/,
  );
});
