import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { writeSafetensorsSync } from "../../../src/io/safetensors-write.js";
import { fixture, runCli, tempDir } from "../../io/helpers.js";

const dir = tempDir("glassbox-cli-st-");

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** The header as JSON.parse sees it: an independent reading of what the CLI should report. */
function header(path: string): Record<string, HeaderEntry | Record<string, string>> {
  const raw = readFileSync(path);
  const n = Number(raw.readBigUInt64LE(0));
  return JSON.parse(raw.subarray(8, 8 + n).toString("utf8"));
}

test("info prints a table with every tensor, totals and metadata", () => {
  const p = fixture("safetensors", "hf-mixed.safetensors");
  const r = runCli(["safetensors", "info", p]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "");
  const h = header(p);
  const lines = r.stdout.split("\n");
  assert.match(lines[0], /^name\s+dtype\s+shape\s+bytes$/);
  let elements = 0;
  let bytes = 0;
  let count = 0;
  for (const [name, e] of Object.entries(h)) {
    if (name === "__metadata__") continue;
    const t = e as HeaderEntry;
    const size = t.data_offsets[1] - t.data_offsets[0];
    const row = lines.find((l) => l.startsWith(`${name} `));
    assert.ok(row, name);
    assert.deepEqual(row.split(/\s{2,}/), [name, t.dtype, `[${t.shape.join(", ")}]`, String(size)]);
    elements += t.shape.reduce((a, b) => a * b, 1);
    bytes += size;
    count++;
  }
  assert.ok(lines.includes(`${count} tensors, ${elements} elements, ${bytes} bytes (${bytes} B)`), r.stdout);
  const meta = h.__metadata__ as Record<string, string>;
  for (const [k, v] of Object.entries(meta)) assert.match(r.stdout, new RegExp(`^  ${k}\\s+${v}$`, "m"));
});

test("info --json prints exactly one object {tensors: {name: {dtype, shape}}, metadata}", () => {
  const p = join(dir, "odd-names.safetensors");
  writeSafetensorsSync(
    p,
    {
      ["__proto__"]: { dtype: "BF16", shape: [2, 1], data: new Uint16Array(2) },
      "layers.0.w": { dtype: "F32", shape: [], data: new Float32Array(1) },
      "with space\t": { dtype: "I8", shape: [0], data: new Int8Array(0) },
    },
    { note: 'quote " and newline\n' },
  );
  const r = runCli(["safetensors", "info", p, "--json"]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trimEnd().split("\n").length, 1);
  const h = header(p);
  const expected: Record<string, unknown> = {};
  for (const [name, e] of Object.entries(h)) {
    if (name === "__metadata__") continue;
    const t = e as HeaderEntry;
    Object.defineProperty(expected, name, { value: { dtype: t.dtype, shape: t.shape }, enumerable: true });
  }
  assert.deepEqual(JSON.parse(r.stdout), { tensors: expected, metadata: h.__metadata__ });
  assert.ok(Object.hasOwn(JSON.parse(r.stdout).tensors, "__proto__"));
});

test("info reads a sharded checkpoint directory or its index", () => {
  const d = join(dir, "ckpt");
  mkdirSync(d);
  writeSafetensorsSync(join(d, "model-00001-of-00002.safetensors"), {
    a: { dtype: "F32", shape: [2], data: new Float32Array(2) },
  });
  writeSafetensorsSync(join(d, "model-00002-of-00002.safetensors"), {
    b: { dtype: "BF16", shape: [3, 4], data: new Uint16Array(12) },
  });
  writeFileSync(
    join(d, "model.safetensors.index.json"),
    JSON.stringify({
      metadata: { total_size: 32 },
      weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" },
    }),
  );
  for (const target of [d, join(d, "model.safetensors.index.json")]) {
    const j = runCli(["safetensors", "info", target, "--json"]);
    assert.equal(j.status, 0, j.stderr);
    assert.deepEqual(JSON.parse(j.stdout), {
      tensors: { a: { dtype: "F32", shape: [2] }, b: { dtype: "BF16", shape: [3, 4] } },
      metadata: { total_size: 32 },
    });
  }
  const t = runCli(["safetensors", "info", d]);
  assert.equal(t.status, 0, t.stderr);
  assert.match(t.stdout, /^b\s+BF16\s+\[3, 4\]\s+24\s+model-00002-of-00002\.safetensors$/m);
  assert.match(t.stdout, /^2 tensors in 2 files, 14 elements, 32 bytes/m);
  assert.match(t.stdout, /^ {2}total_size\s+32$/m);
});

test("a missing file is one line on stderr and exit 1", () => {
  const p = join(dir, "nope.safetensors");
  const r = runCli(["safetensors", "info", p]);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr.split("\n").length, 2);
  assert.ok(r.stderr.startsWith(`glassbox: ${p}: cannot open: ENOENT`), r.stderr);
});
