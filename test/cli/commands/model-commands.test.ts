/**
 * The model commands (`generate`, `logits`, `activations`, `sites`) run as a user runs them: the CLI
 * spawned against the parity fixture models of test/fixtures/gemma3. With `--ids` the outputs are
 * compared with transformers' values stored in each fixture.safetensors (logits, activations,
 * greedy generations); with text, the committed tiny tokenizer (test/fixtures/tokenizer/tiny,
 * 300 ids) is passed with `--tokenizer` (the fixture models have none of their own).
 */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { runGenerate, stopTokenIds, TextStream } from "../../../src/cli/commands/generate.js";
import { ChatTemplate } from "../../../src/io/chat.js";
import { SafetensorsFile } from "../../../src/io/safetensors.js";
import { Tokenizer } from "../../../src/io/tokenizer.js";
import { loadGemma3Config } from "../../../src/model/gemma3/config.js";
import { listSites } from "../../../src/model/gemma3/sites.js";
import { fixture, runCli, tempDir } from "../../io/helpers.js";

const F32 = fixture("gemma3", "text-mqa-f32-legacy");
const BF16 = fixture("gemma3", "text-gqa-bf16-scaled");
const TOK = fixture("tokenizer", "tiny");
const dir = tempDir("glassbox-cli-model-");

function ok(args: string[]): string {
  const r = runCli(args);
  assert.equal(r.status, 0, `glassbox ${args.join(" ")}\n${r.stderr}`);
  return r.stdout;
}

function json<T>(args: string[]): T {
  const out = ok([...args, "--json"]);
  assert.equal(out.split("\n").filter((l) => l !== "").length, 1, "exactly one JSON line");
  return JSON.parse(out) as T;
}

/** Runs a command that must fail: exit 1, nothing on stdout, one `glassbox: ...` line on stderr. */
function fails(args: string[], message: RegExp): void {
  const r = runCli(args);
  assert.equal(r.status, 1, `expected failure: glassbox ${args.join(" ")}\n${r.stdout}`);
  assert.equal(r.stdout, "");
  const lines = r.stderr.split("\n").filter((l) => l !== "" && !l.includes("reference backend"));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^glassbox: /);
  assert.match(lines[0], message);
}

interface FixtureRows {
  ids: number[][];
  mask: number[][];
  get(name: string): { shape: readonly number[]; data: Float32Array };
  greedy: { input: number[][]; output: number[][] };
}

function readFixture(modelDir: string): FixtureRows {
  const f = SafetensorsFile.open(join(modelDir, "fixture.safetensors"));
  const ints = (name: string): number[][] => {
    const t = f.readTypedSync(name);
    const flat = Array.from(t.data as BigInt64Array, Number);
    const cols = t.shape[1];
    return Array.from({ length: t.shape[0] }, (_, r) => flat.slice(r * cols, (r + 1) * cols));
  };
  const rows: FixtureRows = {
    ids: ints("input_ids"),
    mask: ints("attention_mask"),
    get: (name) => {
      const t = f.readTypedSync(name);
      assert.equal(t.dtype, "F32");
      return { shape: t.shape, data: t.data as Float32Array };
    },
    greedy: { input: ints("greedy.input_ids"), output: ints("greedy.output_ids") },
  };
  return rows;
}

interface LogitsJson {
  tokens: (string | null)[];
  ids: number[];
  top: { token: string | null; id: number; logprob: number }[];
}

test("logits --ids: top predictions equal transformers' log-softmax at the last position", () => {
  for (const model of [F32, BF16]) {
    const fx = readFixture(model);
    const row = 1; // 13 real tokens, right-padded
    const n = fx.mask[row].reduce((a, b) => a + b, 0);
    const ids = fx.ids[row].slice(0, n);
    const logits = fx.get("logits");
    const vocab = logits.shape[2];
    const last = logits.data.subarray(
      (row * logits.shape[1] + n - 1) * vocab,
      (row * logits.shape[1] + n) * vocab,
    );
    let max = Number.NEGATIVE_INFINITY;
    for (const v of last) max = Math.max(max, v);
    let z = 0;
    for (const v of last) z += Math.exp(v - max);
    const logprob = Array.from(last, (v) => v - max - Math.log(z));
    const order = logprob.map((_, i) => i).sort((a, b) => logprob[b] - logprob[a] || a - b);
    const r = json<LogitsJson>(["logits", "--model", model, "--ids", ids.join(","), "--top", "5"]);
    assert.deepEqual(r.ids, ids);
    assert.deepEqual(
      r.tokens,
      ids.map(() => null),
      "no tokenizer: no token strings",
    );
    // bf16 fixtures were computed by transformers in bf16 (see test/model/parity.test.ts): compare
    // within 4 % of scale there, and only the best token's rank.
    const f32 = model === F32;
    const scale = Math.max(...r.top.map((t) => Math.abs(logprob[t.id])));
    const tol = (f32 ? 1e-4 : 0.04) * scale;
    if (f32)
      assert.deepEqual(
        r.top.map((t) => t.id),
        order.slice(0, 5),
      );
    else assert.equal(r.top[0].id, order[0]);
    r.top.forEach((t) => {
      assert.ok(Math.abs(t.logprob - logprob[t.id]) <= tol, `${t.id}: ${t.logprob} vs ${logprob[t.id]}`);
    });
  }
});

