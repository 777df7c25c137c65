import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { gemma3Harvester, modelHash } from "../../src/activations/harvest.js";
import { ActivationStore } from "../../src/activations/store.js";
import { referenceBackend } from "../../src/backends/index.js";
import { ChatTemplate, contentMask } from "../../src/io/chat.js";
import { Tokenizer } from "../../src/io/tokenizer.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { parseSite } from "../../src/model/gemma3/sites.js";
import { runCli, tempDir } from "../io/helpers.js";
import { writeTestModel } from "./model-fixture.js";

const root = tempDir("glassbox-harvest-cli-");
const modelDir = writeTestModel(join(root, "model"));
const SITES = ["blocks.1.resid_post", "blocks.4.mlp_out"];
const texts = [
  "The quick brown fox jumps over the lazy dog.",
  "Pack my box with five dozen liquor jugs, then pack another box with more jugs than the first.",
  "Hi.",
  "Sphinx of black quartz, judge my vow.",
];
const jsonl = join(root, "data.jsonl");
writeFileSync(jsonl, `${texts.map((t, i) => JSON.stringify({ id: `d${i}`, text: t })).join("\n")}\n`);

async function rowsOf(
  dir: string,
): Promise<{ ids: number[]; docs: number[]; acts: Map<string, Float32Array[]> }> {
  const store = ActivationStore.open(dir);
  const out = { ids: [] as number[], docs: [] as number[], acts: new Map<string, Float32Array[]>() };
  for (let i = 0; i < store.manifest.shards.length; i++) {
    const s = await store.readShard(i);
    out.ids.push(...s.tokenIds);
    out.docs.push(...s.docIds);
    for (const site of store.manifest.sites) {
      const a = s.acts.get(site.name)!;
      const list = out.acts.get(site.name) ?? [];
      for (let r = 0; r < s.tokenIds.length; r++) list.push(a.subarray(r * site.d, (r + 1) * site.d));
      out.acts.set(site.name, list);
    }
  }
  return out;
}

