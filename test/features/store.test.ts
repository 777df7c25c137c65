/**
 * Feature statistics from an activation store: harvesting the corpus at the dictionaries' read
 * sites (same sequences, same batches) and building from the store gives the statistics of the
 * build that runs the model, without forward passes; windows lack only the BOS the store dropped.
 * A store from another model or without the dictionary's site is refused, naming the store.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { readDocuments, tokenizeDocuments } from "../../src/activations/documents.js";
import { gemma3Harvester, harvestToStore, modelIdentity } from "../../src/activations/harvest.js";
import { maskingRules } from "../../src/activations/sequences.js";
import { FeatureDatabase } from "../../src/features/db.js";
import { buildSmall, MODEL, SAE3, SAE5, SMALL, tempDir, tiny, writeCorpus } from "./helpers.js";

const dir = tempDir();
const data = writeCorpus(join(dir, "corpus.jsonl"), 30, 5);

async function harvest(out: string, sites: readonly string[], hash?: string): Promise<void> {
  const { model, tokenizer } = tiny();
  const identity = hash === undefined ? await modelIdentity(MODEL) : { id: "other-model", hash };
  const file = { path: data, format: "jsonl" as const, textField: "text" };
  await harvestToStore(out, {
    model: gemma3Harvester(model, identity, sites),
    documents: () => tokenizeDocuments(readDocuments(file), tokenizer, null),
    context: SMALL.context ?? 0,
    bos: tokenizer.special.bos,
    rules: maskingRules("jsonl", tokenizer.special),
    longDocuments: "split",
    batch: SMALL.batch ?? 1,
    shardTokens: 300,
    dataset: { file: data },
  });
}

test("a build from an activation store equals the build that runs the model", async () => {
  const store = join(dir, "store");
  await harvest(store, ["blocks.3.resid_post"]);
  const fromText = join(dir, "text.sqlite");
  const fromStore = join(dir, "store.sqlite");
  await buildSmall(fromText, data, [SAE3]);
  const s = await buildSmall(fromStore, data, [SAE3], { data: { store } });
  const a = FeatureDatabase.open(fromText, { readonly: true });
  const b = FeatureDatabase.open(fromStore, { readonly: true });
  try {
    assert.equal(s.tokens, (a.meta("summary") as { tokens: number }).tokens);
    let fired = 0;
    for (let f = 0; f < 1024; f++) {
      const p = a.page(0, f);
      const q = b.page(0, f);
      assert.equal(q.firings, p.firings, `feature ${f}: firings`);
      assert.equal(q.maxActivation, p.maxActivation, `feature ${f}: max`);
      assert.deepEqual(q.histogram, p.histogram, `feature ${f}: histogram`);
      assert.deepEqual(
        q.intervals.map((g) => [g.lo, g.hi, g.count]),
        p.intervals.map((g) => [g.lo, g.hi, g.count]),
      );
      assert.deepEqual(
        q.topContexts.map((c) => [c.sequence, c.activation, c.ids[c.focus]]),
        p.topContexts.map((c) => [c.sequence, c.activation, c.ids[c.focus]]),
        `feature ${f}: top contexts`,
      );
      for (const [i, c] of q.topContexts.entries()) {
        const t = p.topContexts[i];
        // the store has no BOS: its positions are one lower, and its windows lack the BOS
        assert.equal(c.position, t.position - 1);
        const full = a.sequenceIds(t.sequence).slice(1);
        assert.equal(c.start, Math.max(0, c.position - (SMALL.stats?.before ?? 0)));
        assert.deepEqual(c.ids, [...full.slice(c.start, c.start + c.ids.length)]);
      }
      if (p.firings > 0) fired++;
    }
    assert.ok(fired > 100);
  } finally {
    a.close();
    b.close();
  }
});

test("a store without the dictionary's site, or of another model, is refused", async () => {
  const store = join(dir, "store-l3");
  await harvest(store, ["blocks.3.resid_post"]);
  await assert.rejects(
    buildSmall(join(dir, "x.sqlite"), data, [SAE5], { data: { store } }),
    (e: unknown) =>
      e instanceof Error &&
      e.message.includes(store) &&
      /no activations at blocks\.5\.resid_post/.test(e.message),
  );
  const other = join(dir, "store-other");
  await harvest(other, ["blocks.3.resid_post"], "ab".repeat(32));
  await assert.rejects(
    buildSmall(join(dir, "y.sqlite"), data, [SAE3], { data: { store: other } }),
    (e: unknown) =>
      e instanceof Error &&
      e.message.includes(other) &&
      /harvested from another model \(other-model/.test(e.message),
  );
});
