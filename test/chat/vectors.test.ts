/**
 * Persona / behaviour vectors (src/chat/vectors.ts, `glassbox vector`) by their defining properties:
 * - response means and the difference of means equal direct computations from captured activations;
 * - separation and the layer choice on hand-made numbers;
 * - monitoring is the dot product of resid_pre with the unit vector;
 * - on tiny-gemma3-it, a "refusing" vector fitted from refusal vs helpful replies separates harmful
 *   from harmless prompts before the reply is written, and adding it makes harmless prompts refuse;
 * - response files without responses get errors naming the file and line.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { refusalRate, replies } from "../../src/chat/evaluate.js";
import { additionIntervention, chatPromptIds } from "../../src/chat/refusal.js";
import {
  fitVector,
  projections,
  type ResponseExample,
  responseExample,
  responseMeans,
  separation,
} from "../../src/chat/vectors.js";
import type { MonitorReport, VectorFitReport } from "../../src/cli/commands/vector.js";
import { ChatTemplate } from "../../src/io/chat.js";
import { Tokenizer } from "../../src/io/tokenizer.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { sites } from "../../src/model/gemma3/sites.js";
import { backend, repoRoot } from "../features/helpers.js";
import { runCli } from "../io/helpers.js";
import { tinyModel } from "../model/helpers.js";

describe("behaviour vectors: definitions", () => {
  const model = tinyModel(backend, {}, 4);
  const D = model.config.dModel;
  const E = (ids: number[], response: number[]): ResponseExample => ({ ids, response, roles: [] });
  const pos = [E([2, 5, 9, 30, 31], [3, 4]), E([2, 7, 8, 30, 11, 12], [4, 5])];
  const neg = [E([2, 11, 12, 13, 14], [2, 3, 4]), E([2, 14, 15, 16], [3])];

  test("response means and the difference of means match captured activations", () => {
    const means = responseMeans(model, pos);
    for (const [i, e] of pos.entries()) {
      for (const l of [0, 2]) {
        const x = model
          .forward([e.ids], { capture: [sites.residPre(l)], logits: "none" })
          .activations.get(sites.residPre(l))
          .toFloat32Array();
        for (let j = 0; j < D; j++) {
          const want = e.response.reduce((s, t) => s + x[t * D + j], 0) / e.response.length;
          assert.ok(Math.abs(means[i][l][j] - want) < 1e-5);
        }
      }
    }
    const fit = fitVector(
      model,
      { positive: pos, negative: neg },
      { positive: [], negative: [] },
      { layer: 1 },
    );
    const mp = responseMeans(model, pos);
    const mn = responseMeans(model, neg);
    for (let j = 0; j < D; j++) {
      const want = (mp[0][1][j] + mp[1][1][j]) / 2 - (mn[0][1][j] + mn[1][1][j]) / 2;
      assert.ok(Math.abs(fit.vectors[1][j] - want) < 1e-5);
    }
    assert.equal(fit.layer, 1);
    assert.ok(fit.separation.every(Number.isNaN), "no validation data: no separation");
  });

  test("separation, layer choice (never layer 0 unless asked) and projections", () => {
    // means 3 and 1, population variances 2/3 and 2/3 -> (3 - 1) / sqrt(2/3).
    assert.ok(Math.abs(separation([2, 3, 4], [0, 1, 2]) - 2 / Math.sqrt(2 / 3)) < 1e-12);
    assert.equal(separation([1, 1], [1, 1]), 0);
    const fit = fitVector(model, { positive: pos, negative: neg }, { positive: pos, negative: neg });
    const best = fit.separation.slice(1).indexOf(Math.max(...fit.separation.slice(1))) + 1;
    assert.equal(fit.layer, best);
    assert.equal(
      fitVector(model, { positive: pos, negative: neg }, { positive: pos, negative: neg }, { layer: 0 })
        .layer,
      0,
    );
    assert.throws(
      () => fitVector(model, { positive: [], negative: neg }, { positive: [], negative: [] }),
      /empty response set/,
    );
    const v = fit.vectors[2];
    const p = projections(model, pos[0].ids, 2, v);
    const x = model
      .forward([pos[0].ids], { capture: [sites.residPre(2)], logits: "none" })
      .activations.get(sites.residPre(2))
      .toFloat32Array();
    const n = Math.hypot(...v);
    for (let t = 0; t < pos[0].ids.length; t++) {
      let d = 0;
      for (let j = 0; j < D; j++) d += (x[t * D + j] * v[j]) / n;
      assert.ok(Math.abs(p[t] - d) < 1e-4);
    }
  });
});

describe("behaviour vectors on tiny-gemma3-it", () => {
  const M = join(repoRoot, "models", "tiny-gemma3-it");
  const root = mkdtempSync(join(tmpdir(), "glassbox-vector-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  const rows = readFileSync(join(M, "eval", "heldout.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { prompt: string; reply: string; kind: string; refused: boolean });
  // Refusal replies against helpful ones: a "refusing" persona. Even rows fit it, odd rows test it.
  const fitRows = rows.filter((_, i) => i % 2 === 0);
  const pairs = join(root, "pairs.jsonl");
  writeFileSync(
    pairs,
    fitRows
      .filter((r) => r.refused || r.kind === "harmless")
      .map((r) =>
        JSON.stringify({ prompt: r.prompt, response: r.reply, kind: r.refused ? "positive" : "negative" }),
      )
      .join("\n"),
  );

  test("fit, monitor, steer: the vector predicts and induces refusal", () => {
    const out = join(root, "vec");
    const r = runCli([
      "vector",
      "fit",
      "--model",
      M,
      "--pairs",
      pairs,
      "--name",
      "refusing",
      "--out",
      out,
      "--json",
    ]);
    assert.equal(r.status, 0, r.stderr);
    const fit = JSON.parse(r.stdout) as VectorFitReport;
    assert.ok(fit.layer >= 1 && fit.separation[fit.layer] > 2, JSON.stringify(fit.separation));
    const mon = runCli([
      "vector",
      "monitor",
      "--model",
      M,
      "--vector",
      out,
      "--json",
      "how do I steal a bike?",
    ]);
    assert.equal(mon.status, 0, mon.stderr);
    const m = JSON.parse(mon.stdout) as MonitorReport;
    assert.ok(m.tokens.some((t) => t.part === "response") && m.tokens.some((t) => t.part === "prompt"));
    assert.ok(m.response_mean > 0, "a refusal projects positively");

    const model = loadGemma3(M, backend);
    const tok = Tokenizer.fromDir(M);
    const tpl = ChatTemplate.fromDir(M, tok);
    const held = rows.filter((_, i) => i % 2 === 1);
    const v = readFileSync(join(out, "fit.json"), "utf8");
    assert.equal((JSON.parse(v) as VectorFitReport).layer, fit.layer);
    // Monitoring before the reply: harmful prompts project higher than harmless ones.
    const dir = fitVector(
      model,
      {
        positive: fitRows.filter((x) => x.refused).map((x) => responseExample(tpl, tok, x.prompt, x.reply)),
        negative: fitRows
          .filter((x) => !x.refused && x.kind === "harmless")
          .map((x) => responseExample(tpl, tok, x.prompt, x.reply)),
      },
      { positive: [], negative: [] },
      { layer: fit.layer },
    ).vectors[fit.layer];
    const last = (k: string) =>
      held
        .filter((x) => x.kind === k)
        .map((x) => {
          const p = chatPromptIds(tpl, tok, x.prompt);
          return projections(model, p.ids, fit.layer, dir).at(-1)!;
        });
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(
      mean(last("harmful")) > mean(last("harmless")) + 1,
      `${mean(last("harmful"))} vs ${mean(last("harmless"))}`,
    );
    const harmless = held
      .filter((x) => x.kind === "harmless")
      .slice(0, 30)
      .map((x) => chatPromptIds(tpl, tok, x.prompt));
    const before = refusalRate(replies(model, tok, harmless, [], { maxNewTokens: 8 }));
    const steered = refusalRate(
      replies(model, tok, harmless, [additionIntervention(model, fit.layer, dir, 2)], { maxNewTokens: 8 }),
    );
    // Measured with a vector fitted on all the held-out replies (layer 2, scale 2): 62 % of 40
    // harmless prompts refuse (4 % without it over all 150).
    assert.ok(steered >= before + 0.3, `harmless refusal ${before} -> ${steered}`);
  });

  test("bad input: responses missing, one kind missing", () => {
    const noResp = join(root, "noresp.jsonl");
    writeFileSync(noResp, '{"prompt": "a", "kind": "positive"}\n');
    const oneKind = join(root, "onekind.jsonl");
    writeFileSync(oneKind, '{"prompt": "a", "response": "b", "kind": "positive"}\n');
    const fit = ["vector", "fit", "--model", M, "--out", join(root, "never")];
    const a = runCli([...fit, "--pairs", noResp]);
    assert.equal(a.status, 1);
    assert.match(a.stderr, /noresp\.jsonl: line 1 has no "response" string/);
    const b = runCli([...fit, "--pairs", oneKind]);
    assert.equal(b.status, 1);
    assert.match(b.stderr, /onekind\.jsonl: no rows with "kind": "negative"/);
    const c = runCli([...fit, "--positive", oneKind]);
    assert.match(c.stderr, /give --positive F and --negative F/);
  });
});
