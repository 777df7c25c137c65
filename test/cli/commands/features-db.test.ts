/**
 * `glassbox features build|show|search` end to end on the bundled tiny-gemma3: the build's JSON
 * summary, `show --json` equal to the library's page, the HTML dashboard and Neuronpedia JSON
 * written, every search mode, resume of an unfinished build from the CLI, and bad inputs named.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { loadDictionary } from "../../../src/dictionaries/load.js";
import { FeatureDatabase } from "../../../src/features/db.js";
import { decoderMatrix } from "../../../src/features/directions.js";
import { backend, MODEL, SAE3, SAE5, writeCorpus } from "../../features/helpers.js";
import { fixture, runCli, tempDir } from "../../io/helpers.js";

const dir = tempDir("glassbox-features-cli-");
const data = writeCorpus(join(dir, "corpus.jsonl"), 30, 3);
const db = join(dir, "run.sqlite");
const small = ["--context", "32", "--batch", "4", "--top-k", "5", "--group-examples", "2"];

function ok(args: string[]): string {
  const r = runCli(args);
  assert.equal(r.status, 0, `glassbox ${args.join(" ")}\n${r.stderr}`);
  return r.stdout;
}

function fails(args: string[], pattern: RegExp): void {
  const r = runCli(args);
  assert.equal(r.status, 1, `expected a failure: glassbox ${args.join(" ")}\n${r.stdout}`);
  assert.match(r.stderr, pattern);
}

describe("glassbox features build / show / search", () => {
  before(() => {
    const out = ok([
      "features",
      "build",
      "--model",
      MODEL,
      "--dict",
      SAE3,
      "--dict",
      SAE5,
      "--data",
      data,
      "--tokens",
      "1200",
      "--out",
      db,
      "--json",
      ...small,
    ]);
    const s = JSON.parse(out) as { tokens: number; spaces: number; features: number; resumed: boolean };
    assert.equal(s.tokens, 1200);
    assert.equal(s.spaces, 2);
    assert.equal(s.features, 2048);
    assert.equal(s.resumed, false);
  });

  test("show --json prints the library's page; the text view lists contexts and logit effects", () => {
    const page = JSON.parse(ok(["features", "show", db, "--dict", SAE3, "--feature", "7", "--json"]));
    const lib = FeatureDatabase.open(db, { readonly: true });
    try {
      assert.deepEqual(page, JSON.parse(JSON.stringify(lib.page(0, 7))));
    } finally {
      lib.close();
    }
    const text = ok(["features", "show", db, "--dict", "layer_5_width_1k_l0_big", "--feature", "7"]);
    assert.match(text, /^feature 7 of .*layer_5_width_1k_l0_big/);
    assert.match(text, /promotes /);
    assert.match(text, /top contexts/);
  });

  test("show --html and --neuronpedia write their files", () => {
    const html = join(dir, "f.html");
    const np = join(dir, "f.json");
    ok(["features", "show", db, "--dict", SAE3, "--feature", "7", "--html", html, "--neuronpedia", np]);
    assert.match(readFileSync(html, "utf8"), /^<!DOCTYPE html>/i);
    const j = JSON.parse(readFileSync(np, "utf8")) as Record<string, unknown>;
    assert.equal(typeof j, "object");
  });

  test("search: by text, token, promoted token and direction", () => {
    const t = JSON.parse(
      ok(["features", "search", db, "--text", "the old man walked", "--top", "3", "--json"]),
    );
    assert.equal(t.mode, "text");
    assert.ok(t.tokens.length >= 4);
    const k = JSON.parse(ok(["features", "search", db, "--token", " man", "--json"]));
    assert.equal(k.mode, "token");
    assert.ok(k.hits.length > 0);
    const lib = FeatureDatabase.open(db, { readonly: true });
    const promoted = lib.page(1, 0).logits?.top[0].token ?? "";
    lib.close();
    const p = JSON.parse(ok(["features", "search", db, "--promotes", promoted, "--json"]));
    assert.ok(p.hits.some((h: { space: number; feature: number }) => h.space === 1 && h.feature === 0));
    const dec = decoderMatrix(loadDictionary(SAE5, backend), null);
    const file = join(dir, "direction.json");
    writeFileSync(file, JSON.stringify(Array.from(dec.residual.subarray(42 * 256, 43 * 256))));
    const d = JSON.parse(ok(["features", "search", db, "--direction", file, "--top", "2", "--json"]));
    assert.equal(d.hits[0].feature, 42);
    assert.equal(d.hits[0].space, 1);
  });

  test("bad inputs are named", () => {
    fails(["features", "show", db, "--dict", SAE3, "--feature", "1024"], /--feature.*1024 features/);
    fails(["features", "show", db, "--feature", "3"], /--dict.*2 dictionaries/);
    fails(
      [
        "features",
        "build",
        "--model",
        MODEL,
        "--dict",
        SAE3,
        "--data",
        data,
        "--tokens",
        "-3",
        "--out",
        join(dir, "n.sqlite"),
      ],
      /--tokens/,
    );
    fails(
      [
        "features",
        "build",
        "--model",
        MODEL,
        "--dict",
        fixture("dictionaries", "gemma-scope-2-tiny", "resid_post", "layer_2_width_128_l0_small"),
        "--data",
        data,
        "--out",
        join(dir, "w.sqlite"),
      ],
      /layer_2_width_128_l0_small.*d_in is \d+ but site blocks\.2\.resid_post has width 256/,
    );
    const junk = join(dir, "junk.sqlite");
    writeFileSync(junk, "this is not a database, only text");
    fails(["features", "show", junk, "--feature", "0"], /junk\.sqlite: not a SQLite database/);
    fails(["features", "search", db, "--token", "x", "--promotes", "y"], /exactly one of/);
    assert.ok(!existsSync(join(dir, "n.sqlite")));
  });
});
