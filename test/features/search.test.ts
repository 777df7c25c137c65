/**
 * Searching a feature database built on tiny-gemma3, each search checked against its definition by
 * an exhaustive scan of the database's pages or of the dictionaries: features on a text equal a
 * direct encoding of the text; features by context token / substring equal a scan of every top
 * context; features by promoted token equal a scan of every page's logit table; a feature's own
 * decoder direction finds that feature first, with cosine 1.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fromStorage } from "../../src/core/tensor.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import type { Dictionary } from "../../src/dictionaries/types.js";
import { FeatureDatabase } from "../../src/features/db.js";
import { decoderMatrix } from "../../src/features/directions.js";
import type { FeaturePage } from "../../src/features/page.js";
import {
  featuresByContext,
  featuresByLogit,
  featuresNearDirection,
  featuresOnText,
} from "../../src/features/search.js";
import { sites } from "../../src/model/gemma3/sites.js";
import { backend, buildSmall, CLT, SAE3, tempDir, tiny, writeCorpus } from "./helpers.js";

const dir = tempDir();
const data = writeCorpus(join(dir, "corpus.jsonl"), 40, 11);
const out = join(dir, "run.sqlite");

describe("feature search", () => {
  let db: FeatureDatabase;
  let pages: FeaturePage[];
  const dicts = new Map<string, Dictionary>();
  before(async () => {
    await buildSmall(out, data, [SAE3, CLT], { maxTokens: 1500 });
    db = FeatureDatabase.open(out, { readonly: true });
    for (const p of [SAE3, CLT]) dicts.set(p, loadDictionary(p, backend));
    pages = db.spaces().flatMap((s) => Array.from({ length: s.width }, (_, f) => db.page(s.space, f)));
  });
  after(() => db.close());

  test("features on a text are the text's own feature activations, ranked by activation / corpus max", () => {
    const { model, tokenizer } = tiny();
    const ids = tokenizer.encode("The old man walked slowly to the river.");
    const result = featuresOnText(db, model, dicts, ids, { top: 5 });
    assert.equal(result.length, ids.length);
    const r = model.forward([ids], { capture: [sites.residPost(3)], logits: "none" });
    const x = r.activations.get(sites.residPost(3));
    const acts = dicts
      .get(SAE3)!
      .encode(fromStorage(backend, "f32", [ids.length, x.shape[2]], x.toFloat32Array()))
      .toDense()
      .toFloat32Array();
    const sae = db.spaces().find((s) => s.dictionary === SAE3)!;
    let checked = 0;
    for (const t of result) {
      assert.equal(t.token, db.tokenTexts([t.id])[0]);
      for (let i = 1; i < t.features.length; i++)
        assert.ok(
          (t.features[i - 1].relative ?? 0) >= (t.features[i].relative ?? 0),
          "ranked by relative activation",
        );
      for (const h of t.features.filter((h) => h.space === sae.space)) {
        assert.ok(Math.abs(h.activation - acts[t.position * sae.width + h.feature]) <= 1e-4 * h.activation);
        const max = db.page(sae.space, h.feature).maxActivation;
        assert.equal(h.relative, max > 0 ? h.activation / max : null);
        checked++;
      }
    }
    assert.ok(checked > 0, "the SAE's features appear");
  });

  test("features by context token equal a scan of every top context", () => {
    const token = " river";
    const { mode, tokens, hits } = featuresByContext(db, token, 100_000);
    assert.equal(mode, "token");
    assert.equal(tokens.length, 1);
    const want = pages
      .map((p) => ({
        space: p.space.space,
        feature: p.feature,
        contexts: p.topContexts.filter((c) => c.ids.includes(tokens[0])).length,
        max: p.maxActivation,
      }))
      .filter((w) => w.contexts > 0)
      .sort((a, b) => b.contexts - a.contexts || b.max - a.max || a.space - b.space || a.feature - b.feature);
    assert.ok(want.length > 5);
    assert.deepEqual(
      hits.map((h) => [h.space, h.feature, h.contexts]),
      want.map((w) => [w.space, w.feature, w.contexts]),
    );
  });

  test("features by substring (not a token) equal a scan of the top contexts' text", () => {
    const query = "river and";
    const { mode, hits } = featuresByContext(db, query, 100_000);
    assert.equal(mode, "substring");
    const want = pages
      .map((p) => ({
        key: `${p.space.space}:${p.feature}`,
        contexts: p.topContexts.filter((c) => c.tokens.join("").includes(query)).length,
      }))
      .filter((w) => w.contexts > 0);
    assert.ok(want.length > 0);
    assert.deepEqual(
      new Map(hits.map((h) => [`${h.space}:${h.feature}`, h.contexts])),
      new Map(want.map((w) => [w.key, w.contexts])),
    );
  });

  test("features that promote a token equal a scan of every page's logit table", () => {
    const sae = pages.filter((p) => p.logits !== null);
    const token = sae[0].logits!.top[0].token;
    const { tokens, hits } = featuresByLogit(db, token, 100_000);
    const want = sae
      .flatMap((p) =>
        p.logits!.top.flatMap((e, rank) =>
          tokens.includes(e.id) ? [{ space: p.space.space, feature: p.feature, value: e.value, rank }] : [],
        ),
      )
      .sort((a, b) => b.value - a.value || a.space - b.space || a.feature - b.feature);
    assert.deepEqual(
      hits.map((h) => [h.space, h.feature, h.value, h.rank]),
      want.map((w) => [w.space, w.feature, w.value, w.rank]),
    );
    assert.throws(() => featuresByLogit(db, "zzqx not a token", 5), /--promotes.*not a token/);
  });

  test("a feature's own decoder direction finds it first, with cosine 1", () => {
    const dec = decoderMatrix(dicts.get(SAE3)!, null);
    const f = 321;
    const direction = dec.residual.slice(f * dec.dOut, (f + 1) * dec.dOut);
    const hits = featuresNearDirection(
      db,
      dicts,
      direction.map((v) => v * 3),
      { limit: 5 },
    );
    assert.equal(hits[0].dictionary, SAE3);
    assert.equal(hits[0].feature, f);
    assert.ok(Math.abs(hits[0].cosine - 1) < 1e-5);
    for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1].cosine >= hits[i].cosine);
    const anti = featuresNearDirection(
      db,
      dicts,
      direction.map((v) => -v),
      { limit: 3, sign: -1 },
    );
    assert.equal(anti[0].feature, f);
    assert.throws(
      () => featuresNearDirection(db, dicts, new Float32Array(7).fill(1)),
      /--direction.*7 values/,
    );
    assert.throws(() => featuresNearDirection(db, dicts, new Float32Array(256)), /--direction.*zero/);
  });
});
