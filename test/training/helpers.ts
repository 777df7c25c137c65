/**
 * Shared fixtures for the checkpoint tests: a small run of three dictionaries of different kinds
 * over planted data (so resuming must restore parameters, Adam moments, dead-latent counters, a
 * BatchTopK running threshold and the data cursor), and a child process that runs it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultBackend } from "../../src/backends/index.js";
import { parseTrainingConfig, type TrainingConfig } from "../../src/training/config.js";
import { PlantedSource } from "../../src/training/synthetic.js";
import { Trainer } from "../../src/training/trainer.js";

export function smallSource(): PlantedSource {
  return new PlantedSource({ d: 16, features: 32, meanL0: 3, kind: "transcoder", seed: 7, skip: 0.3 });
}

export function smallConfig(steps: number, checkpointEvery: number): TrainingConfig {
  const common = {
    width: 48,
    lr: 3e-3,
    lrWarmupSteps: 5,
    lrDecaySteps: 10,
    sparsityWarmupSteps: 20,
    deadWindow: 256,
  };
  return parseTrainingConfig({
    batchSize: 64,
    steps,
    checkpointEvery,
    logEvery: 1,
    scaleTokens: 256,
    dictionaries: [
      {
        id: "jumprelu",
        inputs: ["in.0"],
        ...common,
        groups: [16, 32],
        preEncoderBias: true,
        rule: { kind: "jumprelu", targetL0: 4 },
      },
      { id: "batchtopk", inputs: ["in.0"], ...common, rule: { kind: "batchtopk", k: 3, auxK: 4 } },
      {
        id: "topk-skip",
        inputs: ["in.0"],
        outputs: ["out.0"],
        skip: true,
        ...common,
        adam: { beta1: 0.9 },
        rule: { kind: "topk", k: 3, auxK: 4 },
      },
    ],
  });
}

export function openSmall(outDir: string | null, steps: number, checkpointEvery: number): Promise<Trainer> {
  return Trainer.open({
    backend: defaultBackend(),
    source: smallSource(),
    config: smallConfig(steps, checkpointEvery),
    outDir,
  });
}

const here = fileURLToPath(new URL(".", import.meta.url));
const compiled = existsSync(join(here, "helpers.js"));

/** Runs the small training in a child process (argv: DIR STEPS CHECKPOINT_EVERY). */
export function spawnTraining(dir: string, steps: number, checkpointEvery: number): ChildProcess {
  const script = compiled
    ? [join(here, "train-child.js")]
    : ["--import", "tsx", join(here, "train-child.ts")];
  return spawn(process.execPath, [...script, dir, String(steps), String(checkpointEvery)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
}
