import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { referenceBackend } from "../../src/backends/reference/index.js";
import { SafetensorsError } from "../../src/core/errors.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { openSafetensors, ShardedSafetensors } from "../../src/io/safetensors-sharded.js";
import { writeSafetensorsSync } from "../../src/io/safetensors-write.js";
import { ramp, tempDir } from "./helpers.js";

const root = tempDir("glassbox-shards-");
let counter = 0;

const vec = (n: number, scale: number) => ({
  dtype: "F32" as const,
  shape: [n],
  data: Float32Array.from(ramp(n).map((x) => x * scale)),
});

/** A checkpoint of three shards; `index` overrides the weight map written to the index file. */
function checkpoint(opts: { index?: Record<string, string> | null; metadata?: unknown } = {}): string {
  const dir = join(root, `ckpt-${counter++}`);
  mkdirSync(dir);
  writeSafetensorsSync(join(dir, "model-00001-of-00003.safetensors"), {
    "embed.weight": vec(6, 1),
    "layers.0.w": vec(4, 2),
  });
  writeSafetensorsSync(
    join(dir, "model-00002-of-00003.safetensors"),
    { "layers.1.w": vec(4, 3) },
    { shard: "2" },
  );
  writeSafetensorsSync(join(dir, "model-00003-of-00003.safetensors"), {
    "norm.weight": { dtype: "BF16", shape: [2], data: Uint16Array.of(0x3f80, 0x4000) },
  });
  const weightMap = opts.index ?? {
    "embed.weight": "model-00001-of-00003.safetensors",
    "layers.0.w": "model-00001-of-00003.safetensors",
    "layers.1.w": "model-00002-of-00003.safetensors",
    "norm.weight": "model-00003-of-00003.safetensors",
  };
  if (opts.index !== null) {
    writeFileSync(
      join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: opts.metadata ?? { total_size: 60 }, weight_map: weightMap }, null, 2),
    );
  }
  return dir;
}

const shard = (dir: string, i: number) => join(dir, `model-0000${i}-of-00003.safetensors`);