test("logits on text: same as the tokenizer's ids, with token strings; table output", () => {
  const text = "the cat sat on the mat";
  const tok = Tokenizer.fromDir(TOK);
  const ids = tok.encode(text);
  const byText = json<LogitsJson>(["logits", "--model", BF16, "--tokenizer", TOK, text]);
  const byIds = json<LogitsJson>(["logits", "--model", BF16, "--tokenizer", TOK, "--ids", ids.join(",")]);
  assert.deepEqual(byText.ids, ids);
  assert.deepEqual(byText.tokens, tok.tokenStrings(ids));
  assert.deepEqual(byText.top, byIds.top);
  assert.equal(byText.top.length, 10);
  for (const t of byText.top) assert.equal(t.token, t.id < tok.vocabSize ? tok.tokenString(t.id) : null);
  const table = ok(["logits", "--model", BF16, "--tokenizer", TOK, "--top", "3", text]).split("\n");
  assert.match(table[0], new RegExp(`^prompt: ${ids.length} tokens: "<bos>" "the" `));
  assert.match(table[2], /^rank\s+id\s+token\s+logprob\s+prob$/);
  const first = table[3].trim().split(/\s+/);
  assert.deepEqual(first.slice(0, 2), ["1", String(byText.top[0].id)]);
  assert.equal(Number(first[3]), Number(byText.top[0].logprob.toFixed(4)));
});

test("activations --ids: the written tensor equals transformers' activation; metadata; atomic", () => {
  const fx = readFixture(F32);
  const row = 2; // 7 real tokens
  const n = fx.mask[row].reduce((a, b) => a + b, 0);
  const ids = fx.ids[row].slice(0, n);
  for (const [site, asked] of [
    ["blocks.2.resid_post", "blocks.2.resid_post"],
    ["blocks.4.mlp_out", "model.layers.4.post_feedforward_layernorm.output"],
  ]) {
    const out = join(dir, `${site}.safetensors`);
    const r = json<{ site: string; shape: number[]; axes: string[]; ids: number[] }>([
      "activations",
      "--model",
      F32,
      "--ids",
      ids.join(","),
      "--site",
      asked,
      "--out",
      out,
    ]);
    assert.equal(r.site, site);
    const ref = fx.get(`act.${site}`);
    const d = ref.shape[2];
    assert.deepEqual(r.shape, [n, d]);
    assert.deepEqual(r.axes, ["seq", "d_model"]);
    const f = SafetensorsFile.open(out);
    const t = f.readTypedSync(site);
    assert.deepEqual(f.names(), [site]);
    assert.deepEqual(t.shape, [n, d]);
    const meta = f.metadata;
    f.close();
    assert.equal(meta.format, "glassbox-activations");
    assert.equal(meta.site, site);
    assert.equal(meta.token_ids, JSON.stringify(ids));
    assert.deepEqual(JSON.parse(meta.axes), ["seq", "d_model"]);
    assert.equal(meta.text, undefined);
    let scale = 0;
    let err = 0;
    for (let i = 0; i < n * d; i++) {
      const want = ref.data[row * ref.shape[1] * d + i];
      scale = Math.max(scale, Math.abs(want));
      err = Math.max(err, Math.abs((t.data as Float32Array)[i] - want));
    }
    assert.ok(err <= 1e-4 * scale, `${site}: max error ${err} (scale ${scale})`);
  }
  assert.deepEqual(
    readdirSync(dir).filter((f) => !f.endsWith(".safetensors")),
    [],
    "no temporary files left",
  );
});

