/**
 * JumpReLU SAE encode + decode throughput (tokens/s) and peak memory, glassbox beside SAELens in one
 * run: for each (d_in, width), glassbox and SAELens (reference/bench_dictionaries.py, the same
 * random distributions and thread count) each run in a fresh child process, alternating order
 * every round, so machine noise and memory measurements hit both alike.
 *
 * Both sides: W_enc, W_dec ~ U(-a, a), a = sqrt(3 / d_in); x ~ U(-sqrt 3, sqrt 3) (unit variance, so
 * pre-activations are close to N(0, 1)); zero biases; every threshold z with P(N(0,1) > z) =
 * l0 / width, i.e. about `l0` active features per token. glassbox encodes to sparse activations in
 * 64 MB blocks of pre-activations and decodes from them; SAELens encodes and decodes densely.
 *
 * Usage: node dist/bench/dictionaries.bench.js [--json] [--rounds=1] [--threads=2] [--batch=1024]
 *   [--l0=64] [--runs=3] [--only=640x16384,...] [--out=report.json]
 * Child mode (internal): --child=D_IN,WIDTH
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { matmul } from "../src/core/ops/linalg.js";
import { fromStorage, full, zeros } from "../src/core/tensor.js";
import { jumpRelu } from "../src/dictionaries/activations/jumprelu.js";
import { Sae } from "../src/dictionaries/architectures/sae.js";
import {
  machine,
  median,
  nativeOrExit,
  normalUpperQuantile,
  numberFlag,
  packageRoot,
  printTable,
  wantJson,
} from "./util.js";

const CONFIGS: readonly (readonly [number, number])[] = [
  [640, 16384],
  [1152, 16384],
  [640, 262144],
  [1152, 262144],
];

const threads = numberFlag("threads", 2);
const batch = numberFlag("batch", 1024);
const l0 = numberFlag("l0", 64);
const runs = numberFlag("runs", 3);
const rounds = numberFlag("rounds", 1);

/** n floats uniform in [-a, a) from a seeded LCG. */
function uniform(n: number, seed: number, a: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const scale = a / 2147483648;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s * scale - a;
  }
  return out;
}

interface Result {
  readonly impl: string;
  readonly d_in: number;
  readonly width: number;
  readonly batch: number;
  /** Median seconds of encode + decode. */
  readonly seconds: number;
  readonly encode: number;
  readonly decode: number;
  /** glassbox only: decoding the same activations densely (acts @ W_dec + b_dec), for contrast. */
  readonly denseDecode?: number;
  readonly l0: number;
  readonly peak_rss: number;
  readonly rss_base: number;
  readonly rss_weights: number;
  readonly weight_bytes: number;
}

function rss(): number {
  return process.memoryUsage().rss;
}

function child(dIn: number, width: number): Result {
  const native = nativeOrExit();
  native.setThreads(threads);
  const rssBase = rss();
  const a = Math.sqrt(3 / dIn);
  const wEnc = fromStorage(native, "f32", [dIn, width], uniform(dIn * width, 1, a));
  const wDec = fromStorage(native, "f32", [width, dIn], uniform(width * dIn, 2, a));
  const x = fromStorage(native, "f32", [batch, dIn], uniform(batch * dIn, 3, Math.sqrt(3)));
  const dict = new Sae(
    { wEnc, bEnc: zeros(native, [width]), wDec, bDec: zeros(native, [dIn]) },
    jumpRelu(full(native, [width], normalUpperQuantile(l0 / width))),
    { hookIn: null, hookOut: null, l0: null, modelName: null, source: "bench" },
  );
  const rssWeights = rss();
  dict.decode(dict.encode(x));
  const enc: number[] = [];
  const dec: number[] = [];
  const l0s: number[] = [];
  let acts = dict.encode(x);
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    acts = dict.encode(x);
    const t1 = performance.now();
    dict.decode(acts);
    const t2 = performance.now();
    enc.push((t1 - t0) / 1000);
    dec.push((t2 - t1) / 1000);
    l0s.push(acts.nnz / batch);
  }
  let denseDecode: number | undefined;
  if (width <= 65536) {
    const dense = acts.toDense();
    const t0 = performance.now();
    matmul(dense, wDec);
    denseDecode = (performance.now() - t0) / 1000;
  }
  return {
    impl: `glassbox native (${native.info().blasConfig.split(" ").slice(0, 2).join(" ")}, ${threads} threads)`,
    d_in: dIn,
    width,
    batch,
    seconds: median(enc.map((e, i) => e + dec[i])),
    encode: median(enc),
    decode: median(dec),
    ...(denseDecode === undefined ? {} : { denseDecode }),
    l0: l0s.reduce((s, v) => s + v, 0) / l0s.length,
    peak_rss: process.resourceUsage().maxRSS * 1024,
    rss_base: rssBase,
    rss_weights: rssWeights,
    weight_bytes: 4 * (2 * dIn * width + width + width + dIn),
  };
}

