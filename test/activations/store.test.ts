import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { contentHash, parseManifest, shardFileName } from "../../src/activations/manifest.js";
import { ActivationStore, StoreWriter } from "../../src/activations/store.js";
import { StoreError } from "../../src/core/errors.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../src/core/half.js";
import { tempDir } from "../io/helpers.js";
import { HASH_B, identity, syntheticShard, writeSyntheticStore } from "./helpers.js";

const root = tempDir("glassbox-store-");
let counter = 0;
const fresh = (): string => join(root, `s${counter++}`);

test("a written store reads back row for row, with a manifest that lists every shard and its hash", async () => {
  const dir = fresh();
  const total = await writeSyntheticStore(dir, [5, 7, 1]);
  const store = ActivationStore.open(dir);
  const m = store.manifest;
  assert.equal(m.tokens, total);
  assert.deepEqual(
    m.shards.map((s) => [s.file, s.tokens]),
    [
      [shardFileName(0), 5],
      [shardFileName(1), 7],
      [shardFileName(2), 1],
    ],
  );
  for (const s of m.shards) {
    const bytes = readFileSync(join(dir, s.file));
    assert.equal(s.bytes, bytes.byteLength);
    assert.equal(s.sha256, createHash("sha256").update(bytes).digest("hex"));
  }
  assert.equal(m.complete, true);
  assert.deepEqual(m.cursor, { sequences: 3, skip: 0 });
  let first = 0;
  for (let i = 0; i < m.shards.length; i++) {
    const got = await store.readShard(i);
    const want = syntheticShard(first, m.shards[i].tokens);
    for (const site of m.sites) assert.deepEqual(got.acts.get(site.name), want.acts.get(site.name));
    assert.deepEqual(got.tokenIds, want.tokenIds);
    assert.deepEqual(got.positions, want.positions);
    assert.deepEqual(got.docIds, want.docIds);
    first += m.shards[i].tokens;
  }
  await store.verify();
  assert.deepEqual(readdirSync(dir).sort(), ["manifest.json", ...m.shards.map((s) => s.file)].sort());
});

test("bf16 and f16 stores round each value to nearest even, as core/half does", async () => {
  for (const dtype of ["bf16", "f16"] as const) {
    const dir = fresh();
    const id = identity({ dtype, sites: [{ name: "x", d: 4 }] });
    const w = StoreWriter.open(dir, id);
    const values = Float32Array.from([1 / 3, -1e-6, 65519, 1.2345678, 1e5, 0, -2.5, Number.NaN]);
    await w.append(
      {
        acts: new Map([["x", values]]),
        tokenIds: new Int32Array(2),
        positions: new Int32Array(2),
        docIds: new Int32Array(2),
      },
      { sequences: 1, skip: 0 },
    );
    w.close();
    const got = (await ActivationStore.open(dir).readShard(0)).acts.get("x")!;
    const round =
      dtype === "bf16" ? (v: number) => bf16ToF32(f32ToBf16(v)) : (v: number) => f16ToF32(f32ToF16(v));
    assert.deepEqual(Array.from(got), Array.from(values, round), dtype);
    const expectedBytes = 2 * values.length;
    const info = JSON.parse(
      readFileSync(join(dir, shardFileName(0)))
        .subarray(8, 8 + Number(readFileSync(join(dir, shardFileName(0))).readBigUInt64LE(0)))
        .toString(),
    );
    assert.equal(info.x.dtype, dtype === "bf16" ? "BF16" : "F16");
    assert.equal(info.x.data_offsets[1] - info.x.data_offsets[0], expectedBytes);
  }
});

test("appending refuses another model, site set, dtype or dataset with a StoreError naming it", async () => {
  const dir = fresh();
  await writeSyntheticStore(dir, [4]);
  const cases: [Parameters<typeof identity>[0], RegExp][] = [
    [{ model: { id: "model-b", hash: HASH_B } }, /activations of model model-a .* not of model-b/],
    [{ sites: [{ name: "blocks.0.resid_post", d: 3 }] }, /holds sites .*blocks\.1\.mlp_out/],
    [
      {
        sites: [
          { name: "blocks.0.resid_post", d: 4 },
          { name: "blocks.1.mlp_out", d: 2 },
        ],
      },
      /resid_post\[3\]/,
    ],
    [{ dtype: "bf16" }, /holds f32 activations, not bf16/],
    [{ dataset: { source: "synthetic", context: 32 } }, /dataset context = 16, not 32/],
  ];
  for (const [over, re] of cases) {
    assert.throws(
      () => StoreWriter.open(dir, identity(over)),
      (e: unknown) => e instanceof StoreError && re.test(e.message),
    );
  }
  const before = readFileSync(join(dir, "manifest.json"), "utf8");
  const w = StoreWriter.open(dir, identity());
  w.close();
  assert.equal(readFileSync(join(dir, "manifest.json"), "utf8"), before, "a matching open changes nothing");
});