test("activations on text: sites with a keys axis, tokens and text in the metadata", () => {
  const out = join(dir, "pattern.safetensors");
  const text = "a cat";
  const tok = Tokenizer.fromDir(TOK);
  const ids = tok.encode(text);
  const line = ok([
    "activations",
    "--model",
    BF16,
    "--tokenizer",
    TOK,
    "--site",
    "blocks.1.pattern",
    "--out",
    out,
    text,
  ]);
  const cfg = loadGemma3Config(BF16);
  assert.equal(
    line,
    `wrote ${out}: blocks.1.pattern [${cfg.heads}, ${ids.length}, ${ids.length}] (heads, seq, keys) f32 for ${ids.length} tokens\n`,
  );
  const f = SafetensorsFile.open(out);
  const t = f.readTypedSync("blocks.1.pattern");
  const meta = f.metadata;
  f.close();
  assert.equal(meta.text, text);
  assert.deepEqual(JSON.parse(meta.tokens), tok.tokenStrings(ids));
  // Attention probabilities: every query row sums to 1 and is 0 on future keys.
  const p = t.data as Float32Array;
  const s = ids.length;
  for (let h = 0; h < cfg.heads; h++) {
    for (let q = 0; q < s; q++) {
      let sum = 0;
      for (let k = 0; k < s; k++) {
        const v = p[(h * s + q) * s + k];
        if (k > q) assert.equal(v, 0);
        sum += v;
      }
      assert.ok(Math.abs(sum - 1) < 1e-5, `head ${h} query ${q}: ${sum}`);
    }
  }
});

interface GenerateJson {
  prompt_ids: number[];
  prompt_tokens: (string | null)[];
  generated_ids: number[];
  generated_tokens: (string | null)[];
  text: string | null;
  finish_reason: "stop" | "length";
}

test("generate --ids: greedy tokens equal transformers' greedy generation", () => {
  for (const model of [F32, BF16]) {
    const fx = readFixture(model);
    const stops = loadGemma3Config(model).eosTokenIds;
    fx.greedy.input.forEach((prompt, i) => {
      const expected = fx.greedy.output[i].slice(prompt.length);
      const stop = expected.findIndex((t) => stops.includes(t));
      const want = stop < 0 ? expected : expected.slice(0, stop + 1);
      const r = json<GenerateJson>([
        "generate",
        "--model",
        model,
        "--ids",
        prompt.join(","),
        "--max-tokens",
        String(expected.length),
      ]);
      assert.deepEqual(r.prompt_ids, prompt);
      assert.deepEqual(r.generated_ids, want);
      assert.equal(r.finish_reason, stop < 0 ? "length" : "stop");
      assert.equal(r.text, null);
    });
  }
});

test("generate stops at the model's eos id; streams ids without a tokenizer", () => {
  const fx = readFixture(BF16);
  const prompt = fx.greedy.input[0];
  const n = 5;
  const r = json<GenerateJson>([
    "generate",
    "--model",
    BF16,
    "--ids",
    prompt.join(","),
    "--max-tokens",
    String(n),
  ]);
  const plain = ok(["generate", "--model", BF16, "--ids", prompt.join(","), "--max-tokens", String(n)]);
  assert.equal(plain, `${r.generated_ids.join(" ")}\n`);
  // This random model repeats its last input token: a prompt ending in eos (1) must stop at once.
  const stop = json<GenerateJson>(["generate", "--model", BF16, "--ids", "2,1", "--max-tokens", "8"]);
  assert.deepEqual(stop.generated_ids, [1]);
  assert.equal(stop.finish_reason, "stop");
  const go = json<GenerateJson>(["generate", "--model", BF16, "--ids", "2,6", "--max-tokens", "8"]);
  assert.equal(go.generated_ids.length, 8, "6 is no stop id of this model");
  assert.equal(go.finish_reason, "length");
});

