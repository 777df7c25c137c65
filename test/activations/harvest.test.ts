import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { harvestToStore, ModelBatchSource, streamActivations } from "../../src/activations/harvest.js";
import { maskingRules, type Sequence, sequencesOf } from "../../src/activations/sequences.js";
import { ActivationStore, StoreWriter } from "../../src/activations/store.js";
import { referenceBackend } from "../../src/backends/index.js";
import { StoreError } from "../../src/core/errors.js";
import { Rng } from "../../src/core/random.js";
import { tempDir } from "../io/helpers.js";
import {
  fakeModel,
  finished,
  identity,
  spawnHarvest,
  syntheticDocuments,
  syntheticHarvest,
} from "./helpers.js";

const root = tempDir("glassbox-harvest-");
let counter = 0;
const fresh = (): string => join(root, `h${counter++}`);

interface Rows {
  ids: number[];
  positions: number[];
  docs: number[];
  acts: Map<string, number[]>;
}

async function storeRows(dir: string): Promise<Rows> {
  const store = ActivationStore.open(dir);
  const out: Rows = { ids: [], positions: [], docs: [], acts: new Map() };
  for (let i = 0; i < store.manifest.shards.length; i++) {
    const s = await store.readShard(i);
    out.ids.push(...s.tokenIds);
    out.positions.push(...s.positions);
    out.docs.push(...s.docIds);
    for (const [k, v] of s.acts) out.acts.set(k, [...(out.acts.get(k) ?? []), ...v]);
  }
  return out;
}

/** What should be stored, computed independently: each document on its own, position by position. */
function expectedRows(
  docCount: number,
  context: number,
): { ids: number[]; positions: number[]; docs: number[] } {
  const out = { ids: [] as number[], positions: [] as number[], docs: [] as number[] };
  syntheticDocuments(docCount).forEach((d, doc) => {
    // Split into chunks: first `context` tokens, then BOS + context - 1 more each time.
    const chunks: number[][] = [Array.from(d.ids.subarray(0, context))];
    for (let at = context; at < d.ids.length; at += context - 1)
      chunks.push([2, ...d.ids.subarray(at, Math.min(at + context - 1, d.ids.length))]);
    for (const c of chunks) {
      c.forEach((id, p) => {
        if (p === 0 || id === 2 || id === 0) return;
        out.ids.push(id);
        out.positions.push(p);
        out.docs.push(doc);
      });
    }
  });
  return out;
}

test("sequences: long documents split with a BOS in front of each continuation; BOS, pad and the first position are masked", () => {
  const rules = maskingRules("text", { bos: 2, pad: 0 });
  const ids = Int32Array.from([2, 5, 6, 0, 7, 8, 2, 9, 10]);
  const seqs = [
    ...sequencesOf({ ids, keep: null }, 4, { context: 4, bos: 2, rules, longDocuments: "split" }),
  ];
  const view = (s: Sequence) => [Array.from(s.ids), Array.from(s.keep), s.doc];
  assert.deepEqual(seqs.map(view), [
    [[2, 5, 6, 0], [0, 1, 1, 0], 4],
    [[2, 7, 8, 2], [0, 1, 1, 0], 4],
    [[2, 9, 10], [0, 1, 1], 4],
  ]);
  const truncated = [
    ...sequencesOf({ ids, keep: null }, 0, { context: 4, bos: 2, rules, longDocuments: "truncate" }),
  ];
  assert.deepEqual(truncated.map(view), [[[2, 5, 6, 0], [0, 1, 1, 0], 0]]);
});