describe("sharded checkpoints", () => {
  test("an index presents all tensors as one collection; shard headers open lazily", async () => {
    const dir = checkpoint();
    // Corrupt shard 2 after writing the index: untouched shards must not be read.
    writeFileSync(shard(dir, 2), "garbage");
    for (const path of [join(dir, "model.safetensors.index.json"), dir]) {
      const c = openSafetensors(path);
      assert.ok(c instanceof ShardedSafetensors);
      assert.deepEqual(c.names(), ["embed.weight", "layers.0.w", "layers.1.w", "norm.weight"]);
      assert.deepEqual(c.metadata, { total_size: 60 });
      assert.ok(c.has("layers.1.w"));
      assert.deepEqual(Array.from(c.readTypedSync("embed.weight").data as Float32Array), ramp(6));
      assert.deepEqual(
        Array.from((await c.readTyped("layers.0.w")).data as Float32Array),
        ramp(4).map((x) => x * 2),
      );
      const norm = c.readTensorSync("norm.weight", referenceBackend);
      assert.equal(norm.dtype, "bf16");
      assert.deepEqual(norm.toFlatArray(), [1, 2]);
      assert.equal(c.info("norm.weight").file, shard(dir, 3));
      assert.throws(
        () => c.info("layers.1.w"),
        (e: unknown) => e instanceof SafetensorsError && e.message.includes(shard(dir, 2)),
      );
      assert.throws(() => c.info("missing"), /no tensor named "missing"/);
      c.close();
      assert.throws(() => c.readRawSync("embed.weight"), /closed/);
    }
  });

  test("a directory without an index opens every shard", () => {
    const dir = checkpoint({ index: null });
    const c = openSafetensors(dir);
    try {
      assert.deepEqual(
        new Set(c.names()),
        new Set(["embed.weight", "layers.0.w", "layers.1.w", "norm.weight"]),
      );
      assert.deepEqual(c.metadata, {});
      assert.deepEqual(
        Array.from(c.readTypedSync("layers.1.w").data as Float32Array),
        ramp(4).map((x) => x * 3),
      );
    } finally {
      c.close();
    }
  });

  test("a directory with one file opens that file", () => {
    const dir = join(root, "single");
    mkdirSync(dir);
    writeSafetensorsSync(join(dir, "params.safetensors"), { w: vec(3, 1) });
    const c = openSafetensors(dir);
    assert.ok(c instanceof SafetensorsFile);
    c.close();
  });

  test("a missing shard is reported when the index is opened", () => {
    const dir = checkpoint();
    rmSync(shard(dir, 3));
    assert.throws(
      () => openSafetensors(dir),
      (e: unknown) =>
        e instanceof SafetensorsError &&
        e.message.includes("model.safetensors.index.json") &&
        /shard "model-00003-of-00003.safetensors" \(for tensor "norm.weight"\) is missing/.test(e.message),
    );
  });

  test("a tensor listed in the index but absent from its shard", () => {
    const dir = checkpoint({
      index: {
        "embed.weight": "model-00001-of-00003.safetensors",
        "ghost.weight": "model-00002-of-00003.safetensors",
      },
    });
    const c = openSafetensors(dir);
    assert.deepEqual(Array.from(c.readTypedSync("embed.weight").data as Float32Array), ramp(6));
    assert.throws(
      () => c.readRawSync("ghost.weight"),
      /tensor "ghost.weight" is listed in the index for model-00002-of-00003.safetensors but that shard does not contain it/,
    );
    c.close();
  });

  test("duplicate tensors across shards", () => {
    const dir = checkpoint({ index: null });
    writeSafetensorsSync(join(dir, "model-00004-of-00003.safetensors"), { "layers.1.w": vec(4, 9) });
    assert.throws(
      () => openSafetensors(dir),
      /tensor "layers.1.w" is in both model-00002-of-00003.safetensors and model-00004-of-00003.safetensors/,
    );
    // With an index: the shard holding a tensor the index assigns elsewhere is refused when opened.
    const dir2 = checkpoint();
    writeSafetensorsSync(shard(dir2, 2), { "layers.1.w": vec(4, 3), "embed.weight": vec(6, 1) });
    const c = openSafetensors(dir2);
    assert.throws(
      () => c.readRawSync("layers.1.w"),
      /tensor "embed.weight" is in model-00002-of-00003.safetensors but the index assigns it to model-00001-of-00003.safetensors/,
    );
    c.close();
    // Duplicate keys in the index's weight_map.
    const dir3 = checkpoint();
    writeFileSync(
      join(dir3, "model.safetensors.index.json"),
      '{"weight_map": {"a": "model-00001-of-00003.safetensors", "a": "model-00002-of-00003.safetensors"}}',
    );
    assert.throws(() => openSafetensors(dir3), /index is not valid JSON: duplicate key "a"/);
  });

  test("malformed indexes", () => {
    const cases: [string, RegExp][] = [
      ["[]", /index must be a JSON object/],
      ["{}", /needs a "weight_map" object, found none/],
      ['{"weight_map": []}', /needs a "weight_map" object, found an array/],
      ['{"weight_map": {"a": 3}}', /weight_map entry for "a" must be a file name/],
      ['{"weight_map": {"a": "../x.safetensors"}}', /outside the index's directory/],
      ['{"weight_map": {"a": "/etc/passwd"}}', /outside the index's directory/],
      ['{"weight_map": {"a": ""}}', /outside the index's directory/],
      ['{"weight_map": {}, "metadata": 3}', /"metadata" must be an object/],
      ["{", /index is not valid JSON/],
      ["\xff", /not valid JSON|not valid UTF-8/],
    ];
    const dir = join(root, "bad-index");
    mkdirSync(dir);
    const p = join(dir, "model.safetensors.index.json");
    for (const [text, re] of cases) {
      writeFileSync(p, text, "latin1");
      assert.throws(
        () => openSafetensors(p),
        (e: unknown) => e instanceof SafetensorsError && e.message.startsWith(`${p}: `) && re.test(e.message),
        text,
      );
    }
    writeFileSync(join(dir, "other.safetensors.index.json"), "{}");
    assert.throws(() => openSafetensors(dir), /several index files/);
    const empty = join(root, "empty-dir");
    mkdirSync(empty);
    assert.throws(() => openSafetensors(empty), /no .safetensors files or index/);
  });
});
