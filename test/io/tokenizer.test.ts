/**
 * Tokenizer and chat template against Hugging Face's Rust tokenizer and transformers' chat
 * rendering: expected ids, vocabulary strings, offsets, decodes, padded batches and rendered
 * conversations come from reference/tokenizer_fixture.py (see each fixture's `generator`).
 * The tiny tokenizer is committed; Gemma 3's real one is fetched into .cache/ by
 * scripts/fetch-gemma3-tokenizer.mjs and its tests skip when it is absent.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { type ChatMessage, ChatTemplate, contentMask } from "../../src/io/chat.js";
import { Tokenizer } from "../../src/io/tokenizer.js";
import { fixture, tempDir } from "./helpers.js";

interface Case {
  text: string;
  ids: number[];
  ids_no_bos: number[];
  tokens: string[];
  offsets: [number, number][];
  decoded: string;
  decoded_skip_special: string;
}

interface Decode {
  tokens: string[];
  ids: number[];
  decoded: string;
  decoded_skip_special: string;
}

interface Chat {
  messages: ChatMessage[];
  add_generation_prompt: boolean;
  error?: string;
  rendered?: string;
  ids?: number[];
  tokens?: string[];
  message?: number[];
  spans?: [number, number, number][];
}

interface Expected {
  format: string;
  format_version: number;
  generator: string;
  tokenizer: {
    vocab_size: number;
    tokenizer_json_sha256: string;
    tokenizer_config_sha256: string;
    special: Record<"bos" | "eos" | "pad" | "unk" | "start_of_turn" | "end_of_turn", number>;
  };
  cases: Case[];
  decodes: Decode[];
  batch: {
    texts: string[];
    left: { input_ids: number[][]; attention_mask: number[][] };
    right: { input_ids: number[][]; attention_mask: number[][] };
  };
  chats: Chat[];
}

const TINY_DIR = fixture("tokenizer", "tiny");
const GEMMA3_DIR = fixture("..", "..", ".cache", "gemma3-tokenizer");
const GEMMA3_SKIP = existsSync(join(GEMMA3_DIR, "tokenizer.json"))
  ? false
  : "the real Gemma 3 tokenizer is not in .cache/gemma3-tokenizer; fetch it with `node scripts/fetch-gemma3-tokenizer.mjs` (npm access needed)";

function loadExpected(name: string): Expected {
  const e = JSON.parse(readFileSync(fixture("tokenizer", name), "utf8")) as Expected;
  assert.equal(e.format, "glassbox-tokenizer-fixture");
  assert.equal(e.format_version, 1, `regenerate with: ${e.generator}`);
  return e;
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Every check against one expected-values fixture. */
function checkAgainst(dir: string, expectedName: string): void {
  const exp = loadExpected(expectedName);
  for (const [file, hash] of [
    ["tokenizer.json", exp.tokenizer.tokenizer_json_sha256],
    ["tokenizer_config.json", exp.tokenizer.tokenizer_config_sha256],
  ]) {
    assert.equal(sha256(join(dir, file)), hash, `${dir}/${file} is not the file the fixture was made from`);
  }
  const tok = Tokenizer.fromDir(dir);
  const s = exp.tokenizer.special;
  assert.deepEqual(tok.special, {
    bos: s.bos,
    eos: s.eos,
    pad: s.pad,
    unk: s.unk,
    startOfTurn: s.start_of_turn,
    endOfTurn: s.end_of_turn,
  });
  assert.equal(tok.vocabSize, exp.tokenizer.vocab_size);

  let compared = 0;
  for (const c of exp.cases) {
    const label = JSON.stringify(c.text);
    assert.deepEqual(tok.encode(c.text), c.ids, label);
    assert.deepEqual(tok.encode(c.text, { addBos: false }), c.ids_no_bos, label);
    const e = tok.encodeWithOffsets(c.text);
    assert.deepEqual(e.ids, c.ids, label);
    assert.deepEqual(e.tokens, c.tokens, label);
    assert.deepEqual(
      e.offsets.map((o) => [o.start, o.end]),
      c.offsets,
      label,
    );
    assert.equal(tok.decode(c.ids), c.decoded, label);
    assert.equal(tok.decode(c.ids, { skipSpecial: true }), c.decoded_skip_special, label);
    compared++;
  }
  assert.ok(compared >= 50, `only ${compared} cases`);
  for (const d of exp.decodes) {
    assert.deepEqual(
      d.tokens.map((t) => tok.tokenId(t)),
      d.ids,
    );
    assert.deepEqual(tok.tokenStrings(d.ids), d.tokens);
    assert.equal(tok.decode(d.ids), d.decoded, d.tokens.join(" "));
    assert.equal(tok.decode(d.ids, { skipSpecial: true }), d.decoded_skip_special, d.tokens.join(" "));
  }

  for (const side of ["left", "right"] as const) {
    const b = tok.encodeBatch(exp.batch.texts, { padding: side });
    assert.deepEqual(b.ids, exp.batch[side].input_ids, side);
    assert.deepEqual(b.attentionMask, exp.batch[side].attention_mask, side);
  }

  const chat = ChatTemplate.fromDir(dir, tok);
  for (const c of exp.chats) {
    const label = JSON.stringify(c.messages);
    const opts = { addGenerationPrompt: c.add_generation_prompt };
    if (c.error !== undefined) {
      assert.throws(
        () => chat.render(c.messages, opts),
        (err: Error) => err.name === "TokenizerError" && err.message.includes(`chat template: ${c.error}`),
        label,
      );
      continue;
    }
    assert.equal(chat.render(c.messages, opts), c.rendered, label);
    const enc = chat.encode(tok, c.messages, opts);
    assert.equal(enc.text, c.rendered, label);
    assert.deepEqual(enc.ids, c.ids, label);
    assert.deepEqual(enc.tokens, c.tokens, label);
    assert.deepEqual(enc.message, c.message, label);
    assert.deepEqual(
      enc.spans.map((sp) => [sp.message, sp.start, sp.end]),
      c.spans,
      label,
    );
    assert.deepEqual(
      enc.role,
      enc.message.map((m) => (m < 0 ? "template" : c.messages[m].role)),
    );
    assert.equal(enc.ids.filter((id) => id === tok.special.bos).length, 1, `${label}: one BOS`);
  }
}