test("generate on text: streamed stdout equals --json text; --chat renders the template", () => {
  const tok = Tokenizer.fromDir(TOK);
  const text = "the cat sat";
  const base = ["generate", "--model", BF16, "--tokenizer", TOK, "--max-tokens", "12"];
  const r = json<GenerateJson>([...base, text]);
  assert.deepEqual(r.prompt_ids, tok.encode(text));
  assert.deepEqual(r.prompt_tokens, tok.tokenStrings(r.prompt_ids));
  assert.equal(
    r.text,
    tok.decode(
      r.generated_ids.filter((id) => id < tok.vocabSize),
      { skipSpecial: true },
    ),
  );
  assert.equal(ok([...base, text]), `${r.text}\n`);

  const chat = json<GenerateJson>([...base, "--chat", "--system", "be brief", "hello"]);
  const enc = ChatTemplate.fromDir(TOK, tok).encode(tok, [
    { role: "system", content: "be brief" },
    { role: "user", content: "hello" },
  ]);
  assert.deepEqual(chat.prompt_ids, [...enc.ids, ...tok.encode("<start_of_turn>model\n", { addBos: false })]);
  assert.equal(ok([...base, "--chat", "--system", "be brief", "hello"]), `${chat.text}\n`);

  const sampled = ["--temperature", "20", "--top-k", "50", "--top-p", "0.9", "--seed", "7"];
  const s1 = json<GenerateJson>([...base, ...sampled, text]);
  const s2 = json<GenerateJson>([...base, ...sampled, text]);
  const s3 = json<GenerateJson>([...base, ...sampled.slice(0, -1), "8", text]);
  assert.deepEqual(s1.generated_ids, s2.generated_ids, "same seed, same tokens");
  assert.notDeepEqual(s1.generated_ids, r.generated_ids, "sampling differs from greedy");
  assert.notDeepEqual(s1.generated_ids, s3.generated_ids, "another seed, other tokens");
});

test("generate writes each token's text as soon as it is made", async () => {
  const pieces: string[] = [];
  const flags = { model: BF16, tokenizer: TOK, maxTokens: "6", temperature: "0", seed: "0" };
  const r = await runGenerate(flags, "the cat sat", (p) => pieces.push(p));
  assert.equal(pieces.length, r.generated_ids.length, JSON.stringify(pieces));
  assert.equal(pieces.join(""), r.text);
});

test("chat mode also stops at <end_of_turn> and eos", () => {
  const tok = Tokenizer.fromDir(TOK);
  assert.deepEqual(stopTokenIds([1], tok, false), [1]);
  assert.deepEqual(stopTokenIds([1], tok, true).sort(), [1, tok.special.endOfTurn].sort());
  assert.deepEqual(stopTokenIds([1, 106], null, true), [1, 106]);
});

test("TextStream holds back a character split over byte tokens", () => {
  const tok = Tokenizer.fromDir(TOK);
  const ids = tok.encode("a \u4e2d\u{1F600}b", { addBos: false });
  const s = new TextStream(tok);
  const pieces = ids.map((id) => s.push(id));
  assert.equal(pieces.join("") + s.flush(), "a \u4e2d\u{1F600}b");
  assert.ok(pieces.includes("\u4e2d") && pieces.includes("\u{1F600}"), JSON.stringify(pieces));
  assert.ok(!pieces.some((p) => p.includes("\uFFFD")));
});

test("sites lists every site with its shape from config.json alone", () => {
  const cfg = loadGemma3Config(BF16);
  const r = json<{
    sites: { name: string; axes: string[]; shape: (number | null)[]; hf_module: string | null }[];
  }>(["sites", "--model", BF16]);
  const all = listSites(cfg);
  assert.deepEqual(
    r.sites.map((s) => s.name),
    all.map((s) => s.name),
  );
  for (const [i, s] of r.sites.entries()) {
    const full = all[i].shape(cfg, 3, 5, 7);
    assert.deepEqual(
      s.shape,
      s.axes.map((a, j) => (a === "batch" || a === "seq" || a === "keys" ? null : full[j])),
    );
    assert.equal(s.hf_module, all[i].hfModuleName(cfg));
  }
  // config.json alone is enough: a directory without weights.
  const bare = join(dir, "config-only");
  mkdirSync(bare);
  copyFileSync(join(BF16, "config.json"), join(bare, "config.json"));
  const table = ok(["sites", "--model", bare]);
  assert.match(
    table,
    /^blocks\.1\.z\s+\[batch, seq, heads\*head_dim=\d+\]\s+model\.layers\.1\.self_attn\.o_proj\.input$/m,
  );
  assert.ok(table.endsWith(`\n${all.length} sites\n`));
});