function assertClose(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs(a[i] - b[i]) <= 1e-4 * (1 + Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

test("harvest --json over JSONL stores every non-BOS token with the activations of a plain forward pass", async () => {
  const out = join(root, "store-text");
  const r = runCli([
    "harvest",
    "--model",
    modelDir,
    "--sites",
    SITES.join(","),
    "--data",
    jsonl,
    "--out",
    out,
    "--context",
    "24",
    "--batch",
    "3",
    "--shard-tokens",
    "20",
    "--json",
  ]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  const tok = Tokenizer.fromDir(modelDir);
  const model = loadGemma3(modelDir, referenceBackend);
  const sites = SITES.map((s) => parseSite(s, model.config));
  const want: { id: number; doc: number; acts: Float32Array[] }[] = [];
  texts.forEach((t, doc) => {
    const ids = tok.encode(t);
    // Split as documented: the first 24 tokens, then BOS + the next 23, each run on its own.
    const chunks = [ids.slice(0, 24)];
    for (let at = 24; at < ids.length; at += 23) chunks.push([tok.special.bos, ...ids.slice(at, at + 23)]);
    for (const c of chunks) {
      const acts = model.forward([c], { capture: sites }).activations;
      c.forEach((id, p) => {
        if (p === 0) return;
        want.push({
          id,
          doc,
          acts: sites.map(
            (s) =>
              acts
                .get(s)
                .data.subarray(p * acts.get(s).shape[2], (p + 1) * acts.get(s).shape[2]) as Float32Array,
          ),
        });
      });
    }
  });
  const got = await rowsOf(out);
  assert.equal(report.tokens, want.length);
  assert.equal(report.complete, true);
  assert.equal(report.model.hash, await modelHash(modelDir));
  assert.deepEqual(
    got.ids,
    want.map((w) => w.id),
  );
  assert.deepEqual(
    got.docs,
    want.map((w) => w.doc),
  );
  for (const [si, s] of SITES.entries())
    got.acts.get(s)!.forEach((a, i) => {
      assertClose(a, want[i].acts[si], `${s} row ${i}`);
    });
  const m = ActivationStore.open(out).manifest;
  assert.equal(m.dataset.format, "jsonl");
  assert.equal(m.dataset.file, "data.jsonl");
  assert.ok(m.shards.length >= 2);
});

test("chat data stores only message content, and the early-stopping harvester matches a full forward", async () => {
  const chat = join(root, "chat.jsonl");
  const convs = [
    [
      { role: "user", content: "Hello there" },
      { role: "model", content: "Hi! How are you?" },
    ],
    [{ role: "user", content: "Name a colour." }],
  ] as const;
  writeFileSync(chat, convs.map((m) => JSON.stringify({ messages: m })).join("\n"));
  const out = join(root, "store-chat");
  const r = runCli([
    "harvest",
    "--model",
    modelDir,
    "--sites",
    "blocks.2.resid_post",
    "--data",
    chat,
    "--chat",
    "--out",
    out,
    "--dtype",
    "bf16",
    "--json",
  ]);
  assert.equal(r.status, 0, r.stderr);
  const tok = Tokenizer.fromDir(modelDir);
  const tpl = ChatTemplate.fromDir(modelDir, tok);
  const want: number[] = [];
  for (const c of convs) {
    const enc = tpl.encode(tok, c);
    contentMask(enc).forEach((keep, p) => {
      if (keep && p >= 4) want.push(enc.ids[p]);
    });
  }
  const got = await rowsOf(out);
  assert.deepEqual(got.ids, want);
  const m = ActivationStore.open(out).manifest;
  assert.equal(m.dtype, "bf16");
  assert.deepEqual(m.dataset.masking, { exclude_ids: [2, 0], skip_first: 4, template_tokens: true });

  const model = loadGemma3(modelDir, referenceBackend);
  const h = gemma3Harvester(model, { id: "m", hash: "0".repeat(64) }, ["blocks.5.mlp_in", "blocks.1.z"]);
  assert.deepEqual(h.sites, [
    { name: "blocks.1.z", d: 64 },
    { name: "blocks.5.mlp_in", d: 48 },
  ]);
  const ids = Int32Array.from([2, 40, 41, 42, 2, 50, 0, 0]);
  const mask = Int32Array.from([1, 1, 1, 1, 1, 1, 0, 0]);
  const early = h.run(ids, 2, 4, mask);
  const full = model.forward(
    [
      [2, 40, 41, 42],
      [2, 50, 0, 0],
    ],
    {
      attentionMask: [
        [1, 1, 1, 1],
        [1, 1, 0, 0],
      ],
      capture: [parseSite("blocks.1.z", model.config), parseSite("blocks.5.mlp_in", model.config)],
    },
  ).activations;
  assert.deepEqual(early.get("blocks.5.mlp_in"), full.get(parseSite("blocks.5.mlp_in", model.config)).data);
  assert.deepEqual(early.get("blocks.1.z"), full.get(parseSite("blocks.1.z", model.config)).data);
  assert.throws(
    () => gemma3Harvester(model, { id: "m", hash: "0".repeat(64) }, ["blocks.1.pattern"]),
    /only \[batch, seq, width\]/,
  );
});

test("harvest resumes: --tokens 30 then --tokens 70 equals one run to 70", async () => {
  const a = join(root, "resume-a");
  const b = join(root, "resume-b");
  const args = (out: string, n: number) => [
    "harvest",
    "--model",
    modelDir,
    "--sites",
    SITES[0],
    "--data",
    jsonl,
    "--out",
    out,
    "--tokens",
    String(n),
    "--context",
    "16",
    "--batch",
    "2",
    "--json",
  ];
  assert.equal(runCli(args(a, 30)).status, 0);
  const second = runCli(args(a, 70));
  assert.equal(second.status, 0, second.stderr);
  assert.equal(JSON.parse(second.stdout).resumed_from, 30);
  assert.equal(runCli(args(b, 70)).status, 0);
  const ra = await rowsOf(a);
  const rb = await rowsOf(b);
  assert.equal(ra.ids.length, 70);
  assert.deepEqual(ra.ids, rb.ids);
  ra.acts.get(SITES[0])!.forEach((v, i) => {
    assertClose(v, rb.acts.get(SITES[0])![i], `row ${i}`);
  });
});

test("bad input exits 1 with one clear line: empty data, unknown site, another model's store, bad flags", () => {
  const empty = join(root, "empty.txt");
  writeFileSync(empty, "");
  const blank = join(root, "blank.txt");
  writeFileSync(blank, "\n\n  \n");
  const base = ["harvest", "--model", modelDir, "--sites", SITES[0], "--out"];
  const cases: [string[], RegExp][] = [
    [[...base, join(root, "e1"), "--data", empty], /empty\.txt: the dataset is empty/],
    [
      [...base, join(root, "e2"), "--data", join(root, "missing.txt")],
      /missing\.txt: cannot read the dataset/,
    ],
    [[...base, join(root, "e3"), "--data", blank], /gave no tokens/],
    [
      [
        "harvest",
        "--model",
        modelDir,
        "--sites",
        "blocks.99.resid_post",
        "--out",
        join(root, "e4"),
        "--data",
        jsonl,
      ],
      /layer 99 is out of range/,
    ],
    [
      [
        "harvest",
        "--model",
        modelDir,
        "--sites",
        "blocks.1.nonsense",
        "--out",
        join(root, "e4"),
        "--data",
        jsonl,
      ],
      /unknown site/,
    ],
    [
      [...base, join(root, "e5"), "--data", jsonl, "--dtype", "f64"],
      /--dtype: must be one of f32, bf16, f16/,
    ],
    [[...base, join(root, "e5"), "--data", jsonl, "--batch", "0"], /--batch: must be a positive integer/],
  ];
  for (const [args, re] of cases) {
    const r = runCli(args);
    assert.equal(r.status, 1, `${args.join(" ")}: ${r.stdout}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  const store = join(root, "e6");
  assert.equal(runCli([...base, store, "--data", jsonl, "--tokens", "5"]).status, 0);
  const other = writeTestModel(join(root, "other-model"), true);
  const r = runCli(["harvest", "--model", other, "--sites", SITES[0], "--data", jsonl, "--out", store]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /store holds activations of model model \(hash [0-9a-f]{12}\), not of other-model/);
});