test("tiny tokenizer matches Hugging Face (ids, tokens, offsets, decode, batches, chat)", () => {
  checkAgainst(TINY_DIR, "tiny-expected.json");
});

test("real Gemma 3 tokenizer matches Hugging Face", { skip: GEMMA3_SKIP }, () => {
  checkAgainst(GEMMA3_DIR, "gemma3-expected.json");
  const tok = Tokenizer.fromDir(GEMMA3_DIR);
  assert.deepEqual(tok.encode("Hello world"), [2, 9259, 1902]);
  // Gemma Scope 2 excludes the first 4 positions of -it prompts: exactly the template head.
  const enc = ChatTemplate.fromDir(GEMMA3_DIR, tok).encode(tok, [{ role: "user", content: "Hi" }]);
  assert.deepEqual(enc.tokens.slice(0, 4), ["<bos>", "<start_of_turn>", "user", "\n"]);
  assert.deepEqual(enc.role.slice(0, 5), ["template", "template", "template", "template", "user"]);
});

test("offsets slice the input text and cover it in order", () => {
  const tok = Tokenizer.fromDir(TINY_DIR);
  const text = "Hello \u4e2d\u6587 \u{1F600}\r\n\t<bos>  cafe\u0301 2026";
  const e = tok.encodeWithOffsets(text, { addBos: false });
  let pos = 0;
  let pieces = "";
  e.offsets.forEach((o, i) => {
    assert.ok(
      o.start === pos || (i > 0 && o.start === e.offsets[i - 1].start),
      `token ${i} starts at ${pos}`,
    );
    if (o.start === pos) {
      pieces += text.slice(o.start, o.end);
      pos = o.end;
    }
  });
  assert.equal(pieces, text);
  // A byte-fallback character: all its byte tokens share the character's span.
  const cjk = tok.encodeWithOffsets("\u4e2d", { addBos: false });
  assert.deepEqual(cjk.tokens, ["<0xE4>", "<0xB8>", "<0xAD>"]);
  assert.deepEqual(
    cjk.offsets.map((o) => [o.start, o.end]),
    [
      [0, 1],
      [0, 1],
      [0, 1],
    ],
  );
});

