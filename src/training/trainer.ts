/**
 * The training loop, one for every architecture: each dictionary of the config is a `SparseCoder`
 * (its rule, shape and Matryoshka groups supply initialisation, loss, constraints and export), and
 * every batch read from the source feeds all of them, so several sites, widths and L0 targets
 * train from one pass over the data.
 *
 * Before the first step each site's fixed input scale s = 1 / sqrt(E||x||^2) is estimated from the
 * first `scaleTokens` tokens (the source is then rewound), as in Gemma Scope 2; exports fold it back
 * into the weights, and a dictionary with `init` starts from an existing one unfolded under these
 * scales (init.ts). With an output directory the loop writes `checkpoint.safetensors` every
 * `checkpointEvery` steps and at the end (atomically; see checkpoint.ts) and appends metrics to
 * `metrics.jsonl`; `Trainer.open` resumes from an existing checkpoint, and the resumed run is
 * bit-identical to an uninterrupted one.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../core/backend.js";
import { TrainingError } from "../core/errors.js";
import { Rng } from "../core/random.js";
import { loadDictionary } from "../dictionaries/load.js";
import type { JsonValue } from "../io/strict-json.js";
import { type CheckpointState, readCheckpoint, writeCheckpoint } from "./checkpoint.js";
import { type SparseCoder as Coder, SparseCoder, type StepMetrics, Workspace } from "./coder.js";
import {
  checkAgainstSource,
  type DictionaryConfig,
  dictionaryWidths,
  type TrainingConfig,
} from "./config.js";
import { initFromDictionary } from "./init.js";
import { makeRule } from "./rules/index.js";
import type { ActivationBatch, BatchSource, SourceCursor } from "./source.js";

export const METRICS_FILE = "metrics.jsonl";

/** Metrics of one dictionary averaged over a logging interval. */
export type DictionaryMetrics = Omit<StepMetrics, "lr" | "sparsityScale" | "deadFraction"> & {
  readonly lr: number;
  readonly deadFraction: number;
};

/** One line of `metrics.jsonl`. */
export interface MetricsLine {
  readonly step: number;
  readonly tokens: number;
  readonly elapsedSeconds: number;
  /** Tokens per second over the interval. */
  readonly tokensPerSecond: number;
  readonly dictionaries: Readonly<Record<string, DictionaryMetrics>>;
}

export interface TrainerOptions {
  readonly backend: Backend;
  readonly source: BatchSource;
  readonly config: TrainingConfig;
  /** Checkpoints and metrics go here (created if needed); null keeps everything in memory. */
  readonly outDir: string | null;
  /** Called with each metrics line (progress display). */
  readonly onLog?: (line: MetricsLine) => void;
}

export interface TrainResult {
  /** Steps completed in total (including before a resume). */
  readonly steps: number;
  readonly tokens: number;
  /** True when the data ran out before `config.steps`. */
  readonly dataExhausted: boolean;
  readonly elapsedSeconds: number;
  /** Wall time of this `run` call (not counting earlier runs of a resumed training). */
  readonly runSeconds: number;
  /** The last metrics line, if any step ran. */
  readonly last: MetricsLine | null;
}

const KEEP_CONFIG_KEYS_FREE = new Set(["steps", "checkpointEvery", "logEvery"]);

/** The parts of a config a resumed run must share with the checkpoint (not steps or logging). */
function resumableConfig(config: TrainingConfig): JsonValue {
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(config)) if (!KEEP_CONFIG_KEYS_FREE.has(k)) out[k] = v as JsonValue;
  return JSON.parse(JSON.stringify(out)) as JsonValue;
}

function buildCoder(
  backend: Backend,
  d: DictionaryConfig,
  sites: ReadonlyMap<string, number>,
  steps: number,
  workspace: Workspace,
): Coder {
  const { dIn, dOut } = dictionaryWidths(d, sites);
  return new SparseCoder(backend, {
    shape: {
      inputs: d.inputs,
      outputs: d.outputs,
      dIn,
      dOut,
      width: d.width,
      ...(d.groups === null ? {} : { groups: d.groups }),
      ...(d.groupWeights === null ? {} : { groupWeights: d.groupWeights }),
      skip: d.skip,
      preEncoderBias: d.preEncoderBias,
    },
    makeRule: (w) => makeRule(d.rule, w),
    schedule: {
      lr: d.lr,
      lrWarmupSteps: d.lrWarmupSteps,
      lrWarmupFrom: d.lrWarmupFrom,
      lrDecaySteps: d.lrDecaySteps,
      sparsityWarmupSteps: d.sparsityWarmupSteps,
      totalSteps: steps,
    },
    adam: d.adam,
    deadWindow: d.deadWindow,
    seed: d.seed,
    workspace,
  });
}