test("errors: one line, exit 1", () => {
  const noTok = ["logits", "--model", BF16, "hello"];
  fails(noTok, /has no tokenizer\.json: pass --tokenizer DIR/);
  fails(["logits", "--model", join(dir, "absent"), "--ids", "2"], /absent: cannot open/);
  const llama = join(dir, "llama");
  mkdirSync(llama);
  writeFileSync(join(llama, "config.json"), JSON.stringify({ model_type: "llama", hidden_size: 8 }));
  fails(["sites", "--model", llama], /"llama" is not Gemma 3/);
  const broken = join(dir, "broken");
  mkdirSync(broken);
  writeFileSync(join(broken, "config.json"), "{ nope");
  fails(["sites", "--model", broken], /config\.json: not valid JSON/);
  const deeper = join(dir, "deeper");
  mkdirSync(deeper);
  const cfg = JSON.parse(readFileSync(join(BF16, "config.json"), "utf8"));
  writeFileSync(
    join(deeper, "config.json"),
    JSON.stringify({
      ...cfg,
      num_hidden_layers: cfg.num_hidden_layers + 1,
      layer_types: [...cfg.layer_types, "sliding_attention"],
    }),
  );
  copyFileSync(join(BF16, "model.safetensors"), join(deeper, "model.safetensors"));
  fails(["logits", "--model", deeper, "--ids", "2,3"], new RegExp(`layers\\.${cfg.num_hidden_layers}\\.`));
  fails(
    [
      "activations",
      "--model",
      BF16,
      "--ids",
      "2",
      "--site",
      "blocks.1.nope",
      "--out",
      join(dir, "x.safetensors"),
    ],
    /unknown site/,
  );
  fails(
    [
      "activations",
      "--model",
      BF16,
      "--ids",
      "2",
      "--site",
      "blocks.99.resid_post",
      "--out",
      join(dir, "x.safetensors"),
    ],
    /out of range/,
  );
  const short = join(dir, "short");
  mkdirSync(short);
  writeFileSync(join(short, "config.json"), JSON.stringify({ ...cfg, max_position_embeddings: 4 }));
  fails(["generate", "--model", short, "--ids", "2,3,4,5,6"], /5 tokens, more than the model's context of 4/);
  fails(
    ["logits", "--model", BF16, "--ids", `2,${cfg.vocab_size}`],
    /token id 320 \(position 1\) is outside the model's vocabulary of 320/,
  );
  fails(["logits", "--model", BF16, "--ids", "2,x"], /--ids: "x" is not a token id/);
  fails(["generate", "--model", BF16, "--ids", "2", "--top-k", "3"], /also give --temperature > 0/);
  fails(
    ["generate", "--model", BF16, "--ids", "2", "--max-tokens", "-1"],
    /--max-tokens: must be an integer >= 0/,
  );
  fails(["generate", "--model", BF16, "--ids", "2", "--chat"], /--chat renders text/);
  fails(["logits", "--model", BF16, "--tokenizer", TOK, "--ids", "2", "hi"], /either a text prompt or --ids/);
  fails(["logits", "--model", BF16, "--ids", "2", "--top", "0"], /--top: must be a positive integer/);
  fails(["generate", "--model", BF16, "--tokenizer", join(dir, "llama"), "hi"], /has no tokenizer\.json/);
  fails(
    ["activations", "--model", BF16, "--ids", "2", "--site", "embed", "--out", join(dir, "x.npy")],
    /--out: must end in \.safetensors/,
  );
  assert.ok(!existsSync(join(dir, "x.safetensors")));
});

const TRAINED = ["tiny-gemma3", "tiny-gemma3-it"].map((m) => fixture("..", "..", "models", m));
for (const model of TRAINED) {
  const ready =
    ["config.json", "tokenizer.json"].every((f) => existsSync(join(model, f))) &&
    ["model.safetensors", "model.safetensors.index.json"].some((f) => existsSync(join(model, f)));
  test(`trained model ${model.split("/").pop()}: its own tokenizer, chat generation`, {
    skip: ready ? false : `${model} is not trained yet (see reference/train_tiny_gemma3*.py)`,
  }, () => {
    const tok = Tokenizer.fromDir(model);
    const r = json<GenerateJson>([
      "generate",
      "--model",
      model,
      "--chat",
      "--max-tokens",
      "24",
      "What is a cat?",
    ]);
    assert.deepEqual(r.prompt_ids.slice(0, 2), [tok.special.bos, tok.special.startOfTurn]);
    assert.equal(r.prompt_ids.filter((id) => id === tok.special.bos).length, 1);
    const last = r.generated_ids[r.generated_ids.length - 1];
    if (r.finish_reason === "stop") assert.ok([tok.special.endOfTurn, tok.special.eos, 1].includes(last));
    assert.equal(
      ok(["generate", "--model", model, "--chat", "--max-tokens", "24", "What is a cat?"]),
      `${r.text}\n`,
    );
    const l = json<LogitsJson>(["logits", "--model", model, "--top", "3", "The cat sat on the"]);
    assert.deepEqual(l.tokens, tok.tokenStrings(tok.encode("The cat sat on the")));
  });
}
