/**
 * Benchmark: lazy safetensors reads. Writes a ~1 GiB BF16 file (20 tensors of 50 MiB) to a temp
 * directory, then in fresh child processes measures: opening it (header only), reading one 50 MiB
 * tensor (sync and async), reading every tensor, and `fs.readFileSync` of the whole file, each
 * with the child's peak RSS (`process.resourceUsage().maxRSS`) against an idle child that only
 * loads the module. The page cache is warm (the file was just written). The file is deleted after.
 *
 *   npm run build && node dist/bench/safetensors-open.js [--runs 3] [--json]
 */

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { SafetensorsWriter } from "../src/io/safetensors-write.js";

const TENSORS = 20;
const ROWS = 5120;
const COLS = 5120;
const TENSOR_BYTES = ROWS * COLS * 2;
const TARGET = "layers.10.weight";

type Mode = "idle" | "open" | "one-sync" | "one-async" | "all" | "readFileSync";

interface ChildResult {
  mode: Mode;
  openMs: number;
  readMs: number;
  bytesRead: number;
  maxRssBytes: number;
}

async function child(mode: Mode, path: string): Promise<ChildResult> {
  let openMs = 0;
  let readMs = 0;
  let bytesRead = 0;
  const keep: Uint8Array[] = [];
  if (mode === "readFileSync") {
    const t0 = performance.now();
    const all = readFileSync(path);
    readMs = performance.now() - t0;
    bytesRead = all.byteLength;
    keep.push(all);
  } else if (mode !== "idle") {
    const t0 = performance.now();
    const f = SafetensorsFile.open(path);
    openMs = performance.now() - t0;
    const t1 = performance.now();
    if (mode === "one-sync") keep.push(f.readRawSync(TARGET).bytes);
    else if (mode === "one-async") keep.push((await f.readRaw(TARGET)).bytes);
    else if (mode === "all") for (const n of f.names()) keep.push(f.readRawSync(n).bytes);
    readMs = performance.now() - t1;
    bytesRead = keep.reduce((s, b) => s + b.byteLength, 0);
    f.close();
  }
  // Touch what was read so it cannot be optimised away.
  let x = 0;
  for (const b of keep) x ^= b[b.byteLength - 1];
  if (x === 256) process.stderr.write("");
  return { mode, openMs, readMs, bytesRead, maxRssBytes: process.resourceUsage().maxRSS * 1024 };
}

async function makeFile(path: string): Promise<void> {
  const specs: Record<string, { dtype: "BF16"; shape: number[] }> = {};
  for (let i = 0; i < TENSORS; i++) specs[`layers.${i}.weight`] = { dtype: "BF16", shape: [ROWS, COLS] };
  const w = await SafetensorsWriter.create(path, specs, { format: "pt" });
  const buf = new Uint16Array(ROWS * COLS);
  for (let j = 0; j < buf.length; j++) buf[j] = (j * 2654435761) >>> 16;
  for (let i = 0; i < TENSORS; i++) {
    buf[0] = i;
    await w.write(`layers.${i}.weight`, buf);
  }
  await w.finish();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === "--child") {
    process.stdout.write(JSON.stringify(await child(args[1] as Mode, args[2])));
    return;
  }
  const runs = args.includes("--runs") ? Number(args[args.indexOf("--runs") + 1]) : 3;
  const json = args.includes("--json");
  const dir = mkdtempSync(join(tmpdir(), "glassbox-bench-st-"));
  const path = join(dir, "model.safetensors");
  try {
    const t0 = performance.now();
    await makeFile(path);
    const writeMs = performance.now() - t0;
    const size = statSync(path).size;
    const self = fileURLToPath(import.meta.url);
    const modes: Mode[] = ["idle", "open", "one-sync", "one-async", "all", "readFileSync"];
    const results: Record<
      string,
      { openMs: number; readMs: number; bytesRead: number; maxRssBytes: number }
    > = {};
    for (const mode of modes) {
      const rs: ChildResult[] = [];
      for (let r = 0; r < runs; r++) {
        const out = spawnSync(process.execPath, [...process.execArgv, self, "--child", mode, path], {
          encoding: "utf8",
          maxBuffer: 1 << 20,
        });
        if (out.status !== 0) throw new Error(`child ${mode} failed: ${out.stderr}`);
        rs.push(JSON.parse(out.stdout) as ChildResult);
      }
      results[mode] = {
        openMs: median(rs.map((x) => x.openMs)),
        readMs: median(rs.map((x) => x.readMs)),
        bytesRead: rs[0].bytesRead,
        maxRssBytes: median(rs.map((x) => x.maxRssBytes)),
      };
    }
    if (json) {
      process.stdout.write(`${JSON.stringify({ fileBytes: size, writeMs, runs, results })}\n`);
      return;
    }
    const idle = results.idle.maxRssBytes;
    console.log(
      `file: ${mib(size)} MiB BF16, ${TENSORS} tensors of ${mib(TENSOR_BYTES)} MiB; written in ${(writeMs / 1000).toFixed(2)} s (streaming writer)`,
    );
    console.log(
      `median of ${runs} fresh child processes; warm page cache; RSS over idle = peak RSS - idle child's peak RSS (${mib(idle)} MiB)`,
    );
    console.log(
      "mode          open ms   read ms   MiB read   peak RSS MiB   RSS over idle MiB   (RSS over idle) / read",
    );
    for (const mode of modes) {
      const r = results[mode];
      const over = r.maxRssBytes - idle;
      const ratio = r.bytesRead > 0 ? (over / r.bytesRead).toFixed(2) : "-";
      console.log(
        `${mode.padEnd(12)}  ${r.openMs.toFixed(2).padStart(7)}  ${r.readMs.toFixed(1).padStart(8)}  ${mib(r.bytesRead).padStart(9)}  ${mib(r.maxRssBytes).padStart(13)}  ${mib(over).padStart(18)}  ${ratio.padStart(22)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