test("sequences: chat masks the first four positions and every template token", () => {
  const rules = maskingRules("chat", { bos: 2, pad: 0 });
  // <bos> <start_of_turn> user \n  Hi there <end_of_turn> \n <start_of_turn> model \n Hello <end_of_turn>
  const ids = Int32Array.from([2, 105, 50, 10, 60, 61, 106, 10, 105, 51, 10, 62, 106]);
  const keep = Uint8Array.from([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0]);
  const [s] = [...sequencesOf({ ids, keep }, 0, { context: 64, bos: 2, rules, longDocuments: "truncate" })];
  assert.deepEqual(Array.from(s.keep), Array.from(keep));
  // The first four are masked even where the document's mask would keep them.
  const [t] = [
    ...sequencesOf({ ids, keep: new Uint8Array(13).fill(1) }, 0, {
      context: 64,
      bos: 2,
      rules,
      longDocuments: "truncate",
    }),
  ];
  assert.deepEqual(Array.from(t.keep), [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
});

test("a harvest stores exactly the unmasked tokens, each with the activation of its own sequence", async () => {
  const dir = fresh();
  const r = await harvestToStore(dir, syntheticHarvest({ docs: 30, batch: 4 }));
  const want = expectedRows(30, 16);
  const got = await storeRows(dir);
  assert.deepEqual(got.ids, want.ids);
  assert.deepEqual(got.positions, want.positions);
  assert.deepEqual(got.docs, want.docs);
  assert.equal(r.manifest.tokens, want.ids.length);
  assert.equal(r.added, want.ids.length);
  assert.ok(r.manifest.complete);
  assert.ok(r.manifest.shards.length > 3, "several shards");
  // Activations do not depend on batching or padding: compare with batch size 1.
  const single = fresh();
  await harvestToStore(single, syntheticHarvest({ docs: 30, batch: 1 }));
  assert.deepEqual((await storeRows(single)).acts, got.acts);
  const m = r.manifest;
  assert.deepEqual(m.dataset.masking, { exclude_ids: [2, 0], skip_first: 1, template_tokens: false });
  assert.equal(m.dataset.context, 16);
  assert.deepEqual(
    m.sites.map((s) => s.name),
    identity().sites.map((s) => s.name),
  );
});

test("a token limit is met exactly, and raising it later continues without duplicating or losing tokens", async () => {
  const full = fresh();
  await harvestToStore(full, syntheticHarvest({ docs: 30 }));
  const all = await storeRows(full);
  const dir = fresh();
  for (const limit of [1, 57, 58, 200, 10_000]) {
    const r = await harvestToStore(dir, syntheticHarvest({ docs: 30, tokens: limit }));
    const n = Math.min(limit, all.ids.length);
    assert.equal(r.manifest.tokens, n);
    const got = await storeRows(dir);
    assert.deepEqual(got.ids, all.ids.slice(0, n), `limit ${limit}`);
    assert.deepEqual(
      got.acts,
      new Map([...all.acts].map(([k, v]) => [k, v.slice(0, n * (v.length / all.ids.length))])),
    );
  }
  const again = await harvestToStore(dir, syntheticHarvest({ docs: 30, tokens: 10_000 }));
  assert.equal(again.added, 0);
});

function listedShards(dir: string): number {
  try {
    return JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")).shards.length;
  } catch {
    return 0;
  }
}

test("kill -9 at random moments, then resume: the store equals an uninterrupted one", async () => {
  const o = { docs: 120, batch: 2, shardTokens: 30, delayMs: 10 };
  const reference = fresh();
  // The delay only slows the children down enough to be killed mid-way; content does not depend on it.
  await harvestToStore(reference, syntheticHarvest({ ...o, delayMs: 0 }));
  const want = ActivationStore.open(reference).manifest;
  const dir = fresh();
  const rng = new Rng(42);
  let kills = 0;
  for (let round = 0; round < 3; round++) {
    const child = spawnHarvest(dir, o);
    const done = finished(child);
    // Wait until this run has written a shard of its own, then kill it a random moment later.
    const before = listedShards(dir);
    while (listedShards(dir) <= before && child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, rng.int(40)));
    if (child.kill("SIGKILL")) kills++;
    const res = await done;
    assert.equal(res.signal, "SIGKILL", `round ${round} ended on its own: ${res.stdout}${res.stderr}`);
    await ActivationStore.open(dir).verify();
  }
  assert.equal(kills, 3);
  const progress = ActivationStore.open(dir).manifest;
  assert.ok(!progress.complete && progress.shards.length >= 3, "the kills came before the end");
  const r = await harvestToStore(dir, syntheticHarvest({ ...o, delayMs: 0 }));
  assert.equal(r.resumedFrom, progress.tokens);
  assert.equal(r.manifest.content_hash, want.content_hash);
  assert.deepEqual(await storeRows(dir), await storeRows(reference));
  assert.ok(!readdirSync(dir).some((f) => f.startsWith(".")), "no temporary files or lock left");
});

test("a full disk fails the harvest with a clear error and leaves a valid store behind", async () => {
  const dir = fresh();
  await harvestToStore(dir, syntheticHarvest({ docs: 200, shardTokens: 100, tokens: 300 }));
  const before = ActivationStore.open(dir).manifest;
  // Under a 12 KiB file-size limit a 1,000-token shard (~20 KB) cannot be written.
  const child = spawnHarvest(dir, { docs: 200, shardTokens: 1000, tokens: 3000 }, 12);
  const res = await finished(child);
  assert.equal(res.code, 1, res.stdout + res.stderr);
  assert.match(res.stdout, /StoreError: .*cannot write shard_00003\.safetensors: .*(EFBIG|too large)/i);
  const store = ActivationStore.open(dir);
  await store.verify();
  assert.deepEqual(store.manifest.shards, before.shards);
  assert.ok(!readdirSync(dir).some((f) => f.startsWith(".")), "no temporary file or lock left");
  // Resuming with room finishes the job with the same tokens as a harvest that never failed.
  await harvestToStore(dir, syntheticHarvest({ docs: 200, shardTokens: 1000, tokens: 3000 }));
  const ref = fresh();
  await harvestToStore(ref, syntheticHarvest({ docs: 200, tokens: 3000 }));
  assert.deepEqual(await storeRows(dir), await storeRows(ref));
});

test("appending with another model, other sites or another dataset is refused", async () => {
  const dir = fresh();
  await harvestToStore(dir, syntheticHarvest({ docs: 5 }));
  const o = syntheticHarvest({ docs: 5 });
  await assert.rejects(
    harvestToStore(dir, { ...o, model: { ...o.model, identity: { id: "other", hash: "1".repeat(64) } } }),
    (e: unknown) => e instanceof StoreError && /not of other/.test(e.message),
  );
  await assert.rejects(
    harvestToStore(dir, { ...o, model: fakeModel([{ name: "blocks.0.resid_post", d: 3 }]) }),
    /holds sites/,
  );
  await assert.rejects(harvestToStore(dir, syntheticHarvest({ docs: 6 })), /dataset docs = 5, not 6/);
  await assert.rejects(
    harvestToStore(dir, syntheticHarvest({ docs: 5, context: 8 })),
    /dataset context = 16, not 8/,
  );
  await assert.rejects(
    harvestToStore(dir, syntheticHarvest({ docs: 5, dtype: "bf16" })),
    /f32 activations, not bf16/,
  );
  await assert.rejects(harvestToStore(fresh(), { ...o, documents: () => [] }), /gave no tokens/);
  StoreWriter.open(dir, {
    ...identity(),
    model: o.model.identity,
    dataset: ActivationStore.open(dir).manifest.dataset,
  }).close();
});

test("streaming yields the same rows as the store, in batches of n, and resumes from a batch's cursor", async () => {
  const dir = fresh();
  await harvestToStore(dir, syntheticHarvest({ docs: 25 }));
  const stored = await storeRows(dir);
  const o = { ...syntheticHarvest({ docs: 25 }), backend: referenceBackend, batchTokens: 13 };
  const ids: number[] = [];
  const acts: number[] = [];
  const cursors: string[] = [];
  for await (const b of streamActivations(o)) {
    assert.ok(b.tokenIds.length === 13 || ids.length + b.tokenIds.length === stored.ids.length);
    ids.push(...b.tokenIds);
    acts.push(...b.batch["blocks.0.resid_post"].toFlatArray());
    cursors.push(JSON.stringify(b.cursor));
  }
  assert.deepEqual(ids, stored.ids);
  assert.deepEqual(acts, stored.acts.get("blocks.0.resid_post"));
  for (const k of [0, 3, cursors.length - 2]) {
    const rest: number[] = [];
    for await (const b of streamActivations({ ...o, cursor: JSON.parse(cursors[k]) }))
      rest.push(...b.tokenIds);
    assert.deepEqual(rest, stored.ids.slice((k + 1) * 13), `after batch ${k}`);
  }
  const src = new ModelBatchSource(o);
  const a = await src.next(20, ["blocks.1.mlp_out"]);
  const cursor = src.cursor();
  const b = await src.next(20, ["blocks.1.mlp_out"]);
  src.seek(cursor);
  const b2 = await src.next(20, ["blocks.1.mlp_out"]);
  assert.ok(a && b && b2);
  assert.deepEqual(b2.sites, b.sites);
  const d = 2;
  assert.deepEqual(
    Array.from(b.sites.get("blocks.1.mlp_out")!),
    stored.acts.get("blocks.1.mlp_out")!.slice(20 * d, 40 * d),
  );
});

test("the manifest is the only index: a store with an unlisted shard reads as before", () => {
  const dir = join(root, "h0");
  const m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  assert.equal(ActivationStore.open(dir).manifest.content_hash, m.content_hash);
});
