/**
 * Training checkpoints: one safetensors file per run directory, written atomically (temporary
 * file, fsync, rename; `src/io/safetensors-write.ts`), so a run killed at any moment leaves either
 * the previous checkpoint or the new one. It holds every dictionary's parameters, Adam moments and
 * dead-latent counters as tensors (`<id>/<array>`), and as JSON in the header metadata: the step,
 * the data cursor, the input scales, the RNG state, the data's fingerprint, the config and each
 * coder's non-array state.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { GlassboxError, TrainingError } from "../core/errors.js";
import type { RngState } from "../core/random.js";
import { SafetensorsFile } from "../io/safetensors.js";
import { type TensorToWrite, writeSafetensorsSync } from "../io/safetensors-write.js";
import type { JsonValue } from "../io/strict-json.js";
import type { SparseCoder } from "./coder.js";
import type { SourceCursor } from "./source.js";

export const CHECKPOINT_FILE = "checkpoint.safetensors";
const STATE_KEY = "glassbox.training";
const FORMAT = "glassbox.training-checkpoint";
const VERSION = 1;

export interface CheckpointState {
  /** Optimiser steps completed. */
  readonly step: number;
  /** Where the data continues. */
  readonly cursor: SourceCursor;
  /** Site key -> input scale. */
  readonly scales: Readonly<Record<string, number>>;
  readonly rng: RngState;
  /** The data's fingerprint (a run resumes only on the same data). */
  readonly fingerprint: string;
  /** The run's config, as parsed. */
  readonly config: JsonValue;
  /** Dictionary id -> the coder's non-array state. */
  readonly coders: Readonly<Record<string, JsonValue>>;
  /** Training wall time so far. */
  readonly elapsedSeconds: number;
}

export function checkpointPath(dir: string): string {
  return join(dir, CHECKPOINT_FILE);
}

export function writeCheckpoint(
  dir: string,
  state: CheckpointState,
  coders: ReadonlyMap<string, SparseCoder>,
): void {
  const tensors = new Map<string, TensorToWrite>();
  for (const [id, coder] of coders) {
    for (const [name, a] of coder.checkpointArrays()) {
      tensors.set(`${id}/${name}`, {
        dtype: a.data instanceof Float64Array ? "F64" : "F32",
        shape: a.shape,
        data: a.data,
      });
    }
  }
  const meta = JSON.stringify({ format: FORMAT, version: VERSION, ...state });
  try {
    writeSafetensorsSync(checkpointPath(dir), tensors, { [STATE_KEY]: meta });
  } catch (e) {
    throw new TrainingError(
      `cannot write the checkpoint: ${e instanceof Error ? e.message : String(e)}`,
      dir,
    );
  }
}

export interface LoadedCheckpoint {
  readonly state: CheckpointState;
  /** The stored array `<id>/<name>`, or undefined. */
  read(id: string, name: string): Float32Array | Float64Array | undefined;
  close(): void;
}

/** Opens a run directory's checkpoint, or returns null when there is none. */
export function readCheckpoint(dir: string): LoadedCheckpoint | null {
  const path = checkpointPath(dir);
  if (!existsSync(path)) return null;
  let file: SafetensorsFile;
  try {
    file = SafetensorsFile.open(path);
  } catch (e) {
    throw new TrainingError(
      `unreadable checkpoint: ${e instanceof GlassboxError ? e.message : String(e)}`,
      path,
    );
  }
  const raw = file.metadata[STATE_KEY];
  let parsed: unknown;
  try {
    parsed = typeof raw === "string" ? JSON.parse(raw) : undefined;
  } catch {
    parsed = undefined;
  }
  const p = parsed as Partial<CheckpointState & { format: string; version: number }> | undefined;
  if (
    p === undefined ||
    p.format !== FORMAT ||
    p.version !== VERSION ||
    typeof p.step !== "number" ||
    typeof p.fingerprint !== "string" ||
    typeof p.scales !== "object" ||
    !Array.isArray(p.rng) ||
    typeof p.coders !== "object"
  ) {
    file.close();
    throw new TrainingError("not a glassbox training checkpoint (missing or bad state)", path);
  }
  const state = p as CheckpointState;
  return {
    state,
    read(id, name) {
      const key = `${id}/${name}`;
      if (!file.has(key)) return undefined;
      const t = file.readTypedSync(key);
      if (t.dtype === "F32" || t.dtype === "F64") return t.data;
      throw new TrainingError(`checkpoint array ${key} has dtype ${t.dtype}`, path);
    },
    close: () => file.close(),
  };
}
