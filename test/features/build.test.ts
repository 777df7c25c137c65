/**
 * Feature statistics over a small corpus on the bundled tiny-gemma3, checked against their
 * definitions: every number of every feature page equals a brute-force scan that keeps all
 * activations in memory (top contexts, interval counts and samples, histogram, density, mean, max),
 * logit effects and neighbours equal a direct computation from the weights, a build killed with
 * SIGKILL and resumed gives the same database content as an uninterrupted one, and bad inputs get
 * errors that name the argument or file.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, copyFileSync, existsSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { FeaturesError } from "../../src/core/errors.js";
import { bf16ToF32, f32ToBf16 } from "../../src/core/half.js";
import { blobUint32, FeatureDatabase, RESULT_TABLES } from "../../src/features/db.js";
import { HIST_BINS, histogramBin } from "../../src/features/stats.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { fixture } from "../io/helpers.js";
import {
  backend,
  bruteForce,
  buildSmall,
  CLT,
  compiled,
  type DenseSpace,
  MODEL,
  SAE3,
  SMALL,
  TRANSCODER2,
  tempDir,
  writeCorpus,
} from "./helpers.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const dir = tempDir();
const data = writeCorpus(join(dir, "corpus.jsonl"), 60);
const out = join(dir, "run.sqlite");
const DICTS = [SAE3, TRANSCODER2, CLT];
const TOKENS = 2500;
const K = SMALL.stats?.topK ?? 0;
const BEFORE = SMALL.stats?.before ?? 0;
const AFTER = SMALL.stats?.after ?? 0;
const Q = SMALL.stats?.groupExamples ?? 0;

const bf16 = (v: number) => bf16ToF32(f32ToBf16(v));

interface Expected {
  firings: number;
  sum: number;
  max: number;
  hist: Uint32Array;
  /** (activation, sequence, position) of each sequence's max (first position on ties). */
  perSequence: { v: number; seq: number; pos: number }[];
  values: { v: number; seq: number; pos: number }[];
}

function expectedOf(dense: DenseSpace, f: number): Expected {
  const e: Expected = {
    firings: 0,
    sum: 0,
    max: 0,
    hist: new Uint32Array(HIST_BINS),
    perSequence: [],
    values: [],
  };
  dense.sequences.forEach((s, seq) => {
    let best = 0;
    let at = -1;
    for (let p = 0; p < s.ids.length; p++) {
      if (s.keep[p] === 0) continue;
      const v = s.acts[p * dense.width + f];
      if (!(v > 0)) continue;
      e.firings++;
      e.sum += v;
      e.max = Math.max(e.max, v);
      e.hist[histogramBin(v)]++;
      e.values.push({ v, seq, pos: p });
      if (v > best) {
        best = v;
        at = p;
      }
    }
    if (at >= 0) e.perSequence.push({ v: best, seq, pos: at });
  });
  return e;
}