/**
 * Mean ||x||^2 per site over about `tokens` tokens read in batches of `batchSize` from the source's
 * current position, which is restored afterwards. Returns site -> 1 / sqrt(mean).
 */
export async function estimateScales(
  source: BatchSource,
  sites: readonly string[],
  tokens: number,
  batchSize: number,
): Promise<Map<string, number>> {
  const start = source.cursor();
  const sums = new Map(sites.map((s) => [s, 0]));
  let seen = 0;
  while (seen < tokens) {
    const b = await source.next(batchSize, sites);
    if (b === null) break;
    for (const s of sites) {
      const x = b.sites.get(s) as Float32Array;
      let sq = 0;
      for (let i = 0; i < x.length; i++) sq += x[i] * x[i];
      sums.set(s, (sums.get(s) as number) + sq);
    }
    seen += b.tokens;
  }
  source.seek(start);
  if (seen === 0) throw new TrainingError(`the data has fewer than one batch (${batchSize} tokens)`);
  const scales = new Map<string, number>();
  for (const s of sites) {
    const meanSq = (sums.get(s) as number) / seen;
    if (!(meanSq > 0) || !Number.isFinite(meanSq))
      throw new TrainingError(`site ${s}: activations are all zero or not finite (mean ||x||^2 = ${meanSq})`);
    scales.set(s, 1 / Math.sqrt(meanSq));
  }
  return scales;
}

export class Trainer {
  /** Dictionary id -> its coder. */
  readonly coders: ReadonlyMap<string, Coder>;
  /** Site key -> input scale. */
  readonly scales: ReadonlyMap<string, number>;
  /** True when this trainer continued from a checkpoint. */
  readonly resumed: boolean;
  step: number;
  private rng: Rng;
  private cursor: SourceCursor;
  private elapsed: number;
  private readonly sites: string[];

  private constructor(
    private readonly options: TrainerOptions,
    coders: Map<string, Coder>,
    scales: Map<string, number>,
    init: { step: number; rng: Rng; cursor: SourceCursor; elapsed: number; resumed: boolean },
  ) {
    this.coders = coders;
    this.scales = scales;
    this.step = init.step;
    this.rng = init.rng;
    this.cursor = init.cursor;
    this.elapsed = init.elapsed;
    this.resumed = init.resumed;
    this.sites = [...new Set([...coders.values()].flatMap((c) => c.sites))];
  }

  /**
   * Builds the dictionaries, resuming from `outDir`'s checkpoint when there is one (same config
   * apart from steps and logging, same data), otherwise estimating the input scales.
   */
  static async open(options: TrainerOptions): Promise<Trainer> {
    const { backend, source, config, outDir } = options;
    checkAgainstSource(config, source.sites);
    if (outDir !== null) {
      try {
        mkdirSync(outDir, { recursive: true });
      } catch (e) {
        throw new TrainingError(
          `cannot create the output directory: ${e instanceof Error ? e.message : e}`,
          outDir,
        );
      }
    }
    const workspace = new Workspace();
    const coders = new Map(
      config.dictionaries.map((d) => [d.id, buildCoder(backend, d, source.sites, config.steps, workspace)]),
    );
    const ck = outDir === null ? null : readCheckpoint(outDir);
    if (ck !== null) {
      try {
        const s = ck.state;
        if (JSON.stringify(s.config) !== JSON.stringify(resumableConfig(config)))
          throw new TrainingError(
            "the checkpoint was made with another configuration (only steps, checkpointEvery and logEvery may change); use a new output directory",
            outDir ?? undefined,
          );
        if (s.fingerprint !== source.fingerprint)
          throw new TrainingError(
            `the checkpoint was made on other data (fingerprint ${s.fingerprint.slice(0, 16)}..., this data ${source.fingerprint.slice(0, 16)}...)`,
            outDir ?? undefined,
          );
        for (const [id, coder] of coders) {
          coder.restoreArrays((name) => ck.read(id, name));
          const st = s.coders[id];
          if (st === undefined) throw new TrainingError(`the checkpoint has no state for dictionary ${id}`);
          coder.loadState(st);
        }
        source.seek(s.cursor);
        return new Trainer(options, coders, new Map(Object.entries(s.scales)), {
          step: s.step,
          rng: Rng.fromState(s.rng),
          cursor: s.cursor,
          elapsed: s.elapsedSeconds,
          resumed: true,
        });
      } finally {
        ck.close();
      }
    }
    const sites = [...new Set([...coders.values()].flatMap((c) => c.sites))];
    const scales = await estimateScales(source, sites, config.scaleTokens, config.batchSize);
    for (const d of config.dictionaries) {
      if (d.init !== null)
        initFromDictionary(coders.get(d.id) as Coder, loadDictionary(d.init, backend), scales, d.init);
    }
    return new Trainer(options, coders, scales, {
      step: 0,
      rng: new Rng(config.seed),
      cursor: source.cursor(),
      elapsed: 0,
      resumed: false,
    });
  }

