/**
 * `glassbox demo --json` on the bundled tiny model: the report's structure (backend, a greedy
 * generation, top features per token for residual SAEs and the CLT, the evaluation summary) and
 * its numbers equal to the bundled `gemma-scope/eval.json`. Skips when the bundled weights or
 * dictionaries are absent (they are built by reference/models.sh and scripts/bundle-dictionaries.sh).
 * Also: a model folder without weights gives a clear error naming the path and the build command.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const compiled = existsSync(join(here, "demo.test.js"));
const repoRoot = compiled ? join(here, "..", "..", "..") : join(here, "..", "..");
const MODEL = join(repoRoot, "models", "tiny-gemma3");
const EVAL = join(MODEL, "gemma-scope", "eval.json");

function cli(args: string[], cwd = repoRoot) {
  const argv = compiled
    ? [join(repoRoot, "dist", "src", "cli", "main.js"), ...args]
    : // resolved here: the demo runs from another directory, where "tsx" would not resolve
      ["--import", import.meta.resolve("tsx"), join(repoRoot, "src", "cli", "main.ts"), ...args];
  return spawnSync(process.execPath, argv, { encoding: "utf8", cwd, timeout: 300_000 });
}

function skipReason(): string | false {
  const weights =
    existsSync(join(MODEL, "config.json")) && readdirSync(MODEL).some((f) => f.endsWith(".safetensors"));
  if (!weights) return `the bundled model weights are absent (${MODEL}: run reference/models.sh)`;
  if (!existsSync(EVAL))
    return `the bundled dictionaries are absent (${EVAL}: run scripts/bundle-dictionaries.sh models/tiny-gemma3)`;
  return false;
}

interface Features {
  id: string;
  kind: string;
  layer: number | null;
  path: string;
  reads: string[];
  tokens: {
    position: number;
    id: number;
    token: string | null;
    l0: number;
    top: { feature: number; activation: number; layer?: number }[];
  }[];
}

interface Report {
  model: string;
  backend: string;
  prompt: string;
  generation: { text: string | null; ids: number[]; tokens: (string | null)[]; finish_reason: string };
  features: Features[];
  evaluation: { path: string; model: string; tokens: number | null; dictionaries: Record<string, unknown>[] };
  feature_page: {
    path: string;
    token: string;
    activation: number;
    page: {
      feature: number;
      tokens: number;
      firings: number;
      density: number;
      maxActivation: number;
      topContexts: { activation: number }[];
      logits: { top: { token: string }[] } | null;
    };
  } | null;
  graph: {
    active_features: number;
    visited_features: number;
    kept_nodes: number;
    scores: { replacement: number; completeness: number };
    logits: { token: number; probability: number }[];
    paths: { nodes: string[] }[];
  } | null;
}

const skip = skipReason();
if (skip) process.stderr.write(`demo tests skipped: ${skip}\n`);

test("demo --json: structure, and the evaluation summary equals eval.json", { skip }, () => {
  // Run from another directory: the bundled model is found from the package, not the cwd.
  const cwd = mkdtempSync(join(tmpdir(), "glassbox-demo-"));
  try {
    const r = cli(["demo", "--json", "--max-tokens", "4", "--top", "2"], cwd);
    assert.equal(r.status, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as Report;
    assert.equal(rep.model, MODEL);
    assert.ok(["native", "reference"].includes(rep.backend), rep.backend);
    assert.ok(rep.prompt.length > 0);
    assert.ok(rep.generation.ids.length >= 1 && rep.generation.ids.length <= 4);
    assert.equal(rep.generation.tokens.length, rep.generation.ids.length);
    assert.equal(typeof rep.generation.text, "string");

    const e = JSON.parse(readFileSync(EVAL, "utf8")) as { dictionaries: Record<string, unknown>[] };
    const byId = new Map(e.dictionaries.map((d) => [d.id as string, d]));
    // The evaluation summary: every dictionary, numbers as stored.
    assert.equal(rep.evaluation.dictionaries.length, e.dictionaries.length);
    for (const d of rep.evaluation.dictionaries) {
      const want = byId.get(d.id as string);
      assert.ok(want !== undefined, `${String(d.id)} is not in eval.json`);
      for (const k of [
        "l0",
        "fvu",
        "ce_loss_recovered",
        "delta_lm_loss",
        "kl_score",
        "dead_fraction",
        "width",
      ])
        assert.equal(d[k], want[k], `${String(d.id)} ${k}`);
    }

    // Features: at least two residual SAEs at different layers, and the CLT.
    const saes = rep.features.filter((f) => f.kind === "sae");
    assert.ok(new Set(saes.map((f) => f.layer)).size >= 2, "residual SAEs at several layers");
    const clt = rep.features.find((f) => f.kind === "clt");
    assert.ok(clt !== undefined, "the CLT is shown");
    assert.ok(clt.reads.length > 1);
    const promptLength = rep.features[0].tokens.length;
    assert.ok(promptLength > 1);
    for (const f of rep.features) {
      assert.ok(byId.has(f.id), `${f.id} is in eval.json`);
      assert.ok(existsSync(f.path), f.path);
      assert.equal(f.tokens.length, promptLength, `${f.id}: one row per prompt token`);
      f.tokens.forEach((t, i) => {
        assert.equal(t.position, i);
        assert.ok(t.top.length <= 2 && t.top.length <= t.l0, `${f.id} position ${i}`);
        for (let j = 1; j < t.top.length; j++) assert.ok(t.top[j - 1].activation >= t.top[j].activation);
        for (const x of t.top) {
          assert.ok(x.activation > 0 && Number.isFinite(x.activation));
          if (f.kind === "clt") assert.ok(x.layer !== undefined && x.layer >= 0 && x.layer < f.reads.length);
        }
      });
      // Mean L0 over the prompt (BOS left out, as in evaluation) is of the order of the evaluated L0.
      const rows = f.tokens.slice(1);
      const meanL0 = rows.reduce((a, t) => a + t.l0, 0) / rows.length;
      const evalL0 = byId.get(f.id)?.l0 as number;
      assert.ok(meanL0 > evalL0 / 4 && meanL0 < evalL0 * 4, `${f.id}: prompt L0 ${meanL0} vs eval ${evalL0}`);
    }

    // The bundled feature statistics: the page of a feature that fires at the prompt's last token.
    const fp = rep.feature_page;
    assert.ok(fp !== null, "the bundled features.sqlite gives a feature page");
    assert.equal(fp.path, join(MODEL, "features.sqlite"));
    assert.ok(fp.activation > 0);
    assert.ok(fp.page.tokens > 100_000, `held-out tokens ${fp.page.tokens}`);
    assert.ok(fp.page.firings > 0 && fp.page.density === fp.page.firings / fp.page.tokens);
    assert.ok(fp.page.topContexts.length > 0);
    assert.equal(fp.page.topContexts[0].activation, fp.page.maxActivation);
    assert.ok(fp.page.logits !== null && fp.page.logits.top.length > 0);

    // The attribution graph through the bundled CLT.
    const g = rep.graph;
    assert.ok(g !== null, "the demo traces a graph");
    assert.ok(g.visited_features > 0 && g.visited_features <= Math.min(256, g.active_features));
    assert.ok(g.kept_nodes > promptLength, "tokens, logits and some features are kept");
    for (const v of [g.scores.replacement, g.scores.completeness]) assert.ok(v > 0 && v <= 1, String(v));
    assert.equal(g.logits[0].token, rep.generation.ids[0], "the top logit is the greedy first token");
    assert.ok(g.paths.length > 0 && g.paths.every((p) => /^logit /.test(p.nodes.at(-1) ?? "")));

    // The readable form shows the same summary.
    const t = cli(["demo", "--max-tokens", "2", "--top", "1"], cwd);
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /^backend\s+(native|reference)$/m);
    for (const d of rep.evaluation.dictionaries) assert.ok(t.stdout.includes(d.id as string), String(d.id));
    assert.match(t.stdout, /^feature page \(.*features\.sqlite, \d+ held-out tokens\)/m);
    assert.ok(t.stdout.includes(`--feature ${fp.page.feature} --html`));
    assert.match(t.stdout, /^attribution graph through gemma-scope\/clt\/\S+: \d+ active features/m);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});

test("demo: a model folder without weights or dictionaries is a clear error", () => {
  const dir = mkdtempSync(join(tmpdir(), "glassbox-demo-empty-"));
  try {
    let r = cli(["demo", "--model", dir, "--json"]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no model weights in/);
    assert.ok(r.stderr.includes(dir), r.stderr);
    if (skip) return;
    // Weights present (the bundled model's config.json and an empty-named weight file) but no dictionaries.
    writeFileSync(join(dir, "config.json"), readFileSync(join(MODEL, "config.json")));
    writeFileSync(join(dir, "model.safetensors"), "");
    r = cli(["demo", "--model", dir, "--json"]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no bundled dictionaries in .*gemma-scope.*scripts\/bundle-dictionaries\.sh/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