describe("feature statistics on tiny-gemma3", () => {
  let db: FeatureDatabase;
  before(async () => {
    const s = await buildSmall(out, data, DICTS, { maxTokens: TOKENS });
    assert.equal(s.tokens, TOKENS);
    assert.equal(s.spaces, 2 + 6);
    db = FeatureDatabase.open(out, { readonly: true });
  });
  after(() => db.close());

  test("every page equals a brute-force scan of all activations", () => {
    const spaces = db.spaces();
    assert.equal(spaces.length, 8);
    let checkedTop = 0;
    let checkedGroups = 0;
    for (const sp of spaces) {
      const dense = bruteForce(out, sp.dictionary, sp.layer, SMALL.batch ?? 1);
      const tokens = dense.sequences.reduce((n, s) => n + s.keep.reduce((a, b) => a + b, 0), 0);
      assert.equal(tokens, TOKENS, "tokens counted");
      const histRows = db.handle
        .prepare("SELECT feature, histogram FROM features WHERE space = ? ORDER BY feature")
        .all(sp.space) as { feature: number; histogram: Buffer }[];
      assert.equal(histRows.length, sp.width);
      for (let f = 0; f < sp.width; f++) {
        const want = expectedOf(dense, f);
        const page = db.page(sp.space, f);
        const what = `space ${sp.space} feature ${f}`;
        assert.equal(page.tokens, TOKENS);
        assert.equal(page.firings, want.firings, `${what}: firings`);
        assert.equal(page.density, want.firings / TOKENS, `${what}: density`);
        assert.equal(page.maxActivation, want.max, `${what}: max`);
        const mean = want.firings > 0 ? want.sum / want.firings : 0;
        assert.ok(Math.abs(page.meanActivation - mean) <= 1e-6 * Math.max(1, mean), `${what}: mean`);
        // histogram: exact bins, summing to the firings
        assert.deepEqual([...blobUint32(histRows[f].histogram, "h")], [...want.hist], `${what}: histogram`);
        assert.equal(
          page.histogram.counts.reduce((a, b) => a + b, 0),
          want.firings,
        );
        // top contexts: one per sequence, highest first, lower sequence on ties
        const top = [...want.perSequence].sort((a, b) => b.v - a.v || a.seq - b.seq).slice(0, K);
        assert.deepEqual(
          page.topContexts.map((c) => [c.sequence, c.position, c.activation]),
          top.map((t) => [t.seq, t.pos, t.v]),
          `${what}: top contexts`,
        );
        for (const c of page.topContexts) {
          const s = dense.sequences[c.sequence];
          const start = Math.max(0, c.position - BEFORE);
          const end = Math.min(s.ids.length, c.position + AFTER + 1);
          assert.equal(c.start, start);
          assert.equal(c.focus, c.position - start);
          assert.deepEqual(c.ids, [...s.ids.subarray(start, end)], `${what}: window ids`);
          assert.equal(c.tokens.length, c.ids.length);
          const acts = Array.from({ length: end - start }, (_, i) =>
            s.keep[start + i] === 0 ? 0 : bf16(Math.max(0, s.acts[(start + i) * dense.width + f])),
          );
          assert.deepEqual(c.acts, acts, `${what}: window acts`);
          checkedTop++;
        }
        // intervals: counts by their edges, summing to the firings; samples inside, min(q, count) each
        assert.equal(page.intervals.length > 0, want.firings > 0);
        let sum = 0;
        page.intervals.forEach((g, gi) => {
          const inside = want.values.filter((x) => (gi === 0 ? x.v > 0 : x.v > g.lo) && x.v <= g.hi);
          assert.equal(g.count, inside.length, `${what}: interval ${gi} count`);
          assert.equal(g.examples.length, Math.min(Q, g.count), `${what}: interval ${gi} samples`);
          const keys = new Set(inside.map((x) => `${x.seq}:${x.pos}`));
          const seen = new Set<string>();
          for (const e of g.examples) {
            const key = `${e.sequence}:${e.position}`;
            assert.ok(keys.has(key), `${what}: sample ${key} is a firing of interval ${gi}`);
            assert.ok(!seen.has(key), `${what}: samples are distinct`);
            seen.add(key);
            assert.equal(e.activation, dense.sequences[e.sequence].acts[e.position * dense.width + f]);
          }
          sum += g.count;
          checkedGroups++;
        });
        assert.equal(sum, want.firings, `${what}: interval counts sum to the firings`);
        if (want.firings > 0) {
          assert.equal(page.intervals[0].lo, 0);
          assert.ok(
            Math.abs(page.intervals.at(-1)!.hi - want.max) <= want.max / 16,
            `${what}: last edge near max`,
          );
        }
      }
    }
    assert.ok(
      checkedTop > 1000 && checkedGroups > 1000,
      `enough firing features (${checkedTop}, ${checkedGroups})`,
    );
  });

  test("logit effects and nearest features equal a direct computation from the weights", () => {
    const model = SafetensorsFile.open(join(MODEL, "model.safetensors"));
    const params = SafetensorsFile.open(join(SAE3, "params.safetensors"));
    try {
      const E = model.readTensorSync("model.embed_tokens.weight", backend).toFloat32Array();
      const norm = model.readTensorSync("model.norm.weight", backend).toFloat32Array();
      const W = params.readTensorSync("w_dec", backend).toFloat32Array();
      const d = norm.length;
      const vocab = E.length / d;
      const width = W.length / d;
      for (const f of [0, 17, 513]) {
        const logit = new Float64Array(vocab);
        for (let t = 0; t < vocab; t++) {
          let acc = 0;
          for (let j = 0; j < d; j++) acc += E[t * d + j] * (1 + norm[j]) * W[f * d + j];
          logit[t] = acc;
        }
        const order = [...logit.keys()].sort((a, b) => logit[b] - logit[a]);
        const page = db.page(0, f);
        assert.ok(page.logits !== null);
        const n = page.logits.top.length;
        assert.equal(n, SMALL.logitCount);
        assert.deepEqual(
          page.logits.top.map((e) => e.id),
          order.slice(0, n),
          `feature ${f}: top promoted tokens`,
        );
        assert.deepEqual(
          page.logits.bottom.map((e) => e.id),
          order.slice(-n).reverse(),
          `feature ${f}: top suppressed tokens`,
        );
        for (const e of [...page.logits.top, ...page.logits.bottom])
          assert.ok(
            Math.abs(e.value - logit[e.id]) <= 1e-4 * Math.abs(logit[order[0]]),
            `feature ${f}: value`,
          );
        // neighbours: highest cosine of the other decoder rows
        const row = (g: number) => W.subarray(g * d, (g + 1) * d);
        const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i], 0);
        const cos = Array.from({ length: width }, (_, g) =>
          g === f
            ? Number.NEGATIVE_INFINITY
            : dot(row(f), row(g)) / Math.sqrt(dot(row(f), row(f)) * dot(row(g), row(g))),
        );
        const near = [...cos.keys()].sort((a, b) => cos[b] - cos[a]).slice(0, SMALL.neighbourCount);
        assert.deepEqual(
          page.neighbours.map((x) => x.feature),
          near,
          `feature ${f}: neighbours`,
        );
        for (const x of page.neighbours) assert.ok(Math.abs(x.cosine - cos[x.feature]) < 1e-4);
      }
    } finally {
      model.close();
      params.close();
    }
  });

  test("a transcoder's features have logit effects (mlp_out writes into the residual stream)", () => {
    const sp = db.spaces().find((s) => s.dictionary === TRANSCODER2);
    assert.ok(sp?.writesResidual);
    assert.equal(db.page(sp.space, 3).logits?.top.length, SMALL.logitCount);
  });

  test("bad inputs: an unknown feature names --feature, a space that does not exist names the file", () => {
    assert.throws(
      () => db.page(0, 1024),
      (e: unknown) =>
        e instanceof FeaturesError && /--feature/.test(e.message) && /1024 features/.test(e.message),
    );
    assert.throws(() => db.page(0, -1), /--feature/);
    assert.throws(() => db.page(99, 0), /no feature space 99/);
  });
});

