/**
 * Feature page export: the self-contained HTML dashboard (every string escaped, no external
 * reference, tokens shaded by activation / max) and Neuronpedia feature JSON (SAEDashboard's
 * NeuronpediaDashboardFeature fields, filled from the page), on hand-made pages whose every value
 * is known, and on a page of the bundled tiny-gemma3 statistics database.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { escapeHtml, featureDashboardHtml, tokenAlpha } from "../../src/features/dashboard-html.js";
import { FeatureDatabase } from "../../src/features/db.js";
import { neuronpediaBatch, neuronpediaFeature } from "../../src/features/neuronpedia.js";
import type { ContextExample, FeaturePage } from "../../src/features/page.js";
import { MODEL } from "./helpers.js";

function example(tokens: string[], acts: number[], focus: number, sequence = 0): ContextExample {
  return {
    sequence,
    position: 10 + focus,
    activation: acts[focus],
    start: 10,
    ids: tokens.map((_, i) => 100 + i),
    tokens,
    acts,
    focus,
  };
}

const HOSTILE = '<script>alert("x")</script>';

function page(): FeaturePage {
  const top = [
    example(["The", " cat", HOSTILE, " & dog"], [0, 2, 4, 1], 2, 3),
    example(["a", " b", " c"], [0.5, 3, 0], 1, 7),
  ];
  const lowExample = example(["x", " y"], [0.25, 0], 0, 9);
  return {
    space: {
      space: 0,
      dictionary: "dicts/<evil> & co",
      architecture: "jumprelu",
      layer: null,
      site: "blocks.3.resid_post",
      width: 1024,
    },
    feature: 42,
    tokens: 1000,
    firings: 25,
    density: 0.025,
    meanActivation: 1.5,
    maxActivation: 4,
    topContexts: top,
    intervals: [
      { lo: 0, hi: 0.4, count: 20, fraction: 0.8, examples: [lowExample] },
      { lo: 0.4, hi: 4, count: 5, fraction: 0.2, examples: [top[1]] },
    ],
    histogram: { edges: [0.1, 1, 10], counts: [20, 5] },
    logits: {
      top: [
        { id: 5, token: " <b>Paris</b>", value: 1.23456 },
        { id: 6, token: " London", value: 0.5 },
      ],
      bottom: [{ id: 7, token: "\n", value: -0.75 }],
    },
    neighbours: [
      { feature: 9, cosine: 0.81234 },
      { feature: 3, cosine: 0.5 },
    ],
  };
}

function silentPage(): FeaturePage {
  const p = page();
  return {
    ...p,
    firings: 0,
    density: 0,
    meanActivation: 0,
    maxActivation: 0,
    topContexts: [],
    intervals: [],
    histogram: { edges: [], counts: [] },
    logits: null,
    neighbours: [],
  };
}

describe("HTML dashboard", () => {
  test("escapeHtml escapes the five special characters", () => {
    assert.equal(
      escapeHtml(`<a href="x" title='y'>&</a>`),
      "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;",
    );
  });

  test("tokenAlpha: activation / max in [0, 1]; zero, negative and no max give 0", () => {
    assert.equal(tokenAlpha(4, 4), 1);
    assert.equal(tokenAlpha(2, 4), 0.5);
    assert.equal(tokenAlpha(8, 4), 1);
    assert.equal(tokenAlpha(0, 4), 0);
    assert.equal(tokenAlpha(-1, 4), 0);
    assert.equal(tokenAlpha(1, 0), 0);
    assert.equal(tokenAlpha(Number.NaN, 4), 0);
  });

  test("a page: every string escaped, no script, no external reference, shading by activation", () => {
    const html = featureDashboardHtml(page());
    assert.ok(html.startsWith("<!DOCTYPE html>"));
    assert.ok(!html.includes("<script"), "no raw <script>");
    assert.ok(html.includes("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    assert.ok(!html.includes("<evil>") && html.includes("dicts/&lt;evil&gt; &amp; co"));
    assert.ok(!html.includes("<b>Paris") && html.includes("&lt;b&gt;Paris&lt;/b&gt;"));
    assert.ok(!/(?:src|href)\s*=|https?:|@import|url\(/i.test(html), "no external reference");
    // The max token is fully shaded and outlined; a zero is clear.
    const spans = [
      ...html.matchAll(/<span( class="focus")? style="background:rgba\(230,110,20,([0-9.]+)\)"/g),
    ];
    // 4 + 3 tokens of the top contexts, 2 + 3 of the interval examples
    assert.equal(spans.length, 12);
    assert.deepEqual(
      spans.slice(0, 4).map((m) => Number(m[2])),
      [0, 0.5, 1, 0.25],
    );
    assert.equal(spans[2][1], ' class="focus"');
    assert.equal(spans.filter((m) => m[1] !== undefined).length, 4, "one outlined token per example");
    // Summary, logit effects, neighbours, the histogram's bars.
    assert.match(html, /density 2\.50 % \(25 of 1000 tokens\)/);
    assert.match(html, /<td class="pos">1\.23<\/td>/);
    assert.match(html, /<td class="tok">↵<\/td><td class="neg">-0\.750<\/td>/);
    assert.match(html, /9 <span class="muted">\(0\.812\)<\/span>/);
    assert.equal([...html.matchAll(/<rect /g)].length, 2);
    // Interval groups, highest first.
    assert.ok(html.indexOf("0.400 &lt; activation &le; 4.00") < html.indexOf("0 &lt; activation &le; 0.400"));
  });

  test("a feature that never fired, with no logit effects, still renders", () => {
    const html = featureDashboardHtml(silentPage());
    assert.match(html, /The feature never fired/);
    assert.match(html, /no logit effects/);
    assert.match(html, /No contexts/);
    assert.equal([...html.matchAll(/<rect /g)].length, 0);
  });
});

describe("Neuronpedia feature JSON", () => {
  test("fields filled from the page", () => {
    const p = page();
    const f = neuronpediaFeature(p, { dataset: "validation" });
    assert.equal(f.feature_index, 42);
    assert.equal(f.frac_nonzero, p.density);
    assert.equal(f.n_prompts_total, p.tokens);
    assert.equal(f.n_tokens_in_prompt, 4, "the longest window");
    assert.equal(f.dataset, "validation");
    assert.deepEqual(f.pos_str, [" <b>Paris</b>", " London"]);
    assert.deepEqual(f.pos_values, [1.235, 0.5]);
    assert.deepEqual(f.neg_str, ["\n"]);
    assert.deepEqual(f.neg_values, [-0.75]);
    assert.deepEqual(f.correlated_features_indices, [9, 3]);
    assert.deepEqual(f.correlated_features_l1, [0.812, 0.5]);
    assert.deepEqual(f.freq_hist_data_bar_heights, [20, 5]);
    // One bar per bin, at its geometric centre.
    assert.deepEqual(f.freq_hist_data_bar_values, [0.316, 3.162]);
    // Top contexts first (bin_min -1, bin_max = max, bin_contains -1), then each interval's examples.
    assert.equal(f.activations.length, p.topContexts.length + 2);
    assert.deepEqual(
      f.activations.map((a) => [a.bin_min, a.bin_max, a.bin_contains, a.qualifying_token_index]),
      [
        [-1, 4, -1, 2],
        [-1, 4, -1, 1],
        [0, 0.4, 0.8, 0],
        [0.4, 4, 0.2, 1],
      ],
    );
    assert.deepEqual(f.activations[0].tokens, p.topContexts[0].tokens);
    assert.deepEqual(f.activations[0].values, [0, 2, 4, 1]);
    for (const a of f.activations) assert.equal(a.tokens.length, a.values.length);
    // Plain JSON: a round trip gives the same object.
    assert.deepEqual(JSON.parse(JSON.stringify(f)), f);
  });

  test("a silent feature without logits: empty lists, density 0", () => {
    const f = neuronpediaFeature(silentPage());
    assert.equal(f.frac_nonzero, 0);
    assert.deepEqual(f.activations, []);
    assert.deepEqual(f.pos_str, []);
    assert.deepEqual(f.neg_values, []);
    assert.equal(f.n_tokens_in_prompt, 0);
  });

  test("the batch wrapper", () => {
    const b = neuronpediaBatch([page(), silentPage()], {
      modelId: "gemma-3-270m",
      layer: 3,
      saeSet: "gemmascope-2-res-1k",
    });
    assert.equal(b.model_id, "gemma-3-270m");
    assert.equal(b.layer, 3);
    assert.equal(b.sae_set, "gemmascope-2-res-1k");
    assert.equal(b.features.length, 2);
  });
});

const BUNDLED = join(MODEL, "features.sqlite");
describe("a page of the bundled statistics", {
  skip: existsSync(BUNDLED) ? false : `${BUNDLED} is absent`,
}, () => {
  test("HTML and Neuronpedia JSON agree with the page", () => {
    const db = FeatureDatabase.open(BUNDLED, { readonly: true });
    try {
      const space = db.spaces()[0];
      let p: FeaturePage | null = null;
      for (let f = 0; f < space.width && p === null; f++) {
        const q = db.page(space.space, f);
        if (q.topContexts.length >= 3) p = q;
      }
      assert.ok(p !== null, "a feature with top contexts");
      const n = neuronpediaFeature(p);
      const examples = p.topContexts.length + p.intervals.reduce((a, g) => a + g.examples.length, 0);
      assert.equal(n.activations.length, examples);
      assert.equal(n.frac_nonzero, p.firings / p.tokens);
      assert.equal(n.pos_str.length, p.logits?.top.length);
      for (const [i, a] of n.activations.entries()) {
        const v = a.values[a.qualifying_token_index];
        // The example's own token carries its activation (3-decimal rounding).
        const want = i < p.topContexts.length ? p.topContexts[i].activation : v;
        assert.ok(Math.abs(v - want) <= 5e-4 + 1e-2 * Math.abs(want), `${v} vs ${want}`);
      }
      const html = featureDashboardHtml(p);
      const shaded = [...html.matchAll(/rgba\(230,110,20,([0-9.]+)\)/g)].map((m) => Number(m[1]));
      assert.ok(shaded.includes(1), "the max token is fully shaded");
      assert.ok(shaded.every((a) => a >= 0 && a <= 1));
    } finally {
      db.close();
    }
  });
});