test("contentMask keeps only message content (Gemma Scope 2 masks the template)", () => {
  const tok = Tokenizer.fromDir(TINY_DIR);
  const chat = ChatTemplate.fromDir(TINY_DIR, tok);
  const enc = chat.encode(
    tok,
    [
      { role: "user", content: "hello" },
      { role: "assistant", content: "the cat" },
    ],
    { addGenerationPrompt: false },
  );
  // Everything up to the first content ("<bos><start_of_turn>user\n") is template.
  const head = "<bos><start_of_turn>user\n".length;
  const headTokens = enc.offsets.filter((o) => o.end <= head).length;
  assert.ok(headTokens >= 4);
  assert.ok(enc.role.slice(0, headTokens).every((r) => r === "template"));
  assert.equal(enc.role[headTokens], "user");
  const all = contentMask(enc);
  const model = contentMask(enc, ["assistant"]);
  const text = (mask: boolean[]) => tok.decode(enc.ids.filter((_, i) => mask[i]));
  assert.equal(text(all), "hellothe cat");
  assert.equal(text(model), "the cat");
});

test("errors name the file and say what is wrong", () => {
  const dir = tempDir("glassbox-tok-");
  assert.throws(() => Tokenizer.fromDir(join(dir, "absent")), /absent: no such directory/);
  assert.throws(() => Tokenizer.fromDir(dir), /has no tokenizer\.json/);
  writeFileSync(join(dir, "tokenizer.json"), "{ not json");
  assert.throws(() => Tokenizer.fromDir(dir), /tokenizer\.json: not valid JSON/);
  copyFileSync(join(TINY_DIR, "tokenizer.json"), join(dir, "tokenizer.json"));
  assert.throws(() => Tokenizer.fromDir(dir), /has no tokenizer_config\.json/);
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ pad_token: "<pad>" }));
  assert.throws(() => Tokenizer.fromDir(dir), /tokenizer_config\.json has no bos_token/);
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ bos_token: "<s>", eos_token: "<eos>" }));
  assert.throws(() => Tokenizer.fromDir(dir), /bos_token "<s>" is not in the vocabulary/);
  writeFileSync(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({ bos_token: { content: "<bos>" }, eos_token: "<eos>", pad_token: "<pad>" }),
  );
  const tok = Tokenizer.fromDir(dir);
  assert.equal(tok.special.bos, 2);
  assert.throws(() => ChatTemplate.fromDir(dir, tok), /no chat template/);
  assert.throws(() => tok.decode([0, tok.vocabSize]), /token id 300 is outside the vocabulary \(0\.\.299\)/);
  assert.throws(() => tok.decode([1.5]), /token id 1.5 is outside/);
  assert.equal(tok.decode([]), "");

  const bad = join(dir, "bad");
  mkdirSync(bad);
  writeFileSync(join(bad, "tokenizer.json"), JSON.stringify({ model: { type: "Nope" }, added_tokens: [] }));
  writeFileSync(join(bad, "tokenizer_config.json"), "{}");
  assert.throws(() => Tokenizer.fromDir(bad), /tokenizer\.json is not usable/);
  writeFileSync(join(bad, "tokenizer.json"), "[]");
  assert.throws(() => Tokenizer.fromDir(bad), /tokenizer\.json is not a JSON object/);

  assert.throws(
    () => new ChatTemplate("{% for m in messages %}", {}, "t.jinja"),
    /t\.jinja: chat template does not parse/,
  );
  const raising = new ChatTemplate("{{ raise_exception('no ' + messages[0].role) }}", {}, "t.jinja");
  assert.throws(
    () => raising.render([{ role: "user", content: "x" }]),
    /^TokenizerError: t\.jinja: chat template: no user$/,
  );
  const chat = ChatTemplate.fromDir(TINY_DIR, Tokenizer.fromDir(TINY_DIR));
  assert.throws(() => chat.render([]), /at least one message/);
});

test("chat_template.jinja overrides tokenizer_config.json's template", () => {
  const dir = tempDir("glassbox-tok-");
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(TINY_DIR, f), join(dir, f));
  writeFileSync(
    join(dir, "chat_template.jinja"),
    "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}",
  );
  const tok = Tokenizer.fromDir(dir);
  const enc = ChatTemplate.fromDir(dir, tok).encode(tok, [{ role: "user", content: " hi " }]);
  assert.equal(enc.text, "<bos>[user] hi ");
  assert.deepEqual(enc.spans, [{ message: 0, role: "user", start: 11, end: 15 }]);
});
