/**
 * The registry (after SAELens `registry.py`): which architecture module and which activation module
 * a format's `type` / `architecture` values name, and back. Format readers and writers look values
 * up here; nothing else maps names to modules.
 */
import { DictionaryError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import { jumpRelu } from "./activations/jumprelu.js";
import { relu } from "./activations/relu.js";
import { topK } from "./activations/topk.js";
import { Sae } from "./architectures/sae.js";
import { SkipTranscoder } from "./architectures/skip-transcoder.js";
import { Transcoder } from "./architectures/transcoder.js";
import type { DictionaryMeta, SingleLayerParams } from "./single-layer.js";
import type { Activation, ActivationInfo, Dictionary } from "./types.js";

export type ActivationKind = ActivationInfo["kind"];

/** An architecture module as the formats see it. */
export interface ArchitectureEntry {
  /** `DictionarySpec.architecture` */
  readonly name: string;
  /** Whether it adds an affine skip connection x @ A. */
  readonly skip: boolean;
  /** Whether it reconstructs its own input (one hook point for reading and writing). */
  readonly reconstructsInput: boolean;
  /** Gemma Scope 2 config `type` and `affine_connection`. */
  readonly gemmaScope2: { readonly type: string; readonly affine: boolean };
  /** SAELens `architecture` value for each activation it can be saved with there. */
  readonly saelens: Readonly<Partial<Record<ActivationKind, string>>>;
  /** Builds a single-site dictionary (null: multi-layer, built by its format reader). */
  readonly create:
    | ((params: SingleLayerParams, activation: Activation, meta: DictionaryMeta) => Dictionary)
    | null;
}

export const ARCHITECTURES: readonly ArchitectureEntry[] = [
  {
    name: "sae",
    skip: false,
    reconstructsInput: true,
    gemmaScope2: { type: "sae", affine: false },
    saelens: { relu: "standard", jumprelu: "jumprelu", topk: "topk" },
    create: (p, a, m) => new Sae(p, a, m),
  },
  {
    name: "transcoder",
    skip: false,
    reconstructsInput: false,
    gemmaScope2: { type: "transcoder", affine: false },
    saelens: { relu: "transcoder", jumprelu: "jumprelu_transcoder" },
    create: (p, a, m) => new Transcoder(p, a, m),
  },
  {
    name: "skip_transcoder",
    skip: true,
    reconstructsInput: false,
    gemmaScope2: { type: "transcoder", affine: true },
    saelens: { relu: "skip_transcoder", jumprelu: "jumprelu_skip_transcoder" },
    create: (p, a, m) => new SkipTranscoder(p, a, m),
  },
  {
    name: "clt",
    skip: false,
    reconstructsInput: false,
    gemmaScope2: { type: "clt", affine: false },
    saelens: {},
    create: null,
  },
];

export function architectureByName(name: string): ArchitectureEntry {
  const a = ARCHITECTURES.find((e) => e.name === name);
  if (a === undefined) throw new DictionaryError(`unknown architecture ${JSON.stringify(name)}`);
  return a;
}

/** The module a Gemma Scope 2 config names (a CLT's skip connections do not change its module). */
export function gemmaScope2Architecture(type: string, affine: boolean, file: string): ArchitectureEntry {
  const a =
    ARCHITECTURES.find((e) => e.gemmaScope2.type === type && e.gemmaScope2.affine === affine) ??
    ARCHITECTURES.find((e) => e.gemmaScope2.type === type && e.create === null);
  if (a === undefined) {
    const known = [...new Set(ARCHITECTURES.map((e) => e.gemmaScope2.type))].join(", ");
    throw new DictionaryError(
      `unsupported type ${JSON.stringify(type)}${affine ? " with affine_connection" : ""} (supported: ${known})`,
      file,
    );
  }
  return a;
}

/** The module and activation a SAELens `architecture` names. */
export function saelensArchitecture(
  name: string,
  file: string,
): { entry: ArchitectureEntry; activation: ActivationKind } {
  for (const entry of ARCHITECTURES) {
    for (const [kind, value] of Object.entries(entry.saelens)) {
      if (value === name) return { entry, activation: kind as ActivationKind };
    }
  }
  const known = ARCHITECTURES.flatMap((e) => Object.values(e.saelens)).join(", ");
  throw new DictionaryError(
    `unsupported SAELens architecture ${JSON.stringify(name)} (supported: ${known})`,
    file,
  );
}

/** What an activation needs from a file: a threshold tensor, or a setting such as k. */
export interface ActivationInputs {
  readonly threshold: Tensor<"f32"> | null;
  readonly k: number | null;
}

interface ActivationEntry {
  readonly kind: ActivationKind;
  /**
   * Gemma Scope 2 config `architecture` value (`topk` is a glassbox extension); null when saved as
   * another kind (ReLU is written as a JumpReLU with zero thresholds).
   */
  readonly gemmaScope2: string | null;
  readonly needsThreshold: boolean;
  readonly needsK: boolean;
  build(inputs: ActivationInputs): Activation;
}

/** Activation modules a file can name. BatchTopK is saved as a JumpReLU, so no file names it. */
const ACTIVATIONS: readonly ActivationEntry[] = [
  {
    kind: "jumprelu",
    gemmaScope2: "jump_relu",
    needsThreshold: true,
    needsK: false,
    build: (i) => jumpRelu(i.threshold as Tensor<"f32">),
  },
  { kind: "relu", gemmaScope2: null, needsThreshold: false, needsK: false, build: () => relu },
  {
    kind: "topk",
    gemmaScope2: "topk",
    needsThreshold: false,
    needsK: true,
    build: (i) => topK(i.k as number),
  },
];

export function activationEntry(kind: ActivationKind, file: string): ActivationEntry {
  const a = ACTIVATIONS.find((e) => e.kind === kind);
  if (a === undefined) throw new DictionaryError(`no file format stores a ${kind} activation directly`, file);
  return a;
}

export function gemmaScope2Activation(architecture: string, file: string): ActivationEntry {
  const a = ACTIVATIONS.find((e) => e.gemmaScope2 === architecture);
  if (a === undefined) {
    throw new DictionaryError(
      `unsupported architecture ${JSON.stringify(architecture)} (supported: ${ACTIVATIONS.flatMap((e) => e.gemmaScope2 ?? []).join(", ")})`,
      file,
    );
  }
  return a;
}
