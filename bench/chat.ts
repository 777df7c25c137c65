/**
 * Refusal-direction fit on tiny-gemma3-it: glassbox (src/chat/refusal.ts) against the same
 * pipeline in PyTorch / transformers (reference/bench_refusal.py, float32, 2 threads), same prompt
 * ids, one prompt per forward pass on both sides; model loading is not timed. The reference's
 * candidate scores are compared with glassbox's (a parity check beside the timing).
 *
 *   node dist/bench/chat.js [--rounds N] [--train N] [--validation N] [--anchor] [--json]
 *
 * Child mode (internal): --child JOB.json
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultBackend } from "../src/backends/index.js";
import {
  type CandidateScores,
  type ChatPromptIds,
  chatPromptIds,
  fitRefusalDirection,
  refusalTokens,
} from "../src/chat/refusal.js";
import { ChatTemplate } from "../src/io/chat.js";
import { Tokenizer } from "../src/io/tokenizer.js";
import { loadGemma3 } from "../src/model/gemma3/model.js";
import { machine, median, packageRoot, referencePython, spawnJson } from "./util.js";

const root = packageRoot();
const MODEL = join(root, "models", "tiny-gemma3-it");

interface Job {
  readonly model: string;
  readonly train: { harmful: number[][]; harmless: number[][] };
  readonly validation: { harmful: number[][]; harmless: number[][] };
  readonly refusal_tokens: number[];
  readonly positions: number;
}

interface RunResult {
  readonly impl: string;
  readonly seconds: number;
  readonly peak_rss_bytes: number;
  readonly scores: CandidateScores[];
}

function makeJob(train: number, validation: number): Job {
  const tok = Tokenizer.fromDir(MODEL);
  const tpl = ChatTemplate.fromDir(MODEL, tok);
  const rows = readFileSync(join(MODEL, "eval", "indist.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { prompt: string; kind: string });
  const ids = (kind: string) =>
    rows.filter((r) => r.kind === kind).map((r) => chatPromptIds(tpl, tok, r.prompt));
  const h = ids("harmful");
  const s = ids("harmless");
  if (h.length < train + validation || s.length < train + validation)
    throw new Error(`bench: indist.jsonl has ${h.length} + ${s.length} prompts`);
  const pick = (xs: ChatPromptIds[]) => xs.map((p) => [...p.ids]);
  return {
    model: MODEL,
    train: { harmful: pick(h.slice(0, train)), harmless: pick(s.slice(0, train)) },
    validation: {
      harmful: pick(h.slice(train, train + validation)),
      harmless: pick(s.slice(train, train + validation)),
    },
    refusal_tokens: refusalTokens(tok, ["I can't help with that.", "I'm sorry, but I can't help with that."]),
    positions: Math.min(...[...h, ...s].map((p) => p.post)),
  };
}

function child(path: string): void {
  const job = JSON.parse(readFileSync(path, "utf8")) as Job;
  const model = loadGemma3(job.model, defaultBackend());
  const P = (ids: number[]): ChatPromptIds => ({ ids, post: job.positions });
  const t0 = performance.now();
  const fit = fitRefusalDirection(
    model,
    { harmful: job.train.harmful.map(P), harmless: job.train.harmless.map(P) },
    { harmful: job.validation.harmful.map(P), harmless: job.validation.harmless.map(P) },
    job.refusal_tokens,
  );
  const out: RunResult = {
    impl: "glassbox",
    seconds: (performance.now() - t0) / 1000,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    scores: [...fit.scores],
  };
  console.log(JSON.stringify(out));
}

function run(cmd: string, argv: string[]): RunResult {
  return spawnJson<RunResult>(cmd, argv, { ...process.env, OMP_NUM_THREADS: "2" });
}

function main(): void {
  const argv = process.argv.slice(2);
  const get = (name: string, def: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
  };
  const childJob = get("child", "");
  if (childJob !== "") {
    child(childJob);
    return;
  }
  const rounds = Number(get("rounds", "1"));
  const anchor = argv.includes("--anchor");
  const json = argv.includes("--json");
  const dir = mkdtempSync(join(tmpdir(), "glassbox-bench-chat-"));
  const jobFile = join(dir, "job.json");
  const job = makeJob(Number(get("train", "48")), Number(get("validation", "16")));
  writeFileSync(jobFile, JSON.stringify(job));
  const runs: RunResult[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      const order = [() => run(process.execPath, [fileURLToPath(import.meta.url), "--child", jobFile])];
      if (anchor)
        order.push(() =>
          run(referencePython(), [join(root, "reference", "bench_refusal.py"), "--job", jobFile]),
        );
      if (round % 2 === 1) order.reverse();
      for (const f of order) {
        const r = f();
        runs.push(r);
        if (!json)
          console.error(
            `  ${r.impl}: ${r.seconds.toFixed(2)} s, peak RSS ${(r.peak_rss_bytes / 2 ** 20).toFixed(0)} MiB`,
          );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const of = (impl: string) => runs.filter((r) => r.impl === impl);
  const g = of("glassbox");
  const a = of("transformers");
  const sec = (xs: RunResult[]) => (xs.length === 0 ? null : median(xs.map((r) => r.seconds)));
  const rss = (xs: RunResult[]) =>
    xs.length === 0 ? null : Math.max(...xs.map((r) => r.peak_rss_bytes)) / 2 ** 20;
  // Parity: the largest score difference over matching candidates.
  let maxDiff: number | null = null;
  if (g.length > 0 && a.length > 0) {
    maxDiff = 0;
    for (const s of g[0].scores) {
      const t = a[0].scores.find((x) => x.layer === s.layer && x.position === s.position);
      if (t === undefined) throw new Error(`bench: the reference has no candidate ${s.layer}/${s.position}`);
      maxDiff = Math.max(
        maxDiff,
        Math.abs(s.ablation - t.ablation),
        Math.abs(s.kl - t.kl),
        Math.abs(s.steering - t.steering),
      );
    }
    if (a[0].scores.length !== g[0].scores.length) throw new Error("bench: different candidate counts");
  }
  const gs = sec(g);
  const as = sec(a);
  const summary = {
    prompts: {
      train: job.train.harmful.length + job.train.harmless.length,
      validation: job.validation.harmful.length + job.validation.harmless.length,
    },
    candidates: g[0]?.scores.length ?? null,
    glassbox_seconds: gs,
    glassbox_peak_rss_mib: rss(g),
    transformers_seconds: as,
    transformers_peak_rss_mib: rss(a),
    speedup: gs !== null && as !== null ? as / gs : null,
    rss_ratio: rss(g) !== null && rss(a) !== null ? (rss(g) as number) / (rss(a) as number) : null,
    max_score_difference: maxDiff,
  };
  const report = {
    machine: machine(),
    date: new Date().toISOString().slice(0, 10),
    rounds,
    summary,
    runs: runs.map(({ scores: _s, ...r }) => r),
  };
  if (json) console.log(JSON.stringify(report));
  else console.table([summary]);
}

main();