  get config(): TrainingConfig {
    return this.options.config;
  }

  /**
   * Trains until `config.steps` (or `maxSteps` more steps, or the data ends), checkpointing on the
   * way and at the end.
   */
  async run(maxSteps = Number.POSITIVE_INFINITY): Promise<TrainResult> {
    const { config, source, outDir, onLog } = this.options;
    const B = config.batchSize;
    const stopAt = Math.min(config.steps, this.step + maxSteps);
    const metricsPath = outDir === null ? null : join(outDir, METRICS_FILE);
    const logged = metricsPath === null ? null : trimMetrics(metricsPath, this.step);
    const sums = new Map<string, Record<string, number>>();
    let intervalSteps = 0;
    let intervalStart = performance.now();
    // Until this call logs, the last line is the one the checkpointed run wrote (if any).
    let last: MetricsLine | null = logged;
    let exhausted = false;
    let pending: Promise<ActivationBatch | null> | null =
      this.step < stopAt ? source.next(B, this.sites) : null;
    const runStart = performance.now();
    const elapsedBefore = this.elapsed;
    while (pending !== null) {
      const batch = await pending;
      if (batch === null) {
        exhausted = true;
        if (this.step === 0) throw new TrainingError(`the data has fewer than one batch (${B} tokens)`);
        break;
      }
      this.cursor = source.cursor();
      pending = this.step + 1 < stopAt ? source.next(B, this.sites) : null;
      for (const [id, coder] of this.coders) {
        const m = coder.train(batch.sites, batch.tokens, this.scales);
        const acc = sums.get(id) ?? {};
        for (const [k, v] of Object.entries(m)) acc[k] = (acc[k] ?? 0) + v;
        sums.set(id, acc);
      }
      this.step++;
      intervalSteps++;
      this.elapsed = elapsedBefore + (performance.now() - runStart) / 1000;
      const atEnd = this.step >= stopAt;
      if (this.step % config.logEvery === 0 || atEnd) {
        const now = performance.now();
        last = {
          step: this.step,
          tokens: this.step * B,
          elapsedSeconds: round(this.elapsed, 6),
          tokensPerSecond: round((intervalSteps * B) / ((now - intervalStart) / 1000), 4),
          dictionaries: Object.fromEntries(
            [...sums].map(([id, acc]) => [
              id,
              Object.fromEntries(Object.entries(acc).map(([k, v]) => [k, round(v / intervalSteps, 6)])),
            ]),
          ) as Record<string, DictionaryMetrics>,
        };
        sums.clear();
        intervalSteps = 0;
        intervalStart = now;
        if (metricsPath !== null) appendFileSync(metricsPath, `${JSON.stringify(last)}\n`);
        onLog?.(last);
      }
      if (
        outDir !== null &&
        ((config.checkpointEvery > 0 && this.step % config.checkpointEvery === 0) || atEnd)
      )
        this.checkpoint();
    }
    if (exhausted && outDir !== null) this.checkpoint();
    return {
      steps: this.step,
      tokens: this.step * B,
      dataExhausted: exhausted,
      elapsedSeconds: this.elapsed,
      runSeconds: (performance.now() - runStart) / 1000,
      last,
    };
  }

  /** Writes the checkpoint now (needs an output directory). */
  checkpoint(): void {
    const { outDir, config, source } = this.options;
    if (outDir === null) throw new TrainingError("no output directory to checkpoint to");
    const state: CheckpointState = {
      step: this.step,
      cursor: this.cursor,
      scales: Object.fromEntries(this.scales),
      rng: this.rng.getState(),
      fingerprint: source.fingerprint,
      config: resumableConfig(config),
      coders: Object.fromEntries([...this.coders].map(([id, c]) => [id, c.state()])),
      elapsedSeconds: this.elapsed,
    };
    writeCheckpoint(outDir, state, this.coders);
  }
}

/** `v` to `digits` significant digits (metrics lines stay short). */
function round(v: number, digits: number): number {
  return Number.isFinite(v) ? Number(v.toPrecision(digits)) : v;
}

/**
 * Drops metrics lines past `step` (written after the checkpoint a resumed run starts from) and
 * returns the last line kept, if any.
 */
function trimMetrics(path: string, step: number): MetricsLine | null {
  if (!existsSync(path)) return null;
  const lines = readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "");
  const keep: string[] = [];
  let last: MetricsLine | null = null;
  for (const l of lines) {
    try {
      const m = JSON.parse(l) as MetricsLine;
      if (m.step <= step) {
        keep.push(l);
        last = m;
      }
    } catch {
      // A line cut short by a kill is dropped.
    }
  }
  if (keep.length !== lines.length) writeFileSync(path, keep.map((l) => `${l}\n`).join(""));
  return last;
}
