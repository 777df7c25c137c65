/**
 * `glassbox safetensors info FILE [--json]`: lists the tensors (name, dtype, shape, bytes) and
 * metadata of a safetensors file, a sharded checkpoint's index, or a checkpoint directory, reading
 * only headers. `--json` prints one object: `{"tensors": {name: {"dtype", "shape"}}, "metadata"}`.
 */
import { basename } from "node:path";
import type { Command } from "commander";
import type { TensorInfo } from "../../io/safetensors.js";
import { openSafetensors } from "../../io/safetensors-sharded.js";
import type { JsonValue } from "../../io/strict-json.js";

interface InfoFlags {
  json?: boolean;
}

export function registerSafetensors(program: Command): void {
  const st = program.command("safetensors").description("inspect safetensors checkpoints");
  st.command("info")
    .description("list tensors and metadata (FILE: a .safetensors file, an index.json or a directory)")
    .argument("<file>", "safetensors file, *.safetensors.index.json, or checkpoint directory")
    .option("--json", "print one JSON object instead of a table")
    .action((file: string, flags: InfoFlags) => {
      process.stdout.write(safetensorsInfo(file, flags.json === true));
    });
}

/** The text `safetensors info` prints. */
export function safetensorsInfo(file: string, json: boolean): string {
  const coll = openSafetensors(file);
  try {
    const infos = coll.names().map((n) => coll.info(n));
    return json ? infoJson(infos, coll.metadata) : infoTable(file, infos, coll.metadata);
  } finally {
    coll.close();
  }
}

function define(obj: Record<string, unknown>, key: string, value: unknown): void {
  // A tensor may be named "__proto__"; plain assignment would not create a key.
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function infoJson(infos: readonly TensorInfo[], metadata: Readonly<Record<string, JsonValue>>): string {
  const tensors: Record<string, unknown> = {};
  for (const t of infos) define(tensors, t.name, { dtype: t.dtype, shape: t.shape });
  return `${JSON.stringify({ tensors, metadata })}\n`;
}

function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function table(rows: readonly (readonly string[])[], rightAligned: ReadonlySet<number>): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (rightAligned.has(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function infoTable(
  file: string,
  infos: readonly TensorInfo[],
  metadata: Readonly<Record<string, JsonValue>>,
): string {
  const files = new Set(infos.map((t) => t.file));
  const sharded = files.size > 1 || (files.size === 1 && !files.has(file));
  const head = ["name", "dtype", "shape", "bytes", ...(sharded ? ["file"] : [])];
  const rows = infos.map((t) => [
    t.name,
    t.dtype,
    `[${t.shape.join(", ")}]`,
    t.byteLength.toLocaleString("en-US"),
    ...(sharded ? [basename(t.file)] : []),
  ]);
  let elements = 0;
  let bytes = 0;
  for (const t of infos) {
    elements += t.shape.reduce((a, b) => a * b, 1);
    bytes += t.byteLength;
  }
  const lines = [
    table([head, ...rows], new Set([3])),
    "",
    `${infos.length} tensor${infos.length === 1 ? "" : "s"}${sharded ? ` in ${files.size} file${files.size === 1 ? "" : "s"}` : ""}, ${elements.toLocaleString("en-US")} elements, ${bytes.toLocaleString("en-US")} bytes (${humanBytes(bytes)})`,
  ];
  const keys = Object.keys(metadata);
  if (keys.length === 0) lines.push("metadata: none");
  else {
    lines.push("metadata:");
    const w = Math.max(...keys.map((k) => k.length));
    for (const k of keys) {
      const v = metadata[k];
      lines.push(`  ${k.padEnd(w)}  ${typeof v === "string" ? v : JSON.stringify(v)}`);
    }
  }
  return `${lines.join("\n")}\n`;
}