/** Every row of the result tables and the meta values other than timing, as comparable text. */
function content(path: string): Record<string, string[]> {
  const db = FeatureDatabase.open(path, { readonly: true });
  try {
    const out: Record<string, string[]> = {};
    for (const t of RESULT_TABLES) {
      out[t] = (db.handle.prepare(`SELECT * FROM ${t}`).all() as Record<string, unknown>[]).map((r) =>
        JSON.stringify(r, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString("hex") : v)),
      );
    }
    out.meta = (
      db.handle.prepare("SELECT key, value FROM meta WHERE key != 'timing' ORDER BY key").all() as {
        key: string;
        value: string;
      }[]
    ).map((r) => `${r.key}=${r.value}`);
    return out;
  } finally {
    db.close();
  }
}

function cursorOf(path: string): number {
  if (!existsSync(path)) return 0;
  try {
    const db = FeatureDatabase.open(path, { readonly: true });
    try {
      return db.cursor.sequences;
    } finally {
      db.close();
    }
  } catch {
    return 0;
  }
}

test("a build killed with SIGKILL and started again gives the same database as an uninterrupted one", async () => {
  const dicts = [SAE3, CLT];
  const reference = join(dir, "reference.sqlite");
  await buildSmall(reference, data, dicts, { maxTokens: TOKENS });
  const killed = join(dir, "killed.sqlite");
  const script = join(here, compiled ? "build-child.js" : "build-child.ts");
  const execArgv = compiled ? [] : ["--import", "tsx"];
  for (let round = 0; round < 2; round++) {
    const child = spawn(
      process.execPath,
      [...execArgv, script, killed, data, JSON.stringify(dicts), "40", String(TOKENS)],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let output = "";
    child.stdout.on("data", (b: Buffer) => {
      output += b.toString();
    });
    const done = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_c, s) => resolve(s)));
    const start = cursorOf(killed);
    while (cursorOf(killed) <= start && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    child.kill("SIGKILL");
    assert.equal(await done, "SIGKILL", `round ${round} ended on its own: ${output}`);
  }
  const progress = cursorOf(killed);
  assert.ok(progress > 0, "the kills came after a checkpoint");
  const db = FeatureDatabase.open(killed, { readonly: true });
  assert.equal(db.status, "building");
  db.close();
  const s = await buildSmall(killed, data, dicts, { maxTokens: TOKENS });
  assert.equal(s.resumed, true);
  assert.equal(s.tokens, TOKENS);
  assert.deepEqual(content(killed), content(reference));
});