test("a shard and temporary files left by a killed writer are replaced on reopen; listed data is kept", async () => {
  const dir = fresh();
  await writeSyntheticStore(dir, [3, 3]);
  const m0 = ActivationStore.open(dir).manifest;
  // What a kill between the shard rename and the manifest rename leaves: an unlisted shard 2.
  writeFileSync(join(dir, shardFileName(2)), "garbage");
  writeFileSync(join(dir, ".shard_00003.safetensors.999.abc.tmp"), "partial");
  writeFileSync(join(dir, ".manifest.json.999.1.tmp"), "{");
  const store = ActivationStore.open(dir);
  assert.equal(store.manifest.content_hash, m0.content_hash, "readers ignore unlisted files");
  const w = StoreWriter.open(dir, identity());
  assert.ok(!readdirSync(dir).some((f) => f.endsWith(".tmp")));
  await w.append(syntheticShard(6, 2), { sequences: 3, skip: 0 });
  w.close();
  const again = ActivationStore.open(dir);
  assert.equal(again.tokens, 8);
  await again.verify();
  assert.deepEqual((await again.readShard(2)).tokenIds, Int32Array.from([6, 7]));
});

test("corruption is caught: edited manifest, truncated shard, changed shard bytes", async () => {
  const dir = fresh();
  await writeSyntheticStore(dir, [4, 4]);
  const mpath = join(dir, "manifest.json");
  const text = readFileSync(mpath, "utf8");
  const json = JSON.parse(text);
  json.tokens = 9;
  assert.throws(() => parseManifest(json, mpath), /tokens is 9 but the shards hold 8/);
  json.tokens = 8;
  json.dataset.context = 99;
  assert.throws(() => parseManifest(json, mpath), /content_hash does not match/);
  json.dataset.context = 16;
  assert.equal(contentHash(parseManifest(json, mpath)), json.content_hash);

  const spath = join(dir, shardFileName(1));
  const bytes = readFileSync(spath);
  writeFileSync(spath, bytes.subarray(0, bytes.byteLength - 1));
  assert.throws(() => ActivationStore.open(dir), /shard_00001.safetensors has \d+ bytes, the manifest says/);
  const flipped = Buffer.from(bytes);
  flipped[flipped.byteLength - 1] ^= 1;
  writeFileSync(spath, flipped);
  await assert.rejects(ActivationStore.open(dir).verify(), /shard_00001.safetensors is corrupted/);
});

test("a second writer is refused while the first holds the store; a dead writer's lock is taken over", () => {
  const dir = fresh();
  const w = StoreWriter.open(dir, identity());
  assert.throws(
    () => StoreWriter.open(dir, identity()),
    (e: unknown) => e instanceof StoreError,
  );
  w.close();
  // A lock naming a process that no longer exists (pid of a finished child).
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
    encoding: "utf8",
  });
  writeFileSync(join(dir, ".lock"), `${dead.stdout}\n`);
  StoreWriter.open(dir, identity()).close();
  assert.ok(!existsSync(join(dir, ".lock")));
});

test("bad places for a store: a non-empty folder without a manifest, a path under a file, no store", () => {
  const dir = fresh();
  mkdirSync(dir);
  writeFileSync(join(dir, "notes.txt"), "mine");
  assert.throws(() => StoreWriter.open(dir, identity()), /not empty and has no manifest.json .*notes.txt/);
  assert.throws(
    () => StoreWriter.open(join(dir, "notes.txt", "store"), identity()),
    /cannot create the store folder/,
  );
  assert.throws(() => ActivationStore.open(join(dir, "absent")), /no such store/);
  assert.throws(() => ActivationStore.open(dir), /cannot read the manifest/);
  assert.throws(
    () => StoreWriter.open(fresh(), identity({ sites: [{ name: "token_ids", d: 2 }] })),
    /token_ids cannot name a site/,
  );
});

test("rows of the wrong width or missing sites are refused before anything is written", async () => {
  const dir = fresh();
  const w = StoreWriter.open(dir, identity());
  const bad = syntheticShard(0, 3);
  const acts = new Map(bad.acts);
  acts.set("blocks.1.mlp_out", new Float32Array(5));
  await assert.rejects(w.append({ ...bad, acts }, { sequences: 1, skip: 0 }), /expected 3 x 2/);
  acts.delete("blocks.1.mlp_out");
  await assert.rejects(w.append({ ...bad, acts }, { sequences: 1, skip: 0 }), /no activations for site/);
  w.close();
  assert.deepEqual(readdirSync(dir).sort(), ["manifest.json"]);
  assert.equal(ActivationStore.open(dir).tokens, 0);
});