function runChild(cmd: string, args: readonly string[]): Result | { error: string } {
  const env = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  const r = spawnSync(cmd, args, { env, encoding: "utf8", maxBuffer: 1 << 20 });
  if (r.error) return { error: `${cmd}: ${r.error.message}` };
  if (r.status !== 0) {
    const last = r.stderr.trim().split("\n").pop() || "no message";
    return {
      error:
        `${cmd === process.execPath ? "glassbox" : "SAELens"} child ${r.signal ? `killed by ${r.signal}` : `exit ${r.status}`}: ${last}`.slice(
          0,
          300,
        ),
    };
  }
  return JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as Result;
}

function driver(): void {
  const root = packageRoot();
  const self = fileURLToPath(import.meta.url);
  const python = join(root, "reference", ".venv", "bin", "python");
  const script = join(root, "reference", "bench_dictionaries.py");
  const only = process.argv
    .find((s) => s.startsWith("--only="))
    ?.slice(7)
    .split(",");
  const configs = CONFIGS.filter(([d, w]) => only === undefined || only.includes(`${d}x${w}`));
  const results: { glassbox: Result[]; saelens: Result[]; error?: string }[] = configs.map(() => ({
    glassbox: [],
    saelens: [],
  }));
  for (let round = 0; round < rounds; round++) {
    configs.forEach(([dIn, width], i) => {
      const sides = [
        () =>
          runChild(process.execPath, [
            ...process.execArgv,
            self,
            `--child=${dIn},${width}`,
            ...process.argv.slice(2),
          ]),
        () =>
          runChild(python, [
            script,
            `--d-in=${dIn}`,
            `--width=${width}`,
            `--batch=${batch}`,
            `--l0=${l0}`,
            `--threads=${threads}`,
            `--runs=${runs}`,
          ]),
      ];
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      for (const s of order) {
        const r = sides[s]();
        if ("error" in r) results[i].error = r.error;
        else (s === 0 ? results[i].glassbox : results[i].saelens).push(r);
        if (!wantJson)
          process.stderr.write(
            `round ${round + 1} ${dIn}x${width} ${s === 0 ? "glassbox" : "saelens"} done\n`,
          );
      }
    });
  }
  const summary = configs.map(([dIn, width], i) => {
    const g = results[i].glassbox;
    const s = results[i].saelens;
    const tps = (rs: Result[]) => (rs.length ? median(rs.map((r) => batch / r.seconds)) : null);
    return {
      d_in: dIn,
      width,
      glassboxTokensPerSecond: tps(g),
      saelensTokensPerSecond: tps(s),
      ratio: tps(g) !== null && tps(s) !== null ? (tps(g) as number) / (tps(s) as number) : null,
      glassbox: g,
      saelens: s,
      ...(results[i].error ? { error: results[i].error } : {}),
    };
  });
  const report = {
    date: new Date().toISOString(),
    machine: machine(),
    threads,
    batch,
    l0,
    runs,
    rounds,
    summary,
  };
  const out = process.argv.find((a) => a.startsWith("--out="))?.slice(6);
  if (out !== undefined) writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  if (wantJson) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)}`;
  const ms = (s: number) => (s * 1000).toFixed(0);
  console.log(
    `JumpReLU SAE encode+decode, batch ${batch} tokens, target L0 ${l0}, ${threads} threads, ${rounds} round(s) x ${runs} runs`,
  );
  printTable(
    [
      "d_in",
      "width",
      "glassbox tok/s",
      "SAELens tok/s",
      "ratio",
      "gb enc/dec ms",
      "SL enc/dec ms",
      "gb/SL L0",
    ],
    summary.map((s) => {
      const g = s.glassbox[0];
      const sl = s.saelens[0];
      return [
        String(s.d_in),
        String(s.width),
        s.glassboxTokensPerSecond?.toFixed(0) ?? "n/a",
        s.saelensTokensPerSecond?.toFixed(0) ?? "n/a",
        s.ratio?.toFixed(2) ?? "n/a",
        g
          ? `${ms(g.encode)}/${ms(g.decode)}${g.denseDecode === undefined ? "" : ` (dense ${ms(g.denseDecode)})`}`
          : "n/a",
        sl ? `${ms(sl.encode)}/${ms(sl.decode)}` : "n/a",
        `${g?.l0.toFixed(1) ?? "-"}/${sl?.l0.toFixed(1) ?? "-"}`,
      ];
    }),
  );
  console.log("\npeak memory (MiB): RSS peak, and peak minus RSS once the weights exist");
  printTable(
    ["d_in", "width", "weights", "glassbox peak", "gb over weights", "SAELens peak", "SL over weights"],
    summary.map((s) => {
      const g = s.glassbox[0];
      const sl = s.saelens[0];
      return [
        String(s.d_in),
        String(s.width),
        mib((g ?? sl)?.weight_bytes ?? 0),
        g ? mib(g.peak_rss) : "n/a",
        g ? mib(g.peak_rss - g.rss_weights) : "n/a",
        sl ? mib(sl.peak_rss) : "n/a",
        sl ? mib(sl.peak_rss - sl.rss_weights) : "n/a",
      ];
    }),
  );
  for (const s of summary) if (s.error) console.log(`${s.d_in}x${s.width}: ${s.error}`);
}

const childArg = process.argv.find((s) => s.startsWith("--child="));
if (childArg) {
  const [dIn, width] = childArg.slice(8).split(",").map(Number);
  console.log(JSON.stringify(child(dIn, width)));
} else {
  driver();
}