describe("bad inputs", () => {
  test("a negative or fractional token count names --tokens", async () => {
    await assert.rejects(
      buildSmall(join(dir, "neg.sqlite"), data, [SAE3], { maxTokens: -5 }),
      /--tokens.*-5/,
    );
    await assert.rejects(buildSmall(join(dir, "frac.sqlite"), data, [SAE3], { maxTokens: 2.5 }), /--tokens/);
    assert.ok(!existsSync(join(dir, "neg.sqlite")), "nothing written");
  });

  test("a dictionary whose width does not match the model's site names the dictionary", async () => {
    const other = fixture("dictionaries", "gemma-scope-2-tiny", "resid_post", "layer_2_width_128_l0_small");
    await assert.rejects(
      buildSmall(join(dir, "wide.sqlite"), data, [other]),
      /d_in is \d+ but site blocks\.2\.resid_post has width 256/,
    );
  });

  test("a corrupt or foreign file is refused with its path", () => {
    const junk = join(dir, "junk.sqlite");
    writeFileSync(junk, "not a database at all, just some text that is long enough");
    assert.throws(
      () => FeatureDatabase.open(junk),
      (e: unknown) =>
        e instanceof FeaturesError && e.message.includes(junk) && /not a SQLite database/.test(e.message),
    );
    const cut = join(dir, "cut.sqlite");
    copyFileSync(out, cut);
    const buf = Buffer.alloc(4096, 0x5a);
    const fd = openSync(cut, "r+");
    writeSync(fd, buf, 0, buf.length, 8192);
    closeSync(fd);
    assert.throws(
      () => FeatureDatabase.open(cut, { readonly: true }).page(0, 0),
      (e: unknown) => e instanceof FeaturesError && e.message.includes(cut),
    );
  });

  test("resuming with other inputs names the field that differs; a complete build is not redone", async () => {
    const partial = join(dir, "partial.sqlite");
    const db = FeatureDatabase.create(partial, { model: "other" });
    db.close();
    await assert.rejects(buildSmall(partial, data, [SAE3]), /other inputs \(model differs\)/);
    await assert.rejects(buildSmall(out, data, DICTS, { maxTokens: TOKENS }), /already complete/);
  });
});
